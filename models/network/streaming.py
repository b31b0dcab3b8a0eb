"""How the student streams: its sampler settings and the per-chunk step that evaluation and the runtime share.

`StudentSampler` is saved with the student's weights (its JSON) and read back by evaluation and the runtime.
`stream_chunk` is one chunk under that sampler's policy (a scheduled cache reset, then the few steps and the cache
refresh of models.network.sampling.sample_student_chunk); `stream_clip` streams a whole clip through it. Because the
runtime (renderer.engine) and evaluation (models.evaluation.restyle) both call `stream_chunk`, the product runs
exactly what was scored. `recache` and `held_chunks` re-encode the cache after a prompt switch (an ablation of
evaluation, an option of generation).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from models.io.config import ConfigError, above, at_least, one_of
from models.network import flow
from models.network.dit import Conditioning, VideoDiT
from models.network.kv_cache import KVCache
from models.network.sampling import sample_student_chunk


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
    # detail the noise seeds stays put on screen; "fresh": new noise per chunk (CausVid); "warped": the last
    # frame's noise carried along the game's motion vectors, fresh only where a surface comes into view, so the
    # detail stays on its surface (models.network.motion; without motion it stays put). docs/distillation.md
    noise: str = "fresh"
    # empty the cache every this many chunks (0: never): a long stream then restarts its context before errors fed
    # back through it accumulate (drift), at the price of one context-free chunk each time (docs/distillation.md)
    reset_every: int = 0
    # feed the student its last output warped along the motion to each new frame (the warped-history input);
    # only for a student trained with it
    history: bool = False

    def __post_init__(self) -> None:
        at_least(self, 1, "timesteps", "window_chunks")
        at_least(self, 0, "sink_chunks", "reset_every")
        if max(self.timesteps) > 1000 or list(self.timesteps) != sorted(self.timesteps, reverse=True):
            raise ConfigError(f"timesteps is {list(self.timesteps)}; expected decreasing levels in 1..1000")
        above(self, 0, "shift")
        one_of(self, "refresh", ("clean", "last_step"))
        one_of(self, "noise", ("fresh", "fixed", "warped"))

    def due_reset(self, cache: KVCache) -> bool:
        """Whether the stream's cache should be emptied before its next chunk."""
        return self.reset_every > 0 and cache.appended >= self.reset_every

    def stream_noise(self, like: torch.Tensor, generator: torch.Generator | None) -> list[torch.Tensor] | None:
        """The fixed noise of a new stream for chunks shaped like `like` (B, K, C, H, W), or None for fresh."""
        if self.noise in ("fresh", "warped"):
            return None
        if self.noise != "fixed":
            raise ValueError(f"sampler noise must be 'fresh', 'fixed' or 'warped'; got {self.noise!r}")
        b, _, *rest = like.shape
        return [torch.randn((b, 1, *rest), generator=generator) for _ in self.timesteps]

    def sigmas(self) -> torch.Tensor:
        return flow.student_sigmas(self.timesteps, self.shift)


# ---------------------------------------------------------------------------------------------------------------
# Streaming a clip (training sample grids, evaluation)


@torch.no_grad()
def stream_clip(model: VideoDiT, incoming: torch.Tensor, cond: Conditioning, sampler: StudentSampler,
                generator: torch.Generator | None = None, cache: KVCache | None = None,
                no_context: bool = False, noise: list[torch.Tensor] | None = None) -> torch.Tensor:
    """Restyle a clip (B, F, C, H, W) chunk by chunk through the KV cache, as the runtime does; F a multiple of K.
    `no_context` empties the cache before every chunk: the student without temporal context (evaluation's
    `per_frame` row, and the drift stream's control).
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
        if no_context:
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
    (models.network.sampling.sample_student_chunk). Evaluation (stream_clip) and the runtime (renderer.engine)
    both stream through this, so the product runs exactly what was scored."""
    if sampler.due_reset(cache):
        cache.reset()
    sigmas = sampler.sigmas() if sigmas is None else sigmas
    return sample_student_chunk(model, incoming, cond, cache, sigmas, sampler.refresh, generator, noise,
                                sampler.noise, sampler.history)


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
