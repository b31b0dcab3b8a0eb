"""Keep the stylized picture still where a frames-only source is still.

A game that hands over motion vectors gets its noise and history carried along them, so the picture stays on its
surfaces (models.network.motion). Screen capture and video files have no motion vectors. Their cheapest motion
estimate is the one that matters most on a game's screen: this pixel did not change. The student runs every frame
anyway, but where the captured frame has not changed since the stylized pixel on screen was made, that pixel stays.
The test is against the frame the held pixel was made from, not the previous frame, so a slow fade still refreshes
once it has moved far enough. The changed area is widened by a few pixels, because the model's output around a
moving sprite changes too (its receptive field). Without the hold, the flat background of pygame's chimp example
boils at a still_flicker of 0.02 (docs/evaluation.md).

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


class StillHold:
    """Per stream: the stylized frame on screen and the captured frame each of its pixels was made from."""

    def __init__(self, tolerance: float = CHANGE_TOLERANCE, widen: int = WIDEN):
        self.tolerance, self.widen = tolerance, widen
        self.source: torch.Tensor | None = None    # (3, H, W) in [-1, 1]: the input each held pixel was made from
        self.shown: np.ndarray | None = None       # (H, W, 3) uint8: the held stylized frame

    def reset(self) -> None:
        self.source = self.shown = None

    def __call__(self, incoming: torch.Tensor, frames: np.ndarray) -> np.ndarray:
        """incoming (K, 3, H, W) in [-1, 1] (the model's input, bars cut off) and the K stylized frames (K, H, W, 3)
        uint8 made from it -> the K frames to show: each pixel the new one where its input changed, else held."""
        out = []
        for source, frame in zip(incoming, frames):
            if self.source is None or self.source.shape != source.shape:
                self.source, self.shown = source.clone(), frame.copy()
            else:
                changed = (source - self.source).abs().amax(0) > 2 * self.tolerance   # [-1, 1] is twice [0, 1]
                if self.widen:
                    changed = F.max_pool2d(changed[None, None].float(), 2 * self.widen + 1, 1, self.widen)[0, 0] > 0
                self.source = torch.where(changed, source, self.source)
                keep = changed.cpu().numpy()[..., None]
                self.shown = np.where(keep, frame, self.shown)
            out.append(self.shown)
        return np.stack(out)
