"""Quality metrics of docs/evaluation.md on frames in [-1, 1] (the models' range), all scored in RGB [0, 1].

Called by evaluation (`restyler eval`, models.evaluation.teacher) and by the dmd stage's temporal term. Legend:
frames (..., 3, H, W); motion (F, 2, H, W) in pixels, the convention of docs/interfaces.md (the surface at (x, y)
was at (x − dx, y − dy) one frame earlier); depth (F, 1, H, W) linear, in blocks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from models.network.motion import reproject


def _unit(x: torch.Tensor) -> torch.Tensor:
    return (x.float() + 1) / 2


def psnr(output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per frame, (...,); identical frames give inf."""
    mse = (_unit(output) - _unit(reference)).pow(2).flatten(-3).mean(-1)
    return 10 * torch.log10(1.0 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-x**2 / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """SSIM per frame (Wang et al. 2004: 11×11 Gaussian window, σ 1.5, K1 0.01, K2 0.03), mean over RGB, (...,)."""
    lead = output.shape[:-3]
    a = _unit(output).reshape(-1, *output.shape[-3:])
    b = _unit(reference).reshape(-1, *reference.shape[-3:])
    c = a.shape[1]
    window = _gaussian_window().to(a.device).expand(c, 1, 11, 11)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, window, groups=c)  # valid region only, as the reference implementation

    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    score = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return score.flatten(1).mean(-1).reshape(lead)


def radial_log_spectrum(frames: torch.Tensor) -> torch.Tensor:
    """Radially averaged log power spectrum of each frame's luminance: (..., R) with R = min(H, W) // 2 radii."""
    luma = _luma(frames)
    h, w = luma.shape[-2:]
    power = torch.fft.fft2(luma - luma.mean((-2, -1), keepdim=True)).abs().pow(2) / (h * w)
    fy = torch.fft.fftfreq(h, device=frames.device)[:, None] * h
    fx = torch.fft.fftfreq(w, device=frames.device)[None, :] * w
    radius = torch.sqrt(fy**2 + fx**2).round().long()
    bins = min(h, w) // 2
    keep = (radius >= 1) & (radius <= bins)  # drop DC (removed above) and the corners beyond the inscribed circle
    index = (radius[keep] - 1)
    flat = torch.log(power[..., keep] + 1e-10)  # (..., pixels kept)
    sums = torch.zeros(*flat.shape[:-1], bins, device=frames.device).index_add_(-1, index, flat)
    counts = torch.zeros(bins, device=frames.device).index_add_(0, index, torch.ones_like(index, dtype=torch.float32))
    return sums / counts


def spectral_distance(output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference of radially averaged log power spectra per frame, (...,). Lower is better; a
    blurred output loses high-frequency power, which PSNR forgives and this does not."""
    return (radial_log_spectrum(output) - radial_log_spectrum(reference)).abs().mean(-1)


def _luma(frames: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) in [-1, 1] -> (..., H, W) luma in [0, 1] (Rec. 601 weights, as the spectral distance)."""
    rgb = _unit(frames)
    return 0.299 * rgb[..., 0, :, :] + 0.587 * rgb[..., 1, :, :] + 0.114 * rgb[..., 2, :, :]


def blockiness(frames: torch.Tensor, period: int) -> torch.Tensor:
    """Per frame (...,): the mean absolute luma step across the lines between `period`-pixel cells (a patch grid)
    divided by the mean step across every other line between neighbouring pixels. 1.0 is no grid; a model that
    draws its patches as visible blocks scores well above 1. Rows and columns are pooled; a frame without any
    other step (flat) scores 1."""
    luma = _luma(frames)
    h, w = luma.shape[-2:]
    across_columns = (luma[..., :, 1:] - luma[..., :, :-1]).abs()   # step between column j and j + 1
    across_rows = (luma[..., 1:, :] - luma[..., :-1, :]).abs()
    on_column_grid = (torch.arange(w - 1, device=frames.device) + 1) % period == 0
    on_row_grid = (torch.arange(h - 1, device=frames.device) + 1) % period == 0
    grid_sum = across_columns[..., :, on_column_grid].sum((-2, -1)) + across_rows[..., on_row_grid, :].sum((-2, -1))
    other_sum = (across_columns[..., :, ~on_column_grid].sum((-2, -1))
                 + across_rows[..., ~on_row_grid, :].sum((-2, -1)))
    grid_count = int(on_column_grid.sum()) * h + int(on_row_grid.sum()) * w
    other_count = int((~on_column_grid).sum()) * h + int((~on_row_grid).sum()) * w
    if grid_count == 0:
        raise ValueError(f"frames of {w}x{h} have no cell boundary at a period of {period} pixels")
    grid, other = grid_sum / grid_count, other_sum / other_count
    return torch.where(other > 1e-8, grid / other.clamp_min(1e-8), torch.ones_like(grid))


def warp_previous(previous: torch.Tensor, motion: torch.Tensor, depth: torch.Tensor, previous_depth: torch.Tensor,
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Frame t−1 (C, H, W) brought to frame t by t's motion (2, H, W), nearest pixel, and the mask (H, W) of pixels
    seen in both frames (models.network.motion.reproject: inside the image and passing the depth test)."""
    sy, sx, visible = reproject(motion, depth, previous_depth)
    return previous[:, sy, sx], visible


def temporal_error(frames: torch.Tensor, motion: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference (RGB in [0, 1]) between each frame and its motion-warped predecessor, over pixels
    visible in both, across a clip (F, 3, H, W): a scalar."""
    total, count = frames.new_zeros((), dtype=torch.float32), 0
    unit = _unit(frames)
    for t in range(1, frames.shape[0]):
        warped, visible = warp_previous(unit[t - 1], motion[t], depth[t], depth[t - 1])
        total = total + ((warped - unit[t]).abs().mean(0) * visible).sum()
        count += int(visible.sum())
    return total / max(count, 1)


def warp_ratio(output: torch.Tensor, reference: torch.Tensor, motion: torch.Tensor, depth: torch.Tensor
               ) -> torch.Tensor:
    """Temporal error of the output divided by that of the reference renderer on the same clip: 1.0 is as stable
    as the reference, above 1 flickers more."""
    return temporal_error(output, motion, depth) / temporal_error(reference, motion, depth).clamp_min(1e-8)
