"""The streaming runtime's one worker, as a thread or as a process: it takes chunks of K frames from the inbox, runs
the StreamEngine and hands back stylized chunks.

Both kinds share one contract, used by renderer.runtime.StreamingRestyler:
    start()            load, set the style, warm up; returns when the first frame would be fast (raises on failure)
    command(kind, arg) "style" (a prompt) or "reset", applied before the next chunk
    stop()             end the worker; idempotent
and report through two callbacks: on_chunk(ChunkResult) and on_error(message).

Thread: shares the process; torch releases the GIL inside its kernels, but the Python between them competes with the
game loop. Process (spawn): its own interpreter, so the game loop never waits on the GIL; frames cross a pipe as raw
bytes (about 0.6 MB a chunk at 128×128 with G-buffers), never pickled. docs/runtime.md has the measurement that picks the default.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from bridge import ChunkMailbox, FramePacket

# The packet buffers a model reads (the names of models.io.data.GBUFFERS, kept here so the game's process need not
# import torch to send a chunk), and the motion its sampler carries history and noise along; a worker carries these
# and nothing else.
MODEL_BUFFERS = ("depth", "normals", "uv", "ao", "sun", "material", "motion")
# where a chunk message keeps the packets' frames at display size (FramePacket.display), for the upsampler
DISPLAY = "display/"

POLL_S = 0.05          # how often an idle worker looks for a stop or a command
START_TIMEOUT_S = 120  # loading torch, the model and MiniLM in a fresh process takes seconds on a slow machine
STOP_TIMEOUT_S = 3     # a chunk in flight finishes in well under this; a stuck child is killed after it


@dataclass
class Submitted:
    """A packet as the runtime received it, with the moment `submit` was called (time.monotonic)."""

    packet: FramePacket
    t_submit: float


@dataclass
class ChunkResult:
    """K stylized frames and where they came from."""

    frames: np.ndarray              # (K, H, W, 3) uint8
    indices: list[int]              # the packets' frame indices
    t_submit: list[float]           # when each packet was submitted
    t_done: float                   # when the frames were ready (time.monotonic)
    style: str                      # the prompt they were made with
    compute_s: float                # the engine's time for this chunk
    look: str | None = None         # the trained style that prompt is nearest to (StreamEngine.look)


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to build its engine, as plain values (it crosses into a spawned process)."""

    model_dir: str
    device: str
    sampler_changes: dict[str, Any]
    seed: int
    threads: int | None             # torch intra-op threads; None keeps torch's default (one per core)
    upsample: bool = True           # use the model's upsampler when it ships one
    precision: str = "fp32"         # the student's, resolved by the parent ("fp32" or "bf16")


def _build_engine(spec: WorkerSpec, style: str):
    import torch

    from renderer.engine import StreamEngine, load_bundle

    if spec.threads:
        torch.set_num_threads(spec.threads)
    bundle = load_bundle(Path(spec.model_dir), spec.device, spec.sampler_changes, spec.upsample, spec.precision)
    engine = StreamEngine(bundle, spec.device, spec.seed)
    engine.set_style(style)
    engine.warm_up()
    return engine


class _Worker:
    """What both worker kinds share: their inputs and callbacks, a stop flag, and the style and reset requests
    from the game thread, applied by the worker between chunks (the latest style wins)."""

    def __init__(self, spec: WorkerSpec, inbox: ChunkMailbox[Submitted], on_chunk: Callable[[ChunkResult], None],
                 on_error: Callable[[str], None]):
        self.spec, self.inbox, self.on_chunk, self.on_error = spec, inbox, on_chunk, on_error
        self._stop = threading.Event()
        self._commands_lock = threading.Lock()
        self._commands: dict[str, Any] = {}

    def command(self, kind: str, arg: Any = None) -> None:
        with self._commands_lock:
            self._commands[kind] = arg

    def _take_commands(self) -> dict[str, Any]:
        with self._commands_lock:
            pending, self._commands = self._commands, {}
            return pending


class ThreadWorker(_Worker):
    def __init__(self, *args: Any):
        super().__init__(*args)
        self._thread: threading.Thread | None = None
        self.engine = None

    def start(self, style: str) -> None:
        self.engine = _build_engine(self.spec, style)
        self._thread = threading.Thread(target=self._run, name="restyler-worker", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        engine = self.engine
        try:
            while not self._stop.is_set():
                _apply(engine, self._take_commands())
                chunk = self.inbox.take(timeout=POLL_S)
                if chunk is None:
                    continue
                _apply(engine, self._take_commands())   # a switch that came while waiting applies to this chunk
                t0 = time.monotonic()
                frames = engine.step([s.packet for s in chunk])
                t_done = time.monotonic()
                self.on_chunk(ChunkResult(frames, [s.packet.index for s in chunk], [s.t_submit for s in chunk],
                                          t_done, engine.style_prompt, t_done - t0, engine.look))
        except Exception as exc:  # noqa: BLE001 - any failure must reach the HUD, not kill the game
            self.on_error(f"{type(exc).__name__}: {exc}")

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)


