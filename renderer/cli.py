"""The `restyler` command line (also `python -m renderer`): the one place that ties game, bridge, models and
renderer together.

The argparse tree below is the single source of truth for every option and its default. Handlers import their
heavy dependencies lazily so that `restyler --help` and argument errors stay instant (no torch, no GL).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable, Sequence

from renderer import DEFAULT_MODEL

PROG = "restyler"
EXIT_USAGE = 2  # argparse's own code for bad arguments; also used for refused requests

# Where `play` goes when there is no display to open a window on (CI machines, ssh sessions).
HEADLESS_SECONDS = 10.0
HEADLESS_OUT = Path("out/play")
SIZE_MULTIPLE = 8  # the autoencoder downsamples by 8; other sizes would need padding everywhere


# ---------------------------------------------------------------------------------------------------------------
# Argument types: each raises ArgumentTypeError with what was expected, so argparse prints one clear line
# ("restyler record-data: error: argument --seeds: ...") and exits 2.


def parse_seeds(text: str) -> range:
    """'A:B' -> range(A, B); B is exclusive, 0 <= A < B."""
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start, stop = int(parts[0]), int(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected A:B with integers 0 <= A < B (B is exclusive), e.g. 0:64; got {text!r}"
        ) from None
    if not 0 <= start < stop:
        raise argparse.ArgumentTypeError(
            f"expected A:B with integers 0 <= A < B (B is exclusive), e.g. 0:64; got {text!r}"
        )
    return range(start, stop)


def parse_size(text: str) -> tuple[int, int]:
    """'WxH' -> (W, H), both positive multiples of SIZE_MULTIPLE."""
    message = f"expected WxH with positive multiples of {SIZE_MULTIPLE}, e.g. 128x128; got {text!r}"
    parts = text.lower().split("x")
    try:
        if len(parts) != 2:
            raise ValueError
        width, height = int(parts[0]), int(parts[1])
    except ValueError:
        raise argparse.ArgumentTypeError(message) from None
    if width <= 0 or height <= 0 or width % SIZE_MULTIPLE or height % SIZE_MULTIPLE:
        raise argparse.ArgumentTypeError(message)
    return (width, height)


def parse_region(text: str) -> tuple[int, int, int, int]:
    """'X,Y,W,H' -> (x, y, w, h) in screen pixels, with w and h positive."""
    message = f"expected X,Y,W,H in screen pixels with W and H positive, e.g. 0,0,640,480; got {text!r}"
    parts = text.split(",")
    try:
        if len(parts) != 4:
            raise ValueError
        x, y, w, h = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(message) from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(message)
    return (x, y, w, h)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer; got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0; got {text!r}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds; got {text!r}")
    return value


def parse_timesteps(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or any(not 0 < v <= 1000 for v in values) or list(values) != sorted(values, reverse=True):
        raise argparse.ArgumentTypeError(f"expected decreasing levels in 1..1000 separated by commas, e.g. "
                                         f"1000,500; got {text!r}")
    return values


def mp4_path(text: str) -> Path:
    if not text.lower().endswith(".mp4"):
        raise argparse.ArgumentTypeError(f"expected a file name ending in .mp4; got {text!r}")
    return Path(text)


# ---------------------------------------------------------------------------------------------------------------
# Parser


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto picks cuda when present, else cpu")


def _add_worker(p: argparse.ArgumentParser) -> None:
    p.add_argument("--worker", choices=["process", "thread"], default="process",
                   help="where the model runs beside the game: its own process (default: the game loop stays "
                        "smoothest on a 2-core CPU, docs/runtime.md) or a thread of the game's process")


def _add_steps(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="denoising steps per chunk, at most the student's levels; default: 1 on a CPU (the "
                        "real-time rate, docs/runtime.md), all of them on a GPU")


def _add_sampler_options(p: Any, role: str, defaults: bool) -> None:
    """--timesteps / --refresh / --noise: the student's sampler (models.distill.StudentSampler), chosen when the
    ode stage creates the student, or overridden by eval for an ablation. `role` starts each help text."""

    def default(text: str) -> str:
        return f" (default {text})" if defaults else ""

    p.add_argument("--timesteps", type=parse_timesteps, default=None, metavar="T1,T2",
                   help=f"{role} levels on CausVid's 0..1000 scale, the first being t* where a stream starts"
                        + default("1000,500"))
    p.add_argument("--refresh", choices=["clean", "last_step"], default=None,
                   help=f"{role} KV-cache refresh after a chunk: a clean pass, or the last step's K/V"
                        + default("clean"))
    p.add_argument("--noise", choices=["fresh", "fixed"], default=None,
                   help=f"{role} sampler noise, fresh per chunk or one fixed image per stream" + default("fresh"))
    p.add_argument("--reset-every", type=non_negative_int, default=None, metavar="N",
                   help=f"{role} KV cache emptied every N chunks against drift, 0 never" + default("0"))


def _sampler_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The sampler fields the command line sets (see _add_sampler_options)."""
    return {k: getattr(args, k) for k in ("timesteps", "refresh", "noise", "reset_every")
            if getattr(args, k) is not None}


