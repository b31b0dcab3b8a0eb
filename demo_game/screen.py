"""The demo game as a screen shows it: the bot playing, RGB frames only (no G-buffers, no motion), read as
`restyler capture` reads a window. For the capture path's tests and its page-latency benchmark, where a real
screen grab would need an X server."""
from __future__ import annotations

import threading

from bridge import FramePacket, SourceClosedError

from .config import GameConfig
from .session import GameSession


class GameScreen:
    """A frame source (read / size / close, like bridge.ScreenSource) on a held-out world. Create it on the thread
    that reads it: the game's GL context lives there. Setting `stop` closes it as a closed window would."""

    def __init__(self, stop: threading.Event | None = None, size: int = 128, seed: int = 1000, fps: int = 30):
        self.session = GameSession(GameConfig(seed=seed, width=size, height=size, fps=fps))
        self.size = (size, size)
        self.stop = stop or threading.Event()
        self.index = 0

    def read(self) -> FramePacket:
        if self.stop.is_set():
            raise SourceClosedError("the game screen was closed")
        packet = self.session.step()
        self.index += 1
        return FramePacket(rgb=packet.rgb, index=self.index)

    def close(self) -> None:
        self.session.close()
