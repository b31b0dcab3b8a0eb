"""`restyler record-data`: record training clips of the demo game with its bot, or of any game through the
recording API (bridge.recording) with --game module:factory."""

from __future__ import annotations

import argparse
from pathlib import Path

from restyler.args import add_game, error, parse_seeds, parse_size, positive_float, positive_int


def add_parser(sub) -> None:
    p = sub.add_parser("record-data", help="record training clips with the scripted bot",
                       description="Record one clip per seed: the cheap frame, the G-buffers the game has and its "
                                   "target frame in every style. Interrupt any time; a rerun with the same arguments "
                                   "resumes.")
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
    add_game(p, "record")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bridge.recording import RecordError, load_factory, record_dataset as record_game

    try:
        if args.game is None:
            from demo_game.record import record_dataset

            record_dataset(args.out, args.seeds, args.frames, args.size, force_eval_seeds=args.force_eval_seeds,
                           pace=args.pace)
        else:
            record_game(args.out, load_factory(args.game), args.seeds, args.frames, args.size,
                        force_eval_seeds=args.force_eval_seeds, pace=args.pace)
    except RecordError as exc:
        return error("record-data", str(exc))
    return 0
