"""`restyler train STAGE`: one entry point for every stage of the recipe, in order

    autoencoder → teacher → ode → dmd → gen      (then models.recipe.export ships the run)

and beside them `regression`, the non-generative baseline every diffusion row is measured against.

It builds the stage from what the earlier stages left in the run directory, applies the stage's recipe defaults
and the caller's overrides, and runs it in the one training loop (models.recipe.loop), on one process or under
torchrun. `init` fine-tunes: for autoencoder and teacher it starts from the same stage's weights in another run;
for dmd and gen it copies another run's teacher and ODE student into this one and starts from its finished
student, so the new run directory is a complete model of its own.
"""

from __future__ import annotations

import shutil
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Callable

import torch

from models.io import checkpoint
from models.network.autoencoder import AEConfig
from models.network import unet
from models.network.dit import make_config
from models.network.loading import load_autoencoder, load_network
from models.network.streaming import StudentSampler
from models.recipe import autoencoder, dmd, gen, ode, regression
from models.recipe.clips import RecipeData, load_teacher
from models.recipe.loop import (Distributed, Stage, TrainConfig, TrainError, close_distributed, setup_distributed,
                                train)
from models.recipe.teacher import TeacherStage

STAGES = ("autoencoder", "teacher", "ode", "dmd", "gen", "regression")


def default_config(stage: str) -> TrainConfig:
    """The recipe's settings of `stage` before any override."""
    defaults = {"autoencoder": autoencoder.default_config, "teacher": TrainConfig, "ode": ode.default_config,
                "dmd": dmd.default_config, "gen": gen.default_config, "regression": regression.default_config}
    if stage not in defaults:
        raise TrainError(f"unknown stage {stage!r}; the recipe's stages are {', '.join(STAGES)}")
    return defaults[stage]()


