"""The playable game: a Pygame window with a ModernGL context, keyboard and mouse, views of every pass, a HUD.

`run_play` is what `restyler play` calls. With no display it falls back to the headless run. Until a model ships,
the window shows the game's own reference renderer; the AI overlay arrives with the real-time renderer.

Keys: WASD move · mouse (click to capture, Esc to release) or arrows look · 1-4 reference styles · 0 low-detail ·
G cycles G-buffer views · B toggles the autopilot bot · Q quits.
"""
from __future__ import annotations

import os
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


class View(Enum):
    STYLE = "style"
    LOW_DETAIL = "low-detail"
    DEPTH = "depth"
    NORMALS = "normals"
    MATERIAL = "material"
    MOTION = "motion"


GBUFFER_VIEWS = [View.DEPTH, View.NORMALS, View.MATERIAL, View.MOTION]


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or \
        os.environ.get("SDL_VIDEODRIVER") == "offscreen"


def run_play(style: str | None, headless: bool, seconds: float, out: Path, seed: int,
             size: tuple[int, int]) -> int:
    if style is not None:
        style_for_prompt(style)   # unknown style: fail before opening anything
    config = GameConfig(seed=seed, width=size[0], height=size[1])
    if headless or not has_display():
        if not headless:
            print("no display found: running headless instead (the bot plays; see --out for the results)")
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


def run_window(config: GameConfig, style: str | None, seconds: float | None) -> int:
    import moderngl
    import pygame

    from renderer.overlay import FrameBlitter, Hud

    from .session import GameSession

    pygame.init()
    pygame.display.set_mode(WINDOW_SIZE, pygame.OPENGL | pygame.DOUBLEBUF)
    pygame.display.set_caption("Restyler demo")
    ctx = moderngl.create_context()
    game = GameSession(config, ctx=ctx)
    blitter = FrameBlitter(ctx)
    hud = Hud(blitter, WINDOW_SIZE)
    styles = list(STYLES.values())
    current = style_for_prompt(style) if style else styles[0]
    view, autopilot, grabbed = View.STYLE, False, False
    clock = pygame.time.Clock()
    elapsed, running = 0.0, True
    try:
        while running:
            dt = clock.tick(config.fps) / 1000.0
            elapsed += dt
            for event in pygame.event.get():
                if event.type == pygame.QUIT or (event.type == pygame.KEYDOWN and event.key == pygame.K_q):
                    running = False
                elif event.type == pygame.MOUSEBUTTONDOWN and not grabbed:
                    grabbed = True
                    pygame.event.set_grab(True)
                    pygame.mouse.set_visible(False)
                    pygame.mouse.get_rel()
                elif event.type == pygame.KEYDOWN:
                    if event.key == pygame.K_ESCAPE:
                        grabbed = False
                        pygame.event.set_grab(False)
                        pygame.mouse.set_visible(True)
                    elif pygame.K_1 <= event.key < pygame.K_1 + len(styles):
                        view, current = View.STYLE, styles[event.key - pygame.K_1]
                    elif event.key == pygame.K_0:
                        view = View.LOW_DETAIL
                    elif event.key == pygame.K_g:
                        i = GBUFFER_VIEWS.index(view) + 1 if view in GBUFFER_VIEWS else 0
                        view = GBUFFER_VIEWS[i % len(GBUFFER_VIEWS)]
                    elif event.key == pygame.K_b:
                        autopilot = not autopilot
            game.advance(None if autopilot else _read_input(pygame, config.dt, grabbed))
            ctx.screen.use()
            if view == View.STYLE:
                game.render_style(current, size=WINDOW_SIZE, target=ctx.screen)
            else:
                packet = game.render_fast()
                frame = {
                    View.LOW_DETAIL: lambda: packet.rgb,
                    View.DEPTH: lambda: depth_image(packet.depth, config.far),
                    View.NORMALS: lambda: normals_image(packet.normals),
                    View.MATERIAL: lambda: material_image(packet.material),
                    View.MOTION: lambda: motion_image(packet.motion),
                }[view]()
                ctx.screen.use()
                blitter.draw(frame)
            label = current.name if view == View.STYLE else view.value
            hud.draw([f"game {clock.get_fps():5.1f} fps", f"view: {label}", f"gems: {game.score}/{len(game.gems)}",
                      "AI: no model yet" + ("  ·  bot driving (B)" if autopilot else "")])
            pygame.display.flip()
            if seconds is not None and elapsed >= seconds:
                running = False
    finally:
        blitter.release()
        game.close()
        pygame.quit()
    return 0
