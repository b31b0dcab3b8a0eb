"""Where a regression's error lies: on the pixels near a block's edge (where neon night's outlines, plank seams and
roof tiles are drawn), on the sky, or on the rest, per style. docs/model.md decided how backbone v2 reads `uv` by it.

`python -m models.evaluation.edge_error --model RUN --data DIR [--frames N]`, where DIR holds recorded held-out
clips of data format 2 (`restyler eval --worlds` keeps them, e.g. out/eval_worlds/v2_128x128_24f_seeds1000-1002).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from models.io.data import ClipDataset, collate, denormalize_depth, gbuffers_of
from models.network.dit import Conditioning
from models.network.loading import load_network
from models.network.prompt import PromptEncoder
from models.network.unet import regress_frames

EDGE = 0.06  # the reference pass's outline reaches this far into a face (demo_game/shaders/reference.frag)
REGIONS = ("edge", "sky", "rest")


def regions_of(items: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """(B, F, H, W) masks: block-edge pixels by the uv buffer, sky by the far plane, and everything else."""
    fraction = (items["uv"] + 1) / 2
    u, v = fraction[:, :, 0], fraction[:, :, 1]
    to_edge = torch.minimum(torch.minimum(u, 1 - u), torch.minimum(v, 1 - v))
    depth = denormalize_depth(items["depth"][:, :, 0])
    sky = depth >= 0.98 * depth.max()
    edge = (to_edge < EDGE) & ~sky
    return {"edge": edge, "sky": sky, "rest": ~edge & ~sky}


@torch.no_grad()
def edge_error(run: Path, data: Path, frames: int | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Per style and region: its share of the pixels and of the regression's squared error."""
    model, meta = load_network(run, "regression")
    window = model.cfg.clip_frames
    dataset = ClipDataset(data, clip_frames=frames or window, stride=1 << 30)
    f = dataset.clip_frames - dataset.clip_frames % window
    styles = len(dataset.style_indices)
    table = PromptEncoder.shared().encode([meta["prompts"][name][0] for name in dataset.style_names])
    sums = {(name, r): [0.0, 0.0] for name in dataset.style_names for r in REGIONS}
    for first in range(0, len(dataset), styles):  # one world, all its styles
        items = collate([dataset[i] for i in range(first, first + styles)])
        cond = Conditioning(low=items["low"], gbuffers=gbuffers_of(items), style=table[items["style_index"]])
        out = regress_frames(model, cond, styles, f).clamp(-1, 1)
        error = (out - items["style"][:, :f]).pow(2).mean(2)  # (styles, F, H, W)
        masks = regions_of({k: items[k][:, :f] for k in ("uv", "depth")})
        for i, name in enumerate(dataset.style_names):
            for region, mask in masks.items():
                sums[(name, region)][0] += float(error[i][mask[i]].sum())
                sums[(name, region)][1] += float(mask[i].sum())
    result = {}
    for name in dataset.style_names:
        error_total = sum(sums[(name, r)][0] for r in REGIONS)
        pixels = sum(sums[(name, r)][1] for r in REGIONS)
        result[name] = {r: {"pixels": sums[(name, r)][1] / pixels, "error": sums[(name, r)][0] / error_total}
                        for r in REGIONS}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="run directory holding regression.safetensors")
    parser.add_argument("--data", type=Path, required=True, help="recorded held-out clips (data format 2)")
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (default: the model's clip)")
    args = parser.parse_args()
    print(json.dumps(edge_error(args.model, args.data, args.frames), indent=2))


if __name__ == "__main__":
    main()
