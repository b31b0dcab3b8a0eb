"""Recipe stage `dmd`: asymmetric distribution matching distillation (CausVid), after the ode stage, so the causal
few-step student produces clips the bidirectional teacher finds likely.

Per step, inside the one training loop (models.recipe.loop):
    1. rollout   the student generates a batch of clips v2v, chunk by chunk (rollout), keeping the graph of one
                 denoising pass per chunk;
    2. critic    the fake score (a trainable copy of the teacher: the stage's critic) is fitted by flow matching to
                 those samples, `fake_updates` times (CausVid: 5), so it tracks the student's current distribution;
    3. generator both scores denoise the samples re-noised to a random σ: the real score is the frozen teacher
                 with classifier-free guidance, the fake score the fitted copy. The DMD gradient
                 (x0_fake − x0_real) / mean|x0 − x0_real| pushes each sample away from what the student makes and
                 toward what the teacher would make (dmd_loss). Optional terms: a paired regression onto the
                 recorded reference frames, and a temporal term that pulls each frame toward its predecessor warped
                 along the game's motion vectors (temporal_loss: the flicker warp_ratio measures).

Reads RUN/teacher.* and RUN/student_ode.* (or INIT/student when fine-tuning a finished student); writes
RUN/student.* (EMA generator), RUN/state/dmd.* (generator, EMA, critic, both optimizers), RUN/logs/dmd.jsonl and
RUN/samples/dmd_*.png.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.evaluation.metrics import warp_previous
from models.io import checkpoint
from models.io.data import denormalize_depth
from models.network import flow
from models.network.discriminator import PatchDiscriminator, discriminator_loss, generator_loss
from models.network.dit import Conditioning, VideoDiT
from models.network.loading import load_network, student_meta
from models.network.sampling import chunk_inputs, predict_x0
from models.network.streaming import StudentSampler
from models.recipe.clips import RecipeData, student_grid
from models.recipe.domain import randomise_clip
from models.recipe.loop import Stage, StepInput, StepLoss, TrainConfig, TrainError


def default_config() -> TrainConfig:
    # every step costs ~20 clip passes (rollout, 5 fake updates, both scores), so runs are short: a small LR
    # with Adam's β1 = 0 (DMD2: the generator's target moves every step), EMA over ~50 steps
    return TrainConfig(steps=120, batch=4, lr=2e-5, warmup=10, ema_decay=0.98, ema_start=20, log_every=5,
                       sample_every=60, checkpoint_every=10, drop_style=0.0)


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
    # weight of the DMD term itself (0: no fake score is trained, the other terms alone: its ablation)
    distribution: float = 1.0
    # weight of DMD2's adversarial term: a patch discriminator trained from scratch on the reference frames
    # (models.network.discriminator); 0: off. docs/distillation.md measures it
    gan: float = 0.0
    gan_lr: float = 2e-4  # the discriminator's learning rate (it starts from nothing; the fake score from the teacher)
    # the fraction of steps that stream frames only, as screen capture does: no G-buffers, so no motion, history or
    # noise carried along it (the temporal term still follows the recorded motion); 0: the game's path only
    rgb_only: float = 0.0
    # the fraction of those frames-only clips turned into captures of another game (models.recipe.domain)
    randomise: float = 0.0


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
    test (models.evaluation.metrics.warp_previous). x0 (B, F, C, H, W) in pixel space, motion (B, F, 2, H, W)
    pixels to the previous frame, depth (B, F, 1, H, W) normalised. The earlier frame is detached: a later frame is pulled to
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


def score_sigma(batch: int, cfg: DmdConfig, shift: float, rng: torch.Generator) -> torch.Tensor:
    """One re-noising level per clip (B,), uniform in time then shifted like the teacher's training levels."""
    t = cfg.sigma_min + (cfg.sigma_max - cfg.sigma_min) * torch.rand(batch, generator=rng)
    return flow.shift_sigma(t, shift)


# ---------------------------------------------------------------------------------------------------------------
# The student's rollout with gradients