def run_stage(stage: str, data: Path, run: Path, *, size: str | None = None, prompts: dict[str, list[str]] | None = None,
              space: str = "pixel", arch: str = "dit", steps: int | None = None, batch: int | None = None,
              resume: bool = False, device: str = "auto", overrides: dict[str, Any] | None = None,
              init: Path | None = None, sampler: StudentSampler | None = None, pair_clips: int = 128,
              dmd_cfg: dmd.DmdConfig | None = None, ode_cfg: ode.OdeConfig | None = None,
              gen_cfg: gen.GenConfig | None = None,
              model_options: dict[str, Any] | None = None, progress: Callable[[str], None] = print,
              precision: str = "auto") -> dict[str, Any]:
    """Train `stage` into `run` from the recorded clips in `data`; returns the last log record.

    size, prompts, space   the teacher's (or regression's) model size (default S), style prompts and space (pixel
                           or latents); ode: the student's size (default the teacher's; a backbone-v2 teacher only)
    arch                   the teacher's architecture: "dit" (the shipped one) or "unet" (backbone v2)
    overrides              TrainConfig fields (None values are ignored)
    sampler                ode only: how the student will stream (its levels fix which teacher states are kept)
    pair_clips             ode only: teacher trajectories to make
    dmd_cfg, ode_cfg, gen_cfg  the dmd, ode and gen stages' own settings
    model_options          backbone v2 only: UNetConfig fields changed from the named size's (ablations)
    precision              the forward passes' (models.network.precision): auto, fp32 or bf16 under autocast, the
                           weights and optimizer state staying fp32
    """
    cfg = default_config(stage)
    known = {f.name for f in fields(TrainConfig)}
    cfg = replace(cfg, **{k: v for k, v in (overrides or {}).items() if k in known and v is not None})
    cfg = replace(cfg, **{k: v for k, v in (("steps", steps), ("batch", batch)) if v is not None})
    if stage == "gen" and init is None:
        raise TrainError("`train gen` fine-tunes a finished student: pass --init RUN (e.g. models/weights/default)")
    if stage == "ode" and init is not None:
        raise TrainError("--init in distillation fine-tunes a finished student: use it with `train dmd` or "
                         "`train gen`")
    if stage != "ode" and sampler is not None:
        raise TrainError("--timesteps, --refresh, --noise, --history and --reset-every belong to the ode stage (the student "
                         "keeps the sampler it was initialised with; `models.recipe.export` can change it for "
                         "shipping)")
    if model_options and not (stage == "regression" or (stage == "teacher" and arch == "unet")):
        raise TrainError("--model-option changes backbone v2's config: use it with `train regression` or "
                         "`train teacher --arch unet`")
    rollout_frames = (overrides or {}).get("clip_frames")
    if rollout_frames is not None and stage not in ("teacher", "regression", "dmd"):
        raise TrainError("--clip-frames sets the teacher's (or regression's) clip, or the dmd stage's rollout; the "
                         "other stages take the teacher's, and the autoencoder trains on single frames")
    dist_info = setup_distributed(device, precision)
    torch.manual_seed(cfg.seed)  # same initial weights on every rank and every fresh start
    try:
        if stage in ("autoencoder", "teacher", "regression"):
            built = _first_stage(stage, data, run, cfg, size or "S", prompts or {}, space, arch, dist_info,
                                 model_options or {})
            if init is not None and not checkpoint.exists(run / "state", built.name):
                source = _init_source(built.name, arch, init)
                tensors, meta = checkpoint.load_checkpoint(init, source,
                                                           hint="--init takes a run directory that holds it")
                identity = getattr(built.model, "identity_at_init", lambda: ())()  # backbone v2 only
                fresh = checkpoint.load_into(built.model, {k: v.float() for k, v in tensors.items()},
                                             f"{init}/{source}", may_miss=identity)
                if dist_info.main:
                    started = f"; {', '.join(fresh)} start fresh" if fresh else ""
                    progress(f"starting {built.name} from {init}/{source} (step {meta.get('step')}{started})")
            return train(built, run, cfg, dist_info, resume, progress)
        if init is not None:
            _take_from_init(init, run, dist_info)
        clips, teacher, teacher_meta = load_teacher(run, data, cfg, dist_info.device,
                                                    rollout_frames if stage == "dmd" else None)
        cfg = clips.cfg
        if stage == "ode":
            built = _ode_stage(run, clips, teacher, teacher_meta, sampler, pair_clips, dist_info,
                               _student_config(teacher, size), ode_cfg or ode.OdeConfig())
            del teacher  # the student has its own copy of the weights; the teacher is not needed any more
            return train(built, run, cfg, dist_info, resume, progress)
        if stage == "dmd":
            built = dmd.DmdStage(clips, teacher, teacher_meta, run, dmd_cfg or dmd.DmdConfig(), init)
            return train(built, run, cfg, dist_info, resume, progress)
        student, meta = load_network(init, "student", dist_info.device)
        del teacher
        return train(gen.GenerationStage(clips, student, meta, gen_cfg or gen.GenConfig(), init), run, cfg,
                     dist_info, resume, progress)
    finally:
        close_distributed(dist_info)


def _first_stage(stage: str, data: Path, run: Path, cfg: TrainConfig, size: str, prompts: dict[str, list[str]],
                 space: str, arch: str, dist_info: Distributed, model_options: dict[str, Any]) -> Stage:
    """The autoencoder, teacher or regression stage, which start from nothing (or from `--init` weights)."""
    run.mkdir(parents=True, exist_ok=True)
    if stage == "autoencoder":
        return autoencoder.AutoencoderStage(data, cfg, AEConfig(), dist_info.device)
    if arch not in ("dit", "unet"):
        raise TrainError(f"--arch must be dit or unet; got {arch!r}")
    if stage == "regression" or arch == "unet":
        if space != "pixel":
            raise TrainError("backbone v2 works on pixels; drop --space latent")
        try:
            model_cfg = unet.make_config(size, **{"clip_frames": cfg.clip_frames, **model_options})
        except (ValueError, TypeError) as exc:
            raise TrainError(f"backbone v2: {exc}") from None
        clips = RecipeData(data, run, cfg, model_cfg, prompts, dist_info.device)
        built = regression.RegressionStage(clips) if stage == "regression" else TeacherStage(clips)
        _check_frame_size(built.dataset, model_cfg, size, data)
        return built
    extra: dict[str, Any] = {"clip_frames": cfg.clip_frames}
    if space == "latent":
        ae_cfg = load_autoencoder(run).cfg
        extra.update(space="latent", down=ae_cfg.down, channels=ae_cfg.latent_channels, patch=2)
    built = TeacherStage(RecipeData(data, run, cfg, make_config(size, **extra), prompts, dist_info.device))
    _check_frame_size(built.dataset, built.dit_cfg, size, data)
    return built


