"""Training stages `autoencoder` and `teacher`: one loop with AdamW, EMA, warm-up + cosine LR, gradient clipping,
per-noise-level loss logging, sample grids, atomic checkpoints and exact resume, under DDP when launched by torchrun.

Called by `restyler train` (renderer.cli), which passes the recorded data directory, the run directory and the
style prompts. Everything of one recipe lives in one run directory:

    RUN/autoencoder.{safetensors,json}   EMA weights + config, what later stages and the runtime load
    RUN/teacher.{safetensors,json}
    RUN/state/<stage>.{safetensors,json} raw weights, EMA, optimizer, step: what --resume continues from
    RUN/samples/<stage>_<step>.png       sample grids
    RUN/logs/<stage>.jsonl               one line per log interval: loss, loss per noise-level bin, lr, speed

Exact resume: the batch of step n and every random draw in it are functions of (seed, n) alone, so a run stopped
and resumed takes exactly the steps of an uninterrupted one. The same construction makes DDP exact: every rank
reads only its own rows of the global batch but draws the whole batch's randomness and keeps its rows, so N
processes with batch b/N each take the steps of one process with batch b.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from models import checkpoint, flow
from models.autoencoder import AEConfig, Autoencoder, reconstruction_loss
from models.data import ClipDataset
from models.dit import Conditioning, DiTConfig, VideoDiT, make_config
from models.sampling import sample_teacher

STAGES = ("autoencoder", "teacher")
LOSS_BINS = 5


class TrainError(RuntimeError):
    """A training run that cannot start or continue; the message says what to do."""


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2400
    batch: int = 8  # global batch (clips for the teacher, frames for the autoencoder), split across DDP ranks
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
    # teacher only
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


def default_train_config(stage: str) -> TrainConfig:
    if stage == "autoencoder":
        return TrainConfig(steps=2000, batch=16, lr=1e-3, warmup=50, ema_decay=0.998, ema_start=100)
    return TrainConfig()


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


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of every random draw in one step (noise, noise levels, dropout, prompt choice)."""
    return torch.Generator().manual_seed(seed * 1_000_003 + step)


# ---------------------------------------------------------------------------------------------------------------
# Distributed set-up


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

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


def setup_distributed(device: str) -> Distributed:
    """Join the torchrun process group when WORLD_SIZE is set (gloo on CPU, nccl on CUDA); else one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if device == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    if world == 1:
        return Distributed(device=torch.device("cuda" if use_cuda else "cpu"))
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
    return Distributed(rank, world, torch.device(f"cuda:{local}" if use_cuda else "cpu"))


# ---------------------------------------------------------------------------------------------------------------
# Stages: what is trained, its loss and its samples


def gbuffers_of(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(B, F, 4, H, W): log depth and normals, the G-buffer channels the model reads."""
    return torch.cat([batch["depth"], batch["normals"]], 2)