def _add_model(p: argparse.ArgumentParser, *, required: bool = False, default: Path | None = DEFAULT_MODEL) -> None:
    help_text = ("model directory: a shipped model (models/weights/<name>) or a finished training run (the --out of "
                 "`restyler train`)")
    if not required:
        help_text += (f"; default {default}" if default is not None
                      else "; default: the shipped model in models/weights/default (--no-ai plays without)")
    p.add_argument("--model", type=Path, required=required, default=None if required else default, metavar="DIR",
                   help=help_text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Real-time AI restyling for games: play the demo, restyle any window or video, record data, "
                    "train, evaluate and benchmark the causal few-step video diffusion model.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    # play -----------------------------------------------------------------------------------------------------
    p = sub.add_parser("play", help="play the demo game with AI rendering",
                       description="Play the voxel demo game. Without a display (no $DISPLAY or $WAYLAND_DISPLAY) "
                                   f"it runs headless for {HEADLESS_SECONDS:g} s and writes its output to "
                                   f"{HEADLESS_OUT}.")
    p.add_argument("--style", metavar="PROMPT", default=None,
                   help="style to render in, e.g. 'snowy winter village'; a short scene description works best; "
                        "default: the game's first style")
    _add_model(p, default=None)
    p.add_argument("--no-ai", action="store_true",
                   help="play without AI rendering: the game's own reference renderer (no model needed)")
    _add_worker(p)
    _add_steps(p)
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
    p.set_defaults(handler=_cmd_play)

    # capture --------------------------------------------------------------------------------------------------
    p = sub.add_parser("capture", help="restyle a screen region or window of any game live",
                       description="Restyle a screen region or a window live and show it in a window OBS can "
                                   "capture.")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--region", type=parse_region, metavar="X,Y,W,H",
                        help="screen rectangle to grab, in pixels from the top-left of the screen")
    source.add_argument("--window", metavar="TITLE",
                        help="grab the window whose title contains TITLE (case-insensitive); needs X11")
    p.add_argument("--style", metavar="PROMPT", default=None, help="style to render in, e.g. 'neon night city'")
    _add_model(p)
    p.add_argument("--record", type=mp4_path, default=None, metavar="FILE.mp4",
                   help="also write the restyled stream to this mp4")
    p.add_argument("--headless", action="store_true",
                   help="show no window (use with --record and --seconds)")
    p.add_argument("--seconds", type=positive_float, default=None, metavar="N",
                   help="stop after N seconds; default: until the window is closed")
    _add_worker(p)
    _add_steps(p)
    p.set_defaults(handler=_cmd_capture)

    # restyle --------------------------------------------------------------------------------------------------
    p = sub.add_parser("restyle", help="restyle a video file",
                       description="Restyle a video file chunk by chunk, exactly as a live stream would be.")
    p.add_argument("input", type=Path, metavar="IN.mp4", help="video to restyle (anything PyAV can decode)")
    p.add_argument("output", type=mp4_path, metavar="OUT.mp4", help="where to write the restyled video")
    p.add_argument("--style", metavar="PROMPT", default=None, help="style to render in, e.g. 'sunny summer'")
    _add_model(p)
    _add_device(p)
    _add_steps(p)
    p.set_defaults(handler=_cmd_restyle)

    # record-data ----------------------------------------------------------------------------------------------
    p = sub.add_parser("record-data", help="record training clips with the scripted bot",
                       description="Record one clip per seed: the low-detail pass, G-buffers and every reference "
                                   "style. Interrupt any time; a rerun with the same arguments resumes.")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="dataset directory; rerunning into the same DIR skips clips already recorded")
    p.add_argument("--seeds", type=parse_seeds, required=True, metavar="A:B",
                   help="world seeds A..B-1, one clip each, e.g. 0:64; keep below 1000 (held out for eval)")
    p.add_argument("--frames", type=positive_int, required=True, metavar="N",
                   help="frames per clip at 30 fps; 120-300 gives the bot time to walk and turn")
    p.add_argument("--size", type=parse_size, default=(128, 128), metavar="WxH",
                   help="frame size (multiples of 8); must equal the size the model trains at; 128x128 suits CPU")
    p.add_argument("--force-eval-seeds", action="store_true",
                   help="allow seeds >= 1000 (the held-out evaluation worlds); only for building eval sets")
    p.add_argument("--pace", type=positive_float, default=1.0, metavar="X",
                   help="the bot's walking and turning speed as a multiple of normal; 0.3 records the calm camera "
                        "the generation stage (`train gen`) learns from")
    p.set_defaults(handler=_cmd_record_data)

    # train ----------------------------------------------------------------------------------------------------
    p = sub.add_parser("train", help="run one stage of the training recipe",
                       description="Train one stage; all stages of a recipe share one --out run directory, and "
                                   "a finished run directory is a model for --model.")
    p.add_argument("stage", choices=["autoencoder", "teacher", "ode", "dmd", "gen"],
                   help="recipe stage, in order: autoencoder, teacher, ode (student init), dmd (distillation), "
                        "gen (teaches a finished student --init RUN to generate without structure, for "
                        "`restyler generate`)")
    p.add_argument("--data", type=Path, required=True, metavar="DIR", help="dataset from `restyler record-data`")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="run directory shared by all stages; each stage reads what the earlier ones wrote")
    p.add_argument("--size", choices=["tiny", "S", "M"], default="S",
                   help="model size: tiny for smoke tests, S for CPU, M when a GPU is available")
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="optimizer steps; default: the stage's recipe value; lower it for a quick check")
    p.add_argument("--resume", action="store_true",
                   help="continue from the last checkpoint in --out instead of refusing to overwrite it")
    p.add_argument("--batch", type=positive_int, default=None, metavar="N",
                   help="global batch (clips for the teacher, frames for the autoencoder), split over torchrun "
                        "processes; default: the recipe's value; halve it if memory runs out")
    p.add_argument("--space", choices=["pixel", "latent"], default="pixel",
                   help="teacher only: model pixels (16x16 patches, no decoder) or the run's autoencoder latents; "
                        "docs/model.md has the measurement behind the pixel default")
    _add_device(p)
    p.add_argument("--init", type=Path, default=None, metavar="RUN",
                   help="start from this stage's weights in another run directory (fine-tuning with new settings); "
                        "dmd and gen: from RUN's finished student, e.g. a second pass with --temporal")
    p.add_argument("--loss-min-sigma", type=positive_float, default=None, metavar="S",
                   help="teacher only: floor of σ in the 1/σ² loss weight; 0.05 (default) favours fine detail, "
                        "0.5 the high-noise levels where the model learns to read structure and style")
    g = p.add_argument_group("distillation and generation (ode, dmd, gen)")
    _add_sampler_options(g, "ode: the student's", defaults=True)
    g.add_argument("--pair-clips", type=positive_int, default=128, metavar="N",
                   help="ode: teacher trajectories to generate (the stage's largest cost on a CPU)")
    g.add_argument("--rollout", choices=["self_forcing", "parallel"], default="self_forcing",
                   help="dmd: generate on the student's own KV-cached rollouts, or CausVid's one parallel pass")
    g.add_argument("--regression", type=float, default=0.5, metavar="W",
                   help="dmd: weight of a paired MSE against the recorded reference frames; 0 is pure DMD "
                        "(default 0.5, the measured best)")
    g.add_argument("--temporal", type=float, default=0.0, metavar="W",
                   help="dmd: weight of a motion-warped frame-to-frame L1 term against flicker (0: off)")
    g.add_argument("--fake-updates", type=positive_int, default=5, metavar="N",
                   help="dmd: fake-score updates per generator update (CausVid: 5)")
    g.add_argument("--real-guidance", type=positive_float, default=None, metavar="G",
                   help="dmd: guidance of the real score (default: the teacher's sampler guidance)")
    g.add_argument("--lr", type=positive_float, default=None, metavar="LR",
                   help="learning rate (dmd: the student's); default: the stage's recipe value")
    p.set_defaults(handler=_cmd_train)

    # eval -----------------------------------------------------------------------------------------------------
    p = sub.add_parser("eval", help="score a model on held-out worlds",
                       description="Render held-out worlds on the fly and score input, teacher and student "
                                   "against the reference styles (see shared/EVAL.md).")
    _add_model(p, required=True)
    p.add_argument("--seeds", type=parse_seeds, required=True, metavar="A:B",
                   help="held-out world seeds, from 1000 up, e.g. 1000:1008")
    p.add_argument("--frames", type=positive_int, default=120, metavar="N",
                   help="frames per world; longer runs expose drift")
    p.add_argument("--json", type=Path, required=True, metavar="FILE",
                   help="where to write the scores; FILE.md (table), FILE_details.json and FILE_media/ (strips, "
                        "an mp4 per row) go beside it")
    p.add_argument("--drift-frames", type=int, default=3000, metavar="N",
                   help="length of the drift stream (0 skips it); EVAL.md defines drift over 3000")
    p.add_argument("--teacher-steps", type=positive_int, default=None, metavar="N",
                   help="teacher sampler steps (default: the teacher's own, 50)")
    _add_sampler_options(p, "ablation: instead of its own, the student's", defaults=False)
    p.add_argument("--switch", choices=["reset", "recache", "keep"], default="reset",
                   help="what a style switch does to the KV cache: empty it (default), re-encode it under the new "
                        "prompt, or keep it; docs/distillation.md has the measurement")
    p.add_argument("--rows", type=lambda t: tuple(t.split(",")), default=None, metavar="R1,R2",
                   help="run only these rows (ablations skip the slow teacher); the others score null")
    p.add_argument("--worlds", type=Path, default=Path("out/eval_worlds"), metavar="DIR",
                   help="where the rendered held-out worlds are kept, so a second eval does not render them again")
    _add_device(p)
    p.set_defaults(handler=_cmd_eval)

    # bench ----------------------------------------------------------------------------------------------------
    p = sub.add_parser("bench", help="measure latency and throughput",
                       description="Measure first-frame latency, per-chunk latency and throughput of the student "
                                   "and its teacher.")
    _add_model(p)
    _add_device(p)
    p.add_argument("--seconds", type=positive_float, default=10.0, metavar="N",
                   help="measuring time after warm-up; longer gives steadier percentiles")
    p.add_argument("--json", type=Path, required=True, metavar="FILE",
                   help="where to write the measurements (EVAL.md's keys); FILE_details.json gets the per-stage "
                        "profile, the game loop's frame times and the machine")
    _add_worker(p)
    p.add_argument("--threads", type=positive_int, default=1, metavar="N",
                   help="torch threads of the worker; 1 leaves the second core of a 2-core CPU to the game "
                        "(docs/runtime.md)")
    p.add_argument("--game-fps", type=positive_float, default=60.0, metavar="FPS",
                   help="the game loop's target rate beside the model")
    p.add_argument("--no-teacher", action="store_true", help="skip the teacher (its ratios are then null)")
    _add_steps(p)
    p.set_defaults(handler=_cmd_bench)

    # generate -------------------------------------------------------------------------------------------------
    p = sub.add_parser("generate", help="generate a clip from a prompt, an image or a video (the student's other "
                                         "modes)",
                       description="Generate a video with the causal student: from a prompt alone (text-to-video), "
                                   "from a still (--image) or continuing a video (--extend). The mp4 holds N frames "
                                   "at the model's resolution: from an image, the image and N - 1 new ones; "
                                   "otherwise N new ones. How good the modes are: docs/generation.md.")
    p.add_argument("--prompt", required=True,
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
    _add_model(p)
    _add_device(p)
    p.set_defaults(handler=_cmd_generate)

    return parser


# ---------------------------------------------------------------------------------------------------------------
# Handlers: each returns the process exit code.


def _error(command: str, message: str) -> int:
    print(f"{PROG} {command}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _cmd_play(args: argparse.Namespace) -> int:
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
            return _error("play", exc.args[0])
    try:
        return int(run_play(style=args.style, headless=headless, seconds=seconds, out=args.out, seed=args.seed,
                            size=args.size, model=model, worker=args.worker, steps=args.steps) or 0)
    except ModelError as exc:
        return _error("play", str(exc))
    except RuntimeError as exc:  # no OpenGL here: the message says which packages to install
        return _error("play", str(exc))


def _cmd_record_data(args: argparse.Namespace) -> int:
    from demo_game.record import RecordError, record_dataset

    try:
        record_dataset(args.out, args.seeds, args.frames, args.size, force_eval_seeds=args.force_eval_seeds,
                       pace=args.pace)
    except RecordError as exc:
        return _error("record-data", str(exc))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    if args.stage in ("ode", "dmd", "gen"):
        return _train_distill(args)
    from demo_game.styles import STYLES
    from models.checkpoint import CheckpointError
    from models.data import DataError
    from models.prompt import PromptEncoderError
    from models.train import TrainError, run_stage

    # Held-out paraphrases are never trained on: eval checks the model generalises to them.
    prompts = {style.name: list(style.prompts) for style in STYLES.values()}
    try:
        overrides = {"space": args.space}
        if args.loss_min_sigma is not None:
            overrides["loss_min_sigma"] = args.loss_min_sigma
        run_stage(args.stage, args.data, args.out, args.size, prompts, steps=args.steps, batch=args.batch,
                  resume=args.resume, device=args.device, overrides=overrides, init=args.init)
    except (TrainError, DataError, CheckpointError, PromptEncoderError) as exc:
        return _error("train", str(exc))
    return 0


def _train_distill(args: argparse.Namespace) -> int:
    from models.checkpoint import CheckpointError
    from models.data import DataError
    from models.distill import StudentSampler, run_distill_stage
    from models.dmd import DmdConfig
    from models.prompt import PromptEncoderError
    from models.train import TrainError

    changes = _sampler_changes(args)
    sampler = StudentSampler(**changes) if changes else None
    dmd_cfg = DmdConfig(fake_updates=args.fake_updates, real_guidance=args.real_guidance, rollout=args.rollout,
                        regression=args.regression, temporal=args.temporal)
    try:
        run_distill_stage(args.stage, args.data, args.out, steps=args.steps, batch=args.batch, resume=args.resume,
                          device=args.device, overrides={"lr": args.lr}, sampler=sampler,
                          pair_clips=args.pair_clips, dmd_cfg=dmd_cfg, init=args.init)
    except (TrainError, DataError, CheckpointError, PromptEncoderError) as exc:
        return _error("train", str(exc))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from demo_game.record import RecordError, record_dataset
    from models.checkpoint import CheckpointError, config_from_json, load_checkpoint
    from models.data import DataError
    from models.distill import StudentSampler
    from models.evaluate import EvalError, evaluate, markdown_table
    from models.prompt import PromptEncoderError

    held_in = [s for s in args.seeds if s < 1000]
    if held_in:
        return _error("eval", f"eval scores held-out worlds only (seeds >= 1000); got {held_in[0]}")
    if args.device == "cuda" and not _cuda():
        return _error("eval", "--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    device = "cuda" if args.device == "cuda" or (args.device == "auto" and _cuda()) else "cpu"
    try:
        meta = load_checkpoint(args.model, "student", hint="a model for eval holds a teacher and a student; train "
                               f"them with `restyler train teacher|ode|dmd --out {args.model}`")[1]
        height, width = meta["config"]["frame_size"]
        changes = _sampler_changes(args)
        sampler = replace(config_from_json(StudentSampler, meta["sampler"]), **changes) if changes else None
        # the held-out worlds, rendered by the game once and kept for later evals
        seeds = f"{args.seeds.start}-{args.seeds.stop - 1}"
        clips = args.worlds / f"{width}x{height}_{args.frames}f_seeds{seeds}"
        record_dataset(clips, args.seeds, args.frames, (width, height), force_eval_seeds=True)
        drift = None
        if args.drift_frames > 0:
            drift = args.worlds / f"drift_{width}x{height}_{args.drift_frames}f_seed{args.seeds.start}"
            record_dataset(drift, [args.seeds[0]], args.drift_frames, (width, height), force_eval_seeds=True)
        result = evaluate(args.model, clips, args.frames, drift, args.teacher_steps, sampler, device=device,
                          switch=args.switch, **({} if args.rows is None else {"rows": args.rows}))
    except (RecordError, CheckpointError, DataError, EvalError, PromptEncoderError) as exc:
        return _error("eval", str(exc))
    _write_eval(args.json, result, markdown_table(result))
    print(markdown_table(result))
    return 0


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _write_eval(path: Path, result: Any, table: str) -> None:
    """FILE (the scores), FILE.md, FILE_details.json and FILE_media/ with a strip per world and an mp4 per row."""
    import json

    import numpy as np

    from bridge.video import Mp4Writer
    from models.train import save_grid

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.scores, indent=2) + "\n")
    path.with_suffix(".md").write_text(table)
    path.with_name(path.stem + "_details.json").write_text(json.dumps(result.details, indent=2) + "\n")
    media = path.with_name(path.stem + "_media")
    media.mkdir(exist_ok=True)
    for name, strip in result.strips:
        save_grid(media / f"strip_{name}.png", [strip[None]])
    for row, frames in result.videos.items():
        if not frames:
            continue
        h, w = frames[0].shape[:2]
        with Mp4Writer(media / f"{row}.mp4", 30, (w, h)) as out:
            for frame in frames:
                out.write(np.ascontiguousarray(frame.numpy()))


def _default_style(style: str | None) -> str:
    from demo_game.styles import STYLES

    return style or next(iter(STYLES.values())).prompts[0]


def _cmd_capture(args: argparse.Namespace) -> int:
    from bridge import BridgeError, ScreenSource
    from renderer.capture import run_capture
    from renderer.engine import ModelError
    from renderer.runtime import StreamingRestyler

    headless = args.headless
    if not headless and not has_display():
        return _error("capture", "no display to capture from or to show on ($DISPLAY unset); run it in a desktop "
                                 "session, or under Xvfb with --headless --record FILE.mp4 --seconds N")
    if headless and args.record is None:
        return _error("capture", "--headless shows nothing, so it needs --record FILE.mp4 to keep the result")
    try:
        restyler = StreamingRestyler.from_pretrained(args.model, worker=args.worker, steps=args.steps)
        source = ScreenSource(region=args.region) if args.region else ScreenSource(window=args.window)
    except (ModelError, BridgeError, ValueError) as exc:
        return _error("capture", str(exc))
    what = f"region {args.region}" if args.region else f"window {args.window!r}"
    print(f"{PROG} capture: restyling {what} ({source.size[0]}x{source.size[1]}); Ctrl+C stops", file=sys.stderr)
    try:
        result = run_capture(source, restyler, _default_style(args.style), args.record, headless, args.seconds)
    except (BridgeError, RuntimeError) as exc:   # RuntimeError: the worker could not start (the reason is in it)
        return _error("capture", str(exc))
    recorded = f"; wrote {result.frames_recorded} frames to {args.record}" if args.record else ""
    print(f"{PROG} capture: stopped ({result.stopped_by}) after {result.frames_captured} captured frames in "
          f"{result.seconds:.1f} s{recorded}")
    return 0


def _cmd_restyle(args: argparse.Namespace) -> int:
    from bridge import BridgeError
    from renderer.capture import restyle_file
    from renderer.engine import ModelError

    try:
        frames = restyle_file(args.input, args.output, args.model, _default_style(args.style), args.device,
                             args.steps)
    except (ModelError, BridgeError) as exc:
        return _error("restyle", str(exc))
    print(f"{PROG} restyle: wrote {frames} frames to {args.output}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import json

    from demo_game import GameConfig, GameSession
    from renderer.bench import run_bench, table
    from renderer.engine import ModelError, load_bundle

    try:
        size = load_bundle(args.model).frame_size   # also: one clear error for a missing model
        # a held-out world, the game ticking at the benchmark's rate, rendering only what the model reads
        fps = max(1, round(args.game_fps))
        with GameSession(GameConfig(seed=1000, width=size[0], height=size[1], fps=fps)) as game:
            result = run_bench(args.model, game.step, args.device, args.seconds, fps, args.worker, args.threads,
                               args.steps, teacher=not args.no_teacher)
    except (ModelError, RuntimeError, ValueError) as exc:
        return _error("bench", str(exc))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result.scores, indent=2) + "\n")
    args.json.with_name(args.json.stem + "_details.json").write_text(json.dumps(result.details, indent=2) + "\n")
    print(table(result))
    return 0


def _cmd_generate(args: argparse.Namespace) -> int:
    from bridge import BridgeError
    from models.prompt import PromptEncoderError
    from renderer.generate import GenerateError, ModelError, parse_switch, run_generate

    try:
        switches = [parse_switch(s) for s in args.switch]
        written = run_generate(args.model, args.prompt, args.frames, args.out, args.image, args.extend, switches,
                               args.device, args.seed, args.steps)
    except (GenerateError, ModelError, BridgeError, PromptEncoderError) as exc:
        return _error("generate", str(exc))
    print(f"{PROG} generate: wrote {written} frames to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # an output path that is a file, a read-only folder: one line, not a traceback
        return _error(args.command, f"{exc.filename or ''}: {exc.strerror or exc}")
