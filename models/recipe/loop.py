"""The one training loop every stage of the recipe runs in: AdamW, EMA, warm-up + cosine LR, gradient clipping,
per-noise-level loss logging, sample grids, atomic checkpoints and exact resume, on one process or under torchrun.

A stage (autoencoder, teacher, ode, dmd, gen: one module each in models/recipe/) says what is trained and its loss;
this loop does everything else the same way for all of them. A stage may also train a critic beside its model
(DMD's fake score): the loop owns the critic's optimizer and checkpoint, and hands the stage a `critic_step` that
takes one optimizer step on a critic loss, so the stage decides when in its step the critic learns.

Everything of one recipe lives in one run directory:

    RUN/<name>.{safetensors,json}        EMA weights + config of each stage (autoencoder, teacher, student_ode,
                                         student): what later stages, evaluation and the runtime load
    RUN/state/<stage>.{safetensors,json} raw weights, EMA, optimizer(s), critic, step: what --resume continues from
    RUN/samples/<stage>_<step>.png       sample grids
    RUN/logs/<stage>.jsonl               one line per log interval: loss, loss per noise-level bin, lr, speed

Exact resume: the batch of step n and every random draw in it are functions of (seed, n) alone, so a run stopped
and resumed takes exactly the steps of an uninterrupted one. The same construction makes torchrun exact: every rank
reads only its own rows of the global batch but draws the whole batch's randomness and keeps its rows, and
gradients are averaged over ranks, so N processes with batch b/N each take the steps of one process with batch b.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
from torch import nn

from models.io import checkpoint
from models.io.data import collate
from models.network.precision import FP32, Precision, autocast, resolve_precision

LOSS_BINS = 5


class TrainError(RuntimeError):
    """A training run that cannot start or continue; the message says what to do."""


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2400
    batch: int = 8  # global batch (clips, or frames for the autoencoder), split across torchrun ranks
    lr: float = 4e-4
    warmup: int = 100
    schedule: str = "cosine"  # or "constant" (after warm-up)
    min_lr_ratio: float = 0.1  # cosine decays to lr·min_lr_ratio
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    ema_decay: float = 0.995  # a ~200-step horizon: recipes here run thousands of steps, not DiT's 400k
    ema_start: int = 200  # EMA copies the weights until here: early weights are not worth averaging
    seed: int = 0
    log_every: int = 25
    sample_every: int = 600
    checkpoint_every: int = 250
    # the clip stages (teacher onward)
    clip_frames: int = 8
    shift: float = 3.0  # timestep shift for training and sampling (64 tokens of 768 pixel values each)
    drop_low: float = 0.1  # rates at which each conditioning part is dropped, so the model works without it
    drop_gbuffers: float = 0.3
    drop_style: float = 0.1
    per_chunk_noise: float = 0.25  # fraction of clips whose chunks get independent noise levels (for the student)
    sample_steps: int = 50
    guidance: float = 1.5
    # the velocity loss weights a frame by 1/max(σ, this)²: small values favour low-noise detail, larger ones the
    # high-noise levels where the model must read the structure and style (docs/model.md)
    loss_min_sigma: float = 0.05


# ---------------------------------------------------------------------------------------------------------------
# Pure helpers


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate of `step`: linear warm-up, then constant or cosine down to lr·min_lr_ratio at the last step."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    if cfg.schedule == "constant":
        return cfg.lr
    progress = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def batch_indices(step: int, batch: int, n: int, seed: int) -> list[int]:
    """The dataset indices of global batch `step`: consecutive slices of a per-epoch permutation, so every item is
    seen once per epoch; a batch that crosses an epoch end takes the rest from the next permutation."""
    out: list[int] = []
    position = step * batch
    while len(out) < batch:
        epoch, offset = divmod(position, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        take = perm[offset: offset + batch - len(out)].tolist()
        out += take
        position += len(take)
    return out


def step_rng(seed: int, step: int) -> torch.Generator:
    """The random generator of every draw in one step (noise, noise levels, dropout, prompt choice)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


# ---------------------------------------------------------------------------------------------------------------
# Distributed set-up


