"""Asymmetric distribution matching distillation (CausVid's DMD stage): the causal student learns to produce clips
the bidirectional teacher finds likely.

Per generator step:
    1. rollout   the student generates a batch of clips v2v, chunk by chunk (models.dmd.rollout), keeping the
                 graph of one denoising pass per chunk;
    2. fake      the fake score (a trainable copy of the teacher) is fitted by flow matching to those samples,
                 `fake_updates` times (CausVid: 5), so it tracks the student's current distribution;
    3. generator both scores denoise the samples re-noised to a random σ: the real score is the frozen teacher
                 with classifier-free guidance, the fake score the fitted copy. The DMD gradient
                 (x0_fake − x0_real) / mean|x0 − x0_real| pushes each sample away from what the student makes and
                 toward what the teacher would make (dmd_loss). Optional terms: a paired regression onto the
                 recorded reference frames, and a temporal term that pulls each frame toward its predecessor warped
                 along the game's motion vectors (temporal_loss: the flicker warp_ratio measures).

Called by models.distill.run_distill_stage (`restyler train dmd`). Reads RUN/teacher.* and RUN/student_ode.*;
writes RUN/student.* (EMA generator), RUN/state/dmd.* (generator, EMA, fake score, both optimizers),
RUN/logs/dmd.jsonl and RUN/samples/dmd_*.png. Exact resume and DDP follow models.train: every draw of a step comes
from (seed, step), and gradients are averaged over ranks by hand because the rollout calls step() rather than
forward(), which DistributedDataParallel would not see.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F

from models import checkpoint, flow
from models.data import denormalize_depth
from models.dit import Conditioning, VideoDiT
from models.metrics import warp_previous
from models.sampling import predict_x0
from models.train import (Distributed, TeacherStage, TrainConfig, TrainError, batch_indices, check_resumable, collate,
                          load_dit, load_optimizer, lr_at, optimizer_tensors, step_generator, update_ema)

ROLLOUTS = ("self_forcing", "parallel")


@dataclass(frozen=True)
class DmdConfig:
    """The DMD stage's own settings (the shared ones, lr, batch, steps, EMA, live in TrainConfig)."""

    fake_updates: int = 5  # fake-score updates per generator update (CausVid, DMD2's two time-scale rule)
    fake_lr: float = 4e-5
    real_guidance: float | None = None  # guidance of the real score; None: the teacher's sampler guidance
    # "self_forcing": the student's own KV-cached rollout, exactly as it streams (past chunks clean, from its own
    # outputs); "parallel": CausVid's one block-causal pass where every chunk sits at its own level next to noisy
    # earlier chunks
    rollout: str = "self_forcing"
    # weight of a paired MSE against the recorded reference frames (0: pure DMD); 0.5 measured +0.6-0.8 dB and a
    # steadier stream than pure DMD, within the spectral target (docs/distillation.md)
    regression: float = 0.5
    # weight of temporal_loss (0: off); docs/distillation.md has the measurement behind the value used
    temporal: float = 0.0
    sigma_min: float = 0.02  # range of the re-noising level of the score evaluations (before the shift)
    sigma_max: float = 0.98


# ---------------------------------------------------------------------------------------------------------------
# Pure pieces (tested on toy distributions)


def dmd_gradient(x0: torch.Tensor, x0_real: torch.Tensor, x0_fake: torch.Tensor) -> torch.Tensor:
    """DMD's per-sample gradient on the generated x0: (x0_fake − x0_real) normalised by the mean absolute distance
    from x0 to the real score's x0 (per sample, over every other dim), so its scale does not depend on σ."""
    dims = tuple(range(1, x0.dim()))
    scale = (x0 - x0_real).abs().mean(dims, keepdim=True).clamp_min(1e-6)
    return (x0_fake - x0_real) / scale


