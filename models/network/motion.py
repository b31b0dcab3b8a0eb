"""Frame-to-frame reprojection by the game's motion vectors, and sampling noise carried along them.

The student restyles a stream; if every frame drew fresh noise, the texture it invents (grass blades, ripples) would
boil. Carrying the previous frame's noise along the motion vectors keeps the noise, and so the texture, on the
surface it fell on; where a surface comes into view (a disocclusion, or the image's border) the noise is fresh.
A noise value is carried to at most one pixel: where the motion magnifies (two pixels reading one source pixel), the
second gets fresh noise, so the warped noise stays independent unit Gaussian per pixel, as the model was trained on.
"""

from __future__ import annotations

import torch


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
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Noise (C, H, W) for frame t: frame t−1's noise `previous` (C, H, W) carried along `motion` where the surface
    was seen (reproject), each source value to one pixel at most (the first in raster order), fresh elsewhere."""
    c, h, w = previous.shape
    sy, sx, seen = reproject(motion, depth, previous_depth)
    source = (sy * w + sx).flatten()
    target = torch.arange(h * w, device=previous.device)
    # the first seen pixel reading each source keeps it; a later one reading the same source is a duplicate
    first = torch.full((h * w,), h * w, dtype=torch.long, device=previous.device)
    claims = torch.where(seen.flatten(), target, torch.full_like(target, h * w))
    first.scatter_reduce_(0, source, claims, reduce="amin")
    carried = seen.flatten() & (first[source] == target)
    fresh = torch.randn(previous.shape, generator=generator, device=previous.device, dtype=previous.dtype)
    warped = previous.flatten(1)[:, source]
    return torch.where(carried.view(1, h, w), warped.view(c, h, w), fresh)