def rollout(model: VideoDiT, incoming: torch.Tensor, cond: Conditioning, sigmas: torch.Tensor, refresh: str,
            mode: str, rng: torch.Generator, window_chunks: int, sink_chunks: int, rows: slice = slice(None),
            global_batch: int | None = None, noise_mode: str = "fresh", history: bool = False) -> torch.Tensor:
    """The student's samples (B, F, C, H, W) for `incoming` clips, differentiable through one pass per chunk.

    self_forcing: chunk by chunk against a fresh KV cache, exactly the runtime's sampler (its noise, "fresh",
        "fixed" or "warped" along the motion, and its warped-history input fed from its own earlier outputs), except
        that each chunk stops at a random level (drawn from `rng`) and returns that pass's x0 with its graph
        (Self-Forcing's stochastic exit, so every level is trained). The chunk then finishes its levels without
        grad and writes the cache the way the runtime does (`refresh`), so later chunks see the past they will see
        when streaming.
    parallel: every chunk takes a random level; the states at each level come from no-grad block-causal passes
        over the whole clip, then one block-causal pass with grad denoises every chunk from its level at once
        (fresh noise, no history: a chunk's history would be its own pass's output).
    Under torchrun `incoming` holds rows `rows` of a global batch of `global_batch` clips: noise is drawn for the
    whole batch and sliced, so N processes roll out exactly what one process with the whole batch would.
    """
    b, f = incoming.shape[:2]
    k = model.cfg.chunk_frames
    levels = [float(s) for s in sigmas]
    steps = len(levels) - 1
    chunks = f // k
    exits = torch.randint(steps, (chunks,), generator=rng).tolist()

    def noise(like: torch.Tensor) -> torch.Tensor:
        drawn = torch.randn((global_batch or b, *like.shape[1:]), generator=rng)[rows]
        return drawn.to(like.device, like.dtype)

    def full(level: float, frames: int) -> torch.Tensor:
        return torch.full((b, frames), level, device=incoming.device)

    if mode == "parallel":
        if history or noise_mode != "fresh":
            raise ValueError("the parallel rollout draws fresh noise and feeds no history; use self_forcing")
        cond = model.prepare(cond, b, f)  # per-frame work shared by every pass (backbone v2's structure)
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
    fixed = [noise(incoming[:, :1]) for _ in range(steps)] if noise_mode == "fixed" else None
    out = []
    for c in range(chunks):
        frames = slice(c * k, (c + 1) * k)
        chunk_cond, noises, depth = chunk_inputs(cache, cond.frames(frames), incoming[:, frames], steps, noise_mode,
                                                 history, lambda: noise(incoming[:, frames]), fixed)
        chunk_cond = model.prepare(chunk_cond, b, k)  # shared by the chunk's passes
        x = flow.add_noise(incoming[:, frames], noises[0], full(levels[0], k))
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
                x = flow.add_noise(x0, noises[i + 1], full(levels[i + 1], k))
        if refresh == "clean":
            with torch.no_grad():
                model.step(x0, full(0.0, k), chunk_cond, cache, write=True)
        cache.memory.remember(x0, depth, noises if noise_mode == "warped" else None)
        out.append(kept)
    return torch.cat(out, 1)


# ---------------------------------------------------------------------------------------------------------------
# The stage