def dmd_loss(x0: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """A loss whose gradient with respect to x0 is `gradient` / x0.numel(): 0.5·‖x0 − sg(x0 − g)‖²/n."""
    return 0.5 * F.mse_loss(x0, (x0 - gradient).detach())


def temporal_loss(x0: torch.Tensor, motion: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """Mean |x0_t − warp(x0_{t−1})| over the pixels seen in both frames, with warp_ratio's own warp and depth
    test (models.metrics.warp_previous). x0 (B, F, C, H, W) in pixel space, motion (B, F, 2, H, W) pixels to the
    previous frame, depth (B, F, 1, H, W) normalised. The earlier frame is detached: a later frame is pulled to
    follow the earlier one, as a causal stream shows them, never the reverse."""
    total, count = x0.new_zeros(()), 0
    linear = denormalize_depth(depth[:, :, 0])                                   # (B, F, H, W) blocks
    for b in range(x0.shape[0]):
        for t in range(1, x0.shape[1]):
            warped, visible = warp_previous(x0[b, t - 1].detach(), motion[b, t], linear[b, t], linear[b, t - 1])
            total = total + ((x0[b, t] - warped).abs().mean(0) * visible).sum()
            count += int(visible.sum())
    return total / max(count, 1)


def fake_score_loss(fake: VideoDiT, samples: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor,
                    cond: Conditioning, min_sigma: float) -> torch.Tensor:
    """Flow-matching loss of the fake score on the student's (detached) samples: it learns to denoise what the
    student currently makes, which is what makes (x0_fake − x0_real) point from the student's distribution toward
    the teacher's."""
    pred = fake(flow.add_noise(samples, noise, sigma), sigma, cond, "bidirectional")
    return flow.flow_loss(pred, samples, sigma, min_sigma).mean()


def score_sigma(batch: int, cfg: DmdConfig, shift: float, gen: torch.Generator) -> torch.Tensor:
    """One re-noising level per clip (B,), uniform in time then shifted like the teacher's training levels."""
    t = cfg.sigma_min + (cfg.sigma_max - cfg.sigma_min) * torch.rand(batch, generator=gen)
    return flow.shift_sigma(t, shift)


# ---------------------------------------------------------------------------------------------------------------
# The student's rollout with gradients


def rollout(model: VideoDiT, incoming: torch.Tensor, cond: Conditioning, sigmas: torch.Tensor, refresh: str,
            mode: str, gen: torch.Generator, window_chunks: int, sink_chunks: int, rows: slice = slice(None),
            global_batch: int | None = None) -> torch.Tensor:
    """The student's samples (B, F, C, H, W) for `incoming` clips, differentiable through one pass per chunk.

    self_forcing: chunk by chunk against a fresh KV cache, exactly the runtime's sampler, except that each chunk
        stops at a random level (drawn from `gen`) and returns that pass's x0 with its graph (Self-Forcing's
        stochastic exit, so every level is trained). The chunk then finishes its levels without grad and writes
        the cache the way the runtime does (`refresh`), so later chunks see the past they will see when streaming.
    parallel: every chunk takes a random level; the states at each level come from no-grad block-causal passes
        over the whole clip, then one block-causal pass with grad denoises every chunk from its level at once.
    Under DDP `incoming` holds rows `rows` of a global batch of `global_batch` clips: noise is drawn for the whole
    batch and sliced, so N processes roll out exactly what one process with the whole batch would.
    """
    b, f = incoming.shape[:2]
    k = model.cfg.chunk_frames
    levels = [float(s) for s in sigmas]
    steps = len(levels) - 1
    chunks = f // k
    exits = torch.randint(steps, (chunks,), generator=gen).tolist()

    def noise(like: torch.Tensor) -> torch.Tensor:
        drawn = torch.randn((global_batch or b, *like.shape[1:]), generator=gen)[rows]
        return drawn.to(like.device, like.dtype)

    def full(level: float, frames: int) -> torch.Tensor:
        return torch.full((b, frames), level, device=incoming.device)

    if mode == "parallel":
        states = [flow.add_noise(incoming, noise(incoming), full(levels[0], f))]
        with torch.no_grad():
            for i in range(1, steps):
                x0 = model(states[-1], full(levels[i - 1], f), cond, "block_causal")
                states.append(flow.add_noise(x0, noise(x0), full(levels[i], f)))
        pick = torch.tensor(exits, device=incoming.device).repeat_interleave(k)  # (F,) level index per frame
        frame = torch.arange(f, device=incoming.device)
        x_t = torch.stack(states, 0)[pick, :, frame].transpose(0, 1)  # (B, F, C, H, W): frame j at level pick[j]
        sigma = torch.tensor(levels, device=incoming.device)[pick].expand(b, f)
        return model(x_t, sigma, cond, "block_causal")
    if mode != "self_forcing":
        raise ValueError(f"rollout must be one of {ROLLOUTS}; got {mode!r}")

    cache = model.new_cache(b, window_chunks, sink_chunks)
    out = []
    for c in range(chunks):
        frames = slice(c * k, (c + 1) * k)
        chunk_cond = cond.frames(frames)
        x = flow.add_noise(incoming[:, frames], noise(incoming[:, frames]), full(levels[0], k))
        kept = None
        for i in range(steps):
            last = i == steps - 1
            write = last and refresh == "last_step"
            if i == exits[c]:
                kept = model.step(x, full(levels[i], k), chunk_cond, cache, write=write)
                x0 = kept.detach()
            else:
                with torch.no_grad():
                    x0 = model.step(x, full(levels[i], k), chunk_cond, cache, write=write)
            if not last:
                x = flow.add_noise(x0, noise(x0), full(levels[i + 1], k))
        if refresh == "clean":
            with torch.no_grad():
                model.step(x0, full(0.0, k), chunk_cond, cache, write=True)
        out.append(kept)
    return torch.cat(out, 1)


# ---------------------------------------------------------------------------------------------------------------
# The loop


def _average_gradients(model: torch.nn.Module, dist_info: Distributed) -> None:
    if dist_info.world == 1:
        return
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= dist_info.world


def run_dmd(stage: TeacherStage, teacher: VideoDiT, teacher_meta: dict[str, Any], run: Path, cfg: TrainConfig,
            dist_info: Distributed, resume: bool, progress: Callable[[str], None] = print,
            dmd_cfg: DmdConfig | None = None, init: Path | None = None) -> dict[str, Any]:
    """The generator starts from RUN/student_ode, or from INIT/student when fine-tuning a finished student."""
    from tqdm import tqdm

    from models.distill import StudentSampler, student_grid, student_meta

    dmd_cfg = dmd_cfg or DmdConfig()
    if dmd_cfg.rollout not in ROLLOUTS:
        raise TrainError(f"--rollout must be one of {', '.join(ROLLOUTS)}; got {dmd_cfg.rollout!r}")
    if cfg.batch % dist_info.world:
        raise TrainError(f"the batch ({cfg.batch}) must divide evenly over {dist_info.world} processes")
    device = dist_info.device
    student, ode_meta = load_dit(init, "student", device) if init is not None else load_dit(run, "student_ode",
                                                                                             device)
    if dmd_cfg.temporal > 0 and student.cfg.space != "pixel":
        raise TrainError("--temporal warps frames in pixel space; a latent-space student would need them decoded")
    sampler = checkpoint.config_from_json(StudentSampler, ode_meta["sampler"])
    # a fine-tune says what it started from: its own `step` counts only its own steps
    provenance = {} if init is None else {"init": {"run": str(init), "step": ode_meta.get("step"),
                                                   "dmd": ode_meta.get("dmd"), "save_id": ode_meta.get("save_id")}}
    sigmas = sampler.sigmas()
    guidance = teacher_meta["sampler"]["guidance"] if dmd_cfg.real_guidance is None else dmd_cfg.real_guidance
    shift = teacher_meta["sampler"]["shift"]
    fake = copy.deepcopy(teacher).requires_grad_(True).train()
    student.requires_grad_(True).train()
    ema = copy.deepcopy(student).eval().requires_grad_(False)
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, betas=(0.0, 0.99), weight_decay=cfg.weight_decay)
    fake_opt = torch.optim.AdamW(fake.parameters(), lr=dmd_cfg.fake_lr, betas=(0.0, 0.99),
                                 weight_decay=cfg.weight_decay)

    state_dir = run / "state"
    start = 0
    if checkpoint.exists(state_dir, "dmd"):
        if not resume:
            raise TrainError(f"{run} already holds a dmd run; pass --resume to continue it, or choose another --out")
        tensors, meta = checkpoint.load_checkpoint(state_dir, "dmd")
        say = progress if dist_info.main else lambda _: None
        check_resumable(TrainConfig(**meta["train"]), cfg, run, say)
        check_resumable(checkpoint.config_from_json(DmdConfig, meta["dmd"]), dmd_cfg, run, say)
        for prefix, module in (("model/", student), ("ema/", ema), ("fake/", fake)):
            checkpoint.load_into(module, {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                                 "state")
        load_optimizer(opt, {k[1:]: v for k, v in tensors.items() if k.startswith("gopt/")}, meta["optimizer"])
        load_optimizer(fake_opt, {k[1:]: v for k, v in tensors.items() if k.startswith("fopt/")},
                       meta["fake_optimizer"])
        start = int(meta["step"])
        if dist_info.main:
            progress(f"resuming dmd in {run} at step {start}")

    def save(step: int) -> None:
        if not dist_info.main:
            return
        g_tensors, g_meta = optimizer_tensors(opt)
        f_tensors, f_meta = optimizer_tensors(fake_opt)
        tensors = {**{f"model/{k}": v for k, v in student.state_dict().items()},
                   **{f"ema/{k}": v for k, v in ema.state_dict().items()},
                   **{f"fake/{k}": v for k, v in fake.state_dict().items()},
                   **{f"g{k}": v for k, v in g_tensors.items()}, **{f"f{k}": v for k, v in f_tensors.items()}}
        checkpoint.save_checkpoint(state_dir, "dmd", tensors, {"step": step, "optimizer": g_meta,
                                                               "fake_optimizer": f_meta, "train": asdict(cfg),
                                                               "dmd": asdict(dmd_cfg)})
        checkpoint.save_checkpoint(run, "student", ema.state_dict(),
                                   {**student_meta(teacher_meta, student.cfg, sampler), "step": step,
                                    "train": asdict(cfg), "dmd": asdict(dmd_cfg), **provenance})

    log_path = run / "logs" / "dmd.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=cfg.steps, initial=start, desc="train dmd", disable=not dist_info.main, dynamic_ncols=True)
    sums: dict[str, float] = {}
    count = 0
    tick = time.perf_counter()
    record: dict[str, Any] = {}
    for step in range(start, cfg.steps):
        gen = step_generator(cfg.seed, step)
        rows = dist_info.rows(cfg.batch)
        items = collate([stage.dataset[i] for i in batch_indices(step, cfg.batch, len(stage.dataset),
                                                                cfg.seed)[rows]])
        paraphrase = torch.rand(cfg.batch, generator=gen)[rows]
        which = (paraphrase * stage.paraphrases[items["style_index"]]).long()
        cond = stage.conditioning(items, {"style": stage.prompt_table[items["style_index"], which]})
        incoming = stage.to_model_space(items["low"].to(device))
        lr = lr_at(step, cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        x0 = rollout(student, incoming, cond, sigmas, sampler.refresh, dmd_cfg.rollout, gen,
                     sampler.window_chunks, sampler.sink_chunks, rows, cfg.batch)
        samples = x0.detach()
        b, f = samples.shape[:2]

        fake_losses = []
        for _ in range(dmd_cfg.fake_updates):
            sigma = flow.sample_train_sigma((cfg.batch, 1), shift, gen)[rows].expand(b, f).to(device)
            noise = torch.randn((cfg.batch, *samples.shape[1:]), generator=gen)[rows].to(device)
            fake_loss = fake_score_loss(fake, samples, sigma, noise, cond, cfg.loss_min_sigma)
            fake_opt.zero_grad(set_to_none=True)
            fake_loss.backward()
            _average_gradients(fake, dist_info)
            torch.nn.utils.clip_grad_norm_(fake.parameters(), cfg.grad_clip)
            fake_opt.step()
            fake_losses.append(fake_loss.item())

        sigma = score_sigma(cfg.batch, dmd_cfg, shift, gen)[rows, None].expand(b, f).to(device)
        noise = torch.randn((cfg.batch, *samples.shape[1:]), generator=gen)[rows].to(device)
        noisy = flow.add_noise(samples, noise, sigma)
        with torch.no_grad():
            x0_real = predict_x0(teacher, noisy, sigma, cond, guidance)
            x0_fake = fake(noisy, sigma, cond, "bidirectional")
        gradient = dmd_gradient(samples, x0_real, x0_fake)
        loss = dmd_loss(x0, gradient)
        regression = torch.zeros(())
        if dmd_cfg.regression > 0:
            regression = F.mse_loss(x0, stage.to_model_space(items["style"].to(device)))
            loss = loss + dmd_cfg.regression * regression
        temporal = torch.zeros(())
        if dmd_cfg.temporal > 0:
            temporal = temporal_loss(x0, items["motion"].to(device), items["depth"].to(device))
            loss = loss + dmd_cfg.temporal * temporal
        opt.zero_grad(set_to_none=True)
        loss.backward()
        _average_gradients(student, dist_info)
        grad_norm = torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.grad_clip)
        opt.step()
        update_ema(ema, student, 0.0 if step < cfg.ema_start else cfg.ema_decay)

        values = {"dmd": loss.item() - dmd_cfg.regression * regression.item() - dmd_cfg.temporal * temporal.item(),
                  "fake": sum(fake_losses) / len(fake_losses), "regression": regression.item(),
                  "temporal": temporal.item(), "real_gap": (samples - x0_real).abs().mean().item(),
                  "grad_norm": float(grad_norm)}
        for key, value in values.items():
            sums[key] = sums.get(key, 0.0) + value
        count += 1
        bar.update(1)
        done = step + 1
        if done % cfg.log_every == 0 or done == cfg.steps:
            totals = dist_info.sum(torch.tensor([*sums.values(), count], dtype=torch.float64))
            now = time.perf_counter()
            record = {"step": done, "lr": lr, **{k: float(v / totals[-1]) for k, v in zip(sums, totals)},
                      "sec_per_step": (now - tick) / count}
            tick, count = now, 0
            sums.clear()
            if dist_info.main:
                bar.set_postfix(real_gap=f"{record['real_gap']:.4f}", fake=f"{record['fake']:.4f}")
                with log_path.open("a") as fh:
                    fh.write(json.dumps(record) + "\n")
        if done % cfg.checkpoint_every == 0 or done == cfg.steps:
            save(done)
        if dist_info.main and (done % cfg.sample_every == 0 or done == cfg.steps):
            student_grid(stage, ema, sampler, run / "samples" / f"dmd_{done:06d}.png")
    bar.close()
    if start >= cfg.steps and dist_info.main:
        progress(f"dmd in {run} already has {start} of {cfg.steps} steps; raise --steps to train more")
    return record
