"""MP4 sink and reader: record restyled (or captured) frames, read them back in tests and tools.

``Mp4Writer`` is used by ``restyler capture --record``, ``restyler restyle`` and ``generate``; ``read_video`` by
tests, eval and tools. Encoding uses PyAV: H.264 (libx264, yuv420p) when the FFmpeg build has it, else MPEG-4
part 2 — both play everywhere.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
from collections.abc import Iterator
from fractions import Fraction

import av
import numpy as np

from bridge.errors import BridgeError, InvalidFrameError
from bridge.outputs import move_into_place, temporary_beside
from bridge.packet import FramePacket, describe
from bridge.sources.videofile import VideoFileSource


@functools.cache
def pick_codec() -> str:
    """'libx264' if this FFmpeg build can encode with it, else 'mpeg4'. Asked once per process."""
    try:
        av.codec.Codec("libx264", "w")
        return "libx264"
    except Exception:  # av raises UnknownCodecError (or ValueError in older releases)
        return "mpeg4"


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold back Ctrl-C while the MP4 index is written, then deliver it: a second impatient Ctrl-C during
    ``close()`` must not leave a file without its index. Only the main thread can own signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[object] = []
    previous = signal.signal(signal.SIGINT, lambda *args: caught.append(args))
    try:
        yield
    finally:
        # None means a handler installed outside Python; the default is the closest we can restore.
        signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)
    if caught:
        signal.raise_signal(signal.SIGINT)  # delivered to whatever handler the program had


class Mp4Writer:
    """Write RGB uint8 frames of ``size=(W, H)`` at ``fps`` to an MP4 file.

    Use as ``with Mp4Writer(path, fps, size) as out: out.write(frame)``: ``__exit__`` always finalises the file,
    so an exception or Ctrl-C (KeyboardInterrupt) inside the block still leaves a valid MP4 holding every frame
    written so far; a further Ctrl-C while closing is held back until the file is complete.

    The video is written beside its final name (a hidden ``.NAME.*.mp4``) and moved into place by ``close()``, so a
    file already at ``path`` stays whole until the new one is complete: a writer closed with no frame written leaves
    it untouched, and a hard kill (SIGKILL, power loss) leaves only the hidden file behind.

    Odd sizes: yuv420p needs even dimensions, so an odd width/height is padded by one replicated edge
    column/row (``coded_size``); frames are accepted at ``size`` and read back at ``coded_size``. Padding rather
    than refusing because window captures often have odd sizes and a recording must not fail for that.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        fps: float,
        size: tuple[int, int],
        *,
        crf: int = 18,
        codec: str | None = None,
    ) -> None:
        self.path = os.fspath(path)
        try:
            w, h = (int(v) for v in size)
        except (TypeError, ValueError) as exc:
            raise BridgeError(f"Mp4Writer: expected size=(W, H) of ints, got {size!r}") from exc
        if w <= 0 or h <= 0:
            raise BridgeError(f"Mp4Writer: expected a positive size (W, H), got {size!r}")
        if not fps or fps <= 0:
            raise BridgeError(f"Mp4Writer: expected fps > 0, got {fps!r}")
        parent = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(parent):
            raise BridgeError(f"Mp4Writer: folder {parent!r} for {self.path!r} does not exist")
        self.size = (w, h)
        self.coded_size = (w + w % 2, h + h % 2)
        self.fps = fps
        self.codec = codec or pick_codec()
        self.frames_written = 0
        self._closed = False
        self._tmp = temporary_beside(self.path, ".mp4")

        # 30000/1001 and the like stay exact; the stream clock ticks once per frame (pts = frame number).
        rate = Fraction(fps).limit_denominator(1001)
        try:
            self._container = av.open(str(self._tmp), mode="w", format="mp4")
        except av.FFmpegError as exc:
            self._tmp.unlink(missing_ok=True)
            raise BridgeError(f"Mp4Writer: cannot create {self.path!r}: {exc}") from exc
        try:
            stream = self._container.add_stream(self.codec, rate=rate)
            stream.width, stream.height = self.coded_size
            stream.pix_fmt = "yuv420p"
            stream.time_base = 1 / rate
            if self.codec == "libx264":
                # veryfast: recording runs beside the model on a 2-core CPU; crf 18 is visually lossless.
                stream.options = {"crf": str(crf), "preset": "veryfast"}
            else:
                # mpeg4 has no crf; about 2 bits per pixel at 30 fps keeps blocks invisible at small sizes.
                stream.bit_rate = max(1_000_000, int(2 * w * h * float(rate)))
        except BaseException:
            self._container.close()
            self._tmp.unlink(missing_ok=True)
            raise
        self._stream = stream

    def write(self, frame: np.ndarray | FramePacket) -> None:
        """Encode one frame: (H, W, 3) uint8 RGB at this writer's size, or a FramePacket (its rgb is written)."""
        if self._closed:
            raise BridgeError(f"Mp4Writer: write() after close() of {self.path!r}")
        rgb = frame.rgb if isinstance(frame, FramePacket) else frame
        w, h = self.size
        if not (isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8 and rgb.shape == (h, w, 3)):
            raise InvalidFrameError(
                f"Mp4Writer.write: expected a uint8 array of shape (H, W, 3) = {(h, w, 3)}, got {describe(rgb)}"
            )
        if self.coded_size != self.size:
            rgb = np.pad(rgb, ((0, self.coded_size[1] - h), (0, self.coded_size[0] - w), (0, 0)), mode="edge")
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        vf.pts = self.frames_written
        for pkt in self._stream.encode(vf):  # the encoder converts rgb24 -> yuv420p
            self._container.mux(pkt)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder, write the MP4 index and move the file into place (with no frame written, drop it and
        leave whatever is at the path). Idempotent."""
        if self._closed:
            return
        self._closed = True
        with _sigint_deferred():
            try:
                try:
                    for pkt in self._stream.encode(None):  # drain frames the encoder held back (lookahead, B-frames)
                        self._container.mux(pkt)
                finally:
                    self._container.close()
                if self.frames_written:
                    move_into_place(self._tmp, self.path)
            finally:
                self._tmp.unlink(missing_ok=True)

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Mp4Writer({self.path!r}, fps={self.fps}, size={self.size}, codec={self.codec!r})"


def read_video(path: str | os.PathLike[str]) -> np.ndarray:
    """Every frame of a video file as one (F, H, W, 3) uint8 RGB array (for tests and small clips)."""
    with VideoFileSource(path) as src:
        frames = [p.rgb for p in src]
        w, h = src.size
    if not frames:
        return np.zeros((0, h, w, 3), dtype=np.uint8)
    return np.stack(frames)
