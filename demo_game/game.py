"""The playable game: a Pygame window with a ModernGL context, keyboard and mouse, views of every pass, a HUD.

`run_play` is what `restyler play` calls. With no display it falls back to the headless run. Until a model ships,
the window shows the game's own reference renderer; the AI overlay arrives with the real-time renderer.

Keys: WASD move · mouse (click to capture, Esc to release) or arrows look · 1-4 reference styles · 0 low-detail ·
G cycles G-buffer views · V first/third person · B toggles the autopilot bot · Q quits.
"""
from __future__ import annotations

from enum import Enum
from pathlib import Path

import numpy as np

from .config import GameConfig
from .controls import Actions
from .headless import run_headless
from .styles import STYLES, style_for_prompt
from .visualize import depth_image, material_image, motion_image, normals_image

MOUSE_SENSITIVITY = 0.0035   # radians per pixel of mouse motion
ARROW_TURN_SPEED = 2.2       # radians per second with the arrow keys
WINDOW_SIZE = (768, 768)
# The reference renderer is offline-quality: on a 2-core CPU with Mesa's software GL it takes ~160 ms a frame at
# 768×768 but ~33 ms at 256×256 (docs/passes.md), so the window shows it at this size, upscaled.
REFERENCE_VIEW_SIZE = (256, 256)


class View(Enum):
    STYLE = "style"
    LOW_DETAIL = "low-detail"
    DEPTH = "depth"
    NORMALS = "normals"
    MATERIAL = "material"
    MOTION = "motion"


GBUFFER_VIEWS = [View.DEPTH, View.NORMALS, View.MATERIAL, View.MOTION]


def run_play(style: str | None, headless: bool, seconds: float, out: Path, seed: int,
             size: tuple[int, int]) -> int:
    if style is not None:
        style_for_prompt(style)   # unknown style: fail before opening anything
    config = GameConfig(seed=seed, width=size[0], height=size[1])
    if headless:
        run_headless(config, seconds, out, style)
        return 0
    return run_window(config, style, seconds if seconds > 0 else None)


def _read_input(pygame, dt: float, grabbed: bool) -> Actions:
    keys = pygame.key.get_pressed()
    a = Actions(
        forward=float(keys[pygame.K_w]) - float(keys[pygame.K_s]),
        strafe=float(keys[pygame.K_d]) - float(keys[pygame.K_a]),
        turn=(float(keys[pygame.K_RIGHT]) - float(keys[pygame.K_LEFT])) * ARROW_TURN_SPEED * dt,
        look=(float(keys[pygame.K_UP]) - float(keys[pygame.K_DOWN])) * ARROW_TURN_SPEED * dt,
    )
    if grabbed:
        mx, my = pygame.mouse.get_rel()
        a.turn += mx * MOUSE_SENSITIVITY
        a.look -= my * MOUSE_SENSITIVITY
    return a


class GameWindow:
    """The interactive game in a Pygame OpenGL window: input → simulation tick → chosen view → HUD."""

    def __init__(self, config: GameConfig, style: str | None = None):
        import moderngl
        import pygame

        from renderer.overlay import FrameBlitter, Hud

        from .session import GameSession

        self.pygame = pygame
        pygame.display.init()   # not pygame.init(): the game has no sound and the mixer would probe audio devices
        pygame.font.init()
        pygame.display.set_mode(WINDOW_SIZE, pygame.OPENGL | pygame.DOUBLEBUF)
        pygame.display.set_caption("Restyler demo")
        self.ctx = moderngl.create_context()   # attaches to the window's context
        self.config = config
        self.game = GameSession(config, ctx=self.ctx)
        self.blitter = FrameBlitter(self.ctx)
        self.hud = Hud(self.blitter, WINDOW_SIZE)
        self.styles = list(STYLES.values())
        self.style = style_for_prompt(style) if style else self.styles[0]
        self.view, self.autopilot, self.grabbed = View.STYLE, False, False
        self.clock = pygame.time.Clock()
        self.running = True
        self.last_frame: np.ndarray | None = None

    def handle(self, event) -> None:
        pygame = self.pygame
        if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_q):
            self.running = False
        elif event.type == pygame.MOUSEBUTTONDOWN and not self.grabbed:
            self._grab(True)
        elif event.type == pygame.KEYDOWN:
            if event.key == pygame.K_ESCAPE:
                self._grab(False)
            elif pygame.K_1 <= event.key < pygame.K_1 + len(self.styles):
                self.view, self.style = View.STYLE, self.styles[event.key - pygame.K_1]
            elif event.key == pygame.K_0:
                self.view = View.LOW_DETAIL
            elif event.key == pygame.K_g:
                i = GBUFFER_VIEWS.index(self.view) + 1 if self.view in GBUFFER_VIEWS else 0
                self.view = GBUFFER_VIEWS[i % len(GBUFFER_VIEWS)]
            elif event.key == pygame.K_b:
                self.autopilot = not self.autopilot
            elif event.key == pygame.K_v:
                self.game.set_third_person(not self.game.player.third_person)

    def _grab(self, on: bool) -> None:
        self.grabbed = on
        self.pygame.event.set_grab(on)
        self.pygame.mouse.set_visible(not on)
        self.pygame.mouse.get_rel()   # drop the motion accumulated while not grabbed

    def frame(self) -> None:
        """One displayed frame: the caller flips the display."""
        for event in self.pygame.event.get():
            self.handle(event)
        game, config = self.game, self.config
        game.advance(None if self.autopilot else _read_input(self.pygame, config.dt, self.grabbed))
        if self.view == View.STYLE:
            frame = game.render_style(self.style, size=REFERENCE_VIEW_SIZE)
        else:
            packet = game.render_fast()
            frame = {
                View.LOW_DETAIL: lambda: packet.rgb,
                View.DEPTH: lambda: depth_image(packet.depth, config.far),
                View.NORMALS: lambda: normals_image(packet.normals),
                View.MATERIAL: lambda: material_image(packet.material),
                View.MOTION: lambda: motion_image(packet.motion),
            }[self.view]()
        self.last_frame = frame
        self.ctx.screen.use()
        self.blitter.draw(frame)
        label = self.style.name if self.view == View.STYLE else self.view.value
        self.hud.draw([f"game {self.clock.get_fps():5.1f} fps", f"view: {label}",
                       f"gems: {game.score}/{len(game.gems)}",
                       "AI: no model yet" + ("  ·  bot driving (B)" if self.autopilot else "")])

    def close(self) -> None:
        self.blitter.release()
        self.game.close()
        self.pygame.quit()


def run_window(config: GameConfig, style: str | None, seconds: float | None) -> int:
    window = GameWindow(config, style)
    elapsed = 0.0
    try:
        while window.running and (seconds is None or elapsed < seconds):
            elapsed += window.clock.tick(config.fps) / 1000.0
            window.frame()
            window.pygame.display.flip()
    finally:
        window.close()
    return 0