def _apply(engine, commands: dict[str, Any]) -> None:
    if "style" in commands:
        engine.set_style(commands["style"])   # also empties the cache
    elif "reset" in commands:
        engine.reset()


# ---------------------------------------------------------------------------------------------------------------
# Process worker: a spawned child runs the engine; one pump thread in the parent feeds it chunk by chunk.
# Messages are length-prefixed JSON headers followed by raw array bytes (nothing is pickled).


def pack(kind: str, meta: dict[str, Any] | None = None, arrays: dict[str, np.ndarray] | None = None) -> bytes:
    arrays = {k: np.ascontiguousarray(v) for k, v in (arrays or {}).items()}
    header = {"kind": kind, "meta": meta or {},
              "arrays": [[k, str(v.dtype), list(v.shape)] for k, v in arrays.items()]}
    head = json.dumps(header).encode()
    return b"".join([len(head).to_bytes(4, "little"), head, *(v.tobytes() for v in arrays.values())])


def unpack(data: bytes) -> tuple[str, dict[str, Any], dict[str, np.ndarray]]:
    n = int.from_bytes(data[:4], "little")
    header = json.loads(data[4:4 + n])
    arrays, offset = {}, 4 + n
    for name, dtype, shape in header["arrays"]:
        count = int(np.prod(shape))
        arr = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)
        arrays[name] = arr
        offset += arr.nbytes
    return header["kind"], header["meta"], arrays


def _chunk_message(chunk: list[Submitted]) -> bytes:
    packets = [s.packet for s in chunk]
    arrays = {"rgb": np.stack([p.rgb for p in packets])}
    for name in MODEL_BUFFERS:
        if all(getattr(p, name) is not None for p in packets):
            arrays[name] = np.stack([getattr(p, name) for p in packets])
    if all(p.display is not None for p in packets):   # the frames at display size, for the upsampler
        displays = [p.display for p in packets]
        arrays[f"{DISPLAY}rgb"] = np.stack([d.rgb for d in displays])
        for name in MODEL_BUFFERS:
            if all(getattr(d, name) is not None for d in displays):
                arrays[DISPLAY + name] = np.stack([getattr(d, name) for d in displays])
    return pack("chunk", {"indices": [p.index for p in packets]}, arrays)


def _packets(arrays: dict[str, np.ndarray], indices: list[int], prefix: str = "") -> list[FramePacket]:
    """The chunk's packets back from _chunk_message's arrays (those under `prefix`: the display frames)."""
    display = _packets(arrays, indices, DISPLAY) if not prefix and f"{DISPLAY}rgb" in arrays else None
    return [FramePacket(rgb=arrays[prefix + "rgb"][i], index=indices[i],
                        display=None if display is None else display[i],
                        **{name: arrays[prefix + name][i] for name in MODEL_BUFFERS if prefix + name in arrays})
            for i in range(len(indices))]


def _child_main(conn, spec: WorkerSpec, style: str) -> None:
    """The worker process: build the engine, then answer each chunk with its frames until told to stop."""
    try:
        engine = _build_engine(spec, style)
        conn.send_bytes(pack("ready"))
        while True:
            kind, meta, arrays = unpack(conn.recv_bytes())
            if kind == "stop":
                return
            if kind == "style":
                engine.set_style(meta["prompt"])
            elif kind == "reset":
                engine.reset()
            elif kind == "chunk":
                packets = _packets(arrays, meta["indices"])
                t0 = time.monotonic()
                frames = engine.step(packets)
                conn.send_bytes(pack("frames", {"compute_s": time.monotonic() - t0, "style": engine.style_prompt,
                                                "look": engine.look}, {"frames": frames}))
    except (EOFError, KeyboardInterrupt):
        return   # the parent went away or the terminal was interrupted: nothing left to report to
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which keeps the game running
        detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        try:
            conn.send_bytes(pack("error", {"message": detail}))
        except OSError:
            pass
        raise SystemExit(1) from None


