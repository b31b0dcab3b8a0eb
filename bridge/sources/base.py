"""FrameSource: the one interface every frame producer offers to the renderer and the CLI.

Concrete sources live beside this module (game framebuffers, screen/window capture, video files). Callers use
them uniformly::

    with ScreenSource(region=(0, 0, 640, 360)) as src:
        for packet in src:          # stops at the end of a finite source
            runtime.submit(packet)
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

from bridge.errors import EndOfStream, SourceClosedError
from bridge.packet import FramePacket


class FrameSource(ABC):
    """A stream of validated FramePackets with increasing ``index``.

    ``read()`` returns the next packet, raises ``EndOfStream`` after the last one of a finite source, and
    ``SourceClosedError`` if the source was closed or what it captured went away. Iteration stops quietly on
    ``EndOfStream`` only. ``close()`` is idempotent.
    """

    _closed: bool = False

    @abstractmethod
    def read(self) -> FramePacket:
        """The next frame."""

    @property
    @abstractmethod
    def size(self) -> tuple[int, int]:
        """(W, H) of the packets this source produces."""

    def _release(self) -> None:  # noqa: B027 - optional hook
        """Free what the source holds (connections, decoders). Called once by ``close()``."""

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._release()

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise SourceClosedError(f"{type(self).__name__}: read() after close()")

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[FramePacket]:
        while True:
            try:
                packet = self.read()
            except EndOfStream:
                return
            yield packet