class Stage:
    """What one training stage needs to plug into the loop."""

    name: str
    model: nn.Module
    dataset: Any

    @property
    def checkpoint_name(self) -> str:
        """The name of the weights the stage publishes in the run directory (RUN/<name>.safetensors)."""
        return self.name

    def loss(self, model: nn.Module, items: dict[str, torch.Tensor], gen: torch.Generator, rows: slice,
             global_batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(mean loss, per-bin loss sums, per-bin counts) of this rank's `items`, which are rows `rows` of the
        global batch: random draws are made for the whole global batch from `gen`, then sliced, so that every
        rank agrees with what one process would draw."""
        raise NotImplementedError

    def meta(self) -> dict[str, Any]:
        raise NotImplementedError

    def before_save(self, model: nn.Module) -> None:
        """Finish `model` (the EMA copy that is saved) before each checkpoint; most stages have nothing to do."""

    def sample_grid(self, model: nn.Module, path: Path) -> None:
        raise NotImplementedError


class AutoencoderStage(Stage):
    name = "autoencoder"

    def __init__(self, data: Path, cfg: TrainConfig, ae_cfg: AEConfig, device: torch.device):
        # one-frame windows from every style and the low-detail pass alike: the runtime encodes both
        self.dataset = ClipDataset(data, clip_frames=1)
        self.ae_cfg = ae_cfg
        self.model = Autoencoder(ae_cfg).to(device)
        self.device = device

    def loss(self, model, items, gen, rows, global_batch):
        # per item the style frame or, one time in four, its low-detail frame: the runtime encodes both
        use_low = (torch.rand(global_batch, generator=gen) < 0.25)[rows]
        x = torch.where(use_low[:, None, None, None], items["low"][:, 0], items["style"][:, 0]).to(self.device)
        recon = model(x)
        loss = reconstruction_loss(recon, x)
        sums, counts = torch.zeros(LOSS_BINS), torch.zeros(LOSS_BINS)
        return loss, sums, counts

    def meta(self):
        return {"kind": "autoencoder", "config": asdict(self.ae_cfg)}

    @torch.no_grad()
    def before_save(self, model: Autoencoder) -> None:
        """Measure the latent statistics on a fixed sample of training frames."""
        idx = batch_indices(0, min(256, len(self.dataset)), len(self.dataset), 12345)
        items = collate([self.dataset[i] for i in idx])
        frames = torch.cat([items["style"][:, 0], items["low"][:, 0]]).to(self.device)
        model.fit_latent_stats(frames)

    @torch.no_grad()
    def sample_grid(self, model, path):
        items = collate([self.dataset[i] for i in range(0, len(self.dataset), max(1, len(self.dataset) // 8))][:8])
        x = items["style"][:, 0].to(self.device)
        save_grid(path, [x, model(x).clamp(-1, 1)])


class TeacherStage(Stage):
    name = "teacher"

    def __init__(self, data: Path, run: Path, cfg: TrainConfig, dit_cfg: DiTConfig, prompts: dict[str, list[str]],
                 device: torch.device):
        self.cfg = cfg
        self.dataset = ClipDataset(data, clip_frames=cfg.clip_frames)
        missing = [s for s in self.dataset.style_names if not prompts.get(s)]
        if missing:
            raise TrainError(f"no training prompts for styles {missing} of {data}")
        self.prompts = {s: list(prompts[s]) for s in self.dataset.style_names}
        self.device = device
        self.dit_cfg = dit_cfg
        self.autoencoder = load_autoencoder(run, device) if dit_cfg.space == "latent" else None
        if self.autoencoder is not None and self.autoencoder.cfg.down != dit_cfg.down:
            raise TrainError(f"the autoencoder in {run} is {self.autoencoder.cfg.down}x down but the model config "
                             f"expects {dit_cfg.down}x")
        from models.prompt import PromptEncoder

        encoder = PromptEncoder.shared()
        # (styles, paraphrases, 384); styles with fewer paraphrases repeat their first ones
        most = max(len(p) for p in self.prompts.values())
        self.prompt_table = torch.stack([encoder.encode([p[i % len(p)] for i in range(most)])
                                         for p in self.prompts.values()])
        self.paraphrases = torch.tensor([len(p) for p in self.prompts.values()])
        self.model = VideoDiT(dit_cfg).to(device)

    def to_model_space(self, frames: torch.Tensor) -> torch.Tensor:
        if self.autoencoder is None:
            return frames
        with torch.no_grad():
            return self.autoencoder.encode_video(frames)

    def to_pixels(self, x: torch.Tensor) -> torch.Tensor:
        if self.autoencoder is None:
            return x
        with torch.no_grad():
            return self.autoencoder.decode_video(x)

    def draw(self, b: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """Every random choice of a step for a global batch of b clips (so ranks agree): noise levels, noise,
        conditioning dropout, and a uniform number per clip that picks its prompt paraphrase."""
        cfg, k, f = self.cfg, self.dit_cfg.chunk_frames, self.cfg.clip_frames
        per_clip = flow.sample_train_sigma((b, 1), cfg.shift, gen).expand(b, f)
        per_chunk = flow.sample_train_sigma((b, f // k), cfg.shift, gen).repeat_interleave(k, 1)
        independent = torch.rand(b, 1, generator=gen) < cfg.per_chunk_noise
        paraphrase = torch.rand(b, generator=gen)
        c, h, w = self.dit_cfg.channels, *self.dit_cfg.sample_size
        return {
            "sigma": torch.where(independent, per_chunk, per_clip),
            "noise": torch.randn((b, f, c, h, w), generator=gen),
            "keep_low": torch.rand(b, generator=gen) >= cfg.drop_low,
            "keep_gbuffers": torch.rand(b, generator=gen) >= cfg.drop_gbuffers,
            "keep_style": torch.rand(b, generator=gen) >= cfg.drop_style,
            "paraphrase": paraphrase,
        }

    def conditioning(self, items: dict[str, torch.Tensor], draws: dict[str, torch.Tensor] | None = None,
                     style: torch.Tensor | None = None) -> Conditioning:
        d = self.device
        draws = draws or {}
        return Conditioning(
            low=self.to_model_space(items["low"].to(d)),
            gbuffers=gbuffers_of(items).to(d),
            style=(draws["style"] if style is None else style).to(d),
            keep_low=None if "keep_low" not in draws else draws["keep_low"].to(d),
            keep_gbuffers=None if "keep_gbuffers" not in draws else draws["keep_gbuffers"].to(d),
            keep_style=None if "keep_style" not in draws else draws["keep_style"].to(d),
        )

    def loss(self, model, items, gen, rows, global_batch):
        draws = {k: v[rows] for k, v in self.draw(global_batch, gen).items()}
        style_index = items["style_index"]
        which = (draws["paraphrase"] * self.paraphrases[style_index]).long()
        draws["style"] = self.prompt_table[style_index, which]
        x0 = self.to_model_space(items["style"].to(self.device))
        sigma = draws["sigma"].to(self.device)
        x_t = flow.add_noise(x0, draws["noise"].to(self.device), sigma)
        pred = model(x_t, sigma, self.conditioning(items, draws), "bidirectional")
        per_frame = flow.flow_loss(pred, x0, sigma, self.cfg.loss_min_sigma)  # (B, F)
        sums, counts = flow.loss_by_sigma_bin(per_frame.cpu(), sigma.cpu(), LOSS_BINS)
        return per_frame.mean(), sums, counts

    def meta(self):
        return {"kind": "teacher", "config": asdict(self.dit_cfg), "prompts": self.prompts,
                "styles": self.dataset.style_names,
                "sampler": {"steps": self.cfg.sample_steps, "shift": self.cfg.shift, "guidance": self.cfg.guidance}}

    def grid_items(self) -> dict[str, torch.Tensor]:
        """One fixed clip per style, spread over the data."""
        n_styles = len(self.dataset.style_indices)
        windows = len(self.dataset) // n_styles
        picks = [((i * 7919) % windows) * n_styles + i % n_styles for i in range(min(4, n_styles * windows))]
        return collate([self.dataset[i] for i in picks])

    @torch.no_grad()
    def sample_grid(self, model, path):
        items = self.grid_items()
        style = self.prompt_table[items["style_index"], 0]
        cond = self.conditioning(items, style=style)
        b, f = items["style"].shape[:2]
        shape = (b, f, self.dit_cfg.channels, *self.dit_cfg.sample_size)
        x, _ = sample_teacher(model, cond, shape, self.cfg.sample_steps, self.cfg.shift, self.cfg.guidance,
                              torch.Generator().manual_seed(0), self.device)
        frames = slice(0, f, max(1, f // 4))
        rows = [items["low"][:, frames], self.to_pixels(x).clamp(-1, 1)[:, frames].cpu(), items["style"][:, frames]]
        save_grid(path, [r.flatten(0, 1) for r in rows], columns=len(range(*frames.indices(f))))


def load_autoencoder(run: Path, device: torch.device | str = "cpu") -> Autoencoder:
    tensors, meta = checkpoint.load_checkpoint(run, "autoencoder",
                                               hint=f"train it first with `restyler train autoencoder --out {run}`")
    model = Autoencoder(checkpoint.config_from_json(AEConfig, meta["config"]))
    checkpoint.load_into(model, tensors, f"{run}/autoencoder.safetensors")
    return model.to(device).eval()


def load_dit(run: Path | str, name: str, device: torch.device | str = "cpu") -> tuple[VideoDiT, dict[str, Any]]:
    """A trained video transformer (`teacher`, `student_ode`, `student`) and its metadata, fp32, eval mode."""
    stage = {"student_ode": "ode", "student": "dmd"}.get(name, name)  # the stage that writes these weights
    tensors, meta = checkpoint.load_checkpoint(run, name, hint=f"train it with `restyler train {stage} --out {run}`")
    model = VideoDiT(checkpoint.config_from_json(DiTConfig, meta["config"]))
    checkpoint.load_into(model, {k: v.float() for k, v in tensors.items()}, f"{run}/{name}.safetensors")
    return model.to(device).eval(), meta


# ---------------------------------------------------------------------------------------------------------------
# Images


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def save_grid(path: Path, rows: list[torch.Tensor], columns: int | None = None) -> None:
    """Write a PNG: `rows` are image groups (N, 3, H, W) in [-1, 1], each laid out in `columns` columns (default
    all N in one line); groups are interleaved row by row so a sample sits beside its reference."""
    from PIL import Image

    n = rows[0].shape[0]
    columns = columns or n
    h, w = rows[0].shape[-2:]
    lines = []
    for start in range(0, n, columns):
        for group in rows:
            line = group[start: start + columns]
            lines.append(torch.cat(list(line), -1))  # (3, H, columns·W)
    image = torch.cat(lines, -2)
    pixels = ((image.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(np.ascontiguousarray(pixels)).save(tmp)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------------------------
# The loop


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = opt.state_dict()
    tensors = {f"opt/{i}/{k}": v for i, s in state["state"].items() for k, v in s.items()}
    return tensors, {"param_groups": state["param_groups"]}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("opt/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


# What may differ between a run and its resumption without breaking exactness (steps only moves the LR schedule).
_RESUME_FREE = {"steps", "log_every", "sample_every", "checkpoint_every"}


def check_resumable(saved: Any, now: Any, run: Path, say: Callable[[str], None]) -> None:
    """Refuse to resume `run` when a setting that changes the steps differs between the saved config and `now`
    (TrainConfig, or a stage's own config dataclass such as the DMD settings)."""
    changed = [f.name for f in fields(now)
               if f.name not in _RESUME_FREE and getattr(saved, f.name) != getattr(now, f.name)]
    if changed:
        details = ", ".join(f"{n}: {getattr(saved, n)} -> {getattr(now, n)}" for n in changed)
        raise TrainError(f"{run} was trained with other settings ({details}); resume with the same ones, or start "
                         "a new --out")
    if isinstance(now, TrainConfig) and saved.steps != now.steps and now.schedule == "cosine":
        say(f"note: --steps {saved.steps} -> {now.steps} stretches the cosine schedule of the remaining steps")


def train(stage: Stage, run: Path, cfg: TrainConfig, dist_info: Distributed, resume: bool,
          progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run `stage` to cfg.steps total steps in `run`; returns the last log record."""
    import copy

    from tqdm import tqdm

    if cfg.batch % dist_info.world:
        raise TrainError(f"the batch ({cfg.batch}) must divide evenly over {dist_info.world} processes")
    if len(stage.dataset) < cfg.batch:
        raise TrainError(f"the data gives {len(stage.dataset)} training windows, fewer than one batch of {cfg.batch}")
    model = stage.model
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.99), weight_decay=cfg.weight_decay)
    state_dir = run / "state"
    start = 0
    if checkpoint.exists(state_dir, stage.name):
        if not resume:
            raise TrainError(f"{run} already holds a {stage.name} run; pass --resume to continue it, or choose "
                             "another --out")
        tensors, meta = checkpoint.load_checkpoint(state_dir, stage.name)
        check_resumable(TrainConfig(**meta["train"]), cfg, run, progress if dist_info.main else lambda _: None)
        checkpoint.load_into(model, {k[6:]: v for k, v in tensors.items() if k.startswith("model/")}, "state")
        checkpoint.load_into(ema, {k[4:]: v for k, v in tensors.items() if k.startswith("ema/")}, "state")
        load_optimizer(opt, tensors, meta["optimizer"])
        start = int(meta["step"])
        if dist_info.main:
            progress(f"resuming {stage.name} in {run} at step {start}")
    elif resume and dist_info.main:
        progress(f"nothing to resume in {run}; starting {stage.name} from scratch")

    net: nn.Module = model
    if dist_info.world > 1:
        net = DistributedDataParallel(model, device_ids=[dist_info.device.index] if dist_info.device.type == "cuda"
                                      else None)

    def save(step: int) -> None:
        if not dist_info.main:
            return
        stage.before_save(ema)  # e.g. the autoencoder's latent statistics, so every saved checkpoint is usable
        opt_tensors, opt_meta = optimizer_tensors(opt)
        tensors = {**{f"model/{k}": v for k, v in model.state_dict().items()},
                   **{f"ema/{k}": v for k, v in ema.state_dict().items()}, **opt_tensors}
        checkpoint.save_checkpoint(state_dir, stage.name, tensors,
                                   {"step": step, "optimizer": opt_meta, "train": asdict(cfg)})
        checkpoint.save_checkpoint(run, stage.checkpoint_name, ema.state_dict(),
                                   {**stage.meta(), "step": step, "train": asdict(cfg)})

    log_path = run / "logs" / f"{stage.name}.jsonl"
    if dist_info.main:
        log_path.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=cfg.steps, initial=start, desc=f"train {stage.name}", disable=not dist_info.main,
               dynamic_ncols=True)
    sums, counts, losses = torch.zeros(LOSS_BINS), torch.zeros(LOSS_BINS), []
    record: dict[str, Any] = {}
    tick = time.perf_counter()
    model.train()
    for step in range(start, cfg.steps):
        gen = step_generator(cfg.seed, step)
        rows = dist_info.rows(cfg.batch)  # each rank reads only its own rows of the global batch
        indices = batch_indices(step, cfg.batch, len(stage.dataset), cfg.seed)[rows]
        items = collate([stage.dataset[i] for i in indices])
        lr = lr_at(step, cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        loss, bin_sums, bin_counts = stage.loss(net, items, gen, rows, cfg.batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        update_ema(ema, model, 0.0 if step < cfg.ema_start else cfg.ema_decay)
        sums += bin_sums
        counts += bin_counts
        losses.append(loss.item())
        bar.update(1)
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            totals = dist_info.sum(torch.cat([sums, counts, torch.tensor([sum(losses), len(losses)])]))
            bin_loss = (totals[:LOSS_BINS] / totals[LOSS_BINS: 2 * LOSS_BINS].clamp_min(1)).tolist()
            now = time.perf_counter()
            record = {"step": done, "loss": float(totals[-2] / totals[-1]), "lr": lr, "grad_norm": float(grad_norm),
                      "loss_by_sigma": {f"{i / LOSS_BINS:.1f}-{(i + 1) / LOSS_BINS:.1f}": round(v, 5)
                                        for i, v in enumerate(bin_loss) if totals[LOSS_BINS + i] > 0},
                      "sec_per_step": (now - tick) / len(losses)}
            tick = now
            sums.zero_(), counts.zero_(), losses.clear()
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
    if start >= cfg.steps and dist_info.main:
        progress(f"{stage.name} in {run} already has {start} of {cfg.steps} steps; raise --steps to train more")
    return record


def run_stage(stage_name: str, data: Path, run: Path, size: str, prompts: dict[str, list[str]],
              steps: int | None = None, batch: int | None = None, resume: bool = False, device: str = "auto",
              overrides: dict[str, Any] | None = None, init: Path | None = None) -> dict[str, Any]:
    """Entry point of `restyler train autoencoder|teacher` (also under torchrun). `init` starts a fresh run from
    the weights of the same stage in another run directory (fine-tuning with other settings)."""
    if stage_name not in STAGES:
        raise TrainError(f"unknown stage {stage_name!r}; this version trains {', '.join(STAGES)}")
    dist_info = setup_distributed(device)
    cfg = default_train_config(stage_name)
    known = {f.name for f in fields(TrainConfig)}
    cfg = replace(cfg, **{k: v for k, v in (overrides or {}).items() if k in known})
    if steps is not None:
        cfg = replace(cfg, steps=steps)
    if batch is not None:
        cfg = replace(cfg, batch=batch)
    torch.manual_seed(cfg.seed)  # same initial weights on every rank and every fresh start
    run.mkdir(parents=True, exist_ok=True)
    if stage_name == "autoencoder":
        stage: Stage = AutoencoderStage(data, cfg, AEConfig(), dist_info.device)
    else:
        space = (overrides or {}).get("space", "pixel")
        extra: dict[str, Any] = {"clip_frames": cfg.clip_frames}
        if space == "latent":
            ae_cfg = load_autoencoder(run).cfg
            extra.update(space="latent", down=ae_cfg.down, channels=ae_cfg.latent_channels, patch=2)
        stage = TeacherStage(data, run, cfg, make_config(size, **extra), prompts, dist_info.device)
        frame = tuple(stage.dataset.size[::-1])
        if frame != stage.dit_cfg.frame_size:
            raise TrainError(f"size {size} models {stage.dit_cfg.frame_size[1]}x{stage.dit_cfg.frame_size[0]} frames "
                             f"but {data} holds {frame[1]}x{frame[0]}; record data at the model's size")
    if init is not None and not checkpoint.exists(run / "state", stage.name):
        tensors, meta = checkpoint.load_checkpoint(init, stage.name, hint="--init takes a run directory that holds it")
        checkpoint.load_into(stage.model, {k: v.float() for k, v in tensors.items()}, f"{init}/{stage.name}")
        if dist_info.main:
            print(f"starting {stage.name} from {init} (step {meta.get('step')})")
    try:
        return train(stage, run, cfg, dist_info, resume)
    finally:
        if dist_info.world > 1 and dist.is_initialized():
            dist.destroy_process_group()
