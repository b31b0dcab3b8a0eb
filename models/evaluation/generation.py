"""How well the student generates (models.network.generation), scored on held-out worlds (seeds >= 1000) recorded with
`restyler record-data --force-eval-seeds`: calm ones (`--pace 0.3`, as the generation stage trains on) or the ones
`restyler eval` renders.

Every clip of CLIPS_DIR (each world in each style, its reference renders) gives four runs, the first training
prompt of its style as the prompt:

    image-to-video  frame 0 as the image, then `frames` new frames
                    next_psnr: the first new frame against the image (does the video go on from it?)
                    gt_psnr: every new frame against the world's true continuation; hold_psnr the same for simply
                    repeating the image, the baseline that any real motion must beat
    extension       frames 0..C-1 as the video (C = what the cache holds), then `frames` new frames
                    jump: mean |first new − last given| over the clip's own mean frame-to-frame difference
                    (1 = a step as large as the clip's own; a cut between unrelated frames scores ~10), and
                    gt_psnr / hold_psnr as above
    text-to-video   `frames` frames from the prompt alone
                    style_hits: frames whose colour histogram is nearest the prompted style's average over the
                    reference renders (a 4-way choice: chance is 0.25)
                    spectrum_gap: mean |difference| of the average radial log power spectra of the frames and of
                    the style's reference renders (the spectral measure of docs/evaluation.md, over sets: there
                    is no same-scene reference); blur shows as missing high-frequency power
    switch          text-to-video with the next style's prompt from the middle: style_hits of the frames after
                    the switch against the new style
    motion          every run: mean frame-to-frame difference of the new frames over the clip's own (0 = a still)

`python -m models.evaluation.generation MODEL CLIPS_DIR --steps 4 8 16 --carry 1 0.9 --json FILE` scores each
sampler setting (docs/generation.md).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from models.evaluation import metrics
from models.io.atomic import write_atomic
from models.io.data import ClipDataset, collate
from models.network.generation import GenerationSampler, generate
from models.network.loading import load_student
from models.network.prompt import PromptEncoder

HIST_BINS = 8


def colour_signature(frames: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> (N, 3·bins) per-channel colour histograms: what tells the styles apart."""
    x = ((frames.clamp(-1, 1) + 1) / 2 * (HIST_BINS - 1e-4)).long().flatten(2)  # (N, 3, H·W) bin indices
    hist = torch.zeros(*x.shape[:2], HIST_BINS).scatter_add_(2, x, torch.ones(x.shape))
    return (hist / x.shape[-1]).flatten(1)


def spectrum_gap(frames: torch.Tensor, reference: torch.Tensor) -> float:
    return float((metrics.radial_log_spectrum(frames).mean(0) - metrics.radial_log_spectrum(reference).mean(0))
                 .abs().mean())


def mean_step(video: torch.Tensor) -> float:
    """Mean absolute difference between consecutive frames of (F, C, H, W)."""
    return float((video[1:] - video[:-1]).abs().mean())


@torch.no_grad()
def evaluate_generation(model_dir: Path, clips_dir: Path, steps: int, frames: int = 16, seed: int = 0,
                        carry: float = 1.0) -> dict[str, Any]:
    student, sampler, meta = load_student(model_dir, "student", "cpu")
    if student.cfg.space != "pixel":
        raise ValueError("gen_eval scores pixel-space students")
    gen_sampler = GenerationSampler(steps=steps, shift=sampler.shift, window_chunks=sampler.window_chunks,
                                    sink_chunks=sampler.sink_chunks, carry=carry)
    context = (sampler.sink_chunks + sampler.window_chunks) * student.cfg.chunk_frames
    data = ClipDataset(clips_dir, clip_frames=context + frames, stride=1 << 30)
    names = data.style_names
    styles = PromptEncoder.shared().encode([meta["prompts"][n][0] for n in names])
    clips = collate([data[i] for i in range(len(data))])
    refs, index = clips["style"], clips["style_index"]
    signature = torch.stack([colour_signature(refs[index == s].flatten(0, 1)).mean(0) for s in range(len(names))])

    def style_of(video: torch.Tensor) -> torch.Tensor:
        return torch.cdist(colour_signature(video), signature, p=1).argmin(1)

    rows: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        rows.setdefault(key, []).append(value)

    tick = time.perf_counter()
    for i in range(len(refs)):
        ref, s = refs[i], int(index[i])
        own_step = mean_step(ref)
        rng = torch.Generator().manual_seed(seed * 1_000_003 + i)
        style = styles[s][None]
        truth = ref[1:1 + frames]
        out = generate(student, gen_sampler, lambda _: style, frames, ref[None, :1], rng)[0]
        add("i2v_next_psnr", float(metrics.psnr(out[0], ref[0])))
        add("i2v_gt_psnr", float(metrics.psnr(out, truth).mean()))
        add("i2v_hold_psnr", float(metrics.psnr(ref[:1].expand_as(truth), truth).mean()))
        add("i2v_motion", mean_step(out) / own_step)
        truth = ref[context:context + frames]
        out = generate(student, gen_sampler, lambda _: style, frames, ref[None, :context], rng)[0]
        add("extend_jump", float((out[0] - ref[context - 1]).abs().mean()) / own_step)
        add("extend_gt_psnr", float(metrics.psnr(out, truth).mean()))
        add("extend_hold_psnr", float(metrics.psnr(ref[context - 1:context].expand_as(truth), truth).mean()))
        add("extend_motion", mean_step(out) / own_step)
        out = generate(student, gen_sampler, lambda _: style, frames, None, rng)[0]
        add("t2v_style_hits", float((style_of(out) == s).float().mean()))
        add("t2v_spectrum_gap", spectrum_gap(out, refs[index == s].flatten(0, 1)))
        add("t2v_motion", mean_step(out) / own_step)
        new = (s + 1) % len(names)
        half = frames // 2 // student.cfg.chunk_frames * student.cfg.chunk_frames  # a switch on a chunk boundary
        out = generate(student, gen_sampler, lambda f: styles[s if f < half else new][None], frames, None, rng)[0]
        add("switch_hits", float((style_of(out[half:]) == new).float().mean()))
    seconds = time.perf_counter() - tick
    scores = {k: round(sum(v) / len(v), 4) for k, v in rows.items()}
    return {"model": str(model_dir), "steps": steps, "carry": carry, "frames": frames, "clips": len(refs),
            "seconds_per_frame": round(seconds / (len(refs) * 4 * frames), 4), **scores}


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m models.evaluation.generation", description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path, help="model directory (a shipped model or a run)")
    p.add_argument("clips", type=Path, help="held-out worlds, e.g. out/eval_worlds/gen_128x128_24f_seeds1000-1002")
    p.add_argument("--steps", type=int, nargs="+", default=[GenerationSampler.steps])
    p.add_argument("--carry", type=float, nargs="+", default=[GenerationSampler.carry],
                   help="start levels of chunks that follow a frame (GenerationSampler.carry); each is scored")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--json", type=Path, default=None, help="write the scores here as well")
    args = p.parse_args()
    results = []
    for steps in args.steps:
        for carry in args.carry:
            result = evaluate_generation(args.model, args.clips, steps, args.frames, carry=carry)
            print(json.dumps(result), flush=True)
            results.append(result)
    if args.json:
        write_atomic(args.json, lambda tmp: Path(tmp).write_text(json.dumps(results, indent=2) + "\n"))


if __name__ == "__main__":
    main()