def score_windows(x: torch.Tensor, cond: Conditioning, frames: int) -> tuple[torch.Tensor, Conditioning]:
    """Clips (B, F, ...) cut into windows of the teacher's `frames` (B·F/frames, frames, ...), with their
    conditioning: the scores judge a rollout of several chunks window by window, at the clip length they were
    trained on."""
    b, f = x.shape[:2]
    if f == frames:
        return x, cond
    n = f // frames

    def cut(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.reshape(b * n, frames, *t.shape[2:])

    def each(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.repeat_interleave(n, 0)

    return cut(x), Conditioning(low=cut(cond.low), gbuffers=cut(cond.gbuffers), style=each(cond.style),
                                keep_low=each(cond.keep_low), keep_gbuffers=each(cond.keep_gbuffers),
                                keep_style=each(cond.keep_style), motion=cut(cond.motion))


class DmdStage(Stage):
    """The generator is the student: it starts from RUN/student_ode, or from INIT/student when fine-tuning a
    finished student. The critic holds the fake score (a trainable copy of the teacher) when the DMD term is on,
    and the patch discriminator when the adversarial term is."""

    name = "dmd"
    checkpoint_name = "student"
    betas = (0.0, 0.99)  # DMD2: the generator's target moves every step, so no momentum for either network

    def __init__(self, clips: RecipeData, teacher: VideoDiT, teacher_meta: dict[str, Any], run: Path,
                 dmd_cfg: DmdConfig, init: Path | None = None):
        if dmd_cfg.rollout not in ROLLOUTS:
            raise TrainError(f"--rollout must be one of {', '.join(ROLLOUTS)}; got {dmd_cfg.rollout!r}")
        device = clips.device
        student, start_meta = (load_network(init, "student", device) if init is not None
                               else load_network(run, "student_ode", device))
        if (dmd_cfg.temporal > 0 or dmd_cfg.gan > 0) and student.cfg.space != "pixel":
            raise TrainError("--temporal and --gan work on pixels; a latent-space student would need them decoded")
        self.clips, self.teacher, self.teacher_meta, self.dmd_cfg = clips, teacher, teacher_meta, dmd_cfg
        self.cfg = clips.cfg
        if self.cfg.clip_frames % teacher.cfg.clip_frames:
            raise TrainError(f"the rollout's {self.cfg.clip_frames} frames must be whole windows of the teacher's "
                             f"{teacher.cfg.clip_frames}")
        self.dataset = clips.dataset
        lacking = [name for name in ("depth", "motion") if name not in self.dataset.buffers]
        if dmd_cfg.temporal > 0 and lacking:
            raise TrainError(f"--temporal follows the game's motion vectors and depth, and {clips.dataset.root} was "
                             f"recorded without {' and '.join(lacking)}: leave --temporal out")
        self.device = device
        self.sampler = checkpoint.config_from_json(StudentSampler, start_meta["sampler"])
        if dmd_cfg.rollout == "parallel" and (self.sampler.history or self.sampler.noise != "fresh"):
            raise TrainError("the parallel rollout draws fresh noise and feeds no history; this student streams "
                             f"with noise {self.sampler.noise!r} and history {self.sampler.history}: use self_forcing")
        self.sigmas = self.sampler.sigmas()
        guidance = dmd_cfg.real_guidance
        self.guidance = teacher_meta["sampler"]["guidance"] if guidance is None else guidance
        self.shift = teacher_meta["sampler"]["shift"]
        # a fine-tune says what it started from: its own `step` counts only its own steps
        self.provenance = {} if init is None else {"init": {"run": str(init), "step": start_meta.get("step"),
                                                            "dmd": start_meta.get("dmd"),
                                                            "save_id": start_meta.get("save_id")}}
        critics: dict[str, nn.Module] = {}
        if dmd_cfg.distribution > 0:
            critics["fake"] = copy.deepcopy(teacher).requires_grad_(True).train()
        if dmd_cfg.gan > 0:
            critics["disc"] = PatchDiscriminator().to(device).train()
        self.critic = nn.ModuleDict(critics) if critics else None
        self.model = student.requires_grad_(True).train()

    def critic_param_groups(self) -> list[dict[str, Any]]:
        lrs = {"fake": self.dmd_cfg.fake_lr, "disc": self.dmd_cfg.gan_lr}
        return [{"params": list(module.parameters()), "lr": lrs[name]} for name, module in self.critic.items()]

    def settings(self) -> DmdConfig:
        return self.dmd_cfg

    def loss(self, step: StepInput) -> StepLoss:
        dmd_cfg, clips = self.dmd_cfg, self.clips
        items, rng, rows, global_batch = step.items, step.rng, step.rows, step.global_batch
        paraphrase = torch.rand(global_batch, generator=rng)[rows]
        items, frames_only = self._capture_like(items, step)
        cond = clips.conditioning(items, {"style": clips.prompt_embeddings(items["style_index"], paraphrase)})
        if frames_only:
            cond = replace(cond, gbuffers=None, motion=None)
        incoming = clips.to_model_space(items["low"].to(self.device))
        x0 = rollout(self.model, incoming, cond, self.sigmas, self.sampler.refresh, dmd_cfg.rollout, rng,
                     self.sampler.window_chunks, self.sampler.sink_chunks, rows, global_batch, self.sampler.noise,
                     self.sampler.history)
        loss = x0.new_zeros(())
        logged: dict[str, float] = {}
        if dmd_cfg.distribution > 0:
            distribution, logged = self._distribution(x0, cond, step)
            loss = loss + dmd_cfg.distribution * distribution
        if dmd_cfg.gan > 0:
            adversarial, logged["disc"] = self._adversarial(x0, cond, clips.to_model_space(items["style"]), step)
            loss = loss + dmd_cfg.gan * adversarial
            logged["gan"] = adversarial.item()
        if dmd_cfg.regression > 0:
            regression = F.mse_loss(x0, clips.to_model_space(items["style"].to(self.device)))
            loss = loss + dmd_cfg.regression * regression
            logged["regression"] = regression.item()
        if dmd_cfg.temporal > 0:
            temporal = temporal_loss(x0, items["motion"].to(self.device), items["depth"].to(self.device))
            loss = loss + dmd_cfg.temporal * temporal
            logged["temporal"] = temporal.item()
        return StepLoss(loss, logged=logged)

    def _capture_like(self, items: dict[str, torch.Tensor], step: StepInput
                      ) -> tuple[dict[str, torch.Tensor], bool]:
        """Whether this step streams frames only (`rgb_only`, one draw for the whole batch: the rollout carries
        history and noise along the motion for all its clips or none), and its clips, a `randomise` share of them
        turned into captures of another game when it does. Draws nothing when `rgb_only` is 0, so the game's own
        recipe takes the same random numbers as before the option existed."""
        if self.dmd_cfg.rgb_only == 0:
            return items, False
        draws = torch.rand(1 + step.global_batch, generator=step.rng)
        seeds = torch.randint(2 ** 62, (step.global_batch,), generator=step.rng)[step.rows]
        if draws[0] >= self.dmd_cfg.rgb_only:
            return items, False
        low, style = items["low"].clone(), items["style"].clone()
        material = items.get("material")
        for i in torch.nonzero(draws[1:][step.rows] < self.dmd_cfg.randomise).flatten().tolist():
            low[i], style[i] = randomise_clip(items["low"][i], items["style"][i],
                                              None if material is None else material[i], int(seeds[i]))
        return {**items, "low": low, "style": style}, True

    def _distribution(self, x0: torch.Tensor, cond: Conditioning, step: StepInput
                      ) -> tuple[torch.Tensor, dict[str, float]]:
        """The DMD term: fit the fake score to the (detached) samples, then push them from what the fake score
        makes of them toward what the teacher does. The scores judge the teacher's clip length at a time."""
        rng, rows, global_batch = step.rng, step.rows, step.global_batch
        samples, cond = score_windows(x0.detach(), cond, self.teacher.cfg.clip_frames)
        windows = len(samples) // max(1, len(x0))  # windows per clip: the draws stay per global clip
        b, f = samples.shape[:2]

        def per_window(sigma: torch.Tensor) -> torch.Tensor:
            """One level per global clip -> this rank's windows, (b, f)."""
            return sigma[rows].repeat_interleave(windows, 0).expand(b, f).to(self.device)

        def window_noise() -> torch.Tensor:
            """Noise for every window of the global batch, sliced to this rank's."""
            drawn = torch.randn((global_batch * windows, *samples.shape[1:]), generator=rng)
            return drawn.view(global_batch, windows, *samples.shape[1:])[rows].flatten(0, 1).to(self.device)

        fake_losses = []
        for _ in range(self.dmd_cfg.fake_updates):
            sigma = per_window(flow.sample_train_sigma((global_batch, 1), self.shift, rng))
            fake_losses.append(step.critic_step(fake_score_loss(
                self.critic["fake"], samples, sigma, window_noise(), cond, self.cfg.loss_min_sigma)))
        sigma = per_window(score_sigma(global_batch, self.dmd_cfg, self.shift, rng)[:, None])
        noisy = flow.add_noise(samples, window_noise(), sigma)
        with torch.no_grad():
            x0_real = predict_x0(self.teacher, noisy, sigma, cond, self.guidance)
            x0_fake = self.critic["fake"](noisy, sigma, cond, "bidirectional")
        gradient = dmd_gradient(samples, x0_real, x0_fake).view(x0.shape)
        return dmd_loss(x0, gradient), {"dmd": dmd_loss(x0.detach(), gradient).item(),
                                        "fake": sum(fake_losses) / len(fake_losses),
                                        "real_gap": (samples - x0_real).abs().mean().item()}

    def _adversarial(self, x0: torch.Tensor, cond: Conditioning, reference: torch.Tensor, step: StepInput
                     ) -> tuple[torch.Tensor, float]:
        """DMD2's GAN term: one discriminator step on reference frames against the (detached) samples, then the
        student's loss for its samples to read as real."""
        disc = self.critic["disc"]
        low, gbuffers, style = cond.low, cond.gbuffers, cond.style
        real = disc(reference.to(self.device), low, gbuffers, style)
        fake = disc(x0.detach(), low, gbuffers, style)
        disc_loss = step.critic_step(discriminator_loss(real, fake))
        return generator_loss(disc(x0, low, gbuffers, style)), disc_loss

    def meta(self):
        # the styles and prompts of the data it learnt (another game's, when fine-tuning a finished student on it)
        return {**student_meta(self.teacher_meta, self.model.cfg, self.sampler), "prompts": self.clips.prompts,
                "styles": self.clips.dataset.style_names, "dmd": asdict(self.dmd_cfg),
                **self.provenance}

    @torch.no_grad()
    def sample_grid(self, model, path):
        student_grid(self.clips, model, self.sampler, path)
