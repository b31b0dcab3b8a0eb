"""Motion-vector reprojection: bring the latest AI frame (made from game frame a) to the game's current frame b.

The AI frame lags the game by its latency (several game frames at 60 fps on a CPU). Each game frame carries motion
vectors to its previous frame (FramePacket.motion, pixels, `previous position = position − motion`), so following
them back from b to a tells, for every pixel of b, where that surface was in frame a. The overlay samples the AI frame
there (bilinear, in the shader), so the picture moves with the camera at game rate while the model runs slower.
Disocclusions (surfaces a never showed) get whatever was at the traced spot: the usual trade of reprojection.
"""

from __future__ import annotations

import collections
import functools

import numpy as np

HISTORY = 64  # game frames of motion kept: reprojecting further back than this is not worth it (too stale)


class Reprojector:
    def __init__(self, history: int = HISTORY):
        self._motion: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()
        self.history = history

    def add(self, index: int, motion: np.ndarray) -> None:
        """Frame `index`'s motion to frame index − 1, (H, W, 2) float32 pixels (dx right, dy down)."""
        self._motion[index] = motion
        while len(self._motion) > self.history:
            self._motion.popitem(last=False)

    def positions(self, source: int, target: int, size: tuple[int, int]) -> np.ndarray:
        """For each pixel of frame `target`, its position (x, y) in frame `source` (H, W, 2), in pixels of `size`
        = (H, W). Motion fields of another size are sampled at the nearest pixel and scaled."""
        h, w = size
        pos = _pixel_grid(h, w)                                       # (H, W, 2) pixels of frame `target`
        for index in range(target, source, -1):
            motion = self._motion.get(index)
            if motion is None:   # a gap in the history: stop where the trace is known
                break
            mh, mw = motion.shape[:2]
            # nearest motion pixel: pixel i covers [i, i + 1) scaled, so floor((pos + 0.5) · scale)
            sx = np.clip(np.floor((pos[..., 0] + 0.5) * mw / w), 0, mw - 1).astype(np.int32)
            sy = np.clip(np.floor((pos[..., 1] + 0.5) * mh / h), 0, mh - 1).astype(np.int32)
            step = motion[sy, sx] * np.array([w / mw, h / mh], np.float32)
            pos = pos - step
        return pos

    def offsets(self, source: int, target: int, size: tuple[int, int]) -> np.ndarray:
        """The same trace as uv offsets (H, W, 2) float32 for the overlay's shader: sample at uv + offset."""
        h, w = size
        if target <= source:
            return np.zeros((h, w, 2), np.float32)
        moved = self.positions(source, target, size) - _pixel_grid(h, w)   # (H, W, 2) pixels
        return (moved / np.array([w, h], np.float32)).astype(np.float32)


def compose_motion(newer: np.ndarray, older: np.ndarray) -> np.ndarray:
    """Frame b's motion to frame b − 2 when frame b − 1 is skipped (a frame the model worker dropped): `newer` is
    b's motion to b − 1, `older` b − 1's to b − 2, both (H, W, 2) float32 pixels; older is read at the nearest pixel
    each of b's pixels came from. Fields of different sizes cannot be chained: `newer` comes back unchanged."""
    if newer.shape != older.shape:
        return newer
    h, w = newer.shape[:2]
    pos = _pixel_grid(h, w) - newer
    sx = np.clip(np.floor(pos[..., 0] + 0.5), 0, w - 1).astype(np.int32)
    sy = np.clip(np.floor(pos[..., 1] + 0.5), 0, h - 1).astype(np.int32)
    return (newer + older[sy, sx]).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _pixel_grid(h: int, w: int) -> np.ndarray:
    """(H, W, 2) float32 (x, y) of every pixel; made once per size (reprojection runs every displayed frame)."""
    grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), -1)
    grid.flags.writeable = False
    return grid
