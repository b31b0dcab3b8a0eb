"""`restyler play`: the demo game with AI rendering (headless without a display)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from restyler.args import (PROG, add_model, add_precision, add_serve, add_steps, add_worker, cuda_available, error,
                      has_display, non_negative_int, parse_size, positive_float, start_server, style_prompt)
from renderer import DEFAULT_MODEL


# Where `play` goes when there is no display to open a window on (CI machines, ssh sessions).
HEADLESS_SECONDS = 10.0
HEADLESS_OUT = Path("out/play")


def add_parser(sub) -> None:
    p = sub.add_parser("play", help="play the demo game with AI rendering",
                       description="Play the voxel demo game. Without a display (no $DISPLAY or $WAYLAND_DISPLAY) "
                                   f"it runs headless for {HEADLESS_SECONDS:g} s and writes its output to "
                                   f"{HEADLESS_OUT}.")
    p.add_argument("--style", type=style_prompt, metavar="PROMPT", default=None,
                   help="style to render in, e.g. 'snowy winter village'; a short scene description works best; "
                        "default: the game's first style")
    add_model(p, default=None)
    p.add_argument("--no-ai", action="store_true",
                   help="play without AI rendering: the game's own reference renderer (no model needed)")
    add_worker(p)
    add_steps(p)
    add_precision(p)
    add_serve(p)
    p.add_argument("--headless", action="store_true",
                   help="no window: the scripted bot plays and frames are written to --out (for CI and servers)")
    p.add_argument("--seconds", type=positive_float, default=None, metavar="N",
                   help=f"stop after N seconds; default: until the window is closed, or {HEADLESS_SECONDS:g} s "
                        "when headless")
    p.add_argument("--out", type=Path, default=HEADLESS_OUT, metavar="DIR",
                   help=f"where a headless run writes its frames and video; default {HEADLESS_OUT}")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="world seed: the same seed gives the same world and bot path; seeds >= 1000 are the "
                        "held-out evaluation worlds")
    p.add_argument("--size", type=parse_size, default=(256, 256), metavar="WxH",
                   help="size of the game's passes and of the headless video (multiples of 8) when AI rendering is "
                        "off (with AI on, the game renders at the model's size); the reference styles cost ~15 ms a "
                        "frame at 128x128 and ~160 ms at 768x768 on a 2-core CPU")
    p.add_argument("--upsample", choices=["auto", "on", "off"], default="auto",
                   help="bring the AI frame to the model's display size with its upsampler, the game rendering its "
                        "cheap pass there too: auto (default) is on with a CUDA GPU and off on a CPU, where it costs "
                        "half the frame rate (docs/upsampling.md); off keeps the AI frame at the model's size")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    headless = args.headless
    if not headless and not has_display():
        print(f"{PROG} play: no display ($DISPLAY/$WAYLAND_DISPLAY unset); running headless for "
              f"{args.seconds or HEADLESS_SECONDS:g} s into {args.out}", file=sys.stderr)
        headless = True
    seconds = args.seconds
    if seconds is None:
        # 0 tells the game to run until the window is closed; a headless run needs an end.
        seconds = HEADLESS_SECONDS if headless else 0.0

    from demo_game.game import run_play
    from demo_game.styles import style_for_prompt
    from renderer.engine import ModelError
    from renderer.serve import ServeError

    model = args.model
    if model is None and not args.no_ai and DEFAULT_MODEL.is_dir():
        model = DEFAULT_MODEL   # the shipped model: AI rendering is on unless asked otherwise
    if args.no_ai:
        model = None
    if args.style is not None and model is None:
        # Without a model only the game's own reference styles can be shown; refuse others in one line.
        try:
            style_for_prompt(args.style)
        except KeyError as exc:
            return error("play", exc.args[0])
    if args.serve is not None and model is None:
        return error("play", "--serve streams the AI picture, which needs a model; drop --no-ai (or give --model)")
    upsample = args.upsample == "on" or (args.upsample == "auto" and cuda_available())
    try:
        server = start_server("play", args)
    except ServeError as exc:
        return error("play", str(exc))
    try:
        return int(run_play(style=args.style, headless=headless, seconds=seconds, out=args.out, seed=args.seed,
                            size=args.size, model=model, worker=args.worker, steps=args.steps, server=server,
                            upsample=upsample, precision=args.precision) or 0)
    except ModelError as exc:
        return error("play", str(exc))
    except RuntimeError as exc:  # no OpenGL here: the message says which packages to install
        return error("play", str(exc))
    finally:
        if server is not None:
            server.close()