@dataclass
class Distributed:
    """Where this process trains: its rank among `world` processes, its device, and the precision its forward
    passes run at (fp32 master weights and optimizer state either way)."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    precision: Precision = FP32

    @property
    def main(self) -> bool:
        return self.rank == 0

    def rows(self, global_batch: int) -> slice:
        per = global_batch // self.world
        return slice(self.rank * per, (self.rank + 1) * per)

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            tensor = tensor.to(self.device)
            dist.all_reduce(tensor)
        return tensor.cpu()

    def average_gradients(self, module: nn.Module) -> None:
        """Mean of every parameter's gradient over the ranks. By hand rather than DistributedDataParallel: the
        student's rollouts call step() per chunk, which DDP's forward hooks would not see."""
        if self.world == 1:
            return
        for p in module.parameters():
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= self.world

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def setup_distributed(device: str, precision: str = "fp32") -> Distributed:
    """Join the torchrun process group when WORLD_SIZE is set (gloo on CPU, nccl on CUDA); else one process.
    `precision` (models.network.precision: auto, fp32 or bf16) is resolved for the device picked."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    if use_cuda:
        # TF32 matmuls and convolutions: fp32 storage and the same code as the CPU, at tensor-core speed
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    resolved = resolve_precision(precision, "cuda" if use_cuda else "cpu")
    if world == 1:
        return Distributed(device=torch.device("cuda" if use_cuda else "cpu"), precision=resolved)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        # long waits are normal here: rank 0 writes checkpoints and sample grids while the others wait, and the
        # ode stage's teacher trajectories can take an hour on CPUs
        dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(hours=4))
    if use_cuda:
        torch.cuda.set_device(local)
    else:
        # processes share the cores: give each its fair part instead of every process taking all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", world))))
    return Distributed(rank, world, torch.device(f"cuda:{local}" if use_cuda else "cpu"), resolved)


def close_distributed(dist_info: Distributed) -> None:
    if dist_info.world > 1 and dist.is_initialized():
        # every rank reaches teardown before any tears gloo down: a rank that destroyed its group while another
        # was still finishing its last step aborted at exit now and then ("terminate called without an active
        # exception")
        dist.barrier()
        dist.destroy_process_group()


# ---------------------------------------------------------------------------------------------------------------
# What a stage plugs in


@dataclass
class StepInput:
    """One step's share of the global batch for this rank, and the step's random generator."""

    items: dict[str, torch.Tensor]  # this rank's rows of the global batch, collated
    rng: torch.Generator  # draw for the whole global batch, then keep `rows`, so every rank agrees
    rows: slice
    global_batch: int
    critic_step: Callable[[torch.Tensor], float]  # one optimizer step of the stage's critic on this loss


@dataclass
class StepLoss:
    loss: torch.Tensor  # what the model's optimizer minimises: this rank's mean
    bin_sums: torch.Tensor = field(default_factory=lambda: torch.zeros(LOSS_BINS))  # loss per noise-level bin
    bin_counts: torch.Tensor = field(default_factory=lambda: torch.zeros(LOSS_BINS))
    logged: dict[str, float] = field(default_factory=dict)  # other numbers averaged into the log


class Stage:
    """What one training stage plugs into the loop."""

    name: str
    model: nn.Module
    dataset: Any
    betas: tuple[float, float] = (0.9, 0.99)  # AdamW's, for the model and its critic
    critic: nn.Module | None = None  # trained beside the model with its own optimizer (DMD's fake score)
    critic_lr: float = 0.0

    @property
    def checkpoint_name(self) -> str:
        """The name of the weights the stage publishes in the run directory (RUN/<name>.safetensors)."""
        return self.name

    def critic_param_groups(self) -> list[dict[str, Any]]:
        """The critic's parameters and learning rate(s), as AdamW's parameter groups."""
        return [{"params": list(self.critic.parameters()), "lr": self.critic_lr}]

    def settings(self) -> Any:
        """The stage's own settings dataclass (besides TrainConfig), saved in its state and checked on resume."""
        return None

    def loss(self, step: StepInput) -> StepLoss:
        raise NotImplementedError

    def meta(self) -> dict[str, Any]:
        raise NotImplementedError

    def before_save(self, model: nn.Module) -> None:
        """Finish `model` (the EMA copy that is saved) before each checkpoint; most stages have nothing to do."""

    def sample_grid(self, model: nn.Module, path: Path) -> None:
        raise NotImplementedError


# ---------------------------------------------------------------------------------------------------------------
# Checkpoint state


