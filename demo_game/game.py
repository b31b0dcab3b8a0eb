"""The playable game: a Pygame window with a ModernGL context, keyboard and mouse, views of every pass, a HUD, and
AI rendering through the plugin (renderer.StreamingRestyler + renderer.overlay.Overlay) when a model is given.

`run_play` is what `restyler play` calls. With a model, the game renders only its cheap pass at the model's
resolution, hands it to the restyler and shows the stylized stream; with no display it plays headless (the bot
drives an offscreen window, recorded to an mp4 with the HUD).

Keys: WASD move · mouse (click to capture, Esc to release) or arrows look · 1-4 styles · T type a style prompt ·
M cycles AI / split / blend / original · R motion-vector reprojection · F5 restarts a stopped AI · P the reference
renderer · 0 low-detail · G cycles G-buffer views · V first/third person · B toggles the autopilot bot · Q quits.
"""
from __future__ import annotations

import os
import threading
import time
from enum import Enum
from pathlib import Path

import numpy as np

from .config import GameConfig
from .controls import Actions
from .headless import run_headless, save_sheet
from .styles import STYLES, Style, style_for_prompt
from .visualize import depth_image, material_image, motion_image, normals_image

MOUSE_SENSITIVITY = 0.0035   # radians per pixel of mouse motion
ARROW_TURN_SPEED = 2.2       # radians per second with the arrow keys
WINDOW_SIZE = (768, 768)
HEADLESS_WINDOW_SIZE = (512, 512)   # the offscreen window a headless AI run records (smaller: cheaper to encode)
AI_GAME_FPS = 60             # the game loop's rate with AI on: the model runs beside it, slower, in its own worker
# The reference renderer is offline-quality: on a 2-core CPU with Mesa's software GL it takes ~160 ms a frame at
# 768×768 but ~33 ms at 256×256 (docs/passes.md), so the window shows it at this size, upscaled.
REFERENCE_VIEW_SIZE = (256, 256)


class View(Enum):
    STYLE = "style"              # the AI stream with a model, the reference renderer without
    REFERENCE = "reference"
    LOW_DETAIL = "low-detail"
    DEPTH = "depth"
    NORMALS = "normals"
    MATERIAL = "material"
    MOTION = "motion"


GBUFFER_VIEWS = [View.DEPTH, View.NORMALS, View.MATERIAL, View.MOTION]


