"""Errors raised by the bridge (frames in and out of Restyler).

Callers — the game loop, the ``restyler capture``/``restyle`` commands, the streaming runtime — catch
``BridgeError`` to report bad input once, clearly, and to finalise whatever they were recording.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base class of every error the bridge raises on purpose."""


class InvalidFrameError(BridgeError, ValueError):
    """A frame (FramePacket or raw array) does not match the wire contract in docs/interfaces.md.

    The message names the field, what was expected and what arrived.
    """


class SourceOpenError(BridgeError):
    """A frame source could not be opened: region off the screen, window not found, file missing or not a video."""


class SourceClosedError(BridgeError):
    """A source can deliver no more frames: it was closed, or what it captured went away (e.g. the window closed)."""


class EndOfStream(SourceClosedError):
    """A finite source (a video file, a game that quit) delivered its last frame.

    Iterating over a source stops quietly on this; any other ``SourceClosedError`` propagates, because a window
    vanishing mid-capture is something the user should be told about.
    """
