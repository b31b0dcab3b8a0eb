"""Show frames in a ModernGL window: the AI overlay a game draws with, for any game.

- FrameBlitter: one persistent texture per slot, a full-screen triangle, linear upscaling; optional source window,
  constant alpha and a per-pixel warp (motion-vector reprojection).
- Hud: lines of text on a translucent panel at the top-left.
- Overlay: what the player sees each frame — AI, split (original | AI), blend, or original — with the HUD.

Frames arrive as (H, W, 3) uint8 with row 0 at the top; the shader flips y instead of copying the frame. Textures are
re-made only when a size changes.
"""
from __future__ import annotations

from enum import Enum

import moderngl
import numpy as np

from renderer.reproject import Reprojector

_VERT = """
#version 330
out vec2 v_uv;
void main() {
    vec2 p = vec2((gl_VertexID << 1) & 2, gl_VertexID & 2);
    v_uv = vec2(p.x, 1.0 - p.y);          // row 0 of the uploaded frame is the top of the screen
    gl_Position = vec4(p * 2.0 - 1.0, 0.0, 1.0);
}
"""
_FRAG = """
#version 330
uniform sampler2D u_frame;
uniform sampler2D u_offset;               // reprojection: where each pixel was in the frame shown (uv units)
uniform bool u_warp;
uniform vec4 u_rect;                      // destination x0, y0, x1, y1 in 0..1 window units (y down)
uniform vec4 u_src;                       // source window x0, y0, x1, y1 in 0..1 frame units
uniform float u_alpha;
in vec2 v_uv;
out vec4 o_color;
void main() {
    vec2 t = (v_uv - u_rect.xy) / (u_rect.zw - u_rect.xy);
    if (any(lessThan(t, vec2(0.0))) || any(greaterThan(t, vec2(1.0)))) discard;
    vec2 uv = mix(u_src.xy, u_src.zw, t);
    if (u_warp) uv += texture(u_offset, uv).xy;
    vec4 c = texture(u_frame, clamp(uv, 0.0, 1.0));
    o_color = vec4(c.rgb, c.a * u_alpha);
}
"""
FULL = (0.0, 0.0, 1.0, 1.0)


class FrameBlitter:
    """Draws an RGB or RGBA uint8 frame into a rectangle of the current framebuffer."""

    def __init__(self, ctx: moderngl.Context):
        self.ctx = ctx
        self.program = ctx.program(vertex_shader=_VERT, fragment_shader=_FRAG)
        self.vao = ctx.vertex_array(self.program, [])
        self.vao.vertices = 3
        self.textures: dict[str, moderngl.Texture] = {}

    def _texture(self, slot: str, size: tuple[int, int], components: int, dtype: str) -> moderngl.Texture:
        tex = self.textures.get(slot)
        if tex is None or tex.size != size or tex.components != components:
            if tex is not None:
                tex.release()
            tex = self.ctx.texture(size, components, dtype=dtype)
            tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
            tex.repeat_x = tex.repeat_y = False
            self.textures[slot] = tex
        return tex

    def draw(self, frame: np.ndarray, rect=FULL, slot: str = "main", blend: bool = False, src=FULL,
             alpha: float = 1.0, offset: np.ndarray | None = None) -> None:
        """`offset` (h, w, 2) float32, in uv units of the frame: sample each pixel that much away (reprojection)."""
        h, w, c = frame.shape
        tex = self._texture(slot, (w, h), c, "f1")
        tex.write(np.ascontiguousarray(frame))
        tex.use(location=0)
        self.program["u_frame"].value = 0
        self.program["u_warp"].value = offset is not None
        if offset is not None:
            oh, ow = offset.shape[:2]
            warp = self._texture(slot + "/offset", (ow, oh), 2, "f4")
            warp.write(np.ascontiguousarray(offset, dtype=np.float32))
            warp.use(location=1)
            self.program["u_offset"].value = 1
        self.program["u_rect"].value = tuple(float(v) for v in rect)
        self.program["u_src"].value = tuple(float(v) for v in src)
        self.program["u_alpha"].value = float(alpha)
        if blend or alpha < 1.0:
            self.ctx.enable(moderngl.BLEND)
            self.ctx.blend_func = moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA
        self.ctx.disable(moderngl.DEPTH_TEST)
        self.vao.render(moderngl.TRIANGLES)
        self.ctx.disable(moderngl.BLEND)

    def release(self) -> None:
        for tex in self.textures.values():
            tex.release()
        self.vao.release()
        self.program.release()