def run_play(style: str | None, headless: bool, seconds: float, out: Path, seed: int,
             size: tuple[int, int], model: Path | None = None, worker: str = "process",
             steps: int | None = None, server=None, upsample: bool = True, precision: str = "auto") -> int:
    """`server`: a started renderer.serve.StreamServer that also shows the AI stream as a web page (AI on only);
    `upsample`: the model's upsampler brings the AI frames to its display size when the model ships one (the game
    then also renders its cheap pass and G-buffers there); `precision`: the student's (renderer.runtime)."""
    restyler = None
    if model is None and style is not None:
        style_for_prompt(style)   # without a model only the reference styles exist: fail before opening anything
    if model is not None:
        from renderer import StreamingRestyler

        # ModelError (missing or corrupt model): the CLI prints it with how to get one
        restyler = StreamingRestyler.from_pretrained(model, worker=worker, steps=steps, upsample=upsample,
                                                     precision=precision)
    if restyler is None and headless:
        run_headless(GameConfig(seed=seed, width=size[0], height=size[1]), seconds, out, style)
        return 0
    if restyler is not None:
        size = restyler.resolution   # with AI on, the game renders only the cheap pass, at the model's size
    config = GameConfig(seed=seed, width=size[0], height=size[1], fps=AI_GAME_FPS if restyler else 30)
    try:
        if headless:
            return run_ai_headless(config, style, restyler, seconds, out, server=server)
        return run_window(config, style, seconds if seconds > 0 else None, restyler, server)
    finally:
        if restyler is not None:
            restyler.close()


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

    def __init__(self, config: GameConfig, style: str | None = None, restyler=None,
                 window_size: tuple[int, int] = WINDOW_SIZE, server=None):
        import moderngl
        import pygame

        from renderer.overlay import Overlay

        from .session import GameSession

        self.pygame = pygame
        pygame.display.init()   # not pygame.init(): the game has no sound and the mixer would probe audio devices
        pygame.font.init()
        pygame.display.set_mode(window_size, pygame.OPENGL | pygame.DOUBLEBUF)
        pygame.display.set_caption("Restyler demo")
        self.window_size = window_size
        self.ctx = moderngl.create_context()   # attaches to the window's context
        self.config = config
        self.game = GameSession(config, ctx=self.ctx)
        self.overlay = Overlay(self.ctx, window_size)
        self.styles = list(STYLES.values())
        self.style: Style = self.styles[0]      # the reference renderer's style
        self.restyler = restyler
        self.server = server   # renderer.serve.StreamServer (--serve): the AI stream as a web page, and its controls
        self.prompt = style or self.styles[0].prompts[0]   # what the AI is asked for: any text with a model
        self._known_style(self.prompt)
        self.view, self.autopilot, self.grabbed = View.STYLE, False, False
        self.typing: str | None = None          # the prompt being typed, None when not typing
        self.restarting: threading.Thread | None = None
        self.restart_error: str | None = None
        self.clock = pygame.time.Clock()
        self.running = True
        self.last_frame: np.ndarray | None = None
        if restyler is not None:
            restyler.prepare(self.prompt)

    def _known_style(self, prompt: str) -> None:
        """Point the reference view and the sun the game hands over at the style a prompt names, when the game has
        it. A prompt it does not know gets the sun of the trained style the model finds nearest, once the first
        frame in that prompt comes back (`_frame_ai`): the sun of the previous style cost 0.9 dB over the
        held-back paraphrases (docs/runtime.md)."""
        try:
            self.style = style_for_prompt(prompt)
            self.prompt_known = True
        except KeyError:
            self.prompt_known = False

    def set_prompt(self, prompt: str) -> None:
        prompt = prompt.strip()
        if not prompt:
            return
        self.prompt = prompt
        self._known_style(prompt)
        if self.restyler is not None:
            self.restyler.update_style(prompt)

    # -- input ----------------------------------------------------------------------------------------------------
    def handle(self, event) -> None:
        pygame = self.pygame
        if event.type == pygame.QUIT:
            self.running = False
        elif self.typing is not None:
            self._handle_typing(event)
        elif event.type == pygame.KEYDOWN and event.key == pygame.K_q:
            self.running = False
        elif event.type == pygame.MOUSEBUTTONDOWN and not self.grabbed:
            self._grab(True)
        elif event.type == pygame.KEYDOWN:
            self._handle_key(event.key)

    def _handle_key(self, key: int) -> None:
        pygame = self.pygame
        if key == pygame.K_ESCAPE:
            self._grab(False)
        elif pygame.K_1 <= key < pygame.K_1 + len(self.styles):
            self.view = View.STYLE
            style = self.styles[key - pygame.K_1]
            if self.restyler is not None:
                self.set_prompt(style.prompts[0])
            else:
                self.style = style
        elif key == pygame.K_t and self.restyler is not None:
            self.typing = ""
            pygame.key.start_text_input()
        elif key == pygame.K_m:
            self.view = View.STYLE
            self.overlay.mode = self.overlay.mode.next()
        elif key == pygame.K_r:
            self.overlay.reproject = not self.overlay.reproject
        elif key == pygame.K_F5:
            self.restart_ai()
        elif key == pygame.K_p:
            self.view = View.REFERENCE
        elif key == pygame.K_0:
            self.view = View.LOW_DETAIL
        elif key == pygame.K_g:
            i = GBUFFER_VIEWS.index(self.view) + 1 if self.view in GBUFFER_VIEWS else 0
            self.view = GBUFFER_VIEWS[i % len(GBUFFER_VIEWS)]
        elif key == pygame.K_b:
            self.autopilot = not self.autopilot
        elif key == pygame.K_v:
            self.game.set_third_person(not self.game.player.third_person)

    def _handle_typing(self, event) -> None:
        pygame = self.pygame
        if event.type == pygame.TEXTINPUT:
            self.typing += event.text
        elif event.type == pygame.KEYDOWN:
            if event.key in (pygame.K_RETURN, pygame.K_KP_ENTER):
                self.set_prompt(self.typing)
                self.typing = None
            elif event.key == pygame.K_ESCAPE:
                self.typing = None
            elif event.key == pygame.K_BACKSPACE:
                self.typing = self.typing[:-1]
            if self.typing is None:
                pygame.key.stop_text_input()

    def _grab(self, on: bool) -> None:
        self.grabbed = on
        self.pygame.event.set_grab(on)
        self.pygame.mouse.set_visible(not on)
        self.pygame.mouse.get_rel()   # drop the motion accumulated while not grabbed

    def restart_ai(self) -> None:
        """Restart a stopped worker in the background: the game keeps running (original frames) meanwhile."""
        if self.restyler is None or (self.restarting is not None and self.restarting.is_alive()):
            return
        self.restart_error = None
        self.restarting = threading.Thread(target=self._restart, name="restyler-restart", daemon=True)
        self.restarting.start()

    def _restart(self) -> None:
        try:
            self.restyler.restart()
        except Exception as exc:  # noqa: BLE001 - shown on the HUD; the game goes on without AI
            self.restart_error = f"restart failed: {exc}"

    # -- one frame ------------------------------------------------------------------------------------------------
    def frame(self) -> None:
        """One displayed frame: the caller flips the display."""
        for event in self.pygame.event.get():
            self.handle(event)
        if self.server is not None:
            self._apply_requests()
        game, config = self.game, self.config
        if self.autopilot:
            actions = None
        elif self.typing is not None:
            actions = Actions()   # typing a prompt: the keys are letters, not movement
        else:
            actions = _read_input(self.pygame, config.dt, self.grabbed)
        game.advance(actions)
        self.ctx.screen.use()
        if self.view == View.STYLE and self.restyler is not None:
            self._frame_ai()
            return
        if self.view in (View.STYLE, View.REFERENCE):
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
        label = self.style.name if self.view in (View.STYLE, View.REFERENCE) else self.view.value
        self.ctx.screen.use()
        self.overlay.blitter.draw(frame)
        ai = "AI: no model (restyler play --model DIR)" if self.restyler is None else "AI: off (1-4 or M: back to AI)"
        self.overlay.hud.draw([f"game {self.clock.get_fps():5.1f} fps", f"view: {label}",
                               f"gems: {game.score}/{len(game.gems)}",
                               ai + ("  ·  bot driving (B)" if self.autopilot else "")])

    def _frame_ai(self) -> None:
        """AI on: the cheap pass goes to the restyler, the overlay shows the newest stylized frame."""
        r = self.restyler
        # with the sun of the style asked for: the shipped student reads it, and without every buffer it reads it
        # takes the G-buffers as absent and draws the frames-only picture
        # and at the upsampler's size too when the model ships one: its G-buffers guide the AI frame to that size
        packet = self.game.render_fast(r.resolution, sun=self.style, display=r.display_resolution)
        failed = (r.error is not None or self.restart_error is not None
                  or (self.restarting is not None and self.restarting.is_alive()))
        if not failed:
            r.submit(packet)
        styled = None if failed else r.latest_frame()
        if (styled is not None and not self.prompt_known and styled.style == self.prompt
                and styled.look in STYLES):
            self.style = STYLES[styled.look]   # from the next frame on, the sun of the nearest trained style
        original = packet.rgb if packet.display is None else packet.display.rgb   # the sharper one
        self.last_frame = original if styled is None else styled.rgb
        if self.server is not None:
            from renderer.serve import publish_frame

            publish_frame(self.server, r, None if styled is None else styled.rgb, original, styled)
        self.overlay.draw(original, None if styled is None else styled.rgb, self.hud_lines(),
                          None if styled is None else styled.index, packet.index, packet.motion)

    def _apply_requests(self) -> None:
        """Style and reset requests from the server's control page, applied as if typed here: a known style's
        name also moves the sun the game hands over."""
        for kind, value in self.server.actions():
            if kind == "style":
                self.view = View.STYLE
                self.set_prompt(value)
            elif kind == "reset" and self.restyler is not None:
                self.restyler.reset()

    def hud_lines(self) -> list[str]:
        s = self.restyler.stats
        drawn = self.restyler.display_resolution or self.restyler.resolution
        lines = [f"game {self.clock.get_fps():4.0f} fps  AI {s.ai_fps:4.1f} fps  latency {s.latency_ms:3.0f} ms  "
                 f"{drawn[0]}x{drawn[1]}" + ("" if self.restyler.display_resolution is None else " upsampled")]
        if self.typing is not None:
            lines.append(f"style> {self.typing}_   (Enter applies, Esc cancels)")
        else:
            lines.append(f"style: {s.style}  (T types, 1-4)")
        lines.append(f"view: {self.overlay.mode.value} (M)  reproject {'on' if self.overlay.reproject else 'off'} (R)  "
                     f"gems {self.game.score}/{len(self.game.gems)}" + ("  bot (B)" if self.autopilot else ""))
        if self.restarting is not None and self.restarting.is_alive():
            lines.append("AI restarting... (original frames meanwhile)")
        elif s.error is not None or self.restart_error is not None:
            lines.append(f"AI stopped: {(self.restart_error or s.error)[:70]}   F5 restarts")
        return lines

    def screenshot(self) -> np.ndarray:
        """The window as displayed, (H, W, 3) uint8, row 0 at the top."""
        w, h = self.window_size
        return np.frombuffer(self.ctx.screen.read(components=3), np.uint8).reshape(h, w, 3)[::-1]

    def close(self) -> None:
        if self.restarting is not None:
            self.restarting.join()   # a restart in progress finishes before the restyler is closed after us
        self.overlay.release()
        self.game.close()
        self.pygame.quit()


