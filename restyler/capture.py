"""`restyler capture`: restyle a screen region or a window of any game live."""

from __future__ import annotations

import argparse
import sys

from restyler.args import (PROG, add_model, add_precision, add_serve, add_steps, add_worker, default_style, error,
                      has_display, mp4_path, parse_region, positive_float, start_server, style_prompt)


def add_parser(sub) -> None:
    p = sub.add_parser("capture", help="restyle a screen region or window of any game live",
                       description="Restyle a screen region or a window live and show it in a window OBS can "
                                   "capture.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--region", type=parse_region, metavar="X,Y,W,H",
                        help="screen rectangle to grab, in pixels from the top-left of the screen")
    source.add_argument("--window", metavar="TITLE",
                        help="grab the window whose title contains TITLE (case-insensitive); needs X11")
    p.add_argument("--style", type=style_prompt, metavar="PROMPT", default=None,
                   help="style to render in, e.g. 'neon night city'")
    add_model(p)
    p.add_argument("--record", type=mp4_path, default=None, metavar="FILE.mp4",
                   help="also write the restyled stream to this mp4")
    p.add_argument("--record-source", type=mp4_path, default=None, metavar="FILE.mp4",
                   help="also write the frames as grabbed, the game itself, to this mp4 (what `restyler eval-video` "
                        "scores)")
    p.add_argument("--headless", action="store_true",
                   help="show no window (use with --record or --serve)")
    p.add_argument("--seconds", type=positive_float, default=None, metavar="N",
                   help="stop after N seconds; default: until the window is closed")
    add_serve(p)
    add_worker(p)
    add_steps(p)
    add_precision(p)
    p.set_defaults(handler=run, outputs={"--record": "record", "--record-source": "record_source"})


def run(args: argparse.Namespace) -> int:
    from bridge import BridgeError, ScreenSource
    from renderer.capture import run_capture
    from renderer.engine import ModelError
    from renderer.runtime import StreamingRestyler
    from renderer.serve import ServeError

    headless = args.headless
    if not headless and not has_display():
        return error("capture", "no display to capture from or to show on ($DISPLAY unset); run it in a desktop "
                                 "session, or under Xvfb with --headless --record FILE.mp4 --seconds N")
    if headless and args.record is None and args.serve is None and args.record_source is None:
        return error("capture", "--headless shows nothing, so it needs --record FILE.mp4, --record-source FILE.mp4 "
                                "or --serve PORT to keep or show the result")
    try:
        restyler = StreamingRestyler.from_pretrained(args.model, worker=args.worker, steps=args.steps,
                                                     precision=args.precision)
        source = ScreenSource(region=args.region) if args.region else ScreenSource(window=args.window)
    except (ModelError, BridgeError, ValueError) as exc:
        return error("capture", str(exc))
    try:
        server = start_server("capture", args)
    except ServeError as exc:
        source.close()
        return error("capture", str(exc))
    what = f"region {args.region}" if args.region else f"window {args.window!r}"
    print(f"{PROG} capture: restyling {what} ({source.size[0]}x{source.size[1]}, {restyler.precision.describe()}); "
          "Ctrl+C stops", file=sys.stderr)
    try:
        result = run_capture(source, restyler, default_style(args.style), args.record, headless, args.seconds,
                             server, args.record_source)
    except (BridgeError, RuntimeError) as exc:   # RuntimeError: the worker could not start (the reason is in it)
        return error("capture", str(exc))
    recorded = f"; wrote {result.frames_recorded} frames to {args.record}" if args.record else ""
    recorded += f"; the game's frames to {args.record_source}" if args.record_source else ""
    print(f"{PROG} capture: stopped ({result.stopped_by}) after {result.frames_captured} captured frames in "
          f"{result.seconds:.1f} s{recorded}")
    return 0
