"""CallableSource (alias GameSource): frames produced in-process by a function, typically a game's step.

The demo game (and any game integrating Restyler) hands over its framebuffers by passing ``session.step``; this
source validates every packet so a buffer with the wrong shape or a NaN in the depth is caught at the boundary.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from bridge.errors import EndOfStream
from bridge.packet import FramePacket
from bridge.sources.base import FrameSource

Producer = Callable[[], "FramePacket | np.ndarray"]


class CallableSource(FrameSource):
    """Calls ``produce()`` once per ``read()``.

    ``produce`` returns a FramePacket, or a bare (H, W, 3) uint8 array which is wrapped with a running index and a
    monotonic timestamp. It signals the end of its stream by raising ``EndOfStream`` (or ``StopIteration``).
    ``on_close`` (optional) is called once by ``close()``, e.g. to shut the game session down.
    """

    def __init__(self, produce: Producer, *, on_close: Callable[[], None] | None = None) -> None:
        if not callable(produce):
            raise TypeError(
                f"CallableSource: expected a callable returning a FramePacket, got {type(produce).__name__}"
            )
        self._produce = produce
        self._on_close = on_close
        self._count = 0
        self._t0: float | None = None
        # Filled when `size` is asked before the first read(); handed out by the next read() so no frame is lost.
        self._pending: FramePacket | None = None
        self._last_size: tuple[int, int] | None = None

    def _next(self) -> FramePacket:
        try:
            out = self._produce()
        except StopIteration as exc:
            raise EndOfStream(f"CallableSource: the producer ended after {self._count} frames") from exc
        if isinstance(out, np.ndarray):
            now = time.monotonic()
            if self._t0 is None:
                self._t0 = now
            out = FramePacket(rgb=out, index=self._count, t=now - self._t0)
        elif not isinstance(out, FramePacket):
            raise TypeError(
                f"CallableSource: the producer must return a FramePacket or a (H, W, 3) uint8 array, "
                f"got {type(out).__name__}"
            )
        out.validate()
        self._count += 1
        self._last_size = out.size
        return out

    def read(self) -> FramePacket:
        self._check_open()
        if self._pending is not None:
            packet, self._pending = self._pending, None
            return packet
        return self._next()

    @property
    def size(self) -> tuple[int, int]:
        """(W, H) of the latest packet; before the first read, produces one frame early and keeps it for read()."""
        if self._last_size is None:
            self._check_open()
            self._pending = self._next()
        assert self._last_size is not None
        return self._last_size

    def _release(self) -> None:
        if self._on_close is not None:
            self._on_close()


GameSource = CallableSource
