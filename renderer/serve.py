"""The restyled stream as a local web page, for an OBS Browser Source (`restyler capture|play --serve`).

    producer (capture loop or game loop)          StreamServer (its own thread, asyncio + aiohttp)
      publish(styled, original, meta) ──────────►  composes the view mode, JPEG-encodes once per new frame
      actions() ◄──── style / reset requests ────  /control page and /api/* (POST)
                                                    /view page ◄── /ws: newest frame only, per page

Every page gets the newest frame when it is ready for one: a page that falls behind skips frames (counted), it
never builds a queue, and the producer never waits on the network. With no page open nothing is encoded.

The producer owns the stream; the server only asks. Style and reset requests wait in a queue that the producer
drains once a frame (`actions()`), so the game applies a style from the web exactly as one typed in its window
(the sun G-buffer follows it). The view mode (ai, split, blend, original) is the server's own: it is what the page
shows, whatever the window shows.

Safety: loopback by default. Bound to any other address the server needs a token, and every route (pages, API and
frames) wants it, as `?token=` or the `X-Restyler-Token` header. A bad request gets one 4xx with a JSON reason and
never touches the stream; a malformed one costs one console line, never a traceback; a request that never finishes
is timed out (REQUEST_TIMEOUT_S). docs/streaming.md has the measurements and the OBS steps.
"""
from __future__ import annotations

import asyncio
import hmac
import io
import ipaddress
import json
import logging
import secrets
import statistics
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np

from renderer.prompts import MAX_PROMPT_CHARS, clean_prompt

VIEW_MODES = ("ai", "split", "blend", "original")
MAX_BODY_BYTES = 4096          # a prompt and its JSON fit easily; anything larger is refused with 413
JPEG_QUALITY = 85
START_TIMEOUT_S = 10
LATENCY_WINDOW = 600           # page-paint latencies kept (20 s at 30 fps): the p50 in /api/stats, the bench
ACK_TIMEOUT_S = 1.0            # a page that never acknowledges a paint still gets a frame a second
UNACKED_KEPT = 8               # frames sent to a page whose paint may still be acknowledged (late ones count too)
# A connection whose request line and headers do not arrive within this is closed (aiohttp's keep-alive timer runs
# from the connection's start), and so is an idle kept-alive one; a request body that does not arrive gets a 408.
REQUEST_TIMEOUT_S = 10.0


class ServeError(RuntimeError):
    """The server could not start (a bad address, a port in use, a non-loopback bind without a token)."""


def parse_address(text: str) -> tuple[str, int]:
    """"[HOST:]PORT" -> (host, port); the host defaults to the loopback address. Port 0 picks a free port."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]") if sep else "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        raise ValueError(f"expected [HOST:]PORT, e.g. 8765 or 0.0.0.0:8765; got {text!r}") from None
    if not 0 <= number <= 65535:
        raise ValueError(f"a port is 0..65535; got {number}")
    return host or "127.0.0.1", number


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False   # a host name other than localhost may resolve anywhere


class _OneLineFormatter(logging.Formatter):
    """aiohttp reports a malformed request (raw bytes, a TLS hello, HTTP/9.9, a negative Content-Length, a client
    that drops mid-body) with a traceback; beside a game's console one line says it all."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage().replace("Error handling request", "dropped a bad request")
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            reason = " ".join(str(exc).split()) or type(exc).__name__
            message += f": {reason[:200]}"
        return f"restyler serve: {message}"