def run_window(config: GameConfig, style: str | None, seconds: float | None, restyler=None, server=None) -> int:
    window = GameWindow(config, style, restyler, server=server)
    elapsed = 0.0
    try:
        while window.running and (seconds is None or elapsed < seconds):
            elapsed += window.clock.tick(config.fps) / 1000.0
            window.frame()
            window.pygame.display.flip()
    finally:
        window.close()
    return 0


def run_ai_headless(config: GameConfig, style: str | None, restyler, seconds: float, out: Path,
                    window_size: tuple[int, int] = HEADLESS_WINDOW_SIZE, server=None) -> int:
    """The game with AI on in an offscreen window, the bot driving, in real time: every second displayed frame is
    recorded (out/play.mp4 at half the game rate, HUD included) and a few moments go on a contact sheet."""
    from bridge.video import Mp4Writer

    os.environ.setdefault("SDL_VIDEODRIVER", "offscreen")   # no display: an OpenGL window with no X server
    out.mkdir(parents=True, exist_ok=True)
    window = GameWindow(config, style, restyler, window_size, server)
    window.autopilot = True
    frames = max(1, int(round(seconds * config.fps)))
    sheet_at = set(np.linspace(frames // 4, frames - 1, 4).round().astype(int).tolist())
    shots = []
    video_path, sheet_path = out / "play.mp4", out / "contact_sheet.png"
    try:
        with Mp4Writer(video_path, config.fps / 2, window_size) as video:
            deadline = time.monotonic()
            for i in range(frames):
                window.frame()
                if i % 2 == 0 or i in sheet_at:
                    shot = window.screenshot()
                    if i % 2 == 0:
                        video.write(shot)
                    if i in sheet_at:
                        shots.append(shot)
                window.pygame.display.flip()
                window.clock.tick()
                deadline += config.dt   # real time: the model runs beside the game as it would for a player
                time.sleep(max(0.0, deadline - time.monotonic()))
        s = restyler.stats
        summary = (f"game {window.clock.get_fps():.1f} fps, AI {s.frames_out / max(seconds, 1e-9):.1f} fps, "
                   f"latency {s.latency_ms:.0f} ms, {restyler.precision.describe()}"
                   + (f", AI stopped: {s.error}" if s.error else ""))
    finally:
        window.close()
    save_sheet(np.concatenate(shots, axis=1), [f"t={t / config.fps:.1f}s" for t in sorted(sheet_at)],
               window_size[0], sheet_path)
    print(f"wrote {video_path} ({(frames + 1) // 2} frames, AI rendering with the HUD) and {sheet_path}; {summary}")
    return 0
