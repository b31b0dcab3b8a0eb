"""The causal student's other modes (CausVid): text-to-video, image-to-video and video extension.

All three are one causal rollout through the student's KV cache with no incoming frames (the structure channels
are absent, as the student saw them dropped in its generation training, models.recipe.gen) and a different start
in the cache:

    text-to-video    an empty cache
    image-to-video   the image, written into the cache as a clean chunk (the image repeated over K frames)
    extension        the last whole chunks of the video, written into the cache in order

Then every chunk is drawn in three steps:

    1. start: pure noise for the first chunk of a text-to-video clip and at a prompt switch; otherwise the
       previous frame noised to `carry` (SDEdit from it, so the layout carries over and the chunk redraws it)
    2. denoise: Euler steps over the teacher's shifted grid against the cache
    3. refresh: the chunk is written back into the cache clean (CausVid's refresh: a generated past has nothing
       else to anchor it, so it must read as clean as the given context did)

Streams of any length roll through the cache's window; its sinks keep the start, so an animated image stays
anchored to the image. A prompt can change at any chunk: by default the cache is emptied there and the chunk
starts from noise, a cut to the new style (GenerationSampler.on_switch; re-encoding the held chunks under the new
prompt, models.network.streaming.recache, is the other choice, measured worse).

Restyling runs the distilled one or two levels; generation has no incoming frame to lean on and takes more, smaller
steps. Both `steps` and `carry` are measured per model (models.evaluation.generation, docs/generation.md) and shipped
in its JSON.

Called by `restyler generate` (renderer/generate.py), the generation training stage's sample grids, and tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from models.network import flow
from models.network.dit import Conditioning, VideoDiT
from models.network.sampling import teacher_levels
from models.network.streaming import held_chunks, recache


@dataclass(frozen=True)
class GenerationSampler:
    """How the student generates: Euler steps over the teacher's shifted `steps`-step grid (all of it from pure
    noise; from `carry`, only its part below that level: 3 of 8 steps at 0.6), the level `carry` a chunk that
    follows a frame starts at, and the cache's size (the student's own sinks and rolling window)."""
    steps: int = 8
    shift: float = 3.0
    window_chunks: int = 2
    sink_chunks: int = 1
    # σ at which a chunk that follows a frame starts, from that frame noised (SDEdit from the previous frame);
    # 1.0 starts every chunk from pure noise. Below 1 the layout carries over and the chunk only redraws it.
    carry: float = 1.0
    # what a prompt switch does to the cache: "reset" empties it (a cut to a new scene in the new style);
    # "recache" re-encodes the held chunks under the new prompt, meant to carry the scene over, but the shipped
    # student then keeps drawing the old colours (docs/generation.md)
    on_switch: str = "reset"

    def levels(self, start: float = 1.0) -> list[float]:
        """Decreasing noise levels from `start` to 0 on the `steps`-step shifted grid (cut at `start`)."""
        return teacher_levels(self.steps, self.shift, start)


def no_structure(style: torch.Tensor) -> Conditioning:
    """A prompt alone: no low-detail frame, no G-buffers (the model's learned 'absent' embeddings stand in)."""
    return Conditioning(style=style)


@torch.no_grad()
def generate(model: VideoDiT, sampler: GenerationSampler, style_at: Callable[[int], torch.Tensor], frames: int,
             context: torch.Tensor | None = None, generator: torch.Generator | None = None,
             progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """`frames` new frames (1, frames, C, H, W) in model space after the clean `context` (1, F0, C, H, W), or
    from nothing when it is None.

    `style_at(frame)` gives the (1, 384) prompt embedding in force at a frame. A chunk takes the prompt in force
    at its last frame, so a switch applies from the chunk that holds its frame, and what it does to the cache is
    `sampler.on_switch`. `progress(frames_done)` is called after each chunk."""
    if frames < 1:
        raise ValueError(f"frames must be at least 1; got {frames}")
    if sampler.on_switch not in ("reset", "recache"):
        raise ValueError(f"on_switch must be 'reset' or 'recache'; got {sampler.on_switch!r}")
    k = model.cfg.chunk_frames
    device = model.out.weight.device
    cache = model.new_cache(1, sampler.window_chunks, sampler.sink_chunks)
    # the clean chunks the cache can still hold (its sinks, then the most recent window), oldest first: the carry
    # reads the last one, a re-encoding on a switch all of them; older ones are dropped, so memory stays flat
    history: list[torch.Tensor] = []
    style = style_at(min(k, frames) - 1)  # the first chunk's prompt; the context is encoded under it too

    def level(sigma: float) -> torch.Tensor:
        return torch.full((1, k), sigma, device=device)

    if context is not None:
        # only what the cache can hold matters; the oldest of it becomes the sink
        given = model.prepare(no_structure(style), 1, k)
        for chunk in context_chunks(context.to(device), k)[-cache.max_chunks:]:
            model.step(chunk, level(0.0), given, cache, write=True)
            history.append(chunk)
    shape = (1, k, model.cfg.channels, *model.cfg.sample_size)
    out = []
    for start in range(0, frames, k):
        now = style_at(min(start + k, frames) - 1)
        switched = not torch.equal(now, style)
        if switched and sampler.on_switch == "reset":
            cache.reset()
            history = []
        elif switched and cache.chunks:
            recache(model, cache, [(x0, no_structure(now)) for x0 in held_chunks(cache, history)])
        style = now
        cond = model.prepare(no_structure(style), 1, k)  # per-frame work shared by the chunk's steps
        x = torch.randn(shape, generator=generator).to(device)
        # a chunk after a prompt switch starts from noise: a carried frame would hold the old style's colours
        start_sigma = sampler.carry if history and not switched else 1.0
        if start_sigma < 1.0:  # the previous frame, noised to `carry`, in every frame of the chunk (SDEdit)
            x = flow.add_noise(history[-1][:, -1:].expand(shape), x, level(start_sigma))
        levels = sampler.levels(start_sigma)
        for sigma, sigma_next in zip(levels[:-1], levels[1:]):
            x0 = model.step(x, level(sigma), cond, cache)
            x = flow.euler_step(x, x0, level(sigma), level(sigma_next))
        model.step(x, level(0.0), cond, cache, write=True)  # the clean refresh
        history.append(x)
        if len(history) > cache.max_chunks:
            del history[cache.sink_chunks]  # the oldest chunk past the sinks has left the cache's window
        out.append(x)
        if progress is not None:
            progress(min(start + k, frames))
    return torch.cat(out, 1)[:, :frames]


def context_chunks(context: torch.Tensor, k: int) -> list[torch.Tensor]:
    """Clean frames (1, F0, ...) as whole chunks, oldest first: a context shorter than a chunk (an image) has its
    first frame repeated to fill it, and a longer one keeps its last whole chunks (the most recent frames are what
    the cache should hold)."""
    f0 = context.shape[1]
    if f0 < k:
        context = torch.cat([context[:, :1]] * (k - f0) + [context], 1)
        f0 = k
    usable = f0 - f0 % k
    context = context[:, f0 - usable:]
    return [context[:, i:i + k] for i in range(0, usable, k)]
