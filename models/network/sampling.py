"""Samplers: the teacher's many-step Euler sampler over a whole clip (with classifier-free guidance), and the
student's few-step sampler for one chunk against its KV cache.

Called by training (sample grids), evaluation, ODE-pair generation and the streaming runtime (through
models.network.streaming). Both are built from the pure functions of models.network.flow.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import torch

from models.network import flow
from models.network.dit import Conditioning, VideoDiT
from models.network.kv_cache import KVCache
from models.network.motion import chunk_history, chunk_motion, chunk_noise


def predict_x0(model: VideoDiT, x_t: torch.Tensor, sigma: torch.Tensor, cond: Conditioning, guidance: float,
               mode: str = "bidirectional") -> torch.Tensor:
    """The model's x0 with classifier-free guidance on the style (one batched pass for both branches)."""
    if guidance == 1.0 or cond.style is None:
        return model(x_t, sigma, cond, mode)
    b = len(cond.style)
    ones = torch.ones(b, dtype=torch.bool, device=cond.style.device)

    def twice(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else torch.cat([t, t])

    both = Conditioning(low=twice(cond.low), gbuffers=twice(cond.gbuffers), style=twice(cond.style),
                        keep_low=twice(cond.keep_low), keep_gbuffers=twice(cond.keep_gbuffers),
                        keep_style=torch.cat([ones if cond.keep_style is None else cond.keep_style, ~ones]),
                        history=twice(cond.history), keep_history=twice(cond.keep_history), motion=twice(cond.motion),
                        structure=None if cond.structure is None else [twice(x) for x in cond.structure])
    x0 = model(torch.cat([x_t, x_t]), torch.cat([sigma, sigma]), both, mode)
    x0_cond, x0_uncond = x0.chunk(2)
    return flow.guided_x0(x0_cond, x0_uncond, guidance)


def teacher_levels(steps: int, shift: float, start_sigma: float = 1.0,
                 extra: torch.Tensor | None = None) -> list[float]:
    """The teacher's decreasing noise levels from `start_sigma` to 0: its `steps`-step grid cut at the start,
    with every level of `extra` (the student's levels, for ODE pairs) inserted so the trajectory passes exactly
    through them."""
    levels = {float(s) for s in flow.teacher_sigmas(steps, shift) if float(s) < start_sigma - 1e-6}
    levels |= {float(s) for s in (extra if extra is not None else []) if float(s) <= start_sigma + 1e-6}
    levels |= {float(start_sigma), 0.0}
    return sorted(levels, reverse=True)


@torch.no_grad()
def sample_teacher(model: VideoDiT, cond: Conditioning, shape: tuple[int, ...], steps: int = 50, shift: float = 3.0,
                   guidance: float = 1.5, generator: torch.Generator | None = None,
                   device: torch.device | str = "cpu", keep_sigmas: torch.Tensor | None = None,
                   start: torch.Tensor | None = None, start_sigma: float = 1.0,
                   ) -> tuple[torch.Tensor, dict[float, torch.Tensor]]:
    """Sample a clip of `shape` (B, F, C, H, W) with the Euler sampler over the teacher's `steps`-step grid.

    By default it starts from pure noise at σ = 1. With `start` (a state at `start_sigma`, e.g. the incoming
    frames noised to the student's t*: the v2v trajectories of ODE pairs) it runs only the grid below that level.
    Returns the clean sample and the state at every σ in `keep_sigmas` (inserted into the grid, so the states sit
    exactly at those levels; σ = 0 is the clean sample)."""
    levels = teacher_levels(steps, shift, start_sigma, keep_sigmas)
    cond = model.prepare(cond, *shape[:2])  # per-frame work shared by every step (backbone v2's structure)
    x = (torch.randn(shape, generator=generator) if start is None else start.cpu()).to(device)
    wanted = {round(float(s), 6) for s in (keep_sigmas if keep_sigmas is not None else [])}
    kept: dict[float, torch.Tensor] = {}
    b, f = shape[:2]
    for sigma, sigma_next in zip(levels[:-1], levels[1:]):
        if round(sigma, 6) in wanted:
            kept[round(sigma, 6)] = x.clone()
        s = torch.full((b, f), sigma, device=device)
        x0 = predict_x0(model, x, s, cond, guidance)
        x = flow.euler_step(x, x0, s, torch.full((b, f), sigma_next, device=device))
    if 0.0 in wanted:
        kept[0.0] = x.clone()
    return x, kept


def chunk_inputs(cache: KVCache, cond: Conditioning, like: torch.Tensor, levels: int, noise: str,
                 history: bool, draw: Callable[[], torch.Tensor], fixed: list[torch.Tensor] | None = None
                 ) -> tuple[Conditioning, list[torch.Tensor], torch.Tensor | None]:
    """What a chunk (`like`, (B, K, C, H, W)) starts from besides its incoming frames: its conditioning with the
    warped history when the student reads it, the noise of each of its `levels` ("fresh" from `draw()`, "fixed"
    broadcast from `fixed`, or "warped" along the motion from the stream's memory), and its linear depth (for
    the memory's update; None unless the history or the noise follows the motion, so other students skip it).
    The sampler and the training rollouts both start their chunks here."""
    follows_motion = history or noise == "warped"
    motion, depth = chunk_motion(cond.motion, cond.gbuffers) if follows_motion else (None, None)
    memory = cache.memory
    if history:
        cond = replace(cond, history=chunk_history(memory, motion, depth), keep_history=None, structure=None)
    if noise == "fixed":
        noises = [n.to(like.device, like.dtype).expand_as(like) for n in fixed]
    elif noise == "warped":
        noises = [chunk_noise(None if memory.noise is None else memory.noise[i], memory.depth, motion, depth, draw)
                  for i in range(levels)]
    elif noise == "fresh":
        noises = [draw() for _ in range(levels)]
    else:
        raise ValueError(f"sampler noise must be 'fresh', 'fixed' or 'warped'; got {noise!r}")
    return cond, noises, depth


@torch.no_grad()
def sample_student_chunk(model: VideoDiT, incoming: torch.Tensor, cond: Conditioning, cache: KVCache,
                         sigmas: torch.Tensor, refresh: str = "clean", generator: torch.Generator | None = None,
                         noise: list[torch.Tensor] | None = None, noise_mode: str | None = None,
                         history: bool = False) -> torch.Tensor:
    """One chunk of the causal student's few-step v2v sampler; returns x0 (B, K, C, H, W) and advances `cache`.

    1. start: the incoming chunk (model space) noised to t* = sigmas[0] (SDEdit);
    2. denoise: at each level predict x0 against the cache, then re-noise x0 with fresh noise to the next level
       (CausVid's sampler; not an ODE step, so a few large steps stay on the data manifold);
    3. refresh the cache with this chunk's K/V: "clean" reruns the chunk at σ = 0 (CausVid: one extra pass, the
       cache holds what a clean past looks like), "last_step" keeps the K/V of the last denoising pass
       (StreamDiffusionV2: saves that pass).
    `sigmas` is flow.student_sigmas(...): decreasing levels ending in 0. `noise_mode` says where each level's noise
    comes from (chunk_inputs): "fresh" draws; "fixed", the stream's `noise` (one tensor per level, reused for every
    chunk and frame: the detail the noise seeds stays put on screen); "warped", the stream's last noise carried
    along the motion (the detail stays on its surface). `history` feeds the student the warped last output
    (a student trained with it). The chunk's last frame goes to the cache's memory for the next chunk.
    """
    if refresh not in ("clean", "last_step"):
        raise ValueError(f"refresh must be 'clean' or 'last_step'; got {refresh!r}")
    b, k = incoming.shape[:2]
    levels = [float(s) for s in sigmas]
    if levels[-1] != 0.0 or len(levels) < 2:
        raise ValueError(f"student sigmas must end in 0 and have at least one level; got {levels}")
    noise_mode = noise_mode or ("fresh" if noise is None else "fixed")
    cond, noises, depth = chunk_inputs(cache, cond, incoming, len(levels) - 1, noise_mode, history,
                                       lambda: torch.randn(incoming.shape, generator=generator).to(incoming),
                                       noise)

    def level(sigma: float) -> torch.Tensor:
        """The noise level `sigma` for every frame of the chunk, (B, K)."""
        return torch.full((b, k), sigma, device=incoming.device)

    cond = model.prepare(cond, b, k)  # per-frame work shared by every step (backbone v2's structure)
    x = flow.add_noise(incoming, noises[0], level(levels[0]))
    for i, sigma in enumerate(levels[:-1]):
        last = i == len(levels) - 2
        x0 = model.step(x, level(sigma), cond, cache, write=last and refresh == "last_step")
        if not last:
            x = flow.add_noise(x0, noises[i + 1], level(levels[i + 1]))
    if refresh == "clean":
        model.step(x0, level(0.0), cond, cache, write=True)
    cache.memory.remember(x0, depth, noises if noise_mode == "warped" else None)
    return x0
