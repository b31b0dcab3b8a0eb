"""CausVid distillation of the bidirectional teacher into the few-step block-causal student:

    ode   ODE initialisation. The teacher's Euler sampler runs v2v trajectories on recorded clips (from the
          incoming frames noised to the student's t*, conditioned on low-detail frames, G-buffers and a style
          prompt) and keeps the states at the student's levels (RUN/ode_pairs/). The student, a block-causal copy of
          the teacher's weights, learns to map each kept state to the trajectory's clean endpoint.
          Writes RUN/student_ode.{safetensors,json}: the `no_dmd` row of the evaluation.
    dmd   Asymmetric distribution matching (models.dmd): the student generates chunk by chunk, the frozen
          bidirectional teacher is the real score, a trainable copy of it the fake score.
          Writes RUN/student.{safetensors,json}.

Called by `restyler train ode|dmd` through run_distill_stage (which also runs `train gen`, models.gen_stage, the
same way). Both stages read RUN/teacher.* written by the teacher stage and share the loop conventions of
models.train (exact resume, EMA, atomic checkpoints, logs).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from models import checkpoint, flow
from models.atomic import write_atomic
from models.data import ClipDataset
from models.dit import Conditioning, DiTConfig, VideoDiT
from models.kv_cache import KVCache
from models.sampling import sample_student_chunk, sample_teacher
from models.train import (LOSS_BINS, Stage, TeacherStage, TrainConfig, TrainError, batch_indices, collate, load_dit,
                          save_grid, step_generator)

PAIRS_DIR = "ode_pairs"
PAIRS_PER_SHARD = 8  # clips per teacher batch and per shard file


@dataclass(frozen=True)
class StudentSampler:
    """How the student streams; saved with its weights, read by evaluation and the runtime.

    timesteps  CausVid-style 0..1000 levels; the first is t*, where the incoming chunk is noised to (SDEdit).
               The default starts at 1000 (pure noise; the structure channels carry the incoming frame): noising
               the low-detail frame to a lower t* biases the teacher toward its flat colours (docs/distillation.md)
    shift      the teacher's timestep shift, so the levels mean the same noise as in the teacher's training
    refresh    "clean" (rerun the chunk at σ = 0 to write the cache) or "last_step" (keep the last pass's K/V)
    window_chunks, sink_chunks  the rolling KV window; 1 sink + 2 window chunks + the new chunk = the teacher's
               8 training frames for K = 2, so a stream never sees positions it was not trained on
    """

    timesteps: tuple[int, ...] = (1000, 500)
    shift: float = 3.0
    refresh: str = "clean"
    window_chunks: int = 2
    sink_chunks: int = 1
    # "fixed": one noise image per level drawn when a stream starts and reused for every chunk and frame, so the
    # detail the noise seeds stays put on screen; "fresh": new noise per chunk (CausVid). docs/distillation.md
    noise: str = "fresh"
    # empty the cache every this many chunks (0: never): a long stream then restarts its context before errors fed
    # back through it accumulate (drift), at the price of one context-free chunk each time (docs/distillation.md)
    reset_every: int = 0

    def due_reset(self, cache: KVCache) -> bool:
        """Whether the stream's cache should be emptied before its next chunk."""
        return self.reset_every > 0 and cache.appended >= self.reset_every

    def stream_noise(self, like: torch.Tensor, generator: torch.Generator | None) -> list[torch.Tensor] | None:
        """The fixed noise of a new stream for chunks shaped like `like` (B, K, C, H, W), or None for fresh."""
        if self.noise == "fresh":
            return None
        if self.noise != "fixed":
            raise ValueError(f"sampler noise must be 'fresh' or 'fixed'; got {self.noise!r}")
        b, _, *rest = like.shape
        return [torch.randn((b, 1, *rest), generator=generator) for _ in self.timesteps]

    def sigmas(self) -> torch.Tensor:
        return flow.student_sigmas(self.timesteps, self.shift)


def student_meta(teacher_meta: dict[str, Any], cfg: DiTConfig, sampler: StudentSampler) -> dict[str, Any]:
    return {"kind": "student", "config": asdict(cfg), "prompts": teacher_meta["prompts"],
            "styles": teacher_meta["styles"], "sampler": asdict(sampler), "teacher_sampler": teacher_meta["sampler"]}


def load_student(run: Path | str, name: str = "student", device: torch.device | str = "cpu",
                 ) -> tuple[VideoDiT, StudentSampler, dict[str, Any]]:
    model, meta = load_dit(run, name, device)
    return model, checkpoint.config_from_json(StudentSampler, meta["sampler"]), meta


# ---------------------------------------------------------------------------------------------------------------
# Streaming a clip with the student (training grids, evaluation)


@torch.no_grad()
def stream_clip(model: VideoDiT, incoming: torch.Tensor, cond: Conditioning, sampler: StudentSampler,
                generator: torch.Generator | None = None, cache: KVCache | None = None,
                per_frame: bool = False, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Restyle a clip (B, F, C, H, W) chunk by chunk through the KV cache, as the runtime does; F a multiple of K.
    `per_frame` empties the cache before every chunk (the student as an image model: the `per_frame` row).
    A caller that passes `cache` keeps streaming into it (e.g. a 3000-frame drift stream in pieces), and passes
    the stream's `noise` too when the sampler's noise is fixed."""
    b, f = incoming.shape[:2]
    k = model.cfg.chunk_frames
    if f % k:
        raise ValueError(f"a clip of {f} frames does not split into chunks of {k}")
    cache = cache or model.new_cache(b, sampler.window_chunks, sampler.sink_chunks)
    sigmas = sampler.sigmas()
    if noise is None:
        noise = sampler.stream_noise(incoming[:, :k], generator)
    out = []
    for start in range(0, f, k):
        if per_frame:
            cache.reset()
        chunk = slice(start, start + k)
        out.append(stream_chunk(model, incoming[:, chunk], cond.frames(chunk), sampler, cache, generator, noise,
                                sigmas))
    return torch.cat(out, 1)


@torch.no_grad()
def stream_chunk(model: VideoDiT, incoming: torch.Tensor, cond: Conditioning, sampler: StudentSampler,
                 cache: KVCache, generator: torch.Generator | None = None, noise: list[torch.Tensor] | None = None,
                 sigmas: torch.Tensor | None = None) -> torch.Tensor:
    """One chunk of a stream under `sampler`'s policy: the scheduled cache reset, then its few steps and refresh
    (models.sampling.sample_student_chunk). Evaluation (stream_clip) and the runtime (renderer.engine) both stream
    through this, so the product runs exactly what was scored."""
    if sampler.due_reset(cache):
        cache.reset()
    sigmas = sampler.sigmas() if sigmas is None else sigmas
    return sample_student_chunk(model, incoming, cond, cache, sigmas, sampler.refresh, generator, noise)


@torch.no_grad()
def recache(model: VideoDiT, cache: KVCache, chunks: list[tuple[torch.Tensor, Conditioning]]) -> None:
    """Rebuild `cache` from the clean outputs of the chunks it holds, in order (sinks first, then the window),
    under new conditioning: after a style switch the past then reads as the new style, so the next chunk is not
    pulled back toward the old one (LongLive's re-encoding of the recent window on a prompt change). Costs one
    pass per held chunk, once per switch."""
    if len(chunks) != cache.chunks:
        raise ValueError(f"recache takes the {cache.chunks} chunks the cache holds; got {len(chunks)}")
    cache.reset()
    for x0, cond in chunks:
        model.step(x0, torch.zeros(x0.shape[:2], device=x0.device), cond, cache, write=True)


def held_chunks(cache: KVCache, history: list) -> list:
    """Which of a stream's chunks (`history`, oldest first, every chunk since the reset) the cache holds now:
    the sinks, then the most recent window."""
    sinks = history[: cache.sink_chunks]
    window = history[cache.sink_chunks:][-cache.window_chunks:] if cache.chunks > len(sinks) else []
    return (sinks + window)[: cache.chunks]


# ---------------------------------------------------------------------------------------------------------------
# ODE pairs


def _pairs_settings(teacher_meta: dict[str, Any], sampler: StudentSampler, clip_frames: int, seed: int,
                    teacher_steps: int) -> dict[str, Any]:
    return {"teacher_step": teacher_meta.get("step"), "teacher_sampler": teacher_meta["sampler"],
            "teacher_steps": teacher_steps,
            "timesteps": list(sampler.timesteps), "shift": sampler.shift, "clip_frames": clip_frames, "seed": seed}


@torch.no_grad()
def make_ode_pairs(run: Path, stage: TeacherStage, teacher: VideoDiT, teacher_meta: dict[str, Any],
                   sampler: StudentSampler, clips: int, batch: int, seed: int, teacher_steps: int = 25,
                   rank: int = 0, world: int = 1, progress=print) -> Path:
    """Write `clips` v2v teacher trajectories to RUN/ode_pairs/, one shard per `batch` clips (rank r of `world`
    processes makes shards r, r + world, ...). The settings go to manifest.json before the first shard, so a
    rerun with other settings is refused and an interrupted generation resumes with the shards already there.
    Each shard holds, per clip:
        index, seed, start, style_index  which recorded window it came from (checked again when training reads it)
        style   (384,) the prompt embedding used
        states  (L, F, C, H, W) fp16 the trajectory at the student's levels (L = len(timesteps); the first is the
                start, the incoming frames noised to t*)
        target  (F, C, H, W) fp16 the trajectory's clean endpoint.
    `teacher_steps` sets the Euler grid over [0, 1] (only its part below t* runs): 25 instead of the teacher's 50
    halves the cost, the largest of the recipe on a CPU (docs/distillation.md)."""
    from tqdm import tqdm

    out = run / PAIRS_DIR
    out.mkdir(parents=True, exist_ok=True)
    settings = {**_pairs_settings(teacher_meta, sampler, stage.cfg.clip_frames, seed, teacher_steps),
                "clips": clips, "batch": batch}
    manifest = out / "manifest.json"
    if manifest.is_file():
        if json.loads(manifest.read_text())["settings"] != settings:
            raise TrainError(f"{out} holds ODE pairs made with other settings; delete it or choose another --out")
    elif rank == 0:
        shards = [f"pairs_{n:04d}.safetensors" for n in range((clips + batch - 1) // batch)]
        text = json.dumps({"settings": settings, "shards": shards}, indent=2) + "\n"
        write_atomic(manifest, lambda tmp: Path(tmp).write_text(text))
    indices = batch_indices(0, clips, len(stage.dataset), seed + 7)
    levels = sampler.sigmas()[:-1]
    shift, guidance = teacher_meta["sampler"]["shift"], teacher_meta["sampler"]["guidance"]
    bar = tqdm(total=clips, desc="ode pairs", dynamic_ncols=True, disable=rank != 0)
    for n, first in enumerate(range(0, clips, batch)):
        name = f"pairs_{n:04d}.safetensors"
        rows = indices[first: first + batch]
        if n % world != rank or (out / name).is_file():
            bar.update(len(rows))
            continue
        gen = step_generator(seed, 10_000_000 + n)
        items = collate([stage.dataset[i] for i in rows])
        which = (torch.rand(len(rows), generator=gen) * stage.paraphrases[items["style_index"]]).long()
        style = stage.prompt_table[items["style_index"], which]
        cond = stage.conditioning(items, style=style)
        incoming = stage.to_model_space(items["low"].to(stage.device))
        t_star = float(levels[0])
        start = flow.add_noise(incoming, torch.randn(incoming.shape, generator=gen).to(incoming.device),
                               torch.full(incoming.shape[:2], t_star, device=incoming.device))
        x, kept = sample_teacher(teacher, cond, tuple(incoming.shape), teacher_steps, shift, guidance, gen,
                                 stage.device, keep_sigmas=levels, start=start, start_sigma=t_star)
        states = torch.stack([kept[round(float(s), 6)] for s in levels], 1)
        tensors = {"index": torch.tensor(rows), "seed": items["seed"], "start": items["start"],
                   "style_index": items["style_index"], "style": style.float().cpu().contiguous(),
                   "states": states.half().cpu().contiguous(), "target": x.half().cpu().contiguous()}
        write_atomic(out / name, lambda tmp, tensors=tensors: save_file(tensors, tmp))
        bar.update(len(rows))
    bar.close()
    return out


class OdePairs(torch.utils.data.Dataset):
    """The recorded clip windows the pairs were made from, each with its stored trajectory states and target."""

    def __init__(self, pairs: Path, dataset: ClipDataset):
        manifest = json.loads((pairs / "manifest.json").read_text())
        self.dataset = dataset
        self.rows: list[dict[str, torch.Tensor]] = []
        for name in manifest["shards"]:
            if not (pairs / name).is_file():
                raise TrainError(f"{pairs / name} is missing; rerun `restyler train ode` with --resume to make it")
            shard = load_file(str(pairs / name))
            for i in range(len(shard["index"])):
                self.rows.append({k: v[i] for k, v in shard.items()})
        for row in self.rows[:: max(1, len(self.rows) // 16)]:  # the recorded data must still be what it was
            item = dataset.windows[int(row["index"]) // len(dataset.style_indices)]
            if (item[1], item[2]) != (int(row["seed"]), int(row["start"])):
                raise TrainError(f"the ODE pairs in {pairs} were made from other recorded data than "
                                 f"{dataset.root} holds now; delete {pairs} to make them again")

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        row = self.rows[i]
        return {**self.dataset[int(row["index"])], "pair_style": row["style"], "states": row["states"].float(),
                "target": row["target"].float()}


class OdeStage(Stage):
    """Regress the block-causal student onto the teacher's clean endpoints from its kept states. Every chunk of a
    clip takes its own level (CausVid's ODE initialisation), so a chunk learns to denoise next to earlier chunks at
    any of the student's levels."""

    name = "ode"
    checkpoint_name = "student_ode"

    def __init__(self, teacher_stage: TeacherStage, teacher_meta: dict[str, Any], sampler: StudentSampler,
                 pairs: Path, cfg: TrainConfig):
        self.teacher_stage = teacher_stage
        self.teacher_meta = teacher_meta
        self.sampler = sampler
        self.cfg = cfg
        self.dataset = OdePairs(pairs, teacher_stage.dataset)
        self.model = teacher_stage.model  # holds the teacher's weights: the student starts from them
        self.device = teacher_stage.device

    def loss(self, model, items, gen, rows, global_batch):
        stage, k = self.teacher_stage, self.model.cfg.chunk_frames
        states = items["states"].to(self.device)  # (b, L, F, C, H, W)
        b, levels, f = states.shape[:3]
        pick = torch.randint(levels, (global_batch, f // k), generator=gen)[rows].repeat_interleave(k, 1)  # (b, F)
        keep_low = (torch.rand(global_batch, generator=gen) >= self.cfg.drop_low)[rows]
        keep_gbuffers = (torch.rand(global_batch, generator=gen) >= self.cfg.drop_gbuffers)[rows]
        x_t = states.gather(1, pick.to(self.device)[:, None, :, None, None, None].expand(
            b, 1, f, *states.shape[3:])).squeeze(1)
        sigma = self.sampler.sigmas()[pick].to(self.device)
        # keep_style is explicit (always kept: the student bakes guidance in) so every parameter gets a gradient,
        # as DistributedDataParallel requires
        draws = {"style": items["pair_style"], "keep_low": keep_low, "keep_gbuffers": keep_gbuffers,
                 "keep_style": torch.ones(b, dtype=torch.bool)}
        pred = model(x_t, sigma, stage.conditioning(items, draws), "block_causal")
        per_frame = flow.flow_loss(pred, items["target"].to(self.device), sigma, self.cfg.loss_min_sigma)
        sums, counts = flow.loss_by_sigma_bin(per_frame.cpu(), sigma.cpu(), LOSS_BINS)
        return per_frame.mean(), sums, counts

    def meta(self):
        return student_meta(self.teacher_meta, self.teacher_stage.dit_cfg, self.sampler)

    @torch.no_grad()
    def sample_grid(self, model, path):
        student_grid(self.teacher_stage, model, self.sampler, path)


@torch.no_grad()
def student_grid(stage: TeacherStage, model: VideoDiT, sampler: StudentSampler, path: Path) -> None:
    """low-detail | streamed student | reference, for one fixed clip per style."""
    items = stage.grid_items()
    style = stage.prompt_table[items["style_index"], 0]
    cond = stage.conditioning(items, style=style)
    out = stream_clip(model, stage.to_model_space(items["low"].to(stage.device)), cond, sampler,
                      torch.Generator().manual_seed(0))
    f = items["style"].shape[1]
    frames = slice(0, f, max(1, f // 4))
    rows = [items["low"][:, frames], stage.to_pixels(out).clamp(-1, 1)[:, frames].cpu(), items["style"][:, frames]]
    save_grid(path, [r.flatten(0, 1) for r in rows], columns=len(range(*frames.indices(f))))


def default_distill_config(stage: str) -> TrainConfig:
    if stage == "ode":
        # a short fine-tune of the teacher's weights: small LR, EMA from early on
        return TrainConfig(steps=400, batch=8, lr=1e-4, warmup=20, ema_decay=0.99, ema_start=50, sample_every=200,
                           checkpoint_every=50, drop_style=0.0)
    if stage == "gen":
        from models.gen_stage import default_gen_config

        return default_gen_config()
    if stage == "dmd":
        # every step costs ~20 clip passes (rollout, 5 fake updates, both scores), so runs are short: a small LR
        # with Adam's β1 = 0 (DMD2: the generator's target moves every step), EMA over ~50 steps
        return TrainConfig(steps=120, batch=4, lr=2e-5, warmup=10, ema_decay=0.98, ema_start=20, log_every=5,
                           sample_every=60, checkpoint_every=10, drop_style=0.0)
    raise TrainError(f"no distillation stage {stage!r}")


def teacher_stage_for(run: Path, data: Path, cfg: TrainConfig, device: torch.device
                      ) -> tuple[TeacherStage, VideoDiT, dict[str, Any]]:
    """The teacher stage's data and prompt plumbing around the trained teacher of `run` (frozen, eval mode)."""
    teacher, meta = load_dit(run, "teacher", device)
    cfg = replace(cfg, clip_frames=teacher.cfg.clip_frames, shift=meta["sampler"]["shift"])
    stage = TeacherStage(data, run, cfg, teacher.cfg, meta["prompts"], device)
    frame = tuple(stage.dataset.size[::-1])
    if frame != teacher.cfg.frame_size:
        raise TrainError(f"the teacher in {run} models {teacher.cfg.frame_size[1]}x{teacher.cfg.frame_size[0]} "
                         f"frames but {data} holds {frame[1]}x{frame[0]}")
    stage.model.load_state_dict(teacher.state_dict())
    return stage, teacher.requires_grad_(False), meta


def _take_from_init(stage_name: str, init: Path, run: Path, dist_info: Any) -> None:
    """For `train dmd|gen --init INIT`: copy INIT's teacher and ODE student into `run` (each file written under a
    temporary name, then renamed, so an interrupted copy is never taken for a checkpoint)."""
    if stage_name not in ("dmd", "gen"):
        raise TrainError("--init in distillation fine-tunes a finished student: use it with `train dmd` or "
                         "`train gen`")
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
    if dist_info.world > 1:
        torch.distributed.barrier()


def run_distill_stage(stage_name: str, data: Path, run: Path, steps: int | None = None, batch: int | None = None,
                      resume: bool = False, device: str = "auto", overrides: dict[str, Any] | None = None,
                      sampler: StudentSampler | None = None, pair_clips: int = 128, dmd_cfg: Any = None,
                      progress=print, init: Path | None = None, gen_cfg: Any = None) -> dict[str, Any]:
    """Entry point of `restyler train ode|dmd|gen` (also under torchrun). `init` (dmd, gen; gen requires it):
    fine-tune the finished student of another run with new settings; `run` gets that run's teacher and ODE
    student, so it is a complete model directory of its own. `gen_cfg`: the gen stage's settings
    (models.gen_stage)."""
    from dataclasses import fields

    from models.train import setup_distributed, train

    if stage_name == "gen" and init is None:
        raise TrainError("`train gen` fine-tunes a finished student: pass --init RUN (e.g. models/weights/default)")
    if stage_name != "ode" and sampler is not None:
        raise TrainError("--timesteps, --refresh, --noise and --reset-every belong to the ode stage (the student "
                         "keeps the sampler it was initialised with; `models.export` can change it for shipping)")
    dist_info = setup_distributed(device)
    cfg = default_distill_config(stage_name)
    known = {f.name for f in fields(TrainConfig)}
    cfg = replace(cfg, **{k: v for k, v in (overrides or {}).items() if k in known and v is not None})
    if steps is not None:
        cfg = replace(cfg, steps=steps)
    if batch is not None:
        cfg = replace(cfg, batch=batch)
    torch.manual_seed(cfg.seed)
    try:
        if init is not None:
            _take_from_init(stage_name, init, run, dist_info)
        stage, teacher, teacher_meta = teacher_stage_for(run, data, cfg, dist_info.device)
        if stage_name == "ode":
            # the student's levels mean the same noise as the teacher's: its shift is the teacher's
            sampler = replace(sampler or StudentSampler(), shift=teacher_meta["sampler"]["shift"])
            if checkpoint.exists(run, "student_ode"):  # a resumed run keeps the sampler its pairs were made for
                sampler = checkpoint.config_from_json(StudentSampler,
                                                      checkpoint.load_checkpoint(run, "student_ode")[1]["sampler"])
            # every rank makes its share of the pairs, then all wait for the rest
            make_ode_pairs(run, stage, teacher, teacher_meta, sampler, pair_clips, PAIRS_PER_SHARD, cfg.seed,
                           rank=dist_info.rank, world=dist_info.world, progress=progress)
            if dist_info.world > 1:
                torch.distributed.barrier()
            del teacher
            return train(OdeStage(stage, teacher_meta, sampler, run / PAIRS_DIR, cfg), run, cfg, dist_info, resume,
                         progress)
        if stage_name == "gen":
            from models.gen_stage import GenConfig, GenerationStage

            student, meta = load_dit(init, "student", dist_info.device)
            del teacher
            return train(GenerationStage(stage, student, meta, gen_cfg or GenConfig(), init), run, cfg, dist_info,
                         resume, progress)
        from models.dmd import run_dmd

        return run_dmd(stage, teacher, teacher_meta, run, cfg, dist_info, resume, progress, dmd_cfg, init)
    finally:
        if dist_info.world > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