class ProcessWorker(_Worker):
    def __init__(self, *args: Any):
        super().__init__(*args)
        self._pump: threading.Thread | None = None
        self.process = None
        self._conn = None

    def start(self, style: str) -> None:
        ctx = mp.get_context("spawn")   # fork would copy the game's GL context and threads into the child
        parent, child = ctx.Pipe()
        # The spec and style reach the child through multiprocessing's own start-up hand-off; after that only the
        # byte messages below cross.
        self.process = ctx.Process(target=_child_main, args=(child, self.spec, style), name="restyler-worker",
                                   daemon=True)
        try:
            self.process.start()
            child.close()
            self._conn = parent
            kind, meta = self._receive(START_TIMEOUT_S)
            if kind != "ready":
                raise RuntimeError(f"the worker process failed to start: {meta.get('message', kind)}")
        except BaseException:   # also Ctrl+C while loading: never leave the child behind
            self.stop()
            raise
        self._pump = threading.Thread(target=self._run, name="restyler-pump", daemon=True)
        self._pump.start()

    def _receive(self, timeout: float) -> tuple[str, dict[str, Any]]:
        """The next message that is not frames, waiting up to `timeout` (the child's death is an error)."""
        deadline = time.monotonic() + timeout
        while not self._conn.poll(POLL_S):
            if not self.process.is_alive():
                return "exited", {"message": f"the worker process exited with code {self.process.exitcode}"}
            if time.monotonic() > deadline:
                return "timeout", {"message": f"no answer from the worker process in {timeout:g} s"}
        try:
            kind, meta, _ = unpack(self._conn.recv_bytes())
        except (EOFError, OSError):
            return "exited", {"message": f"the worker process exited with code {self.process.exitcode}"}
        return kind, meta

    def _run(self) -> None:
        conn = self._conn   # stop() may drop self._conn; this thread keeps its own reference
        try:
            while not self._stop.is_set():
                self._send_commands(conn)
                chunk = self.inbox.take(timeout=POLL_S)
                if chunk is None:
                    if not self.process.is_alive():
                        raise EOFError
                    continue
                self._send_commands(conn)   # a switch that came while waiting applies to this chunk
                conn.send_bytes(_chunk_message(chunk))
                while not conn.poll(POLL_S):
                    if self._stop.is_set():
                        return
                    if not self.process.is_alive():
                        raise EOFError
                kind, meta, arrays = unpack(conn.recv_bytes())
                if kind == "error":
                    self.on_error(meta["message"])
                    return
                self.on_chunk(ChunkResult(arrays["frames"].copy(), [s.packet.index for s in chunk],
                                          [s.t_submit for s in chunk], time.monotonic(), meta["style"],
                                          meta["compute_s"], meta.get("look")))
        except (EOFError, OSError):
            if not self._stop.is_set():
                self.on_error(self._why_the_child_died(conn))
        except Exception as exc:  # noqa: BLE001 - whatever went wrong must reach the HUD, not end silently
            self.on_error(f"{type(exc).__name__}: {exc}")

    def _why_the_child_died(self, conn) -> str:
        """The child's own error message when it sent one before exiting, else its exit code."""
        try:
            if conn.poll(0.5):
                kind, meta, _ = unpack(conn.recv_bytes())
                if kind == "error":
                    return meta["message"]
        except (EOFError, OSError):
            pass
        self.process.join(timeout=1)
        return f"the worker process died (exit code {self.process.exitcode})"

    def _send_commands(self, conn) -> None:
        pending = self._take_commands()
        if "style" in pending:
            conn.send_bytes(pack("style", {"prompt": pending["style"]}))
        elif "reset" in pending:
            conn.send_bytes(pack("reset"))

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive() and self._pump is not None \
            and self._pump.is_alive()

    def stop(self) -> None:
        """End the pump (it checks every POLL_S), ask the child to stop, and kill it if it does not in time."""
        self._stop.set()
        if self._pump is not None and self._pump is not threading.current_thread():
            self._pump.join(timeout=10)
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.send_bytes(pack("stop"))
                deadline = time.monotonic() + STOP_TIMEOUT_S
                # drain a chunk the child was still finishing, so it is not stuck writing into a full pipe
                while self.process.is_alive() and time.monotonic() < deadline:
                    if conn.poll(POLL_S):
                        conn.recv_bytes()
            except (EOFError, OSError):
                pass
        if self.process is not None and self.process.pid is not None:   # started at all
            self.process.join(timeout=STOP_TIMEOUT_S)
            if self.process.is_alive():
                self.process.kill()
                self.process.join(timeout=5)
        if conn is not None:
            conn.close()


WORKERS = {"thread": ThreadWorker, "process": ProcessWorker}
