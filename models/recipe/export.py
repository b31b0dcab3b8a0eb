"""Turn a finished training run into a shipped model: `models/weights/<name>/` with the teacher, the student (and the
autoencoder when the model works in latents, the regression baseline when the run trained one), each safetensors in
fp16 plus its JSON config. `--first-stages` ships a run that has no student yet, its teacher and regression, so that
`restyler eval --rows input,regression,teacher` can score a new backbone from main before its student exists.

fp16 halves the files (an S network is 13 MB instead of 27) and costs nothing at run time: the loaders cast back to
fp32 for the CPU. The student's sampler can be overridden on the way out, because how a student streams best is
measured after training (docs/distillation.md: the `last_step` cache refresh beats the `clean` one it trained with,
and a periodic cache reset cuts the part of long-stream drift that the stream's own history causes by a third).

    python -m models.recipe.export RUN models/weights/default --refresh last_step --reset-every 16
    python -m models.recipe.export RUN models/weights/v2 --first-stages
    python -m models.recipe.export runs/upsampler models/weights/default --only upsampler
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from models.io import checkpoint

SHIPPED = ("autoencoder", "teacher", "student", "regression", "upsampler")


def export_model(run: Path, out: Path, sampler_changes: dict[str, Any] | None = None,
                 generation_changes: dict[str, Any] | None = None, first_stages: bool = False,
                 only: str | None = None, temporal_keep: float | None = None) -> list[Path]:
    """Copy the shipped networks of `run` into `out` as fp16; returns the files written. `generation_changes`
    (steps, carry) set how a student trained to generate (`train gen`) generates: models.network.generation's
    GenerationSampler, measured by models.evaluation.generation after training. `first_stages` ships a run with a
    teacher and no student (a backbone's first stages, scored by `restyler eval` but not playable). `only` copies
    that one network alone into `out` (an upsampler trained on the frames of the student `out` already ships);
    `temporal_keep` sets how the stream runs the upsampler (models.network.upsampler.TemporalResolve)."""
    if only is not None:
        if only not in SHIPPED or not checkpoint.exists(run, only):
            raise checkpoint.CheckpointError(f"{run} holds no {only}; the networks a model ships are "
                                              f"{', '.join(SHIPPED)}")
    elif first_stages:
        if not checkpoint.exists(run, "teacher"):
            raise checkpoint.CheckpointError(f"{run} holds no teacher; train it (`restyler train teacher --out {run}`) "
                                              "before exporting the first stages")
        if sampler_changes or generation_changes:
            raise checkpoint.CheckpointError("the sampler and generation options set a student's; the first stages "
                                              "have none")
    elif not checkpoint.exists(run, "student"):
        raise checkpoint.CheckpointError(f"{run} holds no student; finish the recipe (`restyler train dmd --out "
                                          f"{run}`) before exporting it, or export its teacher and regression with "
                                          "--first-stages")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name in SHIPPED if only is None else (only,):
        if not checkpoint.exists(run, name):
            continue  # a pixel-space model has no autoencoder
        tensors, meta = checkpoint.load_checkpoint(run, name)
        meta = {k: v for k, v in meta.items() if k not in ("format", "save_id")}
        if name == "student" and sampler_changes:
            meta["sampler"] = {**meta["sampler"], **sampler_changes}
        if name == "student" and generation_changes:
            if "generation" not in meta:
                raise checkpoint.CheckpointError(f"the student of {run} was not trained to generate (`restyler "
                                                  "train gen`); --gen-steps and --gen-carry do not apply")
            meta["generation"]["sampler"] = {**meta["generation"].get("sampler", {}), **generation_changes}
        if name == "upsampler" and temporal_keep is not None:
            meta["config"] = {**meta["config"], "temporal_keep": temporal_keep}
        checkpoint.save_checkpoint(out, name, tensors, meta, dtype=torch.float16)
        written += list(checkpoint.paths(out, name))
    return written


def _int_at_least(minimum: int):
    """An argparse type: a whole number >= `minimum`."""
    def parse(text: str) -> int:
        if not text.isdigit() or int(text) < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}; got {text!r}")
        return int(text)
    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description="Export a training run as a shipped fp16 model directory.")
    parser.add_argument("run", type=Path, help="finished run directory (teacher and student trained)")
    parser.add_argument("out", type=Path, help="model directory to write, e.g. models/weights/default")
    parser.add_argument("--first-stages", action="store_true",
                        help="ship a run without a student: its teacher and regression baseline, for `restyler eval`")
    parser.add_argument("--only", choices=SHIPPED, default=None,
                        help="copy only this network, e.g. an upsampler trained (`restyler train upsampler`) on the "
                             "frames of the student OUT already ships")
    parser.add_argument("--temporal-keep", type=float, default=None, metavar="K",
                        help="the upsampler's temporal resolve: the weight of the previous output, in [0, 1) (0: every "
                             "frame alone; docs/upsampling.md has the measurement)")
    parser.add_argument("--refresh", choices=["clean", "last_step"], default=None,
                        help="the student's KV-cache refresh at run time (default: the one it trained with)")
    parser.add_argument("--reset-every", type=_int_at_least(0), default=None, metavar="N",
                        help="empty the student's KV cache every N chunks at run time, against drift (0: never)")
    parser.add_argument("--gen-steps", type=_int_at_least(1), default=None, metavar="N",
                        help="size of the Euler grid of a generated chunk (`restyler generate`; docs/generation.md)")
    parser.add_argument("--gen-carry", type=float, default=None, metavar="S",
                        help="noise level a generated chunk starts at from the previous frame (1: pure noise)")
    args = parser.parse_args()
    changes = {k: v for k, v in (("refresh", args.refresh), ("reset_every", args.reset_every)) if v is not None}
    generation = {k: v for k, v in (("steps", args.gen_steps), ("carry", args.gen_carry)) if v is not None}
    if "carry" in generation and not 0 < generation["carry"] <= 1:
        parser.error(f"--gen-carry must be in (0, 1]; got {generation['carry']}")
    if args.temporal_keep is not None and not 0 <= args.temporal_keep < 1:
        parser.error(f"--temporal-keep must be in [0, 1); got {args.temporal_keep}")
    try:
        written = export_model(args.run, args.out, changes, generation, first_stages=args.first_stages,
                               only=args.only, temporal_keep=args.temporal_keep)
    except checkpoint.CheckpointError as exc:
        parser.error(str(exc))
    for path in written:
        print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
