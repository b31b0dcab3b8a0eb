"""Restyle what is on screen, live, for streamers (`restyler capture`), and restyle a video file (`restyler restyle`).

capture: a ScreenSource (a region or a window; RGB only, no G-buffers) feeds the StreamingRestyler; a Pygame window
titled "Restyler capture" shows the stylized stream (OBS captures that window) with a HUD line; `record` writes every
displayed frame to an mp4; a StreamServer (`--serve`) shows it as a web page (an OBS Browser Source) and takes
style and reset requests from its control page. Ctrl+C, closing the window, the captured window going away or the
time running out all end the same way: the recording is finalised and the command says how many frames it holds.

restyle: every frame of a file goes through the same StreamEngine chunk by chunk (no worker, no dropping: offline,
every frame counts), written at the file's size and frame rate.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from bridge import FramePacket, SourceClosedError
from renderer.engine import resize
from renderer.runtime import StreamingRestyler
from renderer.serve import apply_requests, publish_frame

DISPLAY_FPS = 30            # the capture window's refresh and the recording's frame rate
CAPTURE_WINDOW_TITLE = "Restyler capture"


@dataclass
class CaptureResult:
    frames_recorded: int
    frames_captured: int
    seconds: float
    stopped_by: str          # "time", "window closed", "source closed: ...", "interrupted"


def _upscale(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8 -> (H, W, 3) uint8 with bilinear filtering, size = (W, H)."""
    w, h = size
    if frame.shape[:2] == (h, w):
        return frame
    x = resize(torch.from_numpy(frame).permute(2, 0, 1)[None].float(), (h, w), "bilinear")
    return x[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def run_capture(source, restyler: StreamingRestyler, style: str, record: Path | None, headless: bool,
                seconds: float | None, server=None, record_source: Path | None = None) -> CaptureResult:
    """Capture → restyle → show/record/serve until stopped; always finalises the recordings and closes the source
    and the server. `record_source` keeps the frames as grabbed, the game itself (what `restyler eval-video`
    scores)."""
    from bridge.video import Mp4Writer

    window = writer = source_writer = None
    stopped_by, captured, t0 = "time", 0, time.monotonic()
    try:
        window = None if headless else _CaptureWindow(source.size)
        writer = Mp4Writer(record, DISPLAY_FPS, source.size) if record is not None else None
        source_writer = Mp4Writer(record_source, DISPLAY_FPS, source.size) if record_source is not None else None
        restyler.prepare(style)
        t0 = deadline = time.monotonic()
        shown, last_styled = None, None
        while seconds is None or time.monotonic() - t0 < seconds:
            try:
                packet = source.read()
            except SourceClosedError as exc:
                stopped_by = f"source closed: {exc}"
                break
            captured += 1
            if server is not None:
                apply_requests(server, restyler)
            restyler.submit(packet)
            styled = restyler.latest_frame()
            if styled is not None and styled is not last_styled:   # upscale each new AI frame once
                shown, last_styled = _upscale(styled.rgb, source.size), styled
            frame = shown if shown is not None else packet.rgb   # the original until the first AI frame
            if server is not None:
                publish_frame(server, restyler, shown, packet.rgb, last_styled)
            if writer is not None:
                writer.write(frame)
            if source_writer is not None:
                source_writer.write(packet.rgb)
            if window is not None and not window.show(frame, restyler):
                stopped_by = "window closed"
                break
            deadline += 1.0 / DISPLAY_FPS
            time.sleep(max(0.0, deadline - time.monotonic()))
    except KeyboardInterrupt:
        stopped_by = "interrupted"
    finally:
        for w in (writer, source_writer):
            if w is not None:
                w.close()
        if window is not None:
            window.close()
        source.close()
        restyler.close()
        if server is not None:
            server.close()
    return CaptureResult(writer.frames_written if writer else 0, captured, time.monotonic() - t0, stopped_by)


def capture_in_background(make_source, restyler: StreamingRestyler, style: str, server=None):
    """`run_capture` headless on its own thread, the source built there by `make_source(stop)` (a game's GL
    context lives on the thread that renders with it). Returns (thread, stop, result): set `stop` to close the
    source as a closed window would; `result["run"]` then holds the CaptureResult."""
    import threading

    stop, result = threading.Event(), {}

    def capture() -> None:
        result["run"] = run_capture(make_source(stop), restyler, style, None, True, None, server)

    thread = threading.Thread(target=capture, name="restyler-capture", daemon=True)
    thread.start()
    return thread, stop, result


class _CaptureWindow:
    """The window OBS captures: the stylized stream at the captured size, the HUD in its corner."""

    def __init__(self, size: tuple[int, int]):
        import moderngl
        import pygame

        from renderer.overlay import Hud, FrameBlitter

        self.pygame = pygame
        pygame.display.init()
        pygame.font.init()
        pygame.display.set_mode(size, pygame.OPENGL | pygame.DOUBLEBUF)
        pygame.display.set_caption(CAPTURE_WINDOW_TITLE)
        self.ctx = moderngl.create_context()
        self.blitter = FrameBlitter(self.ctx)
        self.hud = Hud(self.blitter, size)
        self.show_hud = True

    def show(self, frame: np.ndarray, restyler: StreamingRestyler) -> bool:
        """Draw one frame; False once the user closed the window (or pressed Q)."""
        pygame = self.pygame
        for event in pygame.event.get():
            if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_q):
                return False
            if event.type == pygame.KEYDOWN and event.key == pygame.K_h:
                self.show_hud = not self.show_hud
        self.ctx.screen.use()
        self.blitter.draw(frame)
        if self.show_hud:
            s = restyler.stats
            line = f"AI {s.ai_fps:4.1f} fps  latency {s.latency_ms:4.0f} ms  style: {s.style}  (H hides)"
            self.hud.draw([line] if s.error is None else [line, f"AI stopped: {s.error[:70]}"])
        pygame.display.flip()
        return True

    def close(self) -> None:
        self.blitter.release()
        self.pygame.quit()


