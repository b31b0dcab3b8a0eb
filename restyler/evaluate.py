"""`restyler eval`: render held-out worlds with the game (the demo game, or any game's GameFactory with --game) and
score a model on them (models.evaluation.restyle; docs/evaluation.md defines every number).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import Any

from restyler.args import (add_device, add_game, add_model, add_precision, add_sampler_options, cuda_available, error,
                      parse_seeds, parse_size, positive_float, positive_int, precision_for, sampler_changes)


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="score a model on held-out worlds",
                       description="Render held-out worlds on the fly and score input, teacher and student "
                                   "against the reference styles (docs/evaluation.md defines every score).")
    add_model(p, required=True)
    p.add_argument("--seeds", type=parse_seeds, required=True, metavar="A:B",
                   help="held-out world seeds, from 1000 up, e.g. 1000:1008")
    p.add_argument("--frames", type=positive_int, default=120, metavar="N",
                   help="frames per world; longer runs expose drift")
    p.add_argument("--json", type=Path, required=True, metavar="FILE",
                   help="where to write the scores; FILE.md (table), FILE_details.json and FILE_media/ (strips, "
                        "a full-size side_by_side.png, an mp4 per row) go beside it")
    p.add_argument("--drift-frames", type=int, default=3000, metavar="N",
                   help="length of the drift stream (0 skips it); docs/evaluation.md defines drift over 3000")
    p.add_argument("--teacher-steps", type=positive_int, default=None, metavar="N",
                   help="teacher sampler steps (default: the teacher's own, 50)")
    p.add_argument("--teacher-guidance", type=positive_float, default=None, metavar="G",
                   help="teacher style guidance (default: the teacher's own); 1 runs one pass a step, no guidance")
    add_sampler_options(p, "ablation: instead of its own, the student's", defaults=False)
    p.add_argument("--switch", choices=["reset", "recache", "keep"], default="reset",
                   help="what a style switch does to the KV cache: empty it (default), re-encode it under the new "
                        "prompt, or keep it; docs/distillation.md has the measurement")
    p.add_argument("--rows", type=lambda t: tuple(t.split(",")), default=None, metavar="R1,R2",
                   help="run only these rows (ablations skip the slow teacher); the others score null")
    p.add_argument("--worlds", type=Path, default=Path("out/eval_worlds"), metavar="DIR",
                   help="where the rendered held-out worlds are kept, so a second eval does not render them again")
    add_game(p, "render the held-out levels of")
    p.add_argument("--display", type=parse_size, default=None, metavar="WxH",
                   help="also score the student's frames brought to this display size (a whole multiple of the "
                        "model's): bilinear, joint-bilateral and the model's learned upsampler against the reference "
                        "drawn at that size; the worlds are rendered at that size too")
    add_device(p)
    add_precision(p)
    p.set_defaults(handler=run)


def _held_out(args: argparse.Namespace, size: tuple[int, int], frames: int, seeds: range | list[int],
              what: str) -> Path:
    """The held-out worlds at `size`, rendered by the game once and kept under --worlds for later evals (the shard
    format in the name: worlds kept by an older version are rendered again, not refused)."""
    from bridge.recording import SHARD_FORMAT, load_factory, record_dataset as record_game
    from demo_game.record import record_dataset

    game = "" if args.game is None else args.game.partition(":")[0].replace(".", "_") + "_"
    out = args.worlds / f"{game}v{SHARD_FORMAT}_{what}{size[0]}x{size[1]}_{frames}f_seeds{seeds[0]}-{seeds[-1]}"
    if args.game is None:
        record_dataset(out, seeds, frames, size, force_eval_seeds=True)
    else:
        record_game(out, load_factory(args.game), seeds, frames, size, force_eval_seeds=True)
    return out


def run(args: argparse.Namespace) -> int:
    from bridge.recording import RecordError
    from models.evaluation.restyle import EvalError, evaluate, markdown_table
    from models.io.checkpoint import CheckpointError
    from models.io.data import DataError
    from models.network.prompt import PromptEncoderError

    held_in = [s for s in args.seeds if s < 1000]
    if held_in:
        return error("eval", f"eval scores held-out worlds only (seeds >= 1000); got {held_in[0]}")
    if args.device == "cuda" and not cuda_available():
        return error("eval", "--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    device = "cuda" if args.device == "cuda" or (args.device == "auto" and cuda_available()) else "cpu"
    precision = precision_for(args, device)
    try:
        held, (width, height), sampler = _what_to_score(args)
        clips = _held_out(args, (width, height), args.frames, args.seeds, "")
        drift = None
        if args.drift_frames > 0 and "student" in held:   # the drift stream is the student's
            drift = _held_out(args, (width, height), args.drift_frames, [args.seeds[0]], "drift_")
        result = evaluate(args.model, clips, args.frames, drift, args.teacher_steps, sampler, device=device,
                          switch=args.switch, teacher_guidance=args.teacher_guidance, precision=precision,
                          **({} if args.rows is None else {"rows": args.rows}))
        result.scores["precision"] = precision.name
        if args.display is not None:
            if "student" not in held:
                return error("eval", f"--display scores the student's frames, but {args.model} holds no student")
            _score_display(args, clips, (width, height), result, device, precision)
    except (RecordError, CheckpointError, DataError, EvalError, PromptEncoderError) as exc:
        return error("eval", str(exc))
    _write_eval(args.json, result, markdown_table(result))
    print(markdown_table(result))
    print(f"{precision.describe()}; wrote {args.json}")
    return 0


def _what_to_score(args: argparse.Namespace) -> tuple[list[str], tuple[int, int], Any]:
    """The networks --model holds (student, teacher, regression, in that order), the frame size (W, H) of the first,
    and the student's sampler with the command line's changes (None when nothing changes it). Raises EvalError
    when there is nothing to score, CheckpointError when a config is broken."""
    from models.evaluation.restyle import EvalError
    from models.io.checkpoint import config_from_json, exists, load_checkpoint
    from models.network.loading import network_config
    from models.network.streaming import StudentSampler

    held = [name for name in ("student", "teacher", "regression") if exists(args.model, name)]
    if not held:
        raise EvalError(f"{args.model} holds no student, teacher or regression network to score; train them with "
                        f"`restyler train teacher|ode|dmd --out {args.model}` (or `restyler train regression` for "
                        "the baseline)")
    meta = load_checkpoint(args.model, held[0])[1]
    height, width = network_config(args.model, held[0], meta).frame_size
    changes = sampler_changes(args)
    if changes and held[0] != "student":
        raise EvalError(f"--timesteps, --refresh, --noise and --reset-every change the student's sampler, but "
                        f"{args.model} holds no student")
    sampler = None
    if changes:
        saved = config_from_json(StudentSampler, meta.get("sampler"), f"{args.model}/student.json sampler")
        sampler = replace(saved, **changes)
    return held, (width, height), sampler


def _score_display(args: argparse.Namespace, clips: Path, model_size: tuple[int, int], result: Any,
                   device: str, precision: Any) -> None:
    """--display: the held-out worlds again at display size, the student's frames on them upsampled three ways and
    scored (models.evaluation.upsample); the scores go into result.scores["display"], the picture into the media."""
    from bridge.recording import RecordError
    from models.evaluation.restyle import EvalError, token_pixels
    from models.evaluation.upsample import evaluate_upsampling
    from models.network.loading import load_network, load_upsampler
    from models.recipe.upsample import student_frames

    width, height = args.display
    if width % model_size[0] or height % model_size[1] or width // model_size[0] != height // model_size[1]:
        raise EvalError(f"--display {width}x{height} must be the model's {model_size[0]}x{model_size[1]} times a "
                        "whole number")
    try:
        display = _held_out(args, (width, height), args.frames, args.seeds, "")
    except RecordError as exc:
        raise EvalError(str(exc)) from None
    # the eval's student row, kept per model (a retrained student makes them again)
    frames = student_frames(args.model, clips, args.worlds / f"student_frames_{clips.name}", device, print, precision)
    upsampler = load_upsampler(args.model, device)
    scores = evaluate_upsampling(display, frames, upsampler, args.frames,
                                 token_pixels(load_network(args.model, "student")[0]))
    result.side_by_side_display = scores.pop("side_by_side")
    result.scores["display"] = scores


def _write_eval(path: Path, result: Any, table: str) -> None:
    """FILE (the scores), FILE.md, FILE_details.json and FILE_media/ with a strip per world, the full-size
    side_by_side.png of the first world (a line per style: every row, then the reference) and an mp4 per row."""
    import json

    import numpy as np

    from bridge.outputs import write_text_atomic
    from bridge.video import Mp4Writer
    from models.io.images import save_grid

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(result.scores, indent=2) + "\n")
    write_text_atomic(path.with_suffix(".md"), table)
    write_text_atomic(path.with_name(path.stem + "_details.json"), json.dumps(result.details, indent=2) + "\n")
    media = path.with_name(path.stem + "_media")
    media.mkdir(exist_ok=True)
    for name, strip in result.strips:
        save_grid(media / f"strip_{name}.png", [strip[None]])
    if result.side_by_side is not None:
        save_grid(media / "side_by_side.png", [result.side_by_side[None]])
    if result.side_by_side_display is not None:
        save_grid(media / "side_by_side_display.png", [result.side_by_side_display[None]])
    for row, frames in result.videos.items():
        if not frames:
            continue
        h, w = frames[0].shape[:2]
        with Mp4Writer(media / f"{row}.mp4", 30, (w, h)) as out:
            for frame in frames:
                out.write(np.ascontiguousarray(frame.numpy()))
