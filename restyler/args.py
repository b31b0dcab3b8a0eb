"""What the `restyler` commands share: argument types that fail with one clear line, the options several commands
take, and the error line every handler prints. Standard library only, so `restyler --help` stays instant.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from renderer import DEFAULT_MODEL

PROG = "restyler"
EXIT_USAGE = 2  # argparse's own code for bad arguments; also used for refused requests
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


def _number(text: str, parse: type, accept, expected: str):
    """`text` parsed by `parse` (int or float) when `accept` takes it; else one argparse error naming `expected`.
    Text that does not parse is refused the same way (a nan is refused by any comparison)."""
    try:
        value = parse(text)
    except ValueError:
        value = None
    if value is None or not accept(value):
        raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, lambda v: v > 0, "a positive integer")


def non_negative_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    return _number(text, float, lambda v: v > 0, "a positive number of seconds")


def probability(text: str) -> float:
    return _number(text, float, lambda v: 0.0 <= v <= 1.0, "a probability from 0 to 1")


def model_option(text: str) -> tuple[str, Any]:
    """KEY=VALUE with VALUE in JSON (a bare word is taken as a string) -> (key, value)."""
    import json

    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, e.g. gbuffer_channels=4; got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def parse_timesteps(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or any(not 0 < v <= 1000 for v in values) or list(values) != sorted(values, reverse=True):
        raise argparse.ArgumentTypeError(f"expected decreasing levels in 1..1000 separated by commas, e.g. "
                                         f"1000,500; got {text!r}")
    return values


def style_prompt(text: str) -> str:
    """A --style or --prompt: whitespace runs become single spaces; empty, unprintable or too long is refused."""
    from renderer.prompts import clean_prompt

    try:
        return clean_prompt(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected {exc}") from None


def mp4_path(text: str) -> Path:
    if not text.lower().endswith(".mp4"):
        raise argparse.ArgumentTypeError(f"expected a file name ending in .mp4; got {text!r}")
    return Path(text)


def serve_address(text: str) -> tuple[str, int]:
    from renderer.serve import parse_address

    try:
        return parse_address(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# ---------------------------------------------------------------------------------------------------------------
# Options shared by several commands


def add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto picks cuda when present, else cpu")


def add_precision(p: argparse.ArgumentParser) -> None:
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="numeric precision of the networks' matrix work: auto is bf16 on a CUDA GPU and on a CPU "
                        "with AMX matrix units, fp32 elsewhere; the stored weights stay as they are (converted at "
                        "load; training keeps fp32 master weights); docs/runtime.md measures both")


def precision_for(args: argparse.Namespace, device: str = "auto") -> Any:
    """--precision resolved for `device` ("auto", "cpu" or "cuda"): a models.network.precision.Precision (.name
    "fp32" or "bf16", .describe() what each command says once in its output, after the model has loaded)."""
    from models.network.precision import resolve_precision

    dev = "cuda" if device == "cuda" or (device == "auto" and cuda_available()) else "cpu"
    return resolve_precision(args.precision, dev)


def add_worker(p: argparse.ArgumentParser) -> None:
    p.add_argument("--worker", choices=["process", "thread"], default="process",
                   help="where the model runs beside the game: its own process (default: the game loop stays "
                        "smoothest on a 2-core CPU, docs/runtime.md) or a thread of the game's process")


def add_game(p: argparse.ArgumentParser, does: str) -> None:
    """--game MODULE:FACTORY: another game than the demo, through its GameFactory (bridge.recording)."""
    p.add_argument("--game", default=None, metavar="MODULE:FACTORY",
                   help=f"{does} another game through its GameFactory (bridge.recording, docs/your-game.md), e.g. "
                        "tile_game:recordable; default: the demo game")


def add_steps(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="denoising steps per chunk, at most the student's levels; default: 1 on a CPU (the "
                        "real-time rate, docs/runtime.md), all of them on a GPU")


def add_serve(p: argparse.ArgumentParser) -> None:
    p.add_argument("--serve", type=serve_address, default=None, metavar="[HOST:]PORT",
                   help="also serve the restyled stream as web pages: /view for an OBS Browser Source, /control "
                        "for the style, view mode and live numbers (docs/streaming.md); the host defaults to "
                        "127.0.0.1, this machine only")
    p.add_argument("--serve-token", default=None, metavar="TOKEN",
                   help="the token every page and request must carry (?token=TOKEN); needed, and made up when not "
                        "given, whenever --serve binds an address other than loopback")


def start_server(command: str, args: argparse.Namespace):
    """The StreamServer --serve asks for, started, its addresses printed; None without --serve. Raises ServeError
    (a port in use, say) before anything else has started."""
    if args.serve is None:
        return None
    from demo_game.styles import STYLES
    from renderer.serve import StreamServer

    host, port = args.serve
    server = StreamServer(host, port, args.serve_token, presets=tuple(s.prompts[0] for s in STYLES.values())).start()
    print(f"{PROG} {command}: serving the stream: {server.page_url('view')} (OBS Browser Source), controls at "
          f"{server.page_url('control')}", file=sys.stderr)
    return server


def add_sampler_options(p: Any, role: str, defaults: bool) -> None:
    """--timesteps / --refresh / --noise / --history: the student's sampler (models.network.streaming.StudentSampler), chosen
    when the ode stage creates the student, or overridden by eval for an ablation. `role` starts each help text."""

    def default(text: str) -> str:
        return f" (default {text})" if defaults else ""

    p.add_argument("--timesteps", type=parse_timesteps, default=None, metavar="T1,T2",
                   help=f"{role} levels on CausVid's 0..1000 scale, the first being t* where a stream starts"
                        + default("1000,500"))
    p.add_argument("--refresh", choices=["clean", "last_step"], default=None,
                   help=f"{role} KV-cache refresh after a chunk: a clean pass, or the last step's K/V"
                        + default("clean"))
    p.add_argument("--noise", choices=["fresh", "fixed", "warped"], default=None,
                   help=f"{role} sampler noise: fresh per chunk, one fixed image per stream, or the last frame's "
                        "carried along the game's motion vectors (fresh where a surface comes into view)"
                        + default("fresh"))
    p.add_argument("--history", choices=["on", "off"], default=None,
                   help=f"{role} warped-history input: the last output carried along the motion to each new "
                        "frame (on only for a student trained with it)" + default("off"))
    p.add_argument("--reset-every", type=non_negative_int, default=None, metavar="N",
                   help=f"{role} KV cache emptied every N chunks against drift, 0 never" + default("0"))


def sampler_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The sampler fields the command line sets (see add_sampler_options)."""
    changes = {k: getattr(args, k) for k in ("timesteps", "refresh", "noise", "reset_every")
               if getattr(args, k) is not None}
    if getattr(args, "history", None) is not None:
        changes["history"] = args.history == "on"
    return changes


def add_model(p: argparse.ArgumentParser, *, required: bool = False, default: Path | None = DEFAULT_MODEL) -> None:
    help_text = ("model directory: a shipped model (models/weights/<name>) or a finished training run (the --out of "
                 "`restyler train`)")
    if not required:
        help_text += (f"; default {default}" if default is not None
                      else "; default: the shipped model in models/weights/default (--no-ai plays without)")
    p.add_argument("--model", type=Path, required=required, default=None if required else default, metavar="DIR",
                   help=help_text)


# ---------------------------------------------------------------------------------------------------------------
# Shared by the handlers


def error(command: str, message: str) -> int:
    """Print one line `restyler COMMAND: error: MESSAGE` and return the usage exit code."""
    print(f"{PROG} {command}: error: {message}", file=sys.stderr)
    return EXIT_USAGE


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def default_style(style: str | None) -> str:
    """`style`, or the demo game's first style prompt when none was given."""
    from demo_game.styles import STYLES

    return style or next(iter(STYLES.values())).prompts[0]
