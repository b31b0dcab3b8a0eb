"""`restyler generate`: text-to-video, image-to-video and extension (renderer.generate)."""

from __future__ import annotations

import argparse
from pathlib import Path

from restyler.args import PROG, add_device, add_model, error, mp4_path, non_negative_int, positive_int, style_prompt
from renderer import GENERATION_MODEL


def add_parser(sub) -> None:
    p = sub.add_parser("generate", help="generate a clip from a prompt, an image or a video (the student's other "
                                         "modes)",
                       description="Generate a video with the causal student: from a prompt alone (text-to-video), "
                                   "from a still (--image) or continuing a video (--extend). The mp4 holds N frames "
                                   "at the model's resolution: from an image, the image and N - 1 new ones; "
                                   "otherwise N new ones. How good the modes are: docs/generation.md.")
    p.add_argument("--prompt", type=style_prompt, required=True,
                   help="the style, as for the renderer, e.g. 'snowy winter village' (the four trained styles "
                        "work best)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--image", type=Path, default=None, metavar="PNG", help="first frame to start from")
    start.add_argument("--extend", type=Path, default=None, metavar="FILE.mp4",
                       help="video to continue from its last frames")
    p.add_argument("--frames", type=positive_int, required=True, metavar="N",
                   help="frames in the output clip (with --image, the image is the first of them)")
    p.add_argument("--out", type=mp4_path, required=True, metavar="FILE.mp4", help="where to write the video")
    p.add_argument("--switch", action="append", default=[], metavar="FRAME:PROMPT",
                   help="change the prompt at a frame, e.g. 48:neon night city (repeatable)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="noise seed: the same seed gives the same video")
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="size of the denoising grid per chunk (default: what the model ships with; a chunk that "
                        "starts from the previous frame runs only the grid's lower part, docs/generation.md)")
    add_model(p, default=GENERATION_MODEL)
    add_device(p)
    p.set_defaults(handler=run, inputs={"--image": "image", "--extend": "extend"}, outputs={"--out": "out"})


def run(args: argparse.Namespace) -> int:
    from bridge import BridgeError
    from models.network.prompt import PromptEncoderError
    from renderer.generate import GenerateError, ModelError, parse_switch, run_generate

    try:
        switches = [parse_switch(s) for s in args.switch]
        written = run_generate(args.model, args.prompt, args.frames, args.out, args.image, args.extend, switches,
                               args.device, args.seed, args.steps)
    except (GenerateError, ModelError, BridgeError, PromptEncoderError) as exc:
        return error("generate", str(exc))
    print(f"{PROG} generate: wrote {written} frames to {args.out}")
    return 0
