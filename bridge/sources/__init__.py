"""Frame sources: everything that produces FramePackets for the renderer.

- ``CallableSource`` / ``GameSource`` — in-process, wraps a game's ``step`` (framebuffers + G-buffers);
- ``ScreenSource`` — a screen region or a window, via mss (imported only when used);
- ``VideoFileSource`` — a video file, via PyAV (imported only when used).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.sources.base import FrameSource
from bridge.sources.game import CallableSource, GameSource

if TYPE_CHECKING:
    from bridge.sources.screen import ScreenSource
    from bridge.sources.videofile import VideoFileSource

__all__ = ["CallableSource", "FrameSource", "GameSource", "ScreenSource", "VideoFileSource"]


def __getattr__(name: str) -> Any:
    # mss and PyAV load native libraries; a game that only needs FramePacket should not pay for them.
    if name == "ScreenSource":
        from bridge.sources.screen import ScreenSource

        return ScreenSource
    if name == "VideoFileSource":
        from bridge.sources.videofile import VideoFileSource

        return VideoFileSource
    raise AttributeError(f"module 'bridge.sources' has no attribute {name!r}")
