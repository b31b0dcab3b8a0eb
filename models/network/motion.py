"""Frame-to-frame reprojection by the game's motion vectors, and sampling noise carried along them.

The student restyles a stream; if every frame drew fresh noise, the texture it invents (grass blades, ripples) would
boil. Carrying the previous frame's noise along the motion vectors keeps the noise, and so the texture, on the
surface it fell on; where a surface comes into view (a disocclusion, or the image's border) the noise is fresh.
A noise value is carried to at most one pixel: where the motion magnifies (two pixels reading one source pixel), the
second gets fresh noise, so the warped noise stays independent unit Gaussian per pixel, as the model was trained on.

A stream keeps what its next chunk needs from its last frame in a `StreamMemory` (held by its KV cache, so a reset
forgets it with the context): the last output, for the student's warped-history input (`chunk_history`), and the
last noise of every level (`chunk_noise`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from models.io.data import denormalize_depth

HISTORY_CHANNELS = 4  # the previous output warped to this frame (RGB) and where that warp is valid (1)


def reproject(motion: torch.Tensor, depth: torch.Tensor, previous_depth: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each pixel of frame t, where it was in frame t−1 (nearest pixel) and whether it was seen there.

    motion (2, H, W): this frame's motion in pixels (where a pixel was = its position − motion); depth (H, W) and
    previous_depth (H, W) linear. Returns source rows and columns (H, W) (clamped into the image) and the mask (H, W)
    of pixels seen in both frames: inside the image and passing the depth test (the surface at the source pixel is at
    this pixel's depth within 10 % plus 0.3 blocks of camera travel; otherwise it is a disocclusion)."""
    h, w = depth.shape[-2:]
    yy, xx = torch.meshgrid(torch.arange(h, device=motion.device), torch.arange(w, device=motion.device),
                            indexing="ij")
    sx = torch.round(xx - motion[0]).long()
    sy = torch.round(yy - motion[1]).long()
    inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    sx, sy = sx.clamp(0, w - 1), sy.clamp(0, h - 1)
    d, d_prev = depth.reshape(h, w).float(), previous_depth.reshape(h, w)[sy, sx].float()
    return sy, sx, inside & ((d_prev - d).abs() < 0.1 * d + 0.3)


def warp_noise(previous: torch.Tensor, motion: torch.Tensor, depth: torch.Tensor, previous_depth: torch.Tensor,
               generator: torch.Generator | None = None, fresh: torch.Tensor | None = None) -> torch.Tensor:
    """Noise (C, H, W) for frame t: frame t−1's noise `previous` (C, H, W) carried along `motion` where the surface
    was seen (reproject), each source value to one pixel at most (the first in raster order), fresh elsewhere:
    `fresh` (C, H, W) when given (training draws it for the whole batch), else drawn from `generator`."""
    c, h, w = previous.shape
    sy, sx, seen = reproject(motion, depth, previous_depth)
    source = (sy * w + sx).flatten()
    target = torch.arange(h * w, device=previous.device)
    # the first seen pixel reading each source keeps it; a later one reading the same source is a duplicate
    first = torch.full((h * w,), h * w, dtype=torch.long, device=previous.device)
    claims = torch.where(seen.flatten(), target, torch.full_like(target, h * w))
    first.scatter_reduce_(0, source, claims, reduce="amin")
    carried = seen.flatten() & (first[source] == target)
    if fresh is None:
        fresh = torch.randn(previous.shape, generator=generator).to(previous.device, previous.dtype)
    warped = previous.flatten(1)[:, source]
    return torch.where(carried.view(1, h, w), warped.view(c, h, w), fresh)


# ---------------------------------------------------------------------------------------------------------------
# A stream's memory of its last frame, and what a chunk makes of it


@dataclass
class StreamMemory:
    """What a stream carries from its last frame into the next chunk; empty at the start and after a reset."""

    frame: torch.Tensor | None = None  # (B, C, H, W) the last output, model space
    depth: torch.Tensor | None = None  # (B, H, W) its linear depth; None when the stream has no G-buffers
    noise: list[torch.Tensor] | None = None  # per sampler level, (B, C, H, W): the last frame's noise

    def clear(self) -> None:
        self.frame = self.depth = self.noise = None

    def remember(self, x0: torch.Tensor, depth: torch.Tensor | None, noise: list[torch.Tensor] | None) -> None:
        """Keep the last frame of a finished chunk: x0 (B, K, C, H, W), depth (B, K, H, W) or None, and each
        level's noise (B, K, C, H, W) when the stream carries noise along."""
        self.frame = x0[:, -1].detach()
        self.depth = None if depth is None else depth[:, -1]
        self.noise = None if noise is None else [n[:, -1].detach() for n in noise]


