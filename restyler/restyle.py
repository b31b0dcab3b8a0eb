"""`restyler restyle`: restyle a video file chunk by chunk, as a live stream would be."""

from __future__ import annotations

import argparse
from pathlib import Path

from restyler.args import (PROG, add_device, add_model, add_precision, add_steps, default_style, error, mp4_path,
                      precision_for, style_prompt)


def add_parser(sub) -> None:
    p = sub.add_parser("restyle", help="restyle a video file",
                       description="Restyle a video file chunk by chunk, exactly as a live stream would be.")
    p.add_argument("input", type=Path, metavar="IN.mp4", help="video to restyle (anything PyAV can decode)")
    p.add_argument("output", type=mp4_path, metavar="OUT.mp4", help="where to write the restyled video")
    p.add_argument("--style", type=style_prompt, metavar="PROMPT", default=None,
                   help="style to render in, e.g. 'sunny summer'")
    add_model(p)
    add_device(p)
    add_precision(p)
    add_steps(p)
    p.set_defaults(handler=run, inputs={"IN.mp4": "input"}, outputs={"OUT.mp4": "output"})


def run(args: argparse.Namespace) -> int:
    from bridge import BridgeError
    from renderer.capture import restyle_file
    from renderer.engine import ModelError

    try:
        precision = precision_for(args, args.device)
        frames = restyle_file(args.input, args.output, args.model, default_style(args.style), args.device,
                             args.steps, precision=args.precision)
    except (ModelError, BridgeError, ValueError) as exc:
        return error("restyle", str(exc))
    print(f"{PROG} restyle: wrote {frames} frames to {args.output} ({precision.describe()})")
    return 0
