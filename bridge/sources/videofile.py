"""VideoFileSource: decode a video file into RGB FramePackets, for ``restyler restyle IN.mp4 OUT.mp4`` and tools.

Decoding uses PyAV (FFmpeg). Frames come out as fast as they decode; pacing to real time is the caller's choice.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction

import av

from bridge.errors import EndOfStream, SourceClosedError, SourceOpenError
from bridge.packet import FramePacket
from bridge.sources.base import FrameSource


class VideoFileSource(FrameSource):
    """Packets of the first video stream of ``path``: rgb (H, W, 3) uint8, ``index`` from 0, ``t`` in seconds
    from the stream start (from the frame's pts; ``index / fps`` when a frame has none).

    A missing file or one FFmpeg cannot read as video raises ``SourceOpenError`` at construction. After the last
    frame ``read()`` raises ``EndOfStream`` (a ``SourceClosedError``) and iteration stops.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            what = "is a directory, not a file" if os.path.isdir(self.path) else "was not found"
            raise SourceOpenError(f"VideoFileSource: video file {self.path!r} {what}")
        try:
            self._container = av.open(self.path, mode="r")
        except (av.FFmpegError, UnicodeDecodeError) as exc:
            raise SourceOpenError(f"VideoFileSource: {self.path!r} is not a readable video file: {exc}") from exc
        if not self._container.streams.video:
            self._container.close()
            raise SourceOpenError(f"VideoFileSource: {self.path!r} is not a video file (FFmpeg found no video stream)")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"  # frame + slice threads: decoding is on the critical path of `restyle`
        ctx = self._stream.codec_context
        self._size = (int(ctx.width), int(ctx.height))
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.fps: float = float(rate) if rate else 30.0
        self._start = self._stream.start_time or 0
        self._time_base: Fraction | None = self._stream.time_base
        self._frames: Iterator[av.VideoFrame] = self._container.decode(self._stream)
        self._index = 0

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    @property
    def frame_count(self) -> int:
        """Frames the container header announces (0 when it does not say)."""
        return int(self._stream.frames or 0)

    def read(self) -> FramePacket:
        self._check_open()
        try:
            frame = next(self._frames)
        except StopIteration:
            raise EndOfStream(f"VideoFileSource: end of {self.path!r} after {self._index} frames") from None
        except av.FFmpegError as exc:
            raise SourceClosedError(
                f"VideoFileSource: decoding {self.path!r} failed at frame {self._index}: {exc}"
            ) from exc
        rgb = frame.to_ndarray(format="rgb24")  # (H, W, 3) uint8
        if frame.pts is not None and self._time_base is not None:
            t = float((frame.pts - self._start) * self._time_base)
        else:
            t = self._index / self.fps
        packet = FramePacket(rgb=rgb, index=self._index, t=t)
        self._index += 1
        return packet

    def _release(self) -> None:
        self._container.close()