class Hud:
    """Lines of text rendered with pygame's font into an RGBA frame, drawn at the window's top-left corner."""

    def __init__(self, blitter: FrameBlitter, window_size: tuple[int, int], font_px: int = 18):
        import pygame

        pygame.font.init()
        self.font = pygame.font.Font(None, font_px + 6)
        self.blitter, self.window_size = blitter, window_size
        self._last: tuple[str, ...] = ()
        self._image: np.ndarray | None = None

    def draw(self, lines: list[str]) -> None:
        import pygame

        key = tuple(lines)
        if key != self._last:   # re-rasterise only when the text changes
            surfaces = [self.font.render(line, True, (255, 255, 255)) for line in lines]
            w = max(s.get_width() for s in surfaces) + 12
            h = sum(s.get_height() for s in surfaces) + 8
            panel = pygame.Surface((w, h), pygame.SRCALPHA)
            panel.fill((0, 0, 0, 150))
            y = 4
            for s in surfaces:
                panel.blit(s, (6, y))
                y += s.get_height()
            self._image = np.ascontiguousarray(pygame.surfarray.pixels3d(panel).swapaxes(0, 1))
            alpha = pygame.surfarray.pixels_alpha(panel).swapaxes(0, 1)[..., None]
            self._image = np.concatenate([self._image, alpha], axis=2)
            self._last = key
        h, w = self._image.shape[:2]
        ww, wh = self.window_size
        self.blitter.draw(self._image, rect=(0.0, 0.0, w / ww, h / wh), slot="hud", blend=True)


class DisplayMode(Enum):
    AI = "AI"
    SPLIT = "split"          # original on the left half, AI on the right, at the same screen positions
    BLEND = "blend"          # AI over the original at BLEND_ALPHA
    ORIGINAL = "original"

    def next(self) -> DisplayMode:
        modes = list(DisplayMode)
        return modes[(modes.index(self) + 1) % len(modes)]


BLEND_ALPHA = 0.5


class Overlay:
    """The window's picture each frame: the game's original frame and the latest AI frame in the chosen mode, then
    the HUD. With reprojection on, the AI frame (which lags the game by its latency) is warped along the game's
    motion vectors to the current frame, so the picture follows the camera at game rate."""

    def __init__(self, ctx: moderngl.Context, window_size: tuple[int, int]):
        self.ctx = ctx
        self.blitter = FrameBlitter(ctx)
        self.hud = Hud(self.blitter, window_size)
        self.mode = DisplayMode.AI
        self.reprojector = Reprojector()
        self.reproject = False

    def draw(self, original: np.ndarray, styled: np.ndarray | None, hud: list[str],
             styled_index: int | None = None, index: int | None = None, motion: np.ndarray | None = None) -> None:
        """`original` is the game's frame `index` (with its `motion` to the previous frame, for reprojection);
        `styled` the latest AI frame, made from frame `styled_index`. No AI frame yet: the original is shown."""
        if motion is not None and index is not None:
            self.reprojector.add(index, motion)
        self.ctx.screen.use()
        mode = self.mode if styled is not None else DisplayMode.ORIGINAL
        offset = None
        if styled is not None and self.reproject and styled_index is not None and index is not None:
            offset = self.reprojector.offsets(styled_index, index, styled.shape[:2])
        if mode in (DisplayMode.ORIGINAL, DisplayMode.SPLIT, DisplayMode.BLEND):
            self.blitter.draw(original, slot="original")
        if mode == DisplayMode.AI:
            self.blitter.draw(styled, slot="ai", offset=offset)
        elif mode == DisplayMode.SPLIT:
            half = (0.5, 0.0, 1.0, 1.0)
            self.blitter.draw(styled, rect=half, src=half, slot="ai", offset=offset)
        elif mode == DisplayMode.BLEND:
            self.blitter.draw(styled, slot="ai", alpha=BLEND_ALPHA, offset=offset)
        self.hud.draw(hud)

    def release(self) -> None:
        self.blitter.release()
