"""StreamingRestyler: the Python API a game drops into its loop (docs/runtime.md, docs/design.md "Interfaces").

    r = StreamingRestyler.from_pretrained("models/weights/default", device="auto")
    r.prepare(style="snowy winter village")   # loads, warms up: the first frame is then fast
    r.submit(packet)                          # never blocks; a newer frame replaces an unprocessed older one
    frame = r.latest()                        # newest stylized frame that is due, (H, W, 3) uint8, or None
    r.update_style("neon night city")         # switches at the next chunk, no blank frame

One worker (renderer.workers: a thread or a process) restyles chunks of K consecutive frames. Frames go in through a
ChunkMailbox that keeps only the newest K, so a slow model drops stale frames instead of building a queue; stylized
chunks come back to a pacer that releases the K frames of a chunk at the spacing they were submitted with, so the
display moves at the stream's rate rather than in bursts of K. A failing worker never raises into the game: `error`
says why, `latest()` keeps its last frame, and `restart()` brings the worker back.
"""

from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bridge import ChunkMailbox, FramePacket
from models.network.precision import resolve_precision
from renderer import DEFAULT_MODEL
from renderer.engine import ModelError, load_bundle, resolve_device
from renderer.reproject import compose_motion
from renderer.workers import WORKERS, ChunkResult, Submitted, WorkerSpec

RATE_WINDOW_S = 1.0        # AI fps and latency on the HUD are averaged over this much recent time
LATENCY_HISTORY = 100_000  # per-frame latencies kept for benchmarks (bounded: a stream may run for days)
# Denoising levels run on a CPU: one (t* only) rather than the shipped student's two. Measured on the 2-core CPU at
# 128x128 beside the 60 fps game (docs/runtime.md): 2 steps give 28.8 fps and a p95 latency of 103 ms, 1 step
# 50.6 fps and 74 ms, for 0.3-0.5 dB of PSNR (shipped student: 16.59 -> 16.31 dB; the teacher scores 14.78).
CPU_STEPS = 1


@dataclass
class StyledFrame:
    """One stylized frame as the display gets it."""

    rgb: np.ndarray      # (H, W, 3) uint8 at the model's resolution
    index: int           # the incoming packet's frame index
    t_submit: float      # when that packet was submitted (time.monotonic)
    t_due: float         # when the frame was released to the display
    style: str
    look: str | None = None   # the trained style `style` is nearest to (renderer.engine.StreamEngine.look)

    @property
    def latency_s(self) -> float:
        return self.t_due - self.t_submit


@dataclass
class RuntimeStats:
    """What the HUD and benchmarks read."""

    ai_fps: float = 0.0          # stylized frames released per second, over the last RATE_WINDOW_S
    latency_ms: float = 0.0      # mean submit-to-display latency over the same window
    frames_out: int = 0
    chunks: int = 0
    submitted: int = 0
    dropped: int = 0             # frames replaced in the inbox before the worker got to them
    compute_ms: float = 0.0      # the engine's last chunk
    style: str = ""
    error: str | None = None
    latencies_s: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LATENCY_HISTORY))
    compute_s: collections.deque = field(default_factory=lambda: collections.deque(maxlen=LATENCY_HISTORY))


class _Pacer:
    """Releases each chunk's frames at the spacing they were submitted with, starting when the chunk is ready."""

    def __init__(self, chunk_frames: int):
        self._lock = threading.Lock()
        self._pending: collections.deque[StyledFrame] = collections.deque(maxlen=2 * chunk_frames)
        self.current: StyledFrame | None = None

    def add(self, result: ChunkResult) -> None:
        with self._lock:
            t0 = result.t_submit[0]
            for rgb, index, t_submit in zip(result.frames, result.indices, result.t_submit):
                self._pending.append(StyledFrame(rgb, index, t_submit, result.t_done + (t_submit - t0),
                                                 result.style, result.look))

    def due(self, now: float) -> list[StyledFrame]:
        """Frames whose time has come since the last call, oldest first; the newest becomes `current`."""
        with self._lock:
            out = []
            while self._pending and self._pending[0].t_due <= now:
                out.append(self._pending.popleft())
            if out:
                self.current = out[-1]
            return out

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()


