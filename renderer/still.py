"""Keep the stylized picture calm where a frames-only source is still.

A game that hands over motion vectors gets its noise and history carried along them, so the picture stays on its
surfaces (models.network.motion). Screen capture and video files have no motion vectors. Their cheapest motion
estimate is the one that matters most on a game's screen: this pixel did not change. The student runs every frame
anyway; where the captured frame has not changed since the pixel on screen was made, the screen moves only a small
step (`RELAX`) toward the new output, so the picture there stops boiling and still follows the model slowly. Where
it changed, the new output is shown. The test is against the frame the held pixel was made from, not the previous
frame, so a slow fade still refreshes once it has moved far enough. The changed area is widened by a few pixels,
because the model's output around a moving sprite changes too (its receptive field), and its edge is feathered: a
hard edge left the outline of every refresh behind a moving sprite as a trail of arcs (measured on pygame's chimp
example, docs/evaluation.md).

A style switch or a reset starts over, so a new style is shown whole at once.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# A pixel counts as changed when a channel moved more than this (in [0, 1]) since its held output was made: above
# what a video codec's noise moves a still pixel, below the smallest step a game's sprite or text makes.
CHANGE_TOLERANCE = 6 / 255
# how far (pixels at the model's resolution) the change spreads: the model's output around a moved sprite changes
WIDEN = 3
# how far a still pixel moves toward the newest output each frame: its stamp of an older output fades in ~1/RELAX
# frames instead of staying as a seam
RELAX = 0.1


class StillHold:
    """Per stream: the stylized frame on screen and the captured frame each of its pixels was made from."""

    def __init__(self, tolerance: float = CHANGE_TOLERANCE, widen: int = WIDEN, relax: float = RELAX):
        self.tolerance, self.widen, self.relax = tolerance, widen, relax
        self.source: torch.Tensor | None = None    # (3, H, W) in [-1, 1]: the input each held pixel was made from
        self.shown: torch.Tensor | None = None     # (H, W, 3) float: the stylized frame on screen

    def reset(self) -> None:
        self.source = self.shown = None

    def __call__(self, incoming: torch.Tensor, frames: np.ndarray) -> np.ndarray:
        """incoming (K, 3, H, W) in [-1, 1] (the model's input, bars cut off) and the K stylized frames (K, H, W, 3)
        uint8 made from it -> the K frames to show: the new pixels where the input changed (and, feathered, around
        that), a RELAX step toward them elsewhere."""
        out = []
        for source, frame in zip(incoming, frames):
            new = torch.from_numpy(frame).float()
            if self.source is None or self.source.shape != source.shape:
                self.source, self.shown = source.clone(), new
            else:
                changed = ((source - self.source).abs().amax(0) > 2 * self.tolerance).float()   # [-1, 1]: twice
                size = 2 * self.widen + 1
                grown = F.max_pool2d(changed[None, None], size, 1, self.widen)
                weight = F.avg_pool2d(grown, size, 1, self.widen, count_include_pad=False)[0, 0]  # feathered edge
                self.source = torch.where(weight > 0, source, self.source)
                weight = weight.clamp(min=self.relax)[..., None]
                self.shown = weight * new + (1 - weight) * self.shown
            out.append(self.shown.round().clamp(0, 255).to(torch.uint8).numpy())
        return np.stack(out)
