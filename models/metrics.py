"""Image quality metrics on frames in [-1, 1] (the models' range), as shared/EVAL.md defines them."""

from __future__ import annotations

import torch


def psnr(output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per frame of (..., 3, H, W) tensors in [-1, 1], computed on RGB in [0, 1]; identical frames give
    inf. Returns (...,)."""
    mse = ((output.float() - reference.float()) / 2).pow(2).flatten(-3).mean(-1)
    return 10 * torch.log10(1.0 / mse)
