"""GameSession: one seeded world, its simulation and its passes — the game as a frame source.

The recorder, the headless run, the evaluation and the interactive game all drive a session: `step()` advances the
simulation one tick (the bot plays unless actions are given) and returns the fast passes as a bridge.FramePacket;
`render_style(name)` draws a reference style from the same camera.
"""
from __future__ import annotations

import moderngl
import numpy as np

from bridge import FramePacket

from .config import GameConfig
from .controls import Actions
from .mesh import box_triangles, build_static_mesh
from .passes import PassRenderer
from .player import Player
from .bot import Bot
from .styles import STYLES, Style, style_for_prompt
from .world import Material, generate_world

GEM_HALF = 0.22            # blocks
GEM_SPIN = 2.0             # radians per second
GEM_BOB = 0.15             # blocks of up-and-down float
PICKUP_RADIUS = 1.1        # blocks between the player's chest and a gem


def create_headless_context() -> moderngl.Context:
    """An OpenGL 3.3 context with no window (EGL; Mesa's llvmpipe on machines without a GPU)."""
    try:
        return moderngl.create_standalone_context(backend="egl")
    except Exception as exc:  # moderngl raises plain Exception subclasses with driver text
        raise RuntimeError(
            "could not create a headless OpenGL context through EGL; install Mesa's EGL and GL drivers "
            f"(Debian: libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri): {exc}"
        ) from exc



def _as_style(style: str | Style) -> Style:
    """A style, or its name or one of its prompts, as the Style."""
    return style if isinstance(style, Style) else style_for_prompt(style)

class GameSession:
    def __init__(self, config: GameConfig, ctx: moderngl.Context | None = None):
        self.config = config
        self.world = generate_world(config)
        vertices, indices = build_static_mesh(self.world)
        self._owns_ctx = ctx is None
        self.ctx = ctx if ctx is not None else create_headless_context()
        try:
            self.renderer = PassRenderer(self.ctx, config, vertices, indices, config.world_size)
        except BaseException:  # e.g. a shader another driver refuses: do not leak the context we made
            if self._owns_ctx:
                self.ctx.release()
            raise
        self.player = Player(self.world, config)
        self.bot = Bot(self.world, config)
        self.gems = self.world.gems.copy()
        self.collected = np.zeros(len(self.gems), dtype=bool)
        self.tick = 0
        self.camera = self.player.camera()
        self.prev_camera = self.camera.copy()
        self._upload_dynamic()

    @property
    def time(self) -> float:
        return self.tick * self.config.dt

    @property
    def score(self) -> int:
        return int(self.collected.sum())

    # --- simulation -----------------------------------------------------------------------------------------------
    def advance(self, actions: Actions | None = None) -> None:
        """One tick: the bot decides unless `actions` come from a player."""
        if actions is None:
            actions = self.bot.act(self.player, self.gems, self.collected, self.time)
        self.prev_camera = self.camera
        self.player.apply(actions, self.config.dt)
        self.tick += 1
        chest = self.player.feet + np.array([0.0, 0.9, 0.0])
        near = np.linalg.norm(self.gems - chest, axis=1) < PICKUP_RADIUS
        self.collected |= near
        self.camera = self.player.camera()
        self._upload_dynamic()

    def set_third_person(self, on: bool) -> None:
        """Switch the camera; the switch itself is not motion, so the previous camera moves along."""
        self.player.third_person = on
        self.camera = self.player.camera()
        self.prev_camera = self.camera.copy()
        self._upload_dynamic()

    def step(self, actions: Actions | None = None, size: tuple[int, int] | None = None,
             sun: str | Style | None = None, display: tuple[int, int] | None = None) -> FramePacket:
        """One tick, then the cheap pass (render_fast); `sun` adds that style's sun G-buffer, which a model that reads
        it needs: without it the model gets the G-buffers as absent (the frames-only picture)."""
        self.advance(actions)
        return self.render_fast(size, sun, display)

    def _gem_pose(self, i: int, time: float) -> tuple[np.ndarray, float]:
        centre = self.gems[i] + np.array([0.0, GEM_BOB * np.sin(2.0 * time + i), 0.0])
        return centre, GEM_SPIN * time + i

    def _upload_dynamic(self) -> None:
        prev_t = max(self.time - self.config.dt, 0.0)
        boxes = []
        for i in np.nonzero(~self.collected)[0]:
            c, yaw = self._gem_pose(i, self.time)
            pc, pyaw = self._gem_pose(i, prev_t)
            boxes.append(box_triangles(c, (GEM_HALF,) * 3, yaw, pc, pyaw, Material.GEM))
        if self.player.third_person:
            lift = np.array([0.0, 0.9, 0.0])
            boxes.append(box_triangles(self.player.feet + lift, (0.3, 0.9, 0.2), self.player.yaw,
                                       self.player.prev_feet + lift, self.player.prev_yaw, Material.PLAYER))
        self.renderer.set_dynamic(np.concatenate(boxes) if boxes else np.zeros((0, 11), np.float32))

    def visible_gems(self) -> np.ndarray:
        return np.array([self._gem_pose(i, self.time)[0] for i in np.nonzero(~self.collected)[0]],
                        dtype=np.float32).reshape(-1, 3)

    # --- passes ---------------------------------------------------------------------------------------------------
    def render_fast(self, size: tuple[int, int] | None = None, sun: str | Style | None = None,
                    display: tuple[int, int] | None = None) -> FramePacket:
        """The cheap pass and its G-buffers; with `sun` (a style or its prompt) also that style's sun G-buffer; with
        `display` (W, H) the same again at that size as the packet's `display`, which a model's upsampler reads
        (StreamingRestyler.display_resolution)."""
        size = size or self.config.size
        f = self.renderer.render_fast(self.camera, self.prev_camera, size, None if sun is None else _as_style(sun))
        return FramePacket(rgb=f.low, depth=f.depth, normals=f.normals, material=f.material, motion=f.motion,
                           uv=f.uv, ao=f.ao, sun=f.sun, index=self.tick, t=self.time,
                           display=None if display is None else self.render_fast(display, sun))

    def render_sun(self, style: str | Style, size: tuple[int, int] | None = None) -> np.ndarray:
        """The sun G-buffer for `style`'s sun: (H, W) float32, cosine term times shadow, 0 on the sky."""
        s = _as_style(style)
        return self.renderer.render_sun(s, self.camera, size or self.config.size)

    def render_suns(self, size: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        return {name: self.render_sun(s, size) for name, s in STYLES.items()}

    def render_style(self, style: str | Style, size: tuple[int, int] | None = None,
                     target: moderngl.Framebuffer | None = None) -> np.ndarray | None:
        s = _as_style(style)
        return self.renderer.render_reference(s, self.camera, self.time, self.visible_gems(),
                                              size or self.config.size, target)

    def render_styles(self, size: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        return {name: self.render_style(s, size) for name, s in STYLES.items()}

    # --- lifetime -------------------------------------------------------------------------------------------------
    def close(self) -> None:
        self.renderer.release()
        if self._owns_ctx:
            self.ctx.release()

    def __enter__(self) -> "GameSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
