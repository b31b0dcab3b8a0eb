"""Latest-value hand-off between two threads: ChunkMailbox (the newest K values) and LatestMailbox (K = 1).

Used between a producer that must never stall (the game loop, a screen grabber) and a slower consumer (the model
worker). Real-time rendering wants the newest frames, not a queue: a frame the consumer did not get to in time is
stale, so ``put`` drops the oldest waiting value beyond the slots and counts it.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class ChunkMailbox(Generic[T]):
    """The newest ``size`` values, handed over together: the latest-frame mailbox for a consumer that works in
    chunks of consecutive frames (the causal student takes K at a time).

    ``put`` never blocks: beyond ``size`` waiting values the oldest is dropped (and counted), so a slow consumer
    gets the most recent consecutive frames rather than a backlog. ``take`` waits until ``size`` values wait and
    returns them oldest first, emptying the box. ``None`` is reserved to mean "nothing" (empty after a timeout, or
    closed), so it cannot be put. After ``close()`` puts are ignored, so a producer can outlive its consumer.
    ``merge(dropped, next)``, when given, replaces the value after a dropped one, so what the dropped value carried
    for its successor is not lost (the runtime chains a dropped frame's motion into the next frame's).
    """

    def __init__(self, size: int, merge: Callable[[T, T], T] | None = None) -> None:
        if size < 1:
            raise ValueError(f"{type(self).__name__}: size must be >= 1; got {size}")
        self.size = size
        self._merge = merge
        self._cond = threading.Condition(threading.Lock())
        self._values: list[T] = []
        self._closed = False
        self._dropped = 0
        self._put = 0

    def put(self, value: T) -> None:
        if value is None:
            raise ValueError(f"{type(self).__name__}.put: None is reserved for 'no value'; put a real value")
        with self._cond:
            if self._closed:
                return
            self._values.append(value)
            if len(self._values) > self.size:
                dropped = self._values.pop(0)
                if self._merge is not None:
                    self._values[0] = self._merge(dropped, self._values[0])
                self._dropped += 1
            self._put += 1
            if len(self._values) == self.size:
                self._cond.notify()

    def take(self, timeout: float | None = None) -> list[T] | None:
        """The ``size`` newest values, oldest first. Waits up to ``timeout`` seconds (forever if None, not at all
        if 0) for them; None on timeout or once the box is closed without them."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while len(self._values) < self.size and not self._closed:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if len(self._values) < self.size:
                return None
            values, self._values = self._values, []
            return values

    def clear(self) -> None:
        """Forget what waits (a reset: frames from before it must not start the new stream)."""
        with self._cond:
            self._dropped += len(self._values)
            self._values = []

    def close(self) -> None:
        """Wake every waiting ``take``; later puts are ignored. Values already waiting can still be taken."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def dropped(self) -> int:
        """How many values were replaced before anyone took them."""
        return self._dropped

    @property
    def puts(self) -> int:
        """How many values were put in total (taken, dropped or still waiting)."""
        return self._put

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(size={self.size}, waiting={len(self._values)}, put={self._put}, "
                f"dropped={self._dropped}, closed={self._closed})")


class LatestMailbox(ChunkMailbox[T]):
    """Thread-safe one-slot mailbox: ``put`` never waits for the consumer, ``get`` takes the newest value."""

    def __init__(self) -> None:
        super().__init__(1)

    def get(self, timeout: float | None = None) -> T | None:
        """Take the newest value and empty the slot; None on timeout or once closed and empty."""
        values = self.take(timeout)
        return None if values is None else values[0]

    def peek(self) -> T | None:
        """The value waiting in the slot without taking it, or None."""
        with self._cond:
            return self._values[0] if self._values else None