class StreamingRestyler:
    """Restyles a live stream of FramePackets with the causal student. See the module docstring."""

    def __init__(self, model_dir: Path | str = DEFAULT_MODEL, device: str = "auto", worker: str = "process",
                 steps: int | None = None, seed: int = 0, threads: int | None = 1, upsample: bool = True,
                 precision: str = "auto"):
        """`worker`: "process" (default) or "thread"; `threads`: the worker's torch threads (1 leaves a core of a
        2-core CPU to the game; None is torch's default); `steps`: how many of the student's levels to run, None
        for the device's default (CPU_STEPS on a CPU, all of them on a GPU); `upsample`: use the model's upsampler
        when it ships one (`display_resolution` then says at which size a game hands over FramePacket.display);
        `precision`: "auto" (bf16 on a GPU or a CPU with AMX, else fp32), "fp32" or "bf16"; `self.precision` says
        what it resolved to and why. docs/runtime.md has the measurements behind every default."""
        if worker not in WORKERS:
            raise ValueError(f"worker must be one of {sorted(WORKERS)}; got {worker!r}")
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)   # PrecisionError is a ValueError
        # Load once here so a missing or corrupt model is one clear error before anything starts; the worker
        # builds its own engine from the same directory (a process worker must).
        # on the CPU, as stored: the parent only checks and reads sizes
        bundle = load_bundle(model_dir, "cpu", upsample=upsample, precision="fp32")
        levels = bundle.sampler.timesteps
        if steps is None:
            steps = min(CPU_STEPS, len(levels)) if self.device.type == "cpu" else len(levels)
        if not 1 <= steps <= len(levels):
            raise ValueError(f"steps must be between 1 and the student's {len(levels)} levels {levels}; got {steps}")
        changes = {"timesteps": levels[:steps]} if steps < len(levels) else {}
        bundle.sampler = replace(bundle.sampler, **changes)
        self.chunk_frames = bundle.student.cfg.chunk_frames
        self.resolution = bundle.frame_size
        # (W, H) of the AI frames when the game hands over each frame at this size too (FramePacket.display): the
        # model's upsampler draws them there, guided by those G-buffers; None when the model has no upsampler
        self.display_resolution = bundle.display_size
        self.sampler = bundle.sampler
        self.model_config = bundle.student.cfg
        self.spec = WorkerSpec(str(model_dir), str(self.device), changes, seed, threads, upsample,
                               self.precision.name)
        self.worker_kind = worker
        self._inbox: ChunkMailbox[Submitted] = ChunkMailbox(self.chunk_frames, merge=chain_motion)
        self._pacer = _Pacer(self.chunk_frames)
        self._stats = RuntimeStats()
        self._stats_lock = threading.Lock()
        self._recent: collections.deque[StyledFrame] = collections.deque()
        self._worker = None
        self._style: str | None = None
        # prepare()/close() may run on two threads (the game's F5 restart and its quit): one at a time
        self._lifecycle = threading.RLock()
        self._token: object | None = None   # which worker's results count (an old worker's are ignored)
        self._cut_at = 0.0                  # frames submitted before the last reset() are never shown

    @classmethod
    def from_pretrained(cls, model_dir: Path | str = DEFAULT_MODEL, device: str = "auto", **kwargs: Any
                        ) -> StreamingRestyler:
        """A restyler for a shipped model (models/weights/<name>) or a finished training run; raises ModelError
        with how to get one when the directory is missing or unreadable."""
        return cls(model_dir, device, **kwargs)

    # -- lifetime -----------------------------------------------------------------------------------------------
    def prepare(self, style: str) -> None:
        """Start the worker with `style`, warmed up (returns when the first frame would be as fast as any)."""
        if not isinstance(style, str) or not style.strip():
            raise ValueError(f"prepare() needs a style prompt, e.g. 'snowy winter village'; got {style!r}")
        with self._lifecycle:
            self.close()
            self._style = style.strip()
            self._stats.error = None
            self._stats.style = self._style
            self._inbox = ChunkMailbox(self.chunk_frames, merge=chain_motion)
            token = self._token = object()
            worker = WORKERS[self.worker_kind](self.spec, self._inbox, lambda r: self._on_chunk(r, token),
                                               lambda m: self._on_error(m, token))
            self._worker = worker   # set first: close() must stop a worker whose start was interrupted
            try:
                worker.start(self._style)
            except BaseException:
                self.close()
                raise

    def restart(self) -> None:
        """Bring a failed (or running) worker back with the current style, warmed up like prepare()."""
        if self._style is None:
            raise RuntimeError("restart() before prepare(): there is no stream to restart")
        self.prepare(self._style)

    def close(self) -> None:
        """Stop the worker (idempotent); frames it still delivers are ignored."""
        with self._lifecycle:
            self._token = None
            if self._worker is not None:
                self._inbox.close()
                self._worker.stop()
                self._worker = None

    def __enter__(self) -> StreamingRestyler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the stream ---------------------------------------------------------------------------------------------
    def submit(self, packet: FramePacket | np.ndarray) -> None:
        """Hand over a frame; never blocks. A bare (H, W, 3) uint8 array is a frame without G-buffers. A frame the
        worker has not reached when newer ones arrive is dropped."""
        if isinstance(packet, np.ndarray):
            packet = FramePacket(rgb=packet, index=self._stats.submitted)
        packet.validate()
        self._stats.submitted += 1
        self._inbox.put(Submitted(packet, time.monotonic()))

    def latest_frame(self) -> StyledFrame | None:
        """The newest stylized frame that is due, with its timing; None before the first."""
        now = time.monotonic()
        released = self._pacer.due(now)
        if released:
            with self._stats_lock:
                self._stats.frames_out += len(released)
                for frame in released:
                    self._stats.latencies_s.append(frame.latency_s)
                    self._recent.append(frame)
                self._forget_old(now)
        return self._pacer.current

    def latest(self) -> np.ndarray | None:
        """The newest stylized frame that is due, (H, W, 3) uint8 at the model's resolution, or None."""
        frame = self.latest_frame()
        return None if frame is None else frame.rgb

    def update_style(self, prompt: str) -> None:
        """Switch the style at the next chunk: the cache is emptied and the next chunk comes in the new style; the
        last frame of the old style stays on screen until then (never a blank frame)."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"a style prompt must be a non-empty string, e.g. 'neon night city'; got {prompt!r}")
        self._style = prompt.strip()
        self._stats.style = self._style
        if self._worker is not None:
            self._worker.command("style", self._style)

    def reset(self) -> None:
        """A cut (new level, teleport): forget the stream's past so the next chunk does not attend to it. A chunk
        in flight is dropped when it arrives, and the worker empties its cache before its next chunk."""
        self._cut_at = time.monotonic()
        self._inbox.clear()
        self._pacer.clear()
        if self._worker is not None:
            self._worker.command("reset")

    # -- status -------------------------------------------------------------------------------------------------
    @property
    def error(self) -> str | None:
        """Why the worker stopped, or None while it runs."""
        return self._stats.error

    @property
    def running(self) -> bool:
        return self._worker is not None and self._worker.alive and self._stats.error is None

    @property
    def stats(self) -> RuntimeStats:
        """The numbers for the HUD, updated now: fps and latency over the last second (the object is live; the
        latency history is shared, not copied)."""
        self.latest_frame()
        now = time.monotonic()
        with self._stats_lock:
            self._forget_old(now)
            recent = list(self._recent)
            s = self._stats
            s.dropped = self._inbox.dropped
            s.ai_fps = len(recent) / RATE_WINDOW_S
            s.latency_ms = 1000 * float(np.mean([f.latency_s for f in recent])) if recent else 0.0
            return s

    def _forget_old(self, now: float) -> None:
        """Keep only the last RATE_WINDOW_S of released frames (the HUD's averages); called under the lock."""
        while self._recent and self._recent[0].t_due < now - RATE_WINDOW_S:
            self._recent.popleft()

    # -- worker callbacks (worker thread) ---------------------------------------------------------------------
    def _on_chunk(self, result: ChunkResult, token: object) -> None:
        if token is not self._token or result.t_submit[0] < self._cut_at:
            return   # a stopped worker's late chunk, or frames from before a cut
        self._pacer.add(result)
        with self._stats_lock:
            self._stats.chunks += 1
            self._stats.compute_ms = 1000 * result.compute_s
            self._stats.compute_s.append(result.compute_s)

    def _on_error(self, message: str, token: object) -> None:
        if token is self._token:
            self._stats.error = message


__all__ = ["DEFAULT_MODEL", "ModelError", "RuntimeStats", "StreamingRestyler", "StyledFrame"]


def chain_motion(dropped: Submitted, following: Submitted) -> Submitted:
    """The inbox's merge: a frame the worker never took hands its motion on, so the next frame's motion reaches
    back to the last frame the worker did take (the student carries its history and noise along it, and the
    upsampler's temporal resolve its last output, along the display frame's motion)."""
    packet = _chained(dropped.packet, following.packet)
    if following.packet.display is not None:
        older = dropped.packet.display
        newer = following.packet.display
        # a dropped frame without a display frame: the resolve cannot follow, so it starts again
        packet = replace(packet, display=replace(newer, motion=None) if older is None else _chained(older, newer))
    return replace(following, packet=packet)


def _chained(dropped: FramePacket, following: FramePacket) -> FramePacket:
    newer, older = following.motion, dropped.motion
    if newer is None:
        return following
    # a dropped frame without motion began a new view: where the next frame's surfaces were before it is unknown
    return replace(following, motion=None if older is None else compose_motion(newer, older))