class _StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is when a line is logged (the console, or a test's capture)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:  # noqa: BLE001 - logging must never take the server down
            self.handleError(record)


def console_logger() -> logging.Logger:
    """The logger the web server reports through: one line per event on stderr, no tracebacks."""
    logger = logging.getLogger("restyler.serve")
    if not logger.handlers:
        handler = _StderrHandler()
        handler.setFormatter(_OneLineFormatter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def compose(mode: str, styled: np.ndarray | None, original: np.ndarray) -> np.ndarray:
    """The picture a view mode shows, (H, W, 3) uint8: `styled` (the AI frame, at the original's size, or None before
    the first one) and `original` (what the model was given). Until the first AI frame every mode shows the
    original."""
    if styled is None or mode == "original":
        return original
    if mode == "ai":
        return styled
    if mode == "split":   # original on the left, AI on the right, at the same screen positions
        out = styled.copy()
        half = out.shape[1] // 2
        out[:, :half] = original[:, :half]
        return out
    if mode == "blend":
        return ((styled.astype(np.uint16) + original) // 2).astype(np.uint8)
    raise ValueError(f"unknown view mode {mode!r}; expected one of {', '.join(VIEW_MODES)}")


def encode_jpeg(frame: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@dataclass
class _Frame:
    seq: int
    payload: bytes                # 4-byte header length, JSON header, JPEG


class _Page:
    """One connected page: the frame in flight to it (0: none), and the frames sent to it whose paint it has not
    acknowledged yet (the latest UNACKED_KEPT), so that only a real first acknowledgement of a frame this page
    was sent counts toward the paint latency."""

    def __init__(self):
        self.unacked = 0
        self.acked = asyncio.Event()
        self.sent: dict[int, None] = {}   # seq -> None, oldest first

    def sending(self, seq: int) -> None:
        self.unacked = seq
        self.acked.clear()
        self.sent[seq] = None
        while len(self.sent) > UNACKED_KEPT:
            del self.sent[next(iter(self.sent))]

    def acknowledge(self, seq: int) -> bool:
        """Whether `seq` is a frame sent to this page and not acknowledged before; releases the sender when it is
        the one in flight."""
        if seq not in self.sent:
            return False
        del self.sent[seq]
        if seq == self.unacked:
            self.unacked = 0
            self.acked.set()
        return True


@dataclass
class ServerStats:
    pages: int = 0                # open /ws connections
    frames_published: int = 0
    frames_sent: int = 0          # over every page
    frames_skipped: int = 0       # newer frames replaced ones a slow page had not taken yet
    page_latency_ms: float | None = None   # p50, source frame handed to the runtime -> painted in a page
    page_latencies: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    # source frame handed to the runtime -> published here, at the producer's display tick: when its own window
    # shows the same frame, so the glass-to-window latency to compare the page's with
    publish_latencies: deque = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))


class StreamServer:
    """A local web server for one stream. `start()` binds it and returns once it serves; `publish` and `actions`
    are called from the producer's thread; `close()` stops it. Also a context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
                 presets: tuple[str, ...] = ()):
        if not is_loopback(host) and not token:
            token = secrets.token_urlsafe(16)   # never serve the controls to a network without one
        self.host, self.port, self.token, self.presets = host, port, token, tuple(presets)
        self.view_mode = "ai"
        self.stats = ServerStats()
        self._producer: dict[str, Any] = {}     # the producer's latest numbers (AI fps, latency, style, ...)
        self._actions: deque[tuple[str, Any]] = deque()
        self._actions_lock = threading.Lock()
        self._seq = 0
        self._latest: _Frame | None = None
        self._raw: tuple[np.ndarray | None, np.ndarray, dict[str, Any]] | None = None
        self._encoded: tuple[np.ndarray | None, str] = (None, "")   # the last encoded AI frame and its view mode
        self._raw_styled: np.ndarray | None = None   # the last published AI frame
        self._sent_at: dict[int, float] = {}    # seq -> the source frame's submit time, for the paint latency
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._changed: asyncio.Condition | None = None
        self._runner = None
        self._pages: set = set()

    # -- the producer's side (any thread) -------------------------------------------------------------------------

    def publish(self, styled: np.ndarray | None, original: np.ndarray, style: str = "",
                t_source: float | None = None, numbers: dict[str, Any] | None = None) -> None:
        """A new displayed frame: `styled` the AI frame (None before the first), `original` the frame it came from
        at the same size, `style` the prompt it was made with, `t_source` when its source frame was handed to the
        runtime (time.monotonic), `numbers` the producer's live numbers for /control. Never blocks. The server
        keeps the arrays until it has encoded them: hand over arrays that are not written to afterwards."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        meta = {"style": style, "t_source": t_source}
        try:
            loop.call_soon_threadsafe(self._on_publish, styled, original, meta, dict(numbers or {}))
        except RuntimeError:   # the loop closed between the check and the call: the server is going away
            pass

    def actions(self) -> list[tuple[str, Any]]:
        """The requests that came from the pages since the last call, oldest first: ("style", prompt) or
        ("reset", None). The producer applies them on its own thread."""
        with self._actions_lock:
            pending = list(self._actions)
            self._actions.clear()
        return pending

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def page_url(self, page: str) -> str:
        return f"{self.url}/{page}" + (f"?token={self.token}" if self.token else "")

    # -- life cycle -----------------------------------------------------------------------------------------------

    def start(self) -> "StreamServer":
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(ready, failure), name="restyler-serve", daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S):
            raise ServeError(f"the web server did not start on {self.host}:{self.port} in {START_TIMEOUT_S} s")
        if failure:
            self._thread.join(timeout=5)
            raise ServeError(f"cannot serve on {self.host}:{self.port}: {failure[0]}") from failure[0]
        return self

    def close(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None and thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> "StreamServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _run(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to start(), which raises it as a ServeError
            failure.append(exc)
            ready.set()
            loop.close()
            return
        self._loop = loop
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _serve(self) -> None:
        from aiohttp import web

        self._changed = asyncio.Condition()
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._guard(web)])
        app.add_routes([web.get("/", self._index), web.get("/view", self._page), web.get("/control", self._page),
                        web.get("/ws", self._websocket), web.get("/api/stats", self._get_stats),
                        web.post("/api/style", self._post_style), web.post("/api/view", self._post_view),
                        web.post("/api/reset", self._post_reset)])
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, logger=console_logger(),
                                     keepalive_timeout=REQUEST_TIMEOUT_S)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        try:
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        if self.port == 0:   # the port the OS picked
            self.port = site._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        for ws in list(self._pages):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- the stream -----------------------------------------------------------------------------------------------

    def _on_publish(self, styled, original, meta: dict[str, Any], numbers: dict[str, Any]) -> None:
        self._producer = numbers
        last_styled, last_mode = self._encoded
        if self.view_mode == "ai" and styled is not None and styled is last_styled and last_mode == "ai":
            return   # the game ticks faster than the AI: the page already has this picture
        self.stats.frames_published += 1
        if meta["t_source"] is not None and styled is not self._raw_styled:
            self.stats.publish_latencies.append(1000 * (time.monotonic() - meta["t_source"]))
        self._raw_styled = styled
        self._raw = (styled, original, meta)
        if self._pages:   # nothing is encoded while no page watches
            self._encode_latest()

    def _encode_latest(self) -> None:
        if self._raw is None:
            return
        styled, original, meta = self._raw
        self._raw = None
        self._seq += 1
        header = json.dumps({"seq": self._seq, "style": meta["style"], "view": self.view_mode}).encode()
        jpeg = encode_jpeg(compose(self.view_mode, styled, original))
        self._encoded = (styled, self.view_mode)
        self._latest = _Frame(self._seq, len(header).to_bytes(4, "little") + header + jpeg)
        if meta["t_source"] is not None:
            self._sent_at[self._seq] = meta["t_source"]
            for old in [s for s in self._sent_at if s < self._seq - LATENCY_WINDOW]:
                del self._sent_at[old]
        asyncio.ensure_future(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _websocket(self, request):
        from aiohttp import WSMsgType, web

        # no per-message deflate: JPEG does not compress, and each page's compressor held 36 KB (docs/streaming.md)
        ws = web.WebSocketResponse(heartbeat=10, max_msg_size=MAX_BODY_BYTES, compress=False)
        try:
            await ws.prepare(request)
        except ConnectionResetError:   # the page closed while connecting: aiohttp drops this answer quietly
            return web.Response(status=499)
        page = _Page()
        self._pages.add(ws)
        self.stats.pages = len(self._pages)
        if self._raw is not None:   # frames published while no page watched: encode the newest now
            self._encode_latest()
        sender = asyncio.ensure_future(self._send_frames(ws, page))
        try:
            async for msg in ws:   # the page's paint acknowledgements; anything else is ignored
                if msg.type == WSMsgType.TEXT:
                    self._on_ack(msg.data, page)
        finally:
            sender.cancel()
            self._pages.discard(ws)
            self.stats.pages = len(self._pages)
        return ws

    async def _send_frames(self, ws, page: "_Page") -> None:
        """One frame in flight per page: the next goes once the page has painted the last (or ACK_TIMEOUT_S has
        passed), and it is the newest there is. A page that paints slowly skips frames; none wait in a socket."""
        sent = 0
        try:
            while not ws.closed:
                async with self._changed:
                    await self._changed.wait_for(lambda: self._latest is not None and self._latest.seq != sent)
                if page.unacked:
                    try:
                        await asyncio.wait_for(page.acked.wait(), ACK_TIMEOUT_S)
                    except asyncio.TimeoutError:
                        pass
                frame = self._latest
                if sent:
                    self.stats.frames_skipped += max(0, frame.seq - sent - 1)
                page.sending(frame.seq)
                await ws.send_bytes(frame.payload)
                sent = frame.seq
                self.stats.frames_sent += 1
        except (ConnectionError, RuntimeError):   # the page went away mid-send
            pass

    def _on_ack(self, text: str, page: "_Page") -> None:
        try:
            seq = int(json.loads(text)["painted"])
        except (ValueError, KeyError, TypeError, OverflowError):
            return
        if not page.acknowledge(seq):
            return   # a frame never sent to this page, or acknowledged already: not a paint
        t_source = self._sent_at.get(seq)
        if t_source is not None:
            lat = self.stats.page_latencies
            lat.append(1000 * (time.monotonic() - t_source))
            self.stats.page_latency_ms = statistics.median(lat)

    # -- pages and the API ----------------------------------------------------------------------------------------

    @staticmethod
    def _json_error(status: int, message: str):
        from aiohttp import web

        return web.json_response({"error": message}, status=status)

    def _authorised(self, request) -> bool:
        if not self.token:
            return True
        given = request.headers.get("X-Restyler-Token") or request.query.get("token") or ""
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _guard(self, web):
        """The middleware every request passes: the token first, then aiohttp's own 4xx (404, 405, 413) in the
        same JSON shape as ours."""
        @web.middleware
        async def guard(request, handler):
            if not self._authorised(request):
                return self._json_error(401, "this server wants its token: add ?token=... to the page's address "
                                             "or send the X-Restyler-Token header")
            try:
                return await handler(request)
            except web.HTTPException as exc:
                if exc.status < 400:
                    raise
                reason = {404: f"no such page: {request.path}; the pages are /view and /control, the API "
                               "/api/stats (GET), /api/style, /api/view and /api/reset (POST)",
                          405: f"{request.method} is not allowed on {request.path}",
                          413: f"a request body is at most {MAX_BODY_BYTES} bytes"}.get(exc.status, exc.reason)
                return self._json_error(exc.status, reason)
        return guard

    async def _index(self, request):
        from aiohttp import web

        raise web.HTTPFound("/control" + (f"?token={self.token}" if self.token else ""))

    async def _page(self, request):
        from aiohttp import web

        name = request.path.strip("/")
        html = resources.files("renderer").joinpath("web", f"{name}.html").read_text()
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def _get_stats(self, request):
        from aiohttp import web

        s = self.stats
        return web.json_response({**self._producer, "view": self.view_mode, "pages": s.pages,
                                  "frames_published": s.frames_published, "frames_sent": s.frames_sent,
                                  "frames_skipped": s.frames_skipped, "page_latency_ms": s.page_latency_ms,
                                  "presets": list(self.presets), "view_modes": list(VIEW_MODES)})

    async def _body(self, request) -> dict[str, Any]:
        from aiohttp import web

        try:
            body = await asyncio.wait_for(request.json(), REQUEST_TIMEOUT_S)
        except (ValueError, UnicodeDecodeError):
            raise web.HTTPBadRequest(reason="the body must be JSON, e.g. {\"prompt\": \"neon night city\"}")
        except asyncio.TimeoutError:
            raise web.HTTPRequestTimeout(reason=f"the request body did not arrive within {REQUEST_TIMEOUT_S:g} s")
        except ConnectionError:   # the client went away mid-body: nobody is left to answer
            raise web.HTTPBadRequest(reason="the connection closed before the request body was complete")
        if not isinstance(body, dict):
            raise web.HTTPBadRequest(reason="the body must be a JSON object")
        return body

    async def _post_style(self, request):
        from aiohttp import web

        prompt = (await self._body(request)).get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return self._json_error(400, "expected {\"prompt\": \"a style, e.g. snowy winter village\"}: "
                                         "a non-empty string")
        try:
            prompt = clean_prompt(prompt)
        except ValueError:
            return self._json_error(400, f"a prompt is printable text of at most {MAX_PROMPT_CHARS} characters")
        with self._actions_lock:
            self._actions.append(("style", prompt))
        return web.json_response({"style": prompt}, status=202)

    async def _post_view(self, request):
        from aiohttp import web

        mode = (await self._body(request)).get("mode")
        if mode not in VIEW_MODES:
            return self._json_error(400, f"expected {{\"mode\": one of {', '.join(VIEW_MODES)}}}; got {mode!r}")
        self.view_mode = mode
        return web.json_response({"view": mode})

    async def _post_reset(self, request):
        from aiohttp import web

        with self._actions_lock:
            self._actions.append(("reset", None))
        return web.json_response({"reset": True}, status=202)


def apply_requests(server: "StreamServer", restyler) -> None:
    """The style and reset requests the server's pages made since the last frame, in order, applied to a
    StreamingRestyler (a producer with nothing else to keep in step, like capture)."""
    for kind, value in server.actions():
        if kind == "style":
            restyler.update_style(value)
        elif kind == "reset":
            restyler.reset()


def publish_frame(server: "StreamServer", restyler, styled: np.ndarray | None, original: np.ndarray,
                  source) -> None:
    """Hand the server a displayed frame: `styled` (None before the first AI frame) and `original` at the same size,
    `source` the StreamingRestyler's StyledFrame it came from (its style and submit time), with the HUD's numbers."""
    s = restyler.stats
    numbers = {"ai_fps": s.ai_fps, "latency_ms": s.latency_ms, "dropped": s.dropped, "style": s.style,
               "error": s.error}
    server.publish(styled, original, "" if source is None else source.style,
                   None if source is None else source.t_submit, numbers)
