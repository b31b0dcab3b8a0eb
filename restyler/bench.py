"""`restyler bench`: speed beside the running game (renderer.bench)."""

from __future__ import annotations

import argparse
from pathlib import Path

from restyler.args import (add_device, add_game, add_model, add_precision, add_steps, add_worker, error, parse_size,
                      positive_float, positive_int)


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="measure latency and throughput",
                       description="Measure first-frame latency, per-chunk latency and throughput of the student "
                                   "and its teacher.")
    add_model(p)
    add_device(p)
    p.add_argument("--seconds", type=positive_float, default=10.0, metavar="N",
                   help="measuring time after warm-up; longer gives steadier percentiles")
    p.add_argument("--json", type=Path, required=True, metavar="FILE",
                   help="where to write the measurements (docs/evaluation.md's keys); FILE_details.json gets the "
                        "per-stage profile, the game loop's frame times and the machine")
    add_worker(p)
    p.add_argument("--threads", type=positive_int, default=1, metavar="N",
                   help="torch threads of the worker; 1 leaves the second core of a 2-core CPU to the game "
                        "(docs/runtime.md)")
    p.add_argument("--game-fps", type=positive_float, default=60.0, metavar="FPS",
                   help="the game loop's target rate beside the model")
    p.add_argument("--no-teacher", action="store_true", help="skip the teacher (its ratios are then null)")
    p.add_argument("--page", action="store_true",
                   help="measure the served page instead: `capture --serve` on the demo game's screen with one /view "
                        "page in a headless Chromium, game frame to page paint against game frame to the capture "
                        "window (needs Chromium and the playwright package; docs/streaming.md)")
    p.add_argument("--display", type=parse_size, default=None, metavar="WxH",
                   help="measure the whole chain at this displayed size: the game also renders its cheap pass and "
                        "G-buffers there and the model's upsampler brings each AI frame to it (the size the model's "
                        "upsampler was trained for; without --display the AI frames stay at the model's size)")
    add_game(p, "run beside the play_frame() of")
    add_steps(p)
    add_precision(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from demo_game import GameConfig, GameSession
    from renderer.bench import STYLE, run_bench
    from renderer.engine import ModelError, load_bundle

    if args.page:
        return run_page(args)
    try:
        bundle = load_bundle(args.model)   # also: one clear error for a missing model
        size = bundle.frame_size
        if args.display is not None and args.display != bundle.display_size:
            return error("bench", f"--display {args.display[0]}x{args.display[1]}: " + (
                f"{args.model} ships no upsampler (train one with `restyler train upsampler`)"
                if bundle.upsampler is None else
                f"the model's upsampler draws at {bundle.display_size[0]}x{bundle.display_size[1]}"))
        # a held-out world, the game ticking at the benchmark's rate, rendering what the model reads: the cheap pass,
        # its G-buffers and the sun of the style the bench asks for, as `restyler play` does (and with --display
        # the same at display size, which the upsampler reads)
        fps = max(1, round(args.game_fps))
        if args.game is not None:
            return _bench_game(args, size, fps)
        with GameSession(GameConfig(seed=1000, width=size[0], height=size[1], fps=fps)) as game:
            result = run_bench(args.model, lambda: game.step(sun=STYLE, display=args.display), args.device,
                               args.seconds, fps, args.worker, args.threads, args.steps,
                               teacher=not args.no_teacher, upsample=args.display is not None,
                               precision=args.precision)
    except (ModelError, RuntimeError, ValueError) as exc:
        return error("bench", str(exc))
    _write(args, result)
    return 0


def _bench_game(args: argparse.Namespace, size: tuple[int, int], fps: int) -> int:
    """Beside another game: its first held-out level, each tick its play-time frame at the model's size."""
    from bridge.recording import RecordError, RecordingRequest, load_factory
    from renderer.bench import run_bench
    from renderer.engine import ModelError

    if args.display is not None:
        return error("bench", "--display measures the demo game's display-size chain; leave it out with --game")
    try:
        game = load_factory(args.game)(RecordingRequest(seed=1000, size=size))
        if not callable(getattr(game, "play_frame", None)):
            return error("bench", f"--game {args.game}: its games have no play_frame() (the frame a game streams at "
                                  "play time, without targets), which the benchmark runs the game with")
        try:
            result = run_bench(args.model, game.play_frame, args.device, args.seconds, fps, args.worker,
                               args.threads, args.steps, teacher=not args.no_teacher, precision=args.precision)
        finally:
            game.close()
    except (RecordError, ModelError, RuntimeError, ValueError) as exc:
        return error("bench", str(exc))
    _write(args, result)
    return 0


def _write(args: argparse.Namespace, result) -> None:
    import json

    from bridge.outputs import write_text_atomic
    from renderer.bench import table

    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.json, json.dumps(result.scores, indent=2) + "\n")
    details = args.json.with_name(args.json.stem + "_details.json")
    write_text_atomic(details, json.dumps(result.details, indent=2) + "\n")
    print(table(result))


def run_page(args: argparse.Namespace) -> int:
    import json

    from bridge.outputs import write_text_atomic
    from demo_game.screen import GameScreen
    from renderer.bench import bench_page
    from renderer.engine import ModelError, load_bundle

    try:
        load_bundle(args.model)   # one clear error for a missing model before a browser starts
        scores = bench_page(args.model, lambda stop: GameScreen(stop), args.seconds)
    except ImportError:
        return error("bench", "--page drives a headless Chromium through the playwright package: pip install "
                              "playwright (and apt install chromium)")
    except (ModelError, RuntimeError) as exc:
        return error("bench", str(exc))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.json, json.dumps(scores, indent=2) + "\n")
    for key, value in scores.items():
        print(f"{key:<28}  {value}")
    return 0
