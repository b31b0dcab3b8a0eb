"""bridge: frames in and out of Restyler, for any game.

FramePacket (the wire format), validation errors, the latest-frame mailbox between producer and renderer, frame
sources (game callable, screen/window, video file) and the MP4 sink. Imports nothing else from Restyler.
Heavy native dependencies (mss, PyAV) load only when their source or sink is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bridge.errors import BridgeError, EndOfStream, InvalidFrameError, SourceClosedError, SourceOpenError
from bridge.mailbox import ChunkMailbox, LatestMailbox
from bridge.packet import FramePacket
from bridge.sources import CallableSource, FrameSource, GameSource

if TYPE_CHECKING:
    from bridge.sources import ScreenSource, VideoFileSource
    from bridge.video import Mp4Writer, read_video

__all__ = [
    "BridgeError",
    "CallableSource",
    "ChunkMailbox",
    "EndOfStream",
    "FramePacket",
    "FrameSource",
    "GameSource",
    "InvalidFrameError",
    "LatestMailbox",
    "Mp4Writer",
    "ScreenSource",
    "SourceClosedError",
    "SourceOpenError",
    "VideoFileSource",
    "read_video",
]

_LAZY = {
    "ScreenSource": "bridge.sources.screen",
    "VideoFileSource": "bridge.sources.videofile",
    "Mp4Writer": "bridge.video",
    "read_video": "bridge.video",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bridge' has no attribute {name!r}")
