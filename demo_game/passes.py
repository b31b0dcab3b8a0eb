"""ModernGL passes of the demo game, all from one camera at any resolution.

- fast pass: one draw into four render targets gives the low-detail frame (flat material albedo, what the AI
  restyles) and the G-buffers (linear depth, view-space normals, material id, motion vectors to the previous tick,
  the position within each block's face and the voxel ambient occlusion);
- sun pass: the direct sunlight each surface receives from one style's sun (cosine term times shadow), a G-buffer
  that depends on the style's light, so the game draws it for the style it asks for;
- reference passes: the expensive ground-truth styles (sky, procedural textures, shadow-mapped sun, voxel AO, water,
  fog), one per entry of styles.STYLES.

The caller owns the context (a Pygame window's or a headless EGL one) and the simulation; this module only draws.
"""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import moderngl
import numpy as np

from .camera import Camera, gl_bytes, look_at, orthographic, perspective
from .config import GameConfig
from .mesh import VERTEX_FLOATS
from .styles import Style
from .world import LOW_DETAIL_PALETTE, Material

MAX_DYNAMIC_BOXES = 64
MAX_GEM_LIGHTS = 32
_VERTEX_ATTRIBUTES = (("in_pos", 3), ("in_prev", 3), ("in_normal", 3), ("in_mat", 1), ("in_ao", 1))


def _layout(prog: moderngl.Program) -> tuple[str, ...]:
    """Buffer format for a program: attributes the linker dropped as unused become padding."""
    fmt, names = [], []
    for name, floats in _VERTEX_ATTRIBUTES:
        if name in prog:
            fmt.append(f"{floats}f")
            names.append(name)
        else:
            fmt.append(f"{floats * 4}x")
    return (" ".join(fmt), *names)


def _shader(name: str) -> str:
    return resources.files("demo_game").joinpath("shaders", name).read_text()


def _program(ctx: moderngl.Context, vert: str, frag: str, common: bool) -> moderngl.Program:
    head = "#version 330\n" + (_shader("common.glsl") if common else "")
    return ctx.program(vertex_shader=head + _shader(vert), fragment_shader=head + _shader(frag))


def _set(prog: moderngl.Program, **uniforms) -> None:
    """Set uniforms by name; bytes are written raw (matrices, arrays). Names the compiler dropped are skipped."""
    for name, value in uniforms.items():
        if name not in prog:
            continue
        if isinstance(value, bytes):
            prog[name].write(value)
        else:
            prog[name].value = value


@dataclass
class FastFrame:
    """Output of the fast pass; row 0 is the top of the image."""
    low: np.ndarray        # (H, W, 3) uint8
    depth: np.ndarray      # (H, W) float32, linear, world units; sky = far plane
    normals: np.ndarray    # (H, W, 3) float32, view space, unit length on geometry, 0 on sky
    material: np.ndarray   # (H, W) uint8, Material ids, 0 on sky
    motion: np.ndarray     # (H, W, 2) float32, pixels (dx right, dy down) since the previous tick
    uv: np.ndarray         # (H, W, 2) float32, position within the block's face in [0, 1), 0 on sky
    ao: np.ndarray         # (H, W) float32, voxel ambient occlusion in [0, 1] (1 = open), 0 on sky
    sun: np.ndarray | None = None   # (H, W) float32, the asked style's sun term (render_sun's), 0 on sky


class _Targets:
    """Render targets of one resolution, made on first use and kept (the game draws at two sizes)."""

    def __init__(self, ctx: moderngl.Context, size: tuple[int, int]):
        self.size = size
        self.albedo = ctx.texture(size, 4, dtype="f1")
        self.normals = ctx.texture(size, 4, dtype="f4")
        self.data = ctx.texture(size, 4, dtype="f4")
        self.surface = ctx.texture(size, 4, dtype="f4")
        self.fast_depth = ctx.depth_renderbuffer(size)
        self.fast = ctx.framebuffer([self.albedo, self.normals, self.data, self.surface], self.fast_depth)
        self.sun = ctx.texture(size, 1, dtype="f4")
        self.sun_depth = ctx.depth_renderbuffer(size)
        self.sun_fbo = ctx.framebuffer([self.sun], self.sun_depth)
        self.color = ctx.texture(size, 4, dtype="f1")
        self.ref_depth = ctx.depth_renderbuffer(size)
        self.reference = ctx.framebuffer([self.color], self.ref_depth)


