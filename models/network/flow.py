"""Rectified flow as small pure functions: noising, the timestep shift, sampler schedules, the training loss and
classifier-free guidance. Every model in the project predicts the clean sample x0 (one convention at the wrapper
boundary, as in CausVid); velocities are derived from x0 here and nowhere else.

Legend: σ (sigma) is the noise level in [0, 1]; x_σ = (1 − σ)·x0 + σ·ε; σ = 0 is data, σ = 1 pure noise.
Tensors are (B, F, C, H, W) and σ is per frame, (B, F), broadcast over (C, H, W).
"""

from __future__ import annotations

from typing import Sequence

import torch


def _broadcast(sigma: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(B, F) noise levels -> (B, F, 1, 1, 1) so they broadcast over a (B, F, C, H, W) sample."""
    return sigma.reshape(*sigma.shape, *([1] * (x.dim() - sigma.dim())))


def shift_sigma(t: torch.Tensor | float, shift: float) -> torch.Tensor | float:
    """Map a uniform time t in [0, 1] to a noise level that spends more steps at high noise.

    σ = shift·t / (1 + (shift − 1)·t): shift = 1 is the identity; larger shifts suit high-resolution or
    high-dimensional tokens, whose structure survives more noise (SD3, CausVid use shifts of 3 to 8).
    """
    return shift * t / (1 + (shift - 1) * t)


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x_σ = (1 − σ)·x0 + σ·ε."""
    s = _broadcast(sigma, x0)
    return (1 - s) * x0 + s * noise


def velocity_from_x0(x_t: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """v = ε − x0 = (x_σ − x0) / σ; undefined at σ = 0, where the caller never asks for it."""
    return (x_t - x0) / _broadcast(sigma, x_t)


def x0_from_velocity(x_t: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """x0 = x_σ − σ·v (the inverse of velocity_from_x0)."""
    return x_t - _broadcast(sigma, x_t) * v


def euler_step(x_t: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
    """One deterministic Euler step of the flow ODE from σ to σ_next, written through x0 so it is exact at
    σ_next = 0: x_next = x0 + (σ_next / σ)·(x_σ − x0)."""
    ratio = _broadcast(sigma_next / sigma, x_t)
    return x0 + ratio * (x_t - x0)


def sample_train_sigma(shape: Sequence[int], shift: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Training noise levels: logit-normal times (SD3's choice, more weight mid-range) pushed through the shift."""
    t = torch.sigmoid(torch.randn(tuple(shape), generator=generator))
    return shift_sigma(t, shift)


def flow_loss(x0_pred: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor, min_sigma: float = 0.05) -> torch.Tensor:
    """Velocity-space MSE of an x0 prediction, per sample and frame, (B, F).

    ||v_pred − v||² = ||x0_pred − x0||² / σ²: the x0-predicting network is trained with the velocity loss, which
    weights low noise levels up (JiT, "Back to Basics"); σ is floored so near-clean frames do not dominate.
    """
    weight = 1.0 / sigma.clamp_min(min_sigma) ** 2
    return (x0_pred - x0).pow(2).flatten(2).mean(-1) * weight


def teacher_sigmas(steps: int, shift: float) -> torch.Tensor:
    """steps + 1 decreasing noise levels from 1 to 0 for the teacher's Euler sampler."""
    t = torch.linspace(1.0, 0.0, steps + 1)
    return shift_sigma(t, shift)


def student_sigmas(timesteps: Sequence[int], shift: float) -> torch.Tensor:
    """The student's few noise levels from timesteps on a 0..1000 scale (CausVid: [1000, 757, 522], shift 8),
    followed by 0. The first entry is t*, where a v2v stream starts: the incoming frame noised to it."""
    if not timesteps or any(not 0 < t <= 1000 for t in timesteps) or list(timesteps) != sorted(timesteps, reverse=True):
        raise ValueError(f"student timesteps must be decreasing values in (0, 1000]; got {list(timesteps)}")
    t = torch.tensor([*timesteps, 0], dtype=torch.float32) / 1000.0
    return shift_sigma(t, shift)


def guided_x0(x0_cond: torch.Tensor, x0_uncond: torch.Tensor, scale: float) -> torch.Tensor:
    """Classifier-free guidance on x0: scale 1 is the conditional prediction, larger pushes further from the
    unconditional one."""
    return x0_uncond + scale * (x0_cond - x0_uncond)


def loss_by_sigma_bin(loss: torch.Tensor, sigma: torch.Tensor, bins: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of loss and count per σ bin: (bins,), (bins,). Sums (not means) so they add up across steps and ranks."""
    loss, sigma = loss.detach().float().cpu(), sigma.detach().cpu()  # a few numbers: logged on the CPU
    index = (sigma.flatten() * bins).long().clamp(0, bins - 1)
    sums = torch.zeros(bins).index_add_(0, index, loss.flatten())
    counts = torch.zeros(bins).index_add_(0, index, torch.ones_like(index, dtype=torch.float32))
    return sums, counts
