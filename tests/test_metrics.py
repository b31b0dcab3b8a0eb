"""Quality metrics (models.evaluation.metrics) on synthetic cases whose answer is known."""

import math

import pytest
import torch

from models.evaluation import metrics


def frames(seed: int = 0, n: int = 2, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def blur(x: torch.Tensor) -> torch.Tensor:
    k = torch.ones(3, 1, 5, 5) / 25
    return torch.nn.functional.conv2d(torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect"), k, groups=3)


def test_identical_frames_score_perfectly():
    x = frames()
    assert torch.isinf(metrics.psnr(x, x)).all()
    torch.testing.assert_close(metrics.ssim(x, x), torch.ones(2))
    torch.testing.assert_close(metrics.spectral_distance(x, x), torch.zeros(2))


def test_psnr_of_a_known_error():
    """A uniform error of 0.1 in [0, 1] is exactly 20 dB."""
    x = torch.zeros(1, 3, 8, 8)
    assert math.isclose(float(metrics.psnr(x + 0.2, x)), 20.0, rel_tol=1e-5)


def test_blur_costs_spectral_distance_and_ssim():
    """Guards the metric that catches blur PSNR forgives: blurring raises the spectral distance more than a small
    uniform shift of brightness with a similar PSNR."""
    x = frames(size=64)
    blurred = blur(x)
    assert bool((metrics.spectral_distance(blurred, x) > 0.5).all())
    assert bool((metrics.ssim(blurred, x) < 0.9).all())
    brighter = x + 0.05
    assert bool((metrics.spectral_distance(brighter, x) < 0.01).all())


def test_a_known_shift_warps_back_with_zero_error():
    """A frame moved 3 px right and 2 px down, with motion vectors that say so, has zero temporal error and is as
    stable as itself (warp ratio 1)."""
    first = frames(n=1, size=32)[0]
    second = torch.roll(first, shifts=(2, 3), dims=(1, 2))
    clip = torch.stack([first, second])
    motion = torch.zeros(2, 2, 32, 32)
    motion[:, 0], motion[:, 1] = 3.0, 2.0
    depth = torch.full((2, 1, 32, 32), 5.0)
    assert float(metrics.temporal_error(clip, motion, depth)) == 0.0
    # without the motion vectors the same clip is unstable
    assert float(metrics.temporal_error(clip, torch.zeros_like(motion), depth)) > 0.1
    g = torch.Generator().manual_seed(1)
    slightly = clip + 0.02 * torch.randn(clip.shape, generator=g)  # a reference with some flicker of its own
    noisy = clip + 0.2 * torch.randn(clip.shape, generator=g)
    assert float(metrics.warp_ratio(slightly, slightly, motion, depth)) == pytest.approx(1.0)
    assert float(metrics.warp_ratio(noisy, slightly, motion, depth)) > 2.0


def test_disocclusions_are_masked_by_depth():
    """A pixel whose warped source in t−1 lies at another depth is not compared."""
    prev = torch.zeros(3, 4, 4)
    depth_prev = torch.full((1, 4, 4), 5.0)
    depth = torch.full((1, 4, 4), 5.0)
    depth[0, 0, 0] = 50.0  # a far surface appeared here
    _, visible = metrics.warp_previous(prev, torch.zeros(2, 4, 4), depth, depth_prev)
    assert not visible[0, 0] and visible.sum() == 15


def test_blockiness_sees_a_patch_grid_and_nothing_else():
    """Guards the metric for the 16×16 grid a patch model draws: piecewise-constant cells score far above 1; noise,
    a smooth ramp and a flat frame score 1; a grid at another period is not this one's."""
    g = torch.Generator().manual_seed(0)
    cells = torch.rand(2, 3, 4, 4, generator=g) * 2 - 1
    blocky = cells.repeat_interleave(16, -1).repeat_interleave(16, -2)
    blocky = blocky + 0.05 * torch.randn(blocky.shape, generator=g)
    assert bool((metrics.blockiness(blocky, 16) > 5).all())
    assert metrics.blockiness(frames(size=64), 16).sub(1).abs().max() < 0.1
    ramp = torch.linspace(-1, 1, 64).expand(1, 3, 64, 64)
    assert float(metrics.blockiness(ramp, 16)) == pytest.approx(1.0, abs=1e-4)
    assert float(metrics.blockiness(torch.zeros(1, 3, 32, 32), 16)) == 1.0
    assert bool((metrics.blockiness(blocky, 10) < 1.5).all())   # lines at 10, 20, ... miss the 16-pixel grid
    with pytest.raises(ValueError, match="no cell boundary"):
        metrics.blockiness(torch.zeros(1, 3, 8, 8), 16)
