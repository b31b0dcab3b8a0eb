"""The `restyler` command line (also `python -m restyler`): the one place that ties game, bridge, models and renderer
together. One module per command builds its own options (`add_parser`) and runs it (`run`); this module assembles
them. Every handler imports its heavy dependencies when it runs, so `restyler --help` and argument errors stay
instant (no torch, no GL).
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

from restyler import bench, capture, eval_video, evaluate, generate, play, record_data, restyle, train
from restyler.args import EXIT_USAGE, PROG, error

# In the order `restyler --help` lists them.
COMMANDS = (play, capture, restyle, record_data, train, evaluate, eval_video, bench, generate)


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments end in one line on stderr that names the option and what was expected (exit 2), not argparse's
    usage block above it: the line says where the options are listed."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (`{self.prog} --help` lists the options)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog=PROG,
        description="Real-time AI restyling for games: play the demo, restyle any window or video, record data, "
                    "train, evaluate and benchmark the causal few-step video diffusion model.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    from bridge.outputs import OutputError   # after parsing: --help and argument errors stay instant (no numpy)

    try:
        check_paths(args)
        return handler(args)
    except OutputError as exc:
        return error(args.command, str(exc))
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # an output path that is a file, a read-only folder: one line, not a traceback
        return error(args.command, f"{exc.filename or ''}: {exc.strerror or exc}")


def check_paths(args: argparse.Namespace) -> None:
    """Refuse, before anything runs, an output that is one of the command's inputs or another of its outputs
    (`restyler restyle X.mp4 X.mp4`). Each command names its paths with set_defaults(inputs=..., outputs=...):
    what the user calls it (the option or metavar) -> the argument's dest."""
    from bridge.outputs import check_outputs

    def given(names: dict[str, str]) -> dict[str, object]:
        return {label: getattr(args, dest, None) for label, dest in names.items()}

    check_outputs(given(getattr(args, "outputs", {})), given(getattr(args, "inputs", {})))
