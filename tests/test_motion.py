"""Reprojection by motion vectors and the noise carried along them (models.network.motion)."""

from __future__ import annotations

import torch

from models.network.motion import reproject, warp_noise

H, W = 16, 20


def flat(depth: float = 5.0) -> torch.Tensor:
    return torch.full((H, W), depth)


def fresh_like(noise: torch.Tensor, seed: int) -> torch.Tensor:
    """What warp_noise draws for its fresh pixels with a generator seeded `seed`."""
    return torch.randn(noise.shape, generator=torch.Generator().manual_seed(seed))


def test_no_motion_keeps_the_previous_noise_exactly():
    previous = torch.randn(3, H, W)
    out = warp_noise(previous, torch.zeros(2, H, W), flat(), flat(), torch.Generator().manual_seed(1))
    assert torch.equal(out, previous)


def test_a_shift_carries_the_noise_and_the_border_that_comes_into_view_is_fresh():
    """The camera pans: every pixel was 2 columns to its left, so the 2 columns entering on the left are new."""
    previous = torch.randn(3, H, W)
    motion = torch.zeros(2, H, W)
    motion[0] = 2.0
    out = warp_noise(previous, motion, flat(), flat(), torch.Generator().manual_seed(1))
    assert torch.equal(out[:, :, 2:], previous[:, :, :-2])
    assert torch.equal(out[:, :, :2], fresh_like(previous, 1)[:, :, :2])


def test_a_disocclusion_is_fresh():
    """Where the depth at the source pixel is far from this pixel's (a surface that was hidden), the noise is new."""
    previous = torch.randn(3, H, W)
    depth, previous_depth = flat(), flat()
    previous_depth[4:8, 5:9] = 1.0  # an object stood in front of these pixels a frame ago
    out = warp_noise(previous, torch.zeros(2, H, W), depth, previous_depth, torch.Generator().manual_seed(3))
    hidden = torch.zeros(H, W, dtype=torch.bool)
    hidden[4:8, 5:9] = True
    assert torch.equal(out[:, hidden], fresh_like(previous, 3)[:, hidden])
    assert torch.equal(out[:, ~hidden], previous[:, ~hidden])
    assert torch.equal(reproject(torch.zeros(2, H, W), depth, previous_depth)[2], ~hidden)


def test_each_noise_value_goes_to_one_pixel_at_most_where_the_motion_magnifies():
    """A zoom in: pairs of pixels read the same source pixel. The first keeps it and the second is fresh, so no two
    pixels share a value (the noise stays independent per pixel)."""
    previous = torch.randn(1, H, W)
    xx = torch.arange(W).float().expand(H, W)
    motion = torch.zeros(2, H, W)
    motion[0] = xx - torch.floor(xx / 2)  # pixel x reads source x // 2
    out = warp_noise(previous, motion, flat(), flat(), torch.Generator().manual_seed(5))
    assert torch.equal(out[0, :, 0::2], previous[0, :, :W // 2])
    assert torch.equal(out[0, :, 1::2], fresh_like(previous, 5)[0, :, 1::2])
    assert out.flatten().unique().numel() == H * W


def test_warped_noise_stays_unit_gaussian_over_a_long_stream():
    """Random motion for many frames: the noise keeps mean 0 and standard deviation 1."""
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(4, 64, 64, generator=g)
    depth = torch.full((64, 64), 5.0)
    for _ in range(30):
        motion = torch.randn(2, 64, 64, generator=g) * 1.5
        noise = warp_noise(noise, motion, depth, depth, g)
    assert abs(float(noise.mean())) < 0.03 and abs(float(noise.std()) - 1.0) < 0.03