class PassRenderer:
    def __init__(self, ctx: moderngl.Context, config: GameConfig, vertices: np.ndarray, indices: np.ndarray,
                 world_size: int):
        self.ctx, self.config = ctx, config
        self.gbuffer = _program(ctx, "geometry.vert", "gbuffer.frag", common=True)  # common: face_uv
        self.reference = _program(ctx, "geometry.vert", "reference.frag", common=True)
        self.sky = _program(ctx, "sky.vert", "sky.frag", common=True)
        self.shadow = _program(ctx, "shadow.vert", "shadow.frag", common=False)
        self.sun = _program(ctx, "geometry.vert", "sun.frag", common=True)

        self.static_vbo = ctx.buffer(vertices.astype("f4").tobytes())
        self.static_ibo = ctx.buffer(indices.astype("u4").tobytes())
        self.dynamic_vbo = ctx.buffer(reserve=MAX_DYNAMIC_BOXES * 36 * VERTEX_FLOATS * 4, dynamic=True)
        self.dynamic_count = 0
        self.vaos = {}
        for name, prog in (("gbuffer", self.gbuffer), ("reference", self.reference), ("sun", self.sun)):
            self.vaos[name] = (
                ctx.vertex_array(prog, [(self.static_vbo, *_layout(prog))], index_buffer=self.static_ibo,
                                 index_element_size=4),
                ctx.vertex_array(prog, [(self.dynamic_vbo, *_layout(prog))]),
            )
        self.shadow_vao = ctx.vertex_array(self.shadow, [(self.static_vbo, *_layout(self.shadow))],
                                           index_buffer=self.static_ibo,
                                           index_element_size=4)
        self.sky_vao = ctx.vertex_array(self.sky, [])
        self.sky_vao.vertices = 3

        palette = np.zeros((16, 3), dtype="f4")
        for mat, rgb in LOW_DETAIL_PALETTE.items():
            palette[int(mat)] = np.array(rgb) / 255.0
        _set(self.gbuffer, u_palette=palette.tobytes())
        self.sky_rgb = np.array(LOW_DETAIL_PALETTE[Material.SKY], dtype=np.uint8)
        self.world_size = world_size
        self._targets: dict[tuple[int, int], _Targets] = {}
        self._shadow_maps: dict[str, tuple[moderngl.Texture, moderngl.Framebuffer, np.ndarray]] = {}

    # --- resources ------------------------------------------------------------------------------------------------
    def targets(self, size: tuple[int, int]) -> _Targets:
        if size not in self._targets:
            self._targets[size] = _Targets(self.ctx, size)
        return self._targets[size]

    def set_dynamic(self, vertices: np.ndarray) -> None:
        """Upload this tick's dynamic boxes (gems, avatar): (V, 11) float32 triangles."""
        count = min(len(vertices), MAX_DYNAMIC_BOXES * 36)
        if count:
            self.dynamic_vbo.write(np.ascontiguousarray(vertices[:count], dtype="f4").tobytes())
        self.dynamic_count = count

    def projection(self, size: tuple[int, int]) -> np.ndarray:
        c = self.config
        return perspective(c.fov_deg, size[0] / size[1], c.near, c.far)

    # --- fast pass ------------------------------------------------------------------------------------------------
    def render_fast(self, cam: Camera, prev_cam: Camera, size: tuple[int, int], sun: Style | None = None
                    ) -> FastFrame:
        """The cheap pass and its G-buffers in one draw; with `sun` also that style's sun term, equal to
        render_sun's but without its second draw of the scene (half the fast pass's cost on llvmpipe)."""
        t = self.targets(size)
        proj = self.projection(size)
        view = cam.view()
        _set(self.gbuffer, u_viewproj=gl_bytes(proj @ view), u_prev_viewproj=gl_bytes(proj @ prev_cam.view()),
             u_view=gl_bytes(view), u_size=size, u_with_sun=sun is not None)
        if sun is not None:
            shadow_tex, _, light_viewproj = self._shadow_map(sun)
            _set(self.gbuffer, u_sun_dir=tuple(sun.sun_direction), u_light_viewproj=gl_bytes(light_viewproj),
                 u_shadow_texel=1.0 / self.config.shadow_map_size, u_shadow=0)
            shadow_tex.use(location=0)
        t.fast.use()
        # One clear value reaches every attachment, so clear to zero (sky material 0, no normal, no motion) and
        # patch the sky's depth and colour after read-back: cheaper than a second full-screen draw.
        t.fast.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self._draw_scene("gbuffer")
        w, h = size
        low = np.frombuffer(t.fast.read(components=3, attachment=0), np.uint8).reshape(h, w, 3)[::-1]
        nrm = np.frombuffer(t.fast.read(components=3, attachment=1, dtype="f4"), np.float32).reshape(h, w, 3)[::-1]
        data = np.frombuffer(t.fast.read(components=4, attachment=2, dtype="f4"), np.float32).reshape(h, w, 4)[::-1]
        surface = np.frombuffer(t.fast.read(components=4, attachment=3, dtype="f4"), np.float32).reshape(h, w, 4)[::-1]
        material = np.rint(data[..., 1]).astype(np.uint8)
        sky = material == Material.SKY
        low = np.where(sky[..., None], self.sky_rgb, low)
        depth = np.where(sky, np.float32(self.config.far), data[..., 0])
        return FastFrame(
            low=np.ascontiguousarray(low),
            depth=np.ascontiguousarray(depth),
            normals=np.ascontiguousarray(nrm),
            material=material,
            motion=np.ascontiguousarray(data[..., 2:4]),
            uv=np.ascontiguousarray(surface[..., :2]),
            ao=np.ascontiguousarray(surface[..., 2]),
            sun=None if sun is None else np.ascontiguousarray(surface[..., 3]),
        )

    # --- sun pass -------------------------------------------------------------------------------------------------
    def render_sun(self, style: Style, cam: Camera, size: tuple[int, int]) -> np.ndarray:
        """(H, W) float32 in [0, 1]: the sun's cosine term times its shadow for `style`, 0 on the sky."""
        shadow_tex, _, light_viewproj = self._shadow_map(style)
        proj, view = self.projection(size), cam.view()
        _set(self.sun, u_viewproj=gl_bytes(proj @ view), u_prev_viewproj=gl_bytes(proj @ view), u_view=gl_bytes(view),
             u_sun_dir=tuple(style.sun_direction), u_light_viewproj=gl_bytes(light_viewproj),
             u_shadow_texel=1.0 / self.config.shadow_map_size, u_shadow=0)
        shadow_tex.use(location=0)
        t = self.targets(size)
        t.sun_fbo.use()
        t.sun_fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        self._draw_scene("sun")
        w, h = size
        sun = np.frombuffer(t.sun_fbo.read(components=1, dtype="f4"), np.float32).reshape(h, w)[::-1]
        return np.ascontiguousarray(sun)

    # --- reference passes -----------------------------------------------------------------------------------------
    def render_reference(self, style: Style, cam: Camera, time: float, gems: np.ndarray, size: tuple[int, int],
                         target: moderngl.Framebuffer | None = None) -> np.ndarray | None:
        """Draws one reference style. Returns (H, W, 3) uint8, or None when drawing into the caller's `target`."""
        shadow_tex, _, light_viewproj = self._shadow_map(style)
        proj = self.projection(size)
        view = cam.view()
        rot_only = view.copy()
        rot_only[:3, 3] = 0.0
        gem_buf = np.zeros((MAX_GEM_LIGHTS, 3), "f4")
        count = min(len(gems), MAX_GEM_LIGHTS)
        gem_buf[:count] = gems[:count]
        for prog in (self.reference, self.sky):
            _set(prog, u_mode=style.mode, u_sun_dir=tuple(style.sun_direction), u_sun_color=style.sun_color,
                 u_sky_zenith=style.sky_zenith, u_sky_horizon=style.sky_horizon, u_exposure=style.exposure,
                 u_time=time)
        _set(self.sky, u_inv_viewproj=gl_bytes(np.linalg.inv(proj @ rot_only)))
        _set(self.reference, u_viewproj=gl_bytes(proj @ view), u_prev_viewproj=gl_bytes(proj @ view),
             u_view=gl_bytes(view), u_cam_pos=tuple(cam.position), u_ambient=style.ambient,
             u_fog_density=style.fog_density, u_light_viewproj=gl_bytes(light_viewproj),
             u_shadow_texel=1.0 / self.config.shadow_map_size, u_gems=gem_buf.tobytes(), u_gem_count=count,
             u_shadow=0)
        shadow_tex.use(location=0)

        fbo = target if target is not None else self.targets(size).reference
        fbo.use()
        self.ctx.clear(0.0, 0.0, 0.0, 1.0, depth=1.0)
        self.ctx.disable(moderngl.DEPTH_TEST)
        self.sky_vao.render(moderngl.TRIANGLES)
        self.ctx.enable(moderngl.DEPTH_TEST)
        self._draw_scene("reference")
        if target is not None:
            return None
        w, h = size
        img = np.frombuffer(fbo.read(components=3, attachment=0), np.uint8).reshape(h, w, 3)[::-1]
        return np.ascontiguousarray(img)

    def _shadow_map(self, style: Style):
        """The sun is fixed per style and the terrain is static, so each style's shadow map is drawn once."""
        if style.name not in self._shadow_maps:
            s = self.config.shadow_map_size
            tex = self.ctx.depth_texture((s, s))
            tex.compare_func = "<="
            tex.filter = (moderngl.LINEAR, moderngl.LINEAR)
            fbo = self.ctx.framebuffer(depth_attachment=tex)
            n = self.world_size
            centre = np.array([n / 2, 10.0, n / 2])
            half = n * 0.75
            light_view = look_at(centre + style.sun_direction * 150.0, centre, np.array([0.0, 1.0, 0.0])
                                 if abs(style.sun_direction[1]) < 0.99 else np.array([0.0, 0.0, 1.0]))
            light_viewproj = orthographic(-half, half, -half, half, 1.0, 320.0) @ light_view
            fbo.use()
            fbo.clear(depth=1.0)
            self.ctx.enable(moderngl.DEPTH_TEST)
            _set(self.shadow, u_light_viewproj=gl_bytes(light_viewproj))
            self.shadow_vao.render(moderngl.TRIANGLES)
            self._shadow_maps[style.name] = (tex, fbo, light_viewproj)
        return self._shadow_maps[style.name]

    def _draw_scene(self, program: str) -> None:
        self.ctx.enable(moderngl.DEPTH_TEST)
        self.ctx.disable(moderngl.CULL_FACE)
        static, dynamic = self.vaos[program]
        static.render(moderngl.TRIANGLES)
        if self.dynamic_count:
            dynamic.render(moderngl.TRIANGLES, vertices=self.dynamic_count)

    def release(self) -> None:
        for t in self._targets.values():
            for r in (t.fast, t.reference, t.sun_fbo, t.albedo, t.normals, t.data, t.surface, t.sun, t.color,
                      t.fast_depth, t.ref_depth, t.sun_depth):
                r.release()
        for tex, fbo, _ in self._shadow_maps.values():
            fbo.release()
            tex.release()
        for static, dynamic in self.vaos.values():
            static.release()
            dynamic.release()
        for r in (self.shadow_vao, self.sky_vao, self.static_vbo, self.static_ibo, self.dynamic_vbo,
                  self.gbuffer, self.reference, self.sky, self.shadow, self.sun):
            r.release()