def offline_engine(model_dir: Path, style: str, device: str = "auto", steps: int | None = None,
                   precision: str = "auto"):
    """A StreamEngine asked for `style`, for restyling a whole video: offline, so every frame is restyled and `steps`
    defaults to all of the student's levels (its best quality). Raises ModelError for a missing model."""
    from renderer.engine import StreamEngine, load_bundle, resolve_device

    dev = resolve_device(device)
    bundle = load_bundle(model_dir, dev, precision=precision)
    if steps is not None:
        bundle.sampler = replace(bundle.sampler, timesteps=bundle.sampler.timesteps[:steps])
    engine = StreamEngine(bundle, dev)
    engine.set_style(style)
    return engine


def restyled_frames(source, engine, limit: int | None = None):
    """(packet, stylized frame at the model's size) for every FramePacket of `source` (up to `limit`), restyled
    chunk by chunk exactly as a live stream is. A trailing partial chunk is padded by repeating the last frame, and
    the padding is not yielded."""
    chunk: list[FramePacket] = []
    for i, packet in enumerate(source):
        if limit is not None and i >= limit:
            break
        chunk.append(packet)
        if len(chunk) == engine.chunk_frames:
            yield from zip(chunk, engine.step(chunk))
            chunk = []
    if chunk:
        real = len(chunk)
        padded = chunk + [chunk[-1]] * (engine.chunk_frames - real)
        yield from zip(chunk, engine.step(padded)[:real])


def restyle_file(input_path: Path, output_path: Path, model_dir: Path, style: str, device: str = "auto",
                 steps: int | None = None, progress: bool = True, precision: str = "auto") -> int:
    """Restyle every frame of `input_path` into `output_path` (same size and frame rate, restyled_frames scaled
    up); returns frames written. The video is moved into place when done, or when interrupted with what was done
    (`restyler restyle` refuses an output that is the input before it calls this)."""
    from tqdm import tqdm

    from bridge import VideoFileSource
    from bridge.video import Mp4Writer

    engine = offline_engine(model_dir, style, device, steps, precision)   # a missing model: one error first
    with VideoFileSource(input_path) as src:
        bar = tqdm(total=src.frame_count or None, unit="frame", desc=f"restyle ({style})", disable=not progress)
        with Mp4Writer(output_path, src.fps, src.size) as out, bar:
            for _, frame in restyled_frames(src, engine):
                out.write(_upscale(frame, src.size))
                bar.update(1)
        return out.frames_written
