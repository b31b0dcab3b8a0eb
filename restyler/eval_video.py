"""`restyler eval-video`: restyle a video of any game and score it where no reference exists
(models.evaluation.video; docs/evaluation.md, "Games never seen")."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from restyler.args import add_device, add_model, add_precision, default_style, error, positive_int, style_prompt

CALIBRATION_SEEDS = range(1000, 1003)   # the demo game's held-out worlds whose reference frames give the palette
CALIBRATION_FRAMES = 24


def add_parser(sub) -> None:
    p = sub.add_parser("eval-video", help="score a restyled video of a game the model never saw",
                       description="Restyle a video chunk by chunk as a live stream would be and score it without "
                                   "a reference: structure (edges kept), flicker, still_flicker (boiling where the "
                                   "game stood still) and style_gain (colours moved toward the style's palette); "
                                   "writes the scores and a strip of input over output.")
    p.add_argument("input", type=Path, metavar="IN.mp4", help="video to restyle and score (anything PyAV decodes)")
    p.add_argument("--style", type=style_prompt, metavar="PROMPT", default=None,
                   help="style to ask for (default: 'sunny summer day')")
    p.add_argument("--json", type=Path, required=True, metavar="FILE",
                   help="where to write the scores; FILE's name with .png is the strip")
    p.add_argument("--frames", type=positive_int, default=None, metavar="N", help="score the first N frames only")
    p.add_argument("--worlds", type=Path, default=Path("out/eval_worlds"), metavar="DIR",
                   help="where the demo game's held-out worlds are kept: their reference frames in the asked style "
                        "are the palette style_gain measures toward, and their structure is the calibration")
    add_model(p)
    add_device(p)
    add_precision(p)
    p.set_defaults(handler=run, inputs={"IN.mp4": "input"}, outputs={"--json": "json"})


def run(args: argparse.Namespace) -> int:
    from bridge import BridgeError, VideoFileSource
    from bridge.outputs import write_text_atomic
    from bridge.recording import RecordError
    from models.evaluation.video import from_uint8, match_palette, score_video, structure, style_gain, to_size
    from renderer.capture import offline_engine, restyled_frames
    from renderer.engine import ModelError

    style = default_style(args.style)
    try:
        engine = offline_engine(args.model, style, args.device, precision=args.precision)
        with VideoFileSource(args.input) as src:
            pairs = list(restyled_frames(src, engine, limit=args.frames))
        if len(pairs) < 2:
            return error("eval-video", f"{args.input} has {len(pairs)} frame(s); the scores compare frames with "
                                       "the ones before them, so it needs at least 2")
        out = from_uint8([frame for _, frame in pairs])
        inp = to_size(from_uint8([packet.rgb for packet, _ in pairs]), (out.shape[-1], out.shape[-2]))
        palette, low, name = _style_reference(args.worlds, style, (out.shape[-1], out.shape[-2]))
    except (ModelError, BridgeError, RecordError) as exc:
        return error("eval-video", str(exc))
    scores = {"video": str(args.input), "frames": len(pairs), "style": style, "palette_style": name,
              "precision": engine.bundle.precision.name,
              **{k: round(v, 4) for k, v in score_video(inp, out, palette).items()},
              # the same structure measured on the demo game's own reference renderer against its cheap frames
              "reference_structure": round(structure(low, palette), 4),
              # what recolouring the input channel by channel onto the style's palette would gain, edges untouched
              "palette_match_style_gain": round(style_gain(inp, match_palette(inp, palette), palette), 4)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.json, json.dumps(scores, indent=2) + "\n")
    strip = args.json.with_suffix(".png")
    _save_strip(strip, inp, out)
    print(json.dumps(scores, indent=2))
    print(f"wrote {args.json} and {strip}")
    return 0


def _style_reference(worlds: Path, style: str, size: tuple[int, int]):
    """(reference frames, cheap frames, style name): the demo game's held-out worlds at `size` in the trained style
    nearest the prompt, rendered once and kept under `worlds` as `restyler eval` keeps them."""
    import torch

    from bridge.recording import SHARD_FORMAT
    from demo_game import STYLES
    from demo_game.record import record_dataset
    from models.evaluation.video import from_uint8
    from models.io.data import load_clip
    from models.network.prompt import PromptEncoder, nearest_style

    encoder = PromptEncoder.shared()
    name = nearest_style(encoder.encode([style])[0], {s.name: encoder.encode(list(s.prompts)) for s in STYLES.values()})
    index = list(STYLES).index(name)
    seeds = CALIBRATION_SEEDS
    clips = worlds / f"v{SHARD_FORMAT}_{size[0]}x{size[1]}_{CALIBRATION_FRAMES}f_seeds{seeds[0]}-{seeds[-1]}"
    record_dataset(clips, seeds, CALIBRATION_FRAMES, size, force_eval_seeds=True, progress=False)
    loaded = [load_clip(clips, seed) for seed in seeds]

    def video(key: str) -> torch.Tensor:
        return torch.cat([from_uint8(c[key]) for c in loaded])

    return video(f"style/{index}"), video("low"), name


def _save_strip(path: Path, inp, out, moments: int = 6) -> None:
    """Input above output at `moments` evenly spread frames, 2× nearest."""
    import numpy as np
    import torch
    from PIL import Image

    from bridge.outputs import write_atomic

    picks = np.linspace(0, len(out) - 1, moments).round().astype(int)
    rows = [torch.cat(list(video[picks]), dim=2) for video in (inp, out)]
    grid = (torch.cat(rows, dim=1).permute(1, 2, 0).clamp(0, 1) * 255).round().byte().numpy()
    image = Image.fromarray(grid)
    image = image.resize((image.width * 2, image.height * 2), Image.NEAREST)
    write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))
