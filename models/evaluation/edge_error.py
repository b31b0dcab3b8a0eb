"""Where a regression's error lies: on the pixels near a block's edge (where neon night's outlines, plank seams and
roof tiles are drawn), on the sky, or on the rest, per style; or, with --by-material, on each material id. docs/model.md
decided how backbone v2 reads `uv` by it, and found where the grid on the water comes from with --flat-uv-on.

`python -m models.evaluation.edge_error --model RUN --data DIR [--frames N] [--by-material] [--flat-uv-on ID]`, where
DIR holds recorded held-out clips of data format 2 (`restyler eval --worlds` keeps them, e.g.
out/eval_worlds/v2_128x128_24f_seeds1000-1002).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from models.io.data import ClipDataset, collate, denormalize_depth, gbuffer_slice, gbuffers_of
from models.network.dit import Conditioning
from models.network.loading import load_network
from models.network.prompt import PromptEncoder
from models.network.unet import regress_frames

_UV = gbuffer_slice("uv")
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
def _errors(run: Path, data: Path, frames: int | None, flat_uv_on: int | None):
    """Per world: (style names, the regression's squared error (styles, F, H, W), its uv and depth, and its material
    ids (styles, F, H, W)), over the first F frames: whole windows of the model's clip."""
    model, meta = load_network(run, "regression")
    window = model.cfg.clip_frames
    dataset = ClipDataset(data, clip_frames=frames or window, stride=1 << 30)
    f = dataset.clip_frames - dataset.clip_frames % window
    styles = len(dataset.style_indices)
    table = PromptEncoder.shared().encode([meta["prompts"][name][0] for name in dataset.style_names])
    for first in range(0, len(dataset), styles):  # one world, all its styles
        items = collate([dataset[i] for i in range(first, first + styles)])
        gbuffers = gbuffers_of(items)
        if flat_uv_on is not None:  # the probe: uv held at the face's middle (0 in the training encoding) there
            on = (gbuffers[:, :, -1:] == flat_uv_on)
            gbuffers[:, :, _UV] = gbuffers[:, :, _UV].masked_fill(on, 0.0)
        cond = Conditioning(low=items["low"], gbuffers=gbuffers, style=table[items["style_index"]])
        out = regress_frames(model, cond, styles, f).clamp(-1, 1)
        error = (out - items["style"][:, :f]).pow(2).mean(2)  # (styles, F, H, W)
        yield dataset.style_names, error, {k: items[k][:, :f] for k in ("uv", "depth")}, gbuffers[:, :f, -1]


def edge_error(run: Path, data: Path, frames: int | None = None, flat_uv_on: int | None = None
               ) -> dict[str, dict[str, dict[str, float]]]:
    """Per style and region: its share of the pixels and of the regression's squared error."""
    sums: dict[tuple[str, str], list[float]] = {}
    for names, error, items, _ in _errors(run, data, frames, flat_uv_on):
        masks = regions_of(items)
        for i, name in enumerate(names):
            for region, mask in masks.items():
                total = sums.setdefault((name, region), [0.0, 0.0])
                total[0] += float(error[i][mask[i]].sum())
                total[1] += float(mask[i].sum())
    return _shares(sums, REGIONS)


def material_error(run: Path, data: Path, frames: int | None = None, flat_uv_on: int | None = None
                   ) -> dict[str, dict[str, dict[str, float]]]:
    """Per style and material id (as a string): its share of the pixels and of the squared error, and its psnr."""
    sums: dict[tuple[str, str], list[float]] = {}
    for names, error, _, materials in _errors(run, data, frames, flat_uv_on):
        ids = materials.round().long()
        for i, name in enumerate(names):
            for material in ids[i].unique().tolist():
                mask = ids[i] == material
                total = sums.setdefault((name, str(material)), [0.0, 0.0])
                total[0] += float(error[i][mask].sum())
                total[1] += float(mask.sum())
    materials = sorted({m for _, m in sums}, key=int)
    result = _shares(sums, materials)
    for (name, material), (error_sum, pixels) in sums.items():  # error is on [-1, 1]: a peak-to-peak of 2
        result[name][material]["psnr"] = 10 * math.log10(4 / max(error_sum / pixels, 1e-12))
    return result


def _shares(sums: dict[tuple[str, str], list[float]], parts) -> dict[str, dict[str, dict[str, float]]]:
    result = {}
    for name in dict.fromkeys(n for n, _ in sums):
        present = [p for p in parts if (name, p) in sums]
        error_total = sum(sums[(name, p)][0] for p in present)
        pixels = sum(sums[(name, p)][1] for p in present)
        result[name] = {p: {"pixels": sums[(name, p)][1] / pixels, "error": sums[(name, p)][0] / error_total}
                        for p in present}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="run directory holding regression.safetensors")
    parser.add_argument("--data", type=Path, required=True, help="recorded held-out clips (data format 2)")
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (default: the model's clip)")
    parser.add_argument("--by-material", action="store_true",
                        help="split by material id (the demo game's demo_game.world.Material; 5 is water) instead")
    parser.add_argument("--flat-uv-on", type=int, default=None, metavar="ID",
                        help="hold uv at the face's middle on this material's pixels: what the uv waves draw there")
    args = parser.parse_args()
    split = material_error if args.by_material else edge_error
    print(json.dumps(split(args.model, args.data, args.frames, args.flat_uv_on), indent=2))


if __name__ == "__main__":
    main()
