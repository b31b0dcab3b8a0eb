"""Play Tile Quest in a Pygame/ModernGL window, with AI rendering through Restyler's runtime and overlay.

`python -m tile_game [--model DIR] [--style PROMPT]`: each tick the game draws only its cheap frame (with its
G-buffers, motion and the style's sun) at the model's resolution, hands it to renderer.StreamingRestyler and shows
the newest AI frame through renderer.overlay.Overlay. With no display (or --headless) the bot plays in an offscreen
window for --seconds and the run is written to OUT/play.mp4 and OUT/contact_sheet.png, with the HUD.

Keys: arrows or WASD walk · B toggles the bot · 1-2 styles · M cycles AI / split / blend / original · Q quits.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from .level import LevelConfig
from .render import STYLES
from .session import TileSession

WINDOW_SIZE = (768, 768)
HEADLESS_WINDOW_SIZE = (512, 512)
GAME_FPS = 60          # the window's rate; the level ticks at its own 30 Hz, so every tick is shown twice at most


class TileWindow:
    def __init__(self, session: TileSession, restyler=None, style: str | None = None,
                 window_size: tuple[int, int] = WINDOW_SIZE):
        import moderngl
        import pygame

        from renderer.overlay import Overlay

        self.pygame = pygame
        pygame.display.init()
        pygame.font.init()
        pygame.display.set_mode(window_size, pygame.OPENGL | pygame.DOUBLEBUF)
        pygame.display.set_caption("Tile Quest")
        self.ctx = moderngl.create_context()
        self.overlay = Overlay(self.ctx, window_size)
        self.session, self.restyler = session, restyler
        self.style = style if style in STYLES else next(iter(STYLES))
        self.prompt = style or STYLES[self.style].prompts[0]
        self.autopilot = restyler is None or style is None
        self.clock = pygame.time.Clock()
        self.running = True
        self.shown: np.ndarray | None = None
        self.size = restyler.resolution if restyler is not None else session.size
        if restyler is not None:
            restyler.prepare(self.prompt)

    def _move(self) -> tuple[float, float] | None:
        if self.autopilot:
            return None
        keys = self.pygame.key.get_pressed()
        k = self.pygame
        dx = (keys[k.K_RIGHT] or keys[k.K_d]) - (keys[k.K_LEFT] or keys[k.K_a])
        dy = (keys[k.K_DOWN] or keys[k.K_s]) - (keys[k.K_UP] or keys[k.K_w])
        return float(dx), float(dy)

    def _key(self, key: int) -> None:
        k = self.pygame
        if key == k.K_q:
            self.running = False
        elif key == k.K_b:
            self.autopilot = not self.autopilot
        elif key == k.K_m:
            self.overlay.mode = self.overlay.mode.next()
        elif k.K_1 <= key < k.K_1 + len(STYLES):
            self.style = list(STYLES)[key - k.K_1]
            self.prompt = STYLES[self.style].prompts[0]
            if self.restyler is not None:
                self.restyler.update_style(self.prompt)

    def frame(self) -> None:
        for event in self.pygame.event.get():
            if event.type == self.pygame.QUIT:
                self.running = False
            elif event.type == self.pygame.KEYDOWN:
                self._key(event.key)
        self.session.step(self._move())
        packet, _ = self.session.frame(self.size, style=self.style)
        r = self.restyler
        styled = None
        if r is not None and r.error is None:
            r.submit(packet)
            styled = r.latest_frame()
        self.shown = packet.rgb if styled is None else styled.rgb
        ai = ("AI: no model (--model DIR)" if r is None else f"AI: stopped ({r.error})" if r.error
              else f"AI: {self.prompt}")
        hud = [f"game {self.clock.get_fps():5.1f} fps", ai, f"coins: {self.session.level.score}",
               "bot driving (B)" if self.autopilot else "arrows/WASD walk, B bot"]
        self.overlay.draw(packet.rgb, None if styled is None else styled.rgb, hud,
                          None if styled is None else styled.index, packet.index, packet.motion)

    def screenshot(self) -> np.ndarray:
        w, h = self.ctx.screen.viewport[2:]
        data = self.ctx.screen.read(components=3)
        return np.frombuffer(data, np.uint8).reshape(h, w, 3)[::-1]

    def close(self) -> None:
        if self.restyler is not None:
            self.restyler.close()
        self.overlay.release()
        self.pygame.display.quit()


def run(model: Path | None, style: str | None, seconds: float | None, headless: bool, out: Path, seed: int) -> int:
    restyler = None
    if model is not None:
        from renderer.runtime import StreamingRestyler

        restyler = StreamingRestyler.from_pretrained(model)
    if headless:
        os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")
    session = TileSession(LevelConfig(seed=seed))
    window = TileWindow(session, restyler, style, HEADLESS_WINDOW_SIZE if headless else WINDOW_SIZE)
    if headless:
        window.autopilot = True
        return _record(window, seconds or 10.0, out)
    try:
        start = time.monotonic()
        while window.running and (seconds is None or time.monotonic() - start < seconds):
            window.clock.tick(GAME_FPS)
            window.frame()
            window.pygame.display.flip()
    finally:
        window.close()
    return 0


def _record(window: TileWindow, seconds: float, out: Path) -> int:
    """The bot plays in real time; every tick's window goes to OUT/play.mp4, four moments to a contact sheet."""
    from PIL import Image

    from bridge.outputs import write_atomic
    from bridge.video import Mp4Writer

    out.mkdir(parents=True, exist_ok=True)
    fps = window.session.fps
    ticks = max(1, int(round(seconds * fps)))
    sheet_at = set(np.linspace(ticks // 4, ticks - 1, 4).round().astype(int).tolist())
    shots = []
    size = HEADLESS_WINDOW_SIZE
    try:
        with Mp4Writer(out / "play.mp4", fps, size) as video:
            deadline = time.monotonic()
            for i in range(ticks):
                window.frame()
                shot = window.screenshot()
                video.write(shot)
                if i in sheet_at:
                    shots.append(shot)
                window.pygame.display.flip()
                window.clock.tick()
                deadline += 1.0 / fps
                time.sleep(max(0.0, deadline - time.monotonic()))
        r = window.restyler
        summary = f"game {window.clock.get_fps():.1f} fps"
        if r is not None:
            s = r.stats
            summary += f", AI {s.frames_out / seconds:.1f} fps, latency {s.latency_ms:.0f} ms"
    finally:
        window.close()
    sheet = Image.fromarray(np.concatenate(shots, axis=1))
    write_atomic(out / "contact_sheet.png", lambda tmp: sheet.save(tmp, format="PNG"))
    print(f"wrote {out / 'play.mp4'} and {out / 'contact_sheet.png'}; {summary}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tile_game", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None, metavar="DIR",
                   help="a restyler trained on this game (docs/your-game.md); without it the cheap frame is shown")
    p.add_argument("--style", default=None, metavar="PROMPT", help=f"what to ask the AI for; styles: {list(STYLES)}")
    p.add_argument("--seconds", type=float, default=None, help="stop after this long")
    p.add_argument("--seed", type=int, default=1000, help="the level (1000 up: levels the restyler never saw)")
    p.add_argument("--headless", action="store_true", help="no window: the bot plays, the run goes to --out")
    p.add_argument("--out", type=Path, default=Path("out/tile_play"), metavar="DIR")
    args = p.parse_args(argv)
    headless = args.headless or not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return run(args.model, args.style, args.seconds, headless, args.out, args.seed)
