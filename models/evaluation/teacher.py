"""Score a trained teacher on recorded held-out clips: PSNR of its 50-step samples and of the low-detail input
against the reference style, plus a PNG grid (low-detail | teacher | reference).

`python -m models.evaluation.teacher --model RUN --data EVAL_DIR --json FILE --png FILE`, where EVAL_DIR was recorded
from held-out seeds (`restyler record-data --seeds 1000:1006 --force-eval-seeds ...`). This is the models-level
check of the teacher; `restyler eval` renders held-out worlds on the fly and scores every row of docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from models.evaluation.metrics import psnr
from models.io.atomic import write_atomic
from models.io.data import ClipDataset, collate, gbuffers_of
from models.io.images import save_grid
from models.network.dit import Conditioning
from models.network.loading import load_autoencoder, load_network
from models.network.prompt import PromptEncoder
from models.network.sampling import sample_teacher


@torch.no_grad()
def score_teacher(run: Path, data: Path, frames: int | None = None, steps: int | None = None,
                  guidance: float | None = None, batch: int = 4, grid: Path | None = None) -> dict:
    teacher, meta = load_network(run, "teacher")
    cfg = teacher.cfg
    sampler = meta["sampler"]
    steps = steps or sampler["steps"]
    guidance = sampler["guidance"] if guidance is None else guidance
    autoencoder = load_autoencoder(run) if cfg.space == "latent" else None
    # the first window of every clip and style: 50 guided steps over all windows would take far longer on a CPU
    dataset = ClipDataset(data, clip_frames=frames or cfg.clip_frames, stride=1 << 30)
    encoder = PromptEncoder.shared()
    # each style is asked for by the first of its training prompts
    styles = torch.stack([encoder.encode([meta["prompts"][name][0]])[0] for name in dataset.style_names])

    per_style: dict[str, dict[str, list[float]]] = {n: {"input": [], "teacher": []} for n in dataset.style_names}
    shown: list[list[torch.Tensor]] = [[], [], []]
    start = time.perf_counter()
    for first in range(0, len(dataset), batch):
        items = collate([dataset[i] for i in range(first, min(first + batch, len(dataset)))])
        low = items["low"] if autoencoder is None else autoencoder.encode_video(items["low"])
        cond = Conditioning(low=low, gbuffers=gbuffers_of(items), style=styles[items["style_index"]])
        b, f = items["style"].shape[:2]
        x, _ = sample_teacher(teacher, cond, (b, f, cfg.channels, *cfg.sample_size), steps, sampler["shift"],
                              guidance, torch.Generator().manual_seed(first))
        out = (x if autoencoder is None else autoencoder.decode_video(x)).clamp(-1, 1)
        for i in range(b):
            name = dataset.style_names[int(items["style_index"][i])]
            per_style[name]["input"].append(float(psnr(items["low"][i], items["style"][i]).mean()))
            per_style[name]["teacher"].append(float(psnr(out[i], items["style"][i]).mean()))
        if len(shown[0]) < 8:
            pick = slice(0, f, max(1, f // 4))
            shown[0] += list(items["low"][:, pick].flatten(0, 1)[:8])
            shown[1] += list(out[:, pick].flatten(0, 1)[:8])
            shown[2] += list(items["style"][:, pick].flatten(0, 1)[:8])
    seconds = time.perf_counter() - start

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    result = {
        "data": str(data), "clips": len(dataset), "frames": dataset.clip_frames, "steps": steps, "guidance": guidance,
        "psnr": {"input": mean([v for s in per_style.values() for v in s["input"]]),
                 "teacher": mean([v for s in per_style.values() for v in s["teacher"]])},
        "psnr_by_style": {n: {row: mean(v) for row, v in s.items()} for n, s in per_style.items() if s["input"]},
        "sampling_seconds": seconds,
    }
    if grid is not None:
        save_grid(grid, [torch.stack(shown[0][:8]), torch.stack(shown[1][:8]), torch.stack(shown[2][:8])], columns=4)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="run directory holding teacher.safetensors")
    parser.add_argument("--data", type=Path, required=True, help="held-out clips recorded from seeds >= 1000")
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (default: the teacher's clip)")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the teacher's, 50)")
    parser.add_argument("--guidance", type=float, default=None, help="style guidance scale (default: the teacher's)")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--png", type=Path, default=None)
    args = parser.parse_args()
    result = score_teacher(args.model, args.data, args.frames, args.steps, args.guidance, grid=args.png)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(args.json, lambda tmp: Path(tmp).write_text(json.dumps(result, indent=2) + "\n"))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