def _init_source(name: str, arch: str, init: Path) -> str:
    """Which network of `init` a first stage starts from: its own, or for a backbone-v2 teacher the regression
    baseline when `init` holds no teacher. The regression is the same network trained to predict the conditional
    mean from structure alone, which is what the teacher must predict at σ = 1 (docs/model.md measures the gain)."""
    if name == "teacher" and arch == "unet" and not checkpoint.exists(init, "teacher") \
            and checkpoint.exists(init, "regression"):
        return "regression"
    return name


def _check_frame_size(dataset: Any, model_cfg: Any, size: str, data: Path) -> None:
    frame = tuple(dataset.size[::-1])
    if frame != model_cfg.frame_size:
        raise TrainError(f"size {size} models {model_cfg.frame_size[1]}x{model_cfg.frame_size[0]} frames "
                         f"but {data} holds {frame[1]}x{frame[0]}; record data at the model's size")


def _student_config(teacher: Any, size: str | None) -> Any:
    """The ODE student's config: the teacher's own, or a backbone-v2 teacher's at another named size (the same
    frames, clip and chunk)."""
    if size is None or size == teacher.cfg.size:
        return teacher.cfg
    if not isinstance(teacher.cfg, unet.UNetConfig):
        raise TrainError("--size for the ode stage picks a backbone-v2 student; this run's teacher is the DiT, whose "
                         "student is its own size")
    try:
        return unet.make_config(size, clip_frames=teacher.cfg.clip_frames, chunk_frames=teacher.cfg.chunk_frames,
                                frame_size=teacher.cfg.frame_size)
    except ValueError as exc:
        raise TrainError(f"the student: {exc}") from None


def _ode_stage(run: Path, clips: RecipeData, teacher: Any, teacher_meta: dict[str, Any],
               sampler: StudentSampler | None, pair_clips: int, dist_info: Distributed, student_cfg: Any,
               ode_cfg: ode.OdeConfig) -> ode.OdeStage:
    """Make the ODE pairs (every rank its share, then all wait for the rest) and the stage that trains on them."""
    # the student's levels mean the same noise as the teacher's: its shift is the teacher's
    sampler = replace(sampler or StudentSampler(), shift=teacher_meta["sampler"]["shift"])
    if checkpoint.exists(run, "student_ode"):  # a resumed run keeps the sampler its pairs were made for
        saved = checkpoint.load_checkpoint(run, "student_ode")[1]["sampler"]
        sampler = checkpoint.config_from_json(StudentSampler, saved)
    ode.make_ode_pairs(run, clips, teacher, teacher_meta, sampler, pair_clips, ode.PAIRS_PER_SHARD, clips.cfg.seed,
                       rank=dist_info.rank, world=dist_info.world)
    dist_info.barrier()
    return ode.OdeStage(clips, teacher, teacher_meta, sampler, run / ode.PAIRS_DIR, student_cfg, ode_cfg.regression)


def _take_from_init(init: Path, run: Path, dist_info: Distributed) -> None:
    """For `train dmd|gen --init INIT`: copy INIT's teacher and ODE student into `run` (each file written under a
    temporary name, then renamed, so an interrupted copy is never taken for a checkpoint)."""
    if not checkpoint.exists(init, "student"):
        raise TrainError(f"--init {init} holds no student; finish its dmd stage first")
    if dist_info.main:
        for name in ("teacher", "student_ode"):
            if checkpoint.exists(init, name) and not checkpoint.exists(run, name):
                run.mkdir(parents=True, exist_ok=True)
                for path in checkpoint.paths(init, name):
                    partial = run / (path.name + ".partial")
                    shutil.copy2(path, partial)
                    partial.replace(run / path.name)
    dist_info.barrier()