def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str = "opt/") -> tuple[dict[str, torch.Tensor],
                                                                                 dict[str, Any]]:
    state = opt.state_dict()
    tensors = {f"{prefix}{i}/{k}": v for i, s in state["state"].items() for k, v in s.items()}
    return tensors, {"param_groups": state["param_groups"]}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                   prefix: str = "opt/") -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            index, name = key[len(prefix):].split("/", 1)
            state.setdefault(int(index), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


# What may differ between a run and its resumption without breaking exactness (steps only moves the LR schedule).
_RESUME_FREE = {"steps", "log_every", "sample_every", "checkpoint_every"}


def check_resumable(saved: Any, now: Any, run: Path) -> None:
    """Refuse to resume `run` when a setting that changes the steps differs between the saved config and `now`
    (TrainConfig, or a stage's own settings such as the DMD ones)."""
    changed = [f.name for f in fields(now)
               if f.name not in _RESUME_FREE and getattr(saved, f.name) != getattr(now, f.name)]
    if changed:
        details = ", ".join(f"{n}: {getattr(saved, n)} -> {getattr(now, n)}" for n in changed)
        raise TrainError(f"{run} was trained with other settings ({details}); resume with the same ones, or start "
                         "a new --out")


def stretch_note(saved: TrainConfig, now: TrainConfig, done: int) -> str | None:
    """What resuming `done` steps in with another --steps does to the cosine schedule; nothing when the run is
    already past the new --steps, since it then trains nothing (train() says so)."""
    if saved.steps != now.steps and now.schedule == "cosine" and done < now.steps:
        return f"note: --steps {saved.steps} -> {now.steps} stretches the cosine schedule of the remaining steps"
    return None


# ---------------------------------------------------------------------------------------------------------------
# The loop


def train(stage: Stage, run: Path, cfg: TrainConfig, dist_info: Distributed, resume: bool,
          progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run `stage` to cfg.steps total steps in `run`; returns the last log record."""
    from tqdm import tqdm

    if cfg.batch % dist_info.world:
        raise TrainError(f"the batch ({cfg.batch}) must divide evenly over {dist_info.world} processes")
    if len(stage.dataset) < cfg.batch:
        raise TrainError(f"the data gives {len(stage.dataset)} training windows, fewer than one batch of {cfg.batch}")
    say = progress if dist_info.main else lambda _: None
    model, critic, settings = stage.model, stage.critic, stage.settings()
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=stage.betas, weight_decay=cfg.weight_decay)
    critic_opt = None
    if critic is not None:
        critic_opt = torch.optim.AdamW(stage.critic_param_groups(), betas=stage.betas,
                                       weight_decay=cfg.weight_decay)
    state_dir = run / "state"
    start = 0
    if checkpoint.exists(state_dir, stage.name):
        if not resume:
            raise TrainError(f"{run} already holds a {stage.name} run; pass --resume to continue it, or choose "
                             "another --out")
        tensors, meta = checkpoint.load_checkpoint(state_dir, stage.name)
        if critic is not None and "critic_optimizer" not in meta:
            raise TrainError(f"{state_dir}/{stage.name} was written by an earlier version of the recipe, which kept "
                             f"the critic elsewhere; it cannot be resumed: start a new --out (or --init from the "
                             f"run's finished student)")
        saved = TrainConfig(**meta["train"])
        check_resumable(saved, cfg, run)
        if settings is not None and "stage" in meta:  # states of earlier versions did not record the settings
            check_resumable(checkpoint.config_from_json(type(settings), meta["stage"]), settings, run)
        checkpoint.load_into(model, _prefixed(tensors, "model/"), "state")
        checkpoint.load_into(ema, _prefixed(tensors, "ema/"), "state")
        load_optimizer(opt, tensors, meta["optimizer"])
        if critic is not None:
            checkpoint.load_into(critic, _prefixed(tensors, "critic/"), "state")
            load_optimizer(critic_opt, tensors, meta["critic_optimizer"], prefix="critic_opt/")
        start = int(meta["step"])
        if note := stretch_note(saved, cfg, start):
            say(note)
        say(f"resuming {stage.name} in {run} at step {start}")
    elif resume:
        say(f"nothing to resume in {run}; starting {stage.name} at step 0")
    say(f"train {stage.name}: {dist_info.precision.describe()}")

    def save(step: int) -> None:
        if not dist_info.main:
            return
        stage.before_save(ema)  # e.g. the autoencoder's latent statistics, so every saved checkpoint is usable
        opt_tensors, opt_meta = optimizer_tensors(opt)
        tensors = {**{f"model/{k}": v for k, v in model.state_dict().items()},
                   **{f"ema/{k}": v for k, v in ema.state_dict().items()}, **opt_tensors}
        meta: dict[str, Any] = {"step": step, "optimizer": opt_meta, "train": asdict(cfg)}
        if settings is not None:
            meta["stage"] = asdict(settings)
        if critic is not None:
            critic_tensors, meta["critic_optimizer"] = optimizer_tensors(critic_opt, prefix="critic_opt/")
            tensors.update({f"critic/{k}": v for k, v in critic.state_dict().items()}, **critic_tensors)
        checkpoint.save_checkpoint(state_dir, stage.name, tensors, meta)
        checkpoint.save_checkpoint(run, stage.checkpoint_name, ema.state_dict(),
                                   {**stage.meta(), "step": step, "train": asdict(cfg)})

    def critic_step(loss: torch.Tensor) -> float:
        if critic is None:
            raise TrainError(f"the {stage.name} stage has no critic to train")
        critic_opt.zero_grad(set_to_none=True)
        with torch.autocast(dist_info.device.type, enabled=False):   # called inside the step's forward autocast
            loss.backward()
        dist_info.average_gradients(critic)
        torch.nn.utils.clip_grad_norm_(critic.parameters(), cfg.grad_clip)
        critic_opt.step()
        return loss.item()

    log_path = run / "logs" / f"{stage.name}.jsonl"
    if dist_info.main:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=cfg.steps, initial=start, desc=f"train {stage.name}", disable=not dist_info.main,
               dynamic_ncols=True)
    sums, counts, losses = torch.zeros(LOSS_BINS), torch.zeros(LOSS_BINS), []
    logged: dict[str, float] = {}
    record: dict[str, Any] = {}
    tick = time.perf_counter()
    model.train()
    for step in range(start, cfg.steps):
        rows = dist_info.rows(cfg.batch)  # each rank reads only its own rows of the global batch
        indices = batch_indices(step, cfg.batch, len(stage.dataset), cfg.seed)[rows]
        items = collate([stage.dataset[i] for i in indices])
        lr = lr_at(step, cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        # the forward passes in the run's precision, over fp32 master weights; every backward outside autocast
        with autocast(dist_info.device, dist_info.precision.dtype):
            result = stage.loss(StepInput(items, step_rng(cfg.seed, step), rows, cfg.batch, critic_step))
        opt.zero_grad(set_to_none=True)
        result.loss.backward()
        dist_info.average_gradients(model)
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        update_ema(ema, model, 0.0 if step < cfg.ema_start else cfg.ema_decay)
        sums += result.bin_sums
        counts += result.bin_counts
        losses.append(result.loss.item())
        for key, value in result.logged.items():
            logged[key] = logged.get(key, 0.0) + value
        bar.update(1)
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            totals = dist_info.sum(torch.cat([sums, counts, torch.tensor([*logged.values(), sum(losses),
                                                                         len(losses)], dtype=torch.float32)]))
            bin_loss = (totals[:LOSS_BINS] / totals[LOSS_BINS: 2 * LOSS_BINS].clamp_min(1)).tolist()
            extra = totals[2 * LOSS_BINS: -2] / totals[-1]
            now = time.perf_counter()
            record = {"step": done, "loss": float(totals[-2] / totals[-1]), "lr": lr, "grad_norm": float(grad_norm),
                      **{k: float(v) for k, v in zip(logged, extra)},
                      "sec_per_step": (now - tick) / len(losses), "precision": dist_info.precision.name}
            by_sigma = {f"{i / LOSS_BINS:.1f}-{(i + 1) / LOSS_BINS:.1f}": round(v, 5)
                        for i, v in enumerate(bin_loss) if totals[LOSS_BINS + i] > 0}
            if by_sigma:
                record["loss_by_sigma"] = by_sigma
            tick = now
            sums.zero_(), counts.zero_(), losses.clear(), logged.clear()
            if dist_info.main:
                bar.set_postfix(loss=f"{record['loss']:.4f}")
                with log_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            save(done)
        if dist_info.main and (done % cfg.sample_every == 0 or done == cfg.steps):
            ema.eval()
            stage.sample_grid(ema, run / "samples" / f"{stage.name}_{done:06d}.png")
    bar.close()
    if start >= cfg.steps:
        say(f"{stage.name} in {run} already has {start} of {cfg.steps} steps; raise --steps to train more")
    return record
