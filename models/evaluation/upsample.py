"""The AI frame at display size, scored: `restyler eval --display WxH`.

On the held-out worlds recorded at the display size, the student's frames (the eval's `student` row, streamed at
the model's size and kept by models.recipe.upsample.student_frames) are brought to display size three ways and
scored against the reference renderer drawn at that size (docs/evaluation.md):

    bilinear   the AI frame stretched with linear filtering: what the overlay showed before the upsampler
    bilateral  joint-bilateral upsampling by depth and normals, no learning
    learned_per_frame  the model's upsampler (models.network.upsampler) on each frame alone
    learned    the same with its temporal resolve (TemporalResolve), as the stream runs it: what the player sees

with psnr, ssim, blockiness at the student's token grid scaled to display size (and at the upsampling's own
s-pixel grid, in the details) and warp_ratio over each clip with the display-size motion vectors.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.numpy import load_file

from models.evaluation import metrics
from models.io.data import ClipDataset, collate, denormalize_depth
from models.network.upsampler import TemporalResolve, Upsampler, bilinear, guide_of, joint_bilateral

ROWS = ("bilinear", "bilateral", "learned_per_frame", "learned")


@torch.no_grad()
def evaluate_upsampling(display_clips: Path, frames_dir: Path, upsampler: Upsampler | None, frames: int,
                        token_pixels: int) -> dict[str, Any]:
    """Scores per row (overall and per style), the reference's own blockiness, and a full-size side-by-side of the
    first world (a line per style: bilinear, bilateral, learned when present, reference) as (3, H, W) in [-1, 1]."""
    data = ClipDataset(display_clips, clip_frames=frames, stride=1 << 30)
    kept = json.loads((frames_dir / "manifest.json").read_text())
    files = {int(s): f for s, f in kept["clips"].items()}
    low_w = kept["key"]["size"][0]
    scale = data.size[0] // low_w
    if upsampler is not None and upsampler.cfg.scale != scale:
        raise ValueError(f"the model's upsampler is ×{upsampler.cfg.scale}; {display_clips} is ×{scale} the "
                         f"model's frames")
    rows = [r for r in ROWS if not r.startswith("learned") or upsampler is not None]
    period = token_pixels * scale
    per_clip: dict[str, list[dict[str, Any]]] = {r: [] for r in rows}
    reference_error, reference_block = [], []
    side_by_side = None
    n_styles = len(data.style_indices)
    for first in range(0, len(data), n_styles):
        items = collate([data[i] for i in range(first, first + n_styles)])
        seed = int(items["seed"][0])
        student = torch.from_numpy(load_file(str(frames_dir / files[seed]))["frames"][:, :frames])
        low = student[items["style_index"]].permute(0, 1, 4, 2, 3).float() / 127.5 - 1   # (B, F, 3, h, w)
        b, f = low.shape[:2]
        flat = low.flatten(0, 1)
        guide = guide_of(items).flatten(0, 1)
        outputs = {"bilinear": bilinear(flat, scale), "bilateral": joint_bilateral(flat, guide, scale)}
        if upsampler is not None:
            outputs["learned_per_frame"] = torch.cat([upsampler(flat[i:i + 8], guide[i:i + 8])
                                                      for i in range(0, len(flat), 8)])
        outputs = {k: v.clamp(-1, 1).view(b, f, *v.shape[1:]) for k, v in outputs.items()}
        ref = items["style"]
        depth = denormalize_depth(items["depth"][:, :, 0])
        if upsampler is not None:
            outputs["learned"] = torch.stack([resolve_clip(outputs["learned_per_frame"][i], items["motion"][i],
                                                           depth[i], upsampler.cfg.temporal_keep) for i in range(b)])
        for i in range(b):
            reference_error.append(float(metrics.temporal_error(ref[i], items["motion"][i], depth[i])))
            reference_block.append(float(metrics.blockiness(ref[i], period).mean()))
            for row in rows:
                out = outputs[row][i]
                per_clip[row].append({
                    "style": data.style_names[int(items["style_index"][i])], "seed": seed,
                    "psnr": float(metrics.psnr(out, ref[i]).mean()), "ssim": float(metrics.ssim(out, ref[i]).mean()),
                    "blockiness": float(metrics.blockiness(out, period).mean()),
                    "blockiness_cell": float(metrics.blockiness(out, scale).mean()),
                    "temporal": float(metrics.temporal_error(out, items["motion"][i], depth[i]))})
        if side_by_side is None:
            middle = f // 2
            lines = [torch.cat([outputs[r][i, middle] for r in rows] + [ref[i, middle]], -1) for i in range(b)]
            side_by_side = torch.cat(lines, -2)

    def mean(values: list[float]) -> float:
        return float(np.mean(values))

    scores = {}
    for row in rows:
        clips = per_clip[row]
        scores[row] = {k: mean([c[k] for c in clips]) for k in ("psnr", "ssim", "blockiness")}
        scores[row]["warp_ratio"] = mean([c["temporal"] for c in clips]) / max(mean(reference_error), 1e-8)
    styles = sorted({c["style"] for c in per_clip["bilinear"]}, key=data.style_names.index)
    return {
        "display_size": list(data.size), "scale": scale, "frames": frames, "worlds": sorted(files),
        "rows": scores,
        "learned_gain_db": None if upsampler is None else scores["learned"]["psnr"] - scores["bilinear"]["psnr"],
        "temporal_keep": None if upsampler is None else upsampler.cfg.temporal_keep,
        "psnr_by_style": {s: {r: mean([c["psnr"] for c in per_clip[r] if c["style"] == s]) for r in rows}
                          for s in styles},
        "blockiness_period": period, "reference_blockiness": mean(reference_block),
        "blockiness_at_cell": {r: mean([c["blockiness_cell"] for c in per_clip[r]]) for r in rows},
        "side_by_side_columns": [*rows, "reference"], "side_by_side": side_by_side,
    }


def resolve_clip(frames: torch.Tensor, motion: torch.Tensor, depth: torch.Tensor, keep: float) -> torch.Tensor:
    """A clip (F, 3, H, W) through one stream's TemporalResolve, frame by frame, as the engine runs it."""
    resolve = TemporalResolve(keep)
    return torch.stack([resolve(frames[t], motion[t], depth[t]) for t in range(len(frames))])
