"""Show frames in a ModernGL window: one persistent texture, a full-screen triangle, and a text HUD on top.

The game (or the capture window) hands over (H, W, 3) uint8 frames of any size; the texture is re-made only when
the size changes and is upscaled with linear filtering. Rows arrive top-first, so the shader flips y instead of
copying the frame.
"""
from __future__ import annotations

import moderngl
import numpy as np

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
uniform vec4 u_rect;                       // x0, y0, x1, y1 of the destination in 0..1 window units (y down)
in vec2 v_uv;
out vec4 o_color;
void main() {
    vec2 uv = (v_uv - u_rect.xy) / (u_rect.zw - u_rect.xy);
    if (any(lessThan(uv, vec2(0.0))) || any(greaterThan(uv, vec2(1.0)))) discard;
    o_color = texture(u_frame, uv);
}
"""


class FrameBlitter:
    """Draws an RGB or RGBA uint8 frame into a rectangle of the current framebuffer."""

    def __init__(self, ctx: moderngl.Context):
        self.ctx = ctx
        self.program = ctx.program(vertex_shader=_VERT, fragment_shader=_FRAG)
        self.vao = ctx.vertex_array(self.program, [])
        self.vao.vertices = 3
        self.textures: dict[str, moderngl.Texture] = {}

    def draw(self, frame: np.ndarray, rect=(0.0, 0.0, 1.0, 1.0), slot: str = "main", blend: bool = False) -> None:
        h, w, c = frame.shape
        tex = self.textures.get(slot)
        if tex is None or tex.size != (w, h) or tex.components != c:
            if tex is not None:
                tex.release()
            tex = self.ctx.texture((w, h), c, dtype="f1")
            tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
            self.textures[slot] = tex
        tex.write(np.ascontiguousarray(frame))
        tex.use(location=0)
        self.program["u_frame"].value = 0
        self.program["u_rect"].value = tuple(float(v) for v in rect)
        if blend:
            self.ctx.enable(moderngl.BLEND)
            self.ctx.blend_func = moderngl.SRC_ALPHA, moderngl.ONE_MINUS_SRC_ALPHA
        self.ctx.disable(moderngl.DEPTH_TEST)
        self.vao.render(moderngl.TRIANGLES)
        if blend:
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