def chunk_motion(motion: torch.Tensor | None, gbuffers: torch.Tensor | None
                 ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A chunk's motion (B, K, 2, H, W) and linear depth (B, K, H, W), or (None, None) unless both the game's
    motion vectors and its depth are there (screen capture has neither: nothing is carried along motion)."""
    if motion is None or gbuffers is None:
        return None, None
    return motion, denormalize_depth(gbuffers[:, :, 0])


def chunk_history(memory: StreamMemory, motion: torch.Tensor | None, depth: torch.Tensor | None
                  ) -> torch.Tensor | None:
    """The warped-history input of a chunk, (B, K, 4, H, W): the stream's last output carried frame by frame along
    the chunk's motion (each frame's warp applied to the previous frame's), zero where it is not valid, and the
    validity (1 where the surface was seen in every frame since). At a stream's start or after a reset nothing is
    valid (all zero); without motion and depth (screen capture) there is no history at all: None."""
    if motion is None or depth is None:
        return None
    if memory.frame is None or memory.depth is None:
        b, k, _, h, w = motion.shape
        return motion.new_zeros(b, k, HISTORY_CHANNELS, h, w)
    out = []
    for b in range(motion.shape[0]):
        frame, previous_depth = memory.frame[b], memory.depth[b]
        valid = torch.ones(frame.shape[-2:], dtype=torch.bool, device=frame.device)
        frames = []
        for j in range(motion.shape[1]):
            sy, sx, seen = reproject(motion[b, j], depth[b, j], previous_depth)
            frame, valid = frame[:, sy, sx], valid[sy, sx] & seen
            frames.append(torch.cat([frame * valid, valid[None].to(frame.dtype)]))
            previous_depth = depth[b, j]
        out.append(torch.stack(frames))
    return torch.stack(out)


def clip_history(frames: torch.Tensor, motion: torch.Tensor, depth: torch.Tensor, chunk_frames: int
                 ) -> torch.Tensor:
    """The history every chunk of a clip reads when the stream's outputs were `frames` (B, F, C, H, W): each chunk
    the last frame of the chunk before, carried along the motion (B, F, 2, H, W) with depth (B, F, H, W); nothing
    valid in the first chunk. Training's teacher forcing (the ode stage feeds the teacher's own endpoints)."""
    memory, out = StreamMemory(), []
    for start in range(0, frames.shape[1], chunk_frames):
        chunk = slice(start, start + chunk_frames)
        out.append(chunk_history(memory, motion[:, chunk], depth[:, chunk]))
        memory.remember(frames[:, chunk], depth[:, chunk], None)
    return torch.cat(out, 1)


def chunk_noise(previous: torch.Tensor | None, previous_depth: torch.Tensor | None, motion: torch.Tensor | None,
                depth: torch.Tensor | None, draw: Callable[[], torch.Tensor]) -> torch.Tensor:
    """One level's noise for a chunk, (B, K, C, H, W), carried from the stream's last frame `previous`
    (B, C, H, W): along the motion where there is motion and depth (fresh in disocclusions), unchanged where there is
    none (a still screen keeps its noise). `draw()` gives fresh noise shaped (B, K, C, H, W); the whole chunk's is
    fresh at a stream's start."""
    fresh = draw()
    if previous is None:
        return fresh
    if motion is None or depth is None or previous_depth is None:
        return previous[:, None].expand_as(fresh).clone()
    out = []
    for b in range(fresh.shape[0]):
        noise, last_depth, frames = previous[b], previous_depth[b], []
        for j in range(fresh.shape[1]):
            noise = warp_noise(noise, motion[b, j], depth[b, j], last_depth, fresh=fresh[b, j])
            frames.append(noise)
            last_depth = depth[b, j]
        out.append(torch.stack(frames))
    return torch.stack(out)
