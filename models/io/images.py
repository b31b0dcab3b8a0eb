"""Image grids as PNG: training sample grids, evaluation strips, the teacher's check.

Frames are (N, 3, H, W) in [-1, 1], the models' range. The file is written under a temporary name and renamed, so
an interrupted run never leaves half a PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.io.atomic import write_atomic


def save_grid(path: Path, rows: list[torch.Tensor], columns: int | None = None) -> None:
    """Write a PNG: `rows` are image groups (N, 3, H, W) in [-1, 1], each laid out in `columns` columns (default
    all N in one line); groups are interleaved row by row so a sample sits beside its reference."""
    from PIL import Image

    n = rows[0].shape[0]
    columns = columns or n
    lines = []
    for start in range(0, n, columns):
        for group in rows:
            line = group[start: start + columns]
            lines.append(torch.cat(list(line), -1))  # (3, H, columns·W)
    image = torch.cat(lines, -2)
    pixels = ((image.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.ascontiguousarray(pixels))
    write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))
