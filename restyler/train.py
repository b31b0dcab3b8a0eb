"""`restyler train STAGE`: one stage of the training recipe (models.recipe.run)."""

from __future__ import annotations

import argparse
from pathlib import Path

from restyler.args import (add_device, add_precision, add_sampler_options, error, model_option, positive_float,
                      positive_int, probability, sampler_changes)


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="run one stage of the training recipe",
                       description="Train one stage; all stages of a recipe share one --out run directory, and "
                                   "a finished run directory is a model for --model.")
    p.add_argument("stage", choices=["autoencoder", "teacher", "ode", "dmd", "gen", "regression", "upsampler"],
                   help="recipe stage, in order: autoencoder, teacher, ode (student init), dmd (distillation), "
                        "gen (teaches a finished student --init RUN to generate without structure, for "
                        "`restyler generate`); and regression, the backbone trained by a pixel loss alone, the "
                        "baseline `restyler eval` scores beside the diffusion rows; upsampler (after the student: "
                        "the AI frame at display size, guided by the G-buffers there; --data is the display-size "
                        "recording, --low-data the same worlds at the model's size)")
    p.add_argument("--data", type=Path, required=True, metavar="DIR", help="dataset from `restyler record-data`")
    p.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="run directory shared by all stages; each stage reads what the earlier ones wrote")
    p.add_argument("--size", choices=["tiny", "S", "M", "student", "student_unshuffled"], default=None,
                   help="model size: tiny for smoke tests, S for CPU, M when a GPU is available (default S); ode: "
                        "the student's, default the teacher's own (backbone v2 only: `student` is the streamed "
                        "one-step size, 1.2 GFLOP a frame; `student_unshuffled` the same student pixel-unshuffled "
                        "by 2 into wide layers for matrix units with a full-resolution refinement, 2.68 GFLOP)")
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="optimizer steps; default: the stage's recipe value; lower it for a quick check")
    p.add_argument("--resume", action="store_true",
                   help="continue from the last checkpoint in --out instead of refusing to overwrite it")
    p.add_argument("--batch", type=positive_int, default=None, metavar="N",
                   help="global batch (clips for the teacher, frames for the autoencoder), split over torchrun "
                        "processes; default: the recipe's value; halve it if memory runs out")
    p.add_argument("--clip-frames", type=positive_int, default=None, metavar="F",
                   help="teacher and regression: frames per clip (a multiple of the student's 2-frame chunk); "
                        "default 8. More, shorter clips a step vary the batch at the same cost (docs/model.md). "
                        "dmd: frames per rollout, whole windows of the teacher's clip (default the teacher's)")
    p.add_argument("--arch", choices=["dit", "unet"], default="dit",
                   help="teacher only: the shipped video transformer (dit), or backbone v2 (unet: a full-resolution "
                        "U-Net around the transformer, docs/model.md); the later stages take the teacher's")
    p.add_argument("--space", choices=["pixel", "latent"], default="pixel",
                   help="teacher only: model pixels (16x16 patches, no decoder) or the run's autoencoder latents; "
                        "docs/model.md has the measurement behind the pixel default")
    p.add_argument("--model-option", action="append", type=model_option, default=[], metavar="KEY=VALUE",
                   help="backbone v2 (teacher and regression): change one field of its size's config, VALUE in JSON, "
                        "e.g. gbuffer_channels=4 or 'widths=[16,32,64,128]' (the ablations of docs/model.md); "
                        "repeatable")
    add_device(p)
    add_precision(p)
    p.add_argument("--init", type=Path, default=None, metavar="RUN",
                   help="start from this stage's weights in another run directory (fine-tuning with new settings); "
                        "dmd and gen: from RUN's finished student, e.g. a second pass with --temporal")
    p.add_argument("--guidance", type=positive_float, default=None, metavar="G",
                   help="teacher only: the style guidance its sampler keeps (default 1.5; 1 is one pass a step and "
                        "the closer picture, docs/model.md); the later stages inherit it")
    p.add_argument("--loss-min-sigma", type=positive_float, default=None, metavar="S",
                   help="teacher only: floor of σ in the 1/σ² loss weight; 0.05 (default) favours fine detail, "
                        "0.5 the high-noise levels where the model learns to read structure and style")
    u = p.add_argument_group("upsampler")
    u.add_argument("--low-data", type=Path, default=None, metavar="DIR",
                   help="the worlds of --data recorded at the model's size (same --seeds and --frames), which the "
                        "student restyles")
    u.add_argument("--student", type=Path, default=Path("models/weights/default"), metavar="DIR",
                   help="the model whose student's frames are upsampled (default: the shipped one)")
    u.add_argument("--upsampler-width", type=positive_int, default=None, metavar="N",
                   help="conv channels at the AI frame's resolution (default: the recipe's, docs/upsampling.md)")
    u.add_argument("--upsampler-context", type=int, default=None, metavar="N",
                   help="channels of the half-resolution context branch (0: none; default: the recipe's)")
    g = p.add_argument_group("distillation and generation (ode, dmd, gen)")
    add_sampler_options(g, "ode: the student's", defaults=True)
    g.add_argument("--pair-clips", type=positive_int, default=128, metavar="N",
                   help="ode: teacher trajectories to generate (the stage's largest cost on a CPU)")
    g.add_argument("--rollout", choices=["self_forcing", "parallel"], default="self_forcing",
                   help="dmd: generate on the student's own KV-cached rollouts, or CausVid's one parallel pass")
    g.add_argument("--regression", type=float, default=None, metavar="W",
                   help="ode and dmd: weight of a paired MSE against the recorded reference frames; ode: default 0 "
                        "(CausVid's pure ODE regression); dmd: 0 is pure DMD (default 0.5, the measured best)")
    g.add_argument("--temporal", type=float, default=0.0, metavar="W",
                   help="dmd: weight of a motion-warped frame-to-frame L1 term against flicker (0: off)")
    g.add_argument("--distribution", type=float, default=1.0, metavar="W",
                   help="dmd: weight of the DMD term (0: none, and no fake score is trained: its ablation)")
    g.add_argument("--gan", type=float, default=0.0, metavar="W",
                   help="dmd: weight of DMD2's adversarial term, a patch discriminator trained from scratch on the "
                        "reference frames (0: off)")
    g.add_argument("--fake-updates", type=positive_int, default=5, metavar="N",
                   help="dmd: fake-score updates per generator update (CausVid: 5)")
    g.add_argument("--real-guidance", type=positive_float, default=None, metavar="G",
                   help="dmd: guidance of the real score (default: the teacher's sampler guidance)")
    g.add_argument("--rgb-only", type=probability, default=0.0, metavar="P",
                   help="dmd: the fraction of steps streaming frames only, as screen capture does (default 0)")
    g.add_argument("--randomise", type=probability, default=0.0, metavar="P",
                   help="dmd: the fraction of those frames-only clips turned into captures of another game "
                        "(random palette, capture artefacts, letterbox, HUD; docs/distillation.md)")
    g.add_argument("--lr", type=positive_float, default=None, metavar="LR",
                   help="learning rate (dmd: the student's); default: the stage's recipe value")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from demo_game.styles import STYLES
    from models.io.checkpoint import CheckpointError
    from models.io.data import DataError
    from models.network.prompt import PromptEncoderError
    from models.network.streaming import StudentSampler
    from models.recipe.dmd import DmdConfig
    from models.recipe.ode import OdeConfig
    from models.recipe.loop import TrainError
    from models.recipe.run import run_stage

    # The teacher's style prompts; held-out paraphrases are never trained on: eval checks the model generalises to
    # them. The stages after the teacher take its prompts from its checkpoint.
    prompts = {style.name: list(style.prompts) for style in STYLES.values()}
    changes = sampler_changes(args)
    regression = {} if args.regression is None else {"regression": args.regression}
    dmd_cfg = DmdConfig(fake_updates=args.fake_updates, real_guidance=args.real_guidance, rollout=args.rollout,
                        temporal=args.temporal, distribution=args.distribution, gan=args.gan,
                        rgb_only=args.rgb_only, randomise=args.randomise, **regression)
    ode_cfg = OdeConfig(**regression)
    # the teacher's own settings: the later stages inherit them from its checkpoint
    teacher_only = {"loss_min_sigma": args.loss_min_sigma, "guidance": args.guidance}
    if args.stage != "teacher" and any(v is not None for v in teacher_only.values()):
        return error("train", "--loss-min-sigma and --guidance are the teacher's settings; the later stages "
                              "inherit them from its checkpoint")
    overrides = {"lr": args.lr, "clip_frames": args.clip_frames, **teacher_only}
    if args.stage == "upsampler":
        return _train_upsampler(args)
    try:
        run_stage(args.stage, args.data, args.out, size=args.size, prompts=prompts, space=args.space, arch=args.arch,
                  steps=args.steps, batch=args.batch, resume=args.resume, device=args.device, overrides=overrides,
                  init=args.init, sampler=StudentSampler(**changes) if changes else None,
                  pair_clips=args.pair_clips, dmd_cfg=dmd_cfg, ode_cfg=ode_cfg, model_options=dict(args.model_option),
                  precision=args.precision)
    except (TrainError, DataError, CheckpointError, PromptEncoderError) as exc:
        return error("train", str(exc))
    return 0


def _train_upsampler(args: argparse.Namespace) -> int:
    from models.io.checkpoint import CheckpointError
    from models.io.data import DataError
    from models.network.prompt import PromptEncoderError
    from models.recipe.loop import TrainError
    from models.recipe.upsample import UpsampleSettings, run_upsampler

    if args.low_data is None:
        return error("train", "the upsampler needs --low-data DIR: the worlds of --data recorded at the model's size "
                              "(`restyler record-data` with the same --seeds and --frames)")
    changes = {k: v for k, v in (("width", args.upsampler_width), ("context", args.upsampler_context))
               if v is not None}
    try:
        run_upsampler(args.data, args.low_data, args.student, args.out, steps=args.steps, batch=args.batch,
                      lr=args.lr, resume=args.resume, device=args.device, settings=UpsampleSettings(**changes),
                      precision=args.precision)
    except (TrainError, DataError, CheckpointError, PromptEncoderError) as exc:
        return error("train", str(exc))
    return 0
