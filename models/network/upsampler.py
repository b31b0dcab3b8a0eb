"""The AI frame at display resolution: a small learned upsampler guided by the game's full-resolution G-buffers.

The student draws at 128×128; a window shows far more pixels. Stretching the AI frame blurs every edge, yet the game
can render its cheap pass and G-buffers at the displayed size for little. Games solve exactly this with temporal
upsampling guided by full-resolution depth and normals (neural supersampling); here the guide is the cheap pass and
its G-buffers at display size, and the network learns what the reference renderer draws there that the AI frame
could not resolve.

    AI frame (3, h, w) ───────────────────────────────── bilinear ×s ──────────────────► + ──► (3, s·h, s·w)
        └─► cat ◄── guide (C, s·h, s·w), pixel-unshuffled to (C·s², h, w)                 ▲ pixel-shuffle
             └─► 1×1 conv ─► 3×3 conv ─► 3×3 conv ─► 1×1 conv to 3·s² channels (zero at the start)

Every convolution runs at the AI frame's resolution on the unshuffled guide (each low-resolution cell carries its
s×s full-resolution pixels as channels), so the cost grows with s² only in the first and last 1×1 layers. The last
layer starts at zero, so an untrained upsampler is exactly bilinear upsampling and the learned part is a residual.

`joint_bilateral` is the classic alternative with no learning (Kopf et al. 2007): each display pixel averages the
nearby AI pixels weighted by distance and by how alike their depth and normal are to its own.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from models.io.config import at_least, within

# The guide, channel by channel, in the training encoding of models.io.data (values in about [-1, 1]): the cheap
# pass's RGB and the G-buffers that exist at display size on every frame. Material ids are left out: the cheap pass
# already paints each material its own flat colour.
GUIDE = (("low", 3), ("depth", 1), ("normals", 3), ("uv", 2), ("ao", 1), ("sun", 1))
GUIDE_CHANNELS = sum(c for _, c in GUIDE)


def guide_of(items: dict[str, torch.Tensor]) -> torch.Tensor:
    """The guide from tensors in the encoding of models.io.data (items, or the runtime's packets converted alike):
    (..., C, H, W) with the channels of GUIDE, in order."""
    return torch.cat([items[name].float() for name, _ in GUIDE], -3)


@dataclass(frozen=True)
class UpsamplerConfig:
    scale: int = 2                       # display size = the AI frame's × scale
    frame_size: tuple[int, int] = (128, 128)   # (H, W) of the AI frame it was trained on
    guide_channels: int = GUIDE_CHANNELS
    width: int = 24                      # conv channels at the AI frame's resolution
    depth: int = 2                       # 3×3 residual convolutions there
    context: int = 0                     # channels of a half-resolution branch between them (0: none)
    # how the stream runs it (not trained): the weight of the previous output in the temporal resolve
    # (TemporalResolve; 0: every frame alone), measured in docs/upsampling.md
    temporal_keep: float = 0.0

    def __post_init__(self) -> None:
        at_least(self, 1, "scale", "frame_size", "width")
        at_least(self, 0, "guide_channels", "depth", "context")
        within(self, "temporal_keep", 0, 1, high_open=True)

    @property
    def display_size(self) -> tuple[int, int]:
        return self.frame_size[0] * self.scale, self.frame_size[1] * self.scale


class Upsampler(nn.Module):
    def __init__(self, cfg: UpsamplerConfig):
        super().__init__()
        self.cfg = cfg
        s, w, c = cfg.scale, cfg.width, cfg.context
        # the guide's s×s pixels of each cell, read by one s×s convolution of stride s: the same arithmetic as
        # pixel-unshuffling the guide and a 1×1 convolution, without the reshuffle
        self.guide_in = nn.Conv2d(cfg.guide_channels, w, s, stride=s, bias=False)
        self.frame_in = nn.Conv2d(3, w, 1)
        self.mids = nn.ModuleList(nn.Conv2d(w, w, 3, padding=1) for _ in range(cfg.depth))
        if c:
            self.down = nn.Conv2d(w, c, 3, stride=2, padding=1)
            self.context = nn.ModuleList(nn.Conv2d(c, c, 3, padding=1) for _ in range(2))
            self.up = nn.Conv2d(c, w, 1)
        # each cell back to its display pixels: a transposed conv of stride s whose (s + 2)² kernel overlaps the
        # neighbouring cells by one pixel, so no cell edge shows (a kernel of s, a pixel shuffle, drew a 2-pixel grid:
        # blockiness 1.25 at the token grid against the reference's 1.02, docs/upsampling.md)
        self.out = nn.ConvTranspose2d(w, 3, s + 2, stride=s, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, frame: torch.Tensor, guide: torch.Tensor) -> torch.Tensor:
        """frame (B, 3, h, w) in [-1, 1]; guide (B, C, s·h, s·w) -> (B, 3, s·h, s·w), not clamped."""
        s = self.cfg.scale
        b, _, h, w = frame.shape
        if guide.shape[-2:] != (h * s, w * s) or guide.shape[1] != self.cfg.guide_channels:
            raise ValueError(f"the upsampler ×{s} wants a guide of {self.cfg.guide_channels} channels at "
                             f"{h * s}x{w * s} for a {h}x{w} frame; got {tuple(guide.shape[1:])}")
        base = bilinear(frame, s)
        x = F.relu(self.guide_in(guide.contiguous(memory_format=torch.channels_last)) + self.frame_in(frame))
        half = len(self.mids) // 2
        for conv in self.mids[:half]:
            x = x + F.relu(conv(x))
        if self.cfg.context:   # a wider view at half resolution: what colour a region should have
            c = F.relu(self.down(x))
            for conv in self.context:
                c = c + F.relu(conv(c))
            x = x + F.interpolate(self.up(c), size=x.shape[-2:], mode="bilinear", align_corners=False)
        for conv in self.mids[half:]:
            x = x + F.relu(conv(x))
        return base + self.out(x)

    def flops_per_frame(self) -> float:
        """Multiply-adds × 2 of one frame at the trained size (the convolutions; resampling is memory-bound)."""
        h, w = self.cfg.frame_size
        full = [self.guide_in, self.frame_in, *self.mids, self.out] + ([self.up] if self.cfg.context else [])
        half = [self.down, *self.context] if self.cfg.context else []
        return 2.0 * h * w * (sum(m.weight.numel() for m in full) + sum(m.weight.numel() for m in half) / 4)


def bilinear(frame: torch.Tensor, scale: int) -> torch.Tensor:
    """The baseline every upsampler is scored against: the AI frame stretched ×scale with linear filtering, what the
    overlay's texture sampling shows."""
    return F.interpolate(frame, scale_factor=scale, mode="bilinear", align_corners=False)


def joint_bilateral(frame: torch.Tensor, guide: torch.Tensor, scale: int, depth_sigma: float = 0.02,
                    normal_sigma: float = 0.3, radius: int = 1) -> torch.Tensor:
    """Joint-bilateral upsampling by depth and normals, no learning: each display pixel averages the AI pixels of
    the (2·radius + 1)² cells around its own, each weighted by a spatial tent and by how close that cell's depth
    (log depth, the guide's encoding) and normal are to the pixel's. The cells' depth and normals are the guide
    averaged over each cell, i.e. what the AI frame saw there."""
    s = scale
    b, _, h, w = frame.shape
    depth = guide[:, 3:4]
    normals = guide[:, 4:7]
    cell_depth = F.avg_pool2d(depth, s)
    cell_normals = F.avg_pool2d(normals, s)
    k = 2 * radius + 1

    def around(x: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, C, k², H, W): each display pixel's k×k neighbouring cells."""
        c = x.shape[1]
        cells = F.unfold(F.pad(x, (radius,) * 4, mode="replicate"), k).view(b, c * k * k, h, w)
        return F.interpolate(cells, scale_factor=s, mode="nearest").view(b, c, k * k, h * s, w * s)

    # spatial tent over the distance from the display pixel's centre to each neighbouring cell's centre
    offsets = torch.arange(-radius, radius + 1, dtype=frame.dtype, device=frame.device)

    def distances(n: int) -> torch.Tensor:
        """(n·s, k): from each display pixel's centre to its own cell's neighbours' centres, in cells."""
        pixels = torch.arange(n * s, device=frame.device)
        centre = (pixels.to(frame.dtype) + 0.5) / s - 0.5       # cell coordinates, cell centres at integers
        return centre[:, None] - (torch.div(pixels, s, rounding_mode="floor").to(frame.dtype)[:, None] + offsets)

    dy, dx = distances(h), distances(w)
    wy = (1 - dy.abs()).clamp_min(0.05)
    wx = (1 - dx.abs()).clamp_min(0.05)
    spatial = (wy.t()[:, None, :, None] * wx.t()[None, :, None, :]).reshape(k * k, h * s, w * s)
    # display pixels of cell (i, j) sit in cell i, so their neighbours are cells i + offset: nearest-expanded unfold
    weight = spatial[None] * torch.exp(-((around(cell_depth)[:, 0] - depth) / depth_sigma) ** 2)
    weight = weight * torch.exp(-(around(cell_normals) - normals[:, :, None]).pow(2).sum(1) / normal_sigma ** 2)
    weight = weight + 1e-6 * spatial[None]   # never all zero: fall back to the tent
    colours = around(frame)
    return (colours * weight[:, None]).sum(2) / weight.sum(1, keepdim=True)


class TemporalResolve:
    """Temporal accumulation of the upsampled stream, as games resolve their TAA: each new frame is blended with
    the previous output carried to it along the motion vectors (bilinear), where that surface was seen (the depth
    test of models.network.motion.reproject); the carried colour is first clamped to the range of the new frame's
    3×3 neighbourhood, so a surface that changed (a style switch, a moving object) does not leave a ghost. It
    averages the one-step student's frame-to-frame grain on surfaces that stay in view, and costs a few
    elementwise passes. One per stream; reset() with the stream."""

    def __init__(self, keep: float):
        if not 0.0 <= keep < 1.0:
            raise ValueError(f"the history's weight must be in [0, 1); got {keep}")
        self.keep = keep
        self.reset()

    def reset(self) -> None:
        self.previous: torch.Tensor | None = None          # (3, H, W) the last output
        self.previous_depth: torch.Tensor | None = None    # (H, W) its linear depth

    def __call__(self, frame: torch.Tensor, motion: torch.Tensor | None, depth: torch.Tensor | None
                 ) -> torch.Tensor:
        """frame (3, H, W) in [-1, 1]; motion (2, H, W) in pixels to the previous frame and linear depth (H, W), or
        None (then the history is dropped: nothing tells where it went)."""
        from models.network.motion import reproject

        out = frame
        if self.keep > 0 and self.previous is not None and motion is not None and depth is not None \
                and self.previous.shape == frame.shape:
            visible = reproject(motion, depth, self.previous_depth)[2]
            carried = warp_bilinear(self.previous[None], motion[None])[0]
            low, high = neighbourhood_range(frame)
            carried = torch.minimum(torch.maximum(carried, low), high)
            out = torch.where(visible, self.keep * carried + (1 - self.keep) * frame, frame)
        if motion is None or depth is None:
            self.reset()
        else:
            self.previous, self.previous_depth = out, depth
        return out


def neighbourhood_range(frame: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pixel, the minimum and maximum of its 3×3 neighbourhood, (C, H, W) each: separable, from shifted views of
    an edge-padded copy (a 3×3 max-pool of stride 1 took 5 ms a frame at 256×256 on one CPU thread; this 0.3)."""
    p = F.pad(frame[None], (1, 1, 1, 1), mode="replicate")[0]
    rows_max = torch.maximum(torch.maximum(p[:, :, :-2], p[:, :, 1:-1]), p[:, :, 2:])
    rows_min = torch.minimum(torch.minimum(p[:, :, :-2], p[:, :, 1:-1]), p[:, :, 2:])
    high = torch.maximum(torch.maximum(rows_max[:, :-2], rows_max[:, 1:-1]), rows_max[:, 2:])
    low = torch.minimum(torch.minimum(rows_min[:, :-2], rows_min[:, 1:-1]), rows_min[:, 2:])
    return low, high


def warp_bilinear(previous: torch.Tensor, motion: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) frames t−1 sampled where each pixel of frame t was (position − motion, pixels), bilinear, edges
    clamped."""
    b, _, h, w = previous.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=previous.dtype, device=previous.device),
                            torch.arange(w, dtype=previous.dtype, device=previous.device), indexing="ij")
    x = (xs - motion[:, 0] + 0.5) / w * 2 - 1
    y = (ys - motion[:, 1] + 0.5) / h * 2 - 1
    grid = torch.stack([x, y], -1)
    return F.grid_sample(previous, grid, mode="bilinear", padding_mode="border", align_corners=False)
