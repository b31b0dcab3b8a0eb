"""Draw a level from straight above: the geometry pass (G-buffers and motion), the cheap frame and the rich frame.

Every pixel is evaluated where it lands in the world (numpy, no GPU): which tile or sprite it sees, how high that
surface is and which way it faces. The cheap frame paints each material one flat colour, which is all the game
shows without AI. The rich frame is the look the game wishes it could draw: textured tiles (grass blades, bricks,
cobbles, rippling water, leaves), the style's sun with soft cast shadows, ambient occlusion by walls and trees, and
highlights on water, coins and slimes. Both come from one geometry pass of the same tick, so a recorded pair is exact.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .level import Level, Sprite, Tile

VIEW_TILES = 9.0        # tiles across the view's width, whatever its size in pixels
CAMERA_HEIGHT = 4.0     # depth is measured from a camera this high above the ground, in tiles
WALL_HEIGHT, BEVEL = 1.0, 0.18
CANOPY_BASE, CANOPY_DOME = 1.1, 0.5
WATER_HEIGHT = -0.2
_N_TILES = max(Tile) + 1

# the cheap frame: one flat colour per material
FLAT = np.zeros((_N_TILES, 3), np.uint8)
for _tile, _rgb in {Tile.VOID: (20, 40, 90), Tile.GRASS: (96, 168, 72), Tile.SAND: (214, 196, 140),
                    Tile.WATER: (58, 112, 196), Tile.WALL: (132, 132, 138), Tile.TREE: (40, 116, 56),
                    Tile.FLOWERS: (120, 176, 84), Tile.PATH: (172, 160, 140), Tile.PLAYER: (222, 62, 50),
                    Tile.SLIME: (90, 206, 120), Tile.COIN: (240, 204, 60), Tile.DUST: (200, 190, 168),
                    Tile.SPARK: (255, 250, 200)}.items():
    FLAT[_tile] = _rgb


@dataclass(frozen=True)
class TileStyle:
    """One look of the rich frame: its light and its palette, and what a player would type to ask for it."""

    name: str
    prompts: tuple[str, ...]
    sun_azimuth_deg: float      # direction to the sun in the map's plane, 0 = +x (right), 90 = +y (down)
    sun_elevation_deg: float
    sun: tuple[float, float, float]
    ambient: tuple[float, float, float]
    grass: tuple[float, float, float]
    leaves: tuple[float, float, float]
    water: tuple[float, float, float]

    @property
    def light(self) -> np.ndarray:
        """Unit vector from the ground to the sun, world axes (x right, y down the map, z up)."""
        az, el = np.radians(self.sun_azimuth_deg), np.radians(self.sun_elevation_deg)
        return np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])


STYLES: dict[str, TileStyle] = {s.name: s for s in (
    TileStyle("sunny summer", ("sunny summer day", "bright summer afternoon", "warm sunlit meadow in summer",
                               "clear sunny day with lush green grass"),
              sun_azimuth_deg=-135, sun_elevation_deg=50, sun=(1.05, 1.0, 0.88), ambient=(0.40, 0.45, 0.56),
              grass=(0.30, 0.55, 0.16), leaves=(0.14, 0.40, 0.10), water=(0.10, 0.34, 0.58)),
    TileStyle("autumn dusk", ("autumn evening at dusk", "golden hour in autumn", "low orange sun on fall leaves",
                              "late autumn afternoon with long shadows"),
              sun_azimuth_deg=-20, sun_elevation_deg=24, sun=(1.2, 0.66, 0.34), ambient=(0.24, 0.22, 0.34),
              grass=(0.46, 0.42, 0.16), leaves=(0.66, 0.28, 0.06), water=(0.16, 0.20, 0.42)),
)}


# ---------------------------------------------------------------------------------------------------------------
# Procedural texture


def _hash(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """A float in [0, 1) per integer lattice point, the same wherever and whenever it is asked for."""
    h = (ix.astype(np.int64) * 374761393 + iy.astype(np.int64) * 668265263 + seed * 982451653) & 0xFFFFFFFF
    h = ((h ^ (h >> 13)) * 1274126177) & 0xFFFFFFFF
    return ((h ^ (h >> 16)) & 0xFFFFFF).astype(np.float32) / float(1 << 24)


def noise(x: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    """Smooth value noise in [0, 1) over world coordinates: texture fixed to the surface, so it never swims."""
    ix, iy = np.floor(x), np.floor(y)
    fx, fy = x - ix, y - iy
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    a, b = _hash(ix, iy, seed), _hash(ix + 1, iy, seed)
    c, d = _hash(ix, iy + 1, seed), _hash(ix + 1, iy + 1, seed)
    return (a + (b - a) * fx) * (1 - fy) + (c + (d - c) * fx) * fy


# ---------------------------------------------------------------------------------------------------------------
# The geometry pass


@dataclass
class Geometry:
    """Per pixel, (H, W, ...): what the view sees this tick."""

    x: np.ndarray          # world position in tiles
    y: np.ndarray
    height: np.ndarray     # above the ground, tiles
    material: np.ndarray   # uint8 Tile id
    normal: np.ndarray     # (H, W, 3) world axes (x right, y down the map, z up), unit
    uv: np.ndarray         # (H, W, 2) within the tile, or within the sprite's box, [0, 1)
    motion: np.ndarray     # (H, W, 2) pixels since the previous tick (position now − position then)
    ao: np.ndarray         # [0, 1], 1 = open
    scale: float           # pixels per tile
    time: float


def _dome(dx: np.ndarray, dy: np.ndarray, radius: float, dome: float) -> tuple[np.ndarray, np.ndarray]:
    """Height above the base and the unnormalised normal of an ellipsoidal cap over a disc."""
    q2 = np.minimum((dx * dx + dy * dy) / (radius * radius), 1.0)
    root = np.sqrt(np.maximum(1.0 - q2, 0.0025))
    grad = dome / (radius * radius * root)       # dh/dd per unit offset
    normal = np.stack([dx * grad, dy * grad, np.ones_like(dx)], -1)
    return dome * np.sqrt(1.0 - q2), normal


def _pixel_grid(level: Level, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, float]:
    width, height = size
    scale = width / VIEW_TILES
    cx, cy = level.camera
    xs = cx + (np.arange(width, dtype=np.float32) + 0.5 - width / 2) / scale
    ys = cy + (np.arange(height, dtype=np.float32) + 0.5 - height / 2) / scale
    return np.broadcast_to(xs, (height, width)), np.broadcast_to(ys[:, None], (height, width)), scale


def geometry(level: Level, size: tuple[int, int]) -> Geometry:
    """The geometry pass of the level's current tick at `size` (W, H)."""
    x, y, scale = _pixel_grid(level, size)
    n = level.cfg.tiles
    ix, iy = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    inside = (ix >= 0) & (ix < n) & (iy >= 0) & (iy < n)
    ixc, iyc = np.clip(ix, 0, n - 1), np.clip(iy, 0, n - 1)
    material = np.where(inside, level.tiles[iyc, ixc], Tile.VOID).astype(np.uint8)
    fx, fy = (x - ix).astype(np.float32), (y - iy).astype(np.float32)
    h, w = material.shape
    height = np.zeros((h, w), np.float32)
    normal = np.zeros((h, w, 3), np.float32)
    normal[..., 2] = 1.0
    height[(material == Tile.WATER) | (material == Tile.VOID)] = WATER_HEIGHT

    # walls: flat tops with a bevel towards every side that is open
    wall = material == Tile.WALL
    if wall.any():
        def open_side(dx: int, dy: int) -> np.ndarray:
            nx, ny = np.clip(ixc + dx, 0, n - 1), np.clip(iyc + dy, 0, n - 1)
            return level.tiles[ny, nx] != Tile.WALL

        distance = np.full((h, w), np.inf, np.float32)
        slope = np.zeros((h, w, 2), np.float32)
        for dx, dy, d in ((-1, 0, fx), (1, 0, 1 - fx), (0, -1, fy), (0, 1, 1 - fy)):
            closer = wall & open_side(dx, dy) & (d < distance)
            distance[closer] = d[closer]
            slope[closer] = (-dx, -dy)            # height rises away from the open side
        ramp = np.clip(distance / BEVEL, 0, 1)
        height[wall] = WALL_HEIGHT - 0.3 * (1 - ramp[wall])
        on_bevel = wall & (ramp < 1)
        normal[on_bevel, :2] = -slope[on_bevel] * (0.3 / BEVEL)

    # trees: a domed canopy in the tile, grass around it
    tree = material == Tile.TREE
    if tree.any():
        canopy = level.canopies[iyc, ixc]
        dx, dy, r = x - canopy[..., 0], y - canopy[..., 1], np.maximum(canopy[..., 2], 1e-3)
        under = tree & (dx * dx + dy * dy < r * r)
        material[tree & ~under] = Tile.GRASS
        cap, cap_normal = _dome(dx[under], dy[under], r[under], CANOPY_DOME)
        height[under] = CANOPY_BASE + cap
        normal[under] = cap_normal
        fx = np.where(under, dx / (2 * r) + 0.5, fx)
        fy = np.where(under, dy / (2 * r) + 0.5, fy)

    uv = np.stack([fx, fy], -1).astype(np.float32)
    camera_shift = (level.prev_camera - level.camera) * scale
    motion = np.empty((h, w, 2), np.float32)
    motion[...] = camera_shift.astype(np.float32)
    ao = _ambient_occlusion(level, x, y, height)
    for sprite in level.sprites():
        _draw_sprite(level, sprite, x, y, scale, height, material, normal, uv, motion, ao)
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    return Geometry(x, y, height, material, normal, uv, motion, ao, scale, level.time)


def _bbox(level: Level, sprite: Sprite, scale: float, size: tuple[int, int], pad: float = 0.0
          ) -> tuple[slice, slice] | None:
    width, height = size
    cx, cy = level.camera
    r = sprite.radius + pad
    x0 = int(np.floor((sprite.x - r - cx) * scale + width / 2))
    x1 = int(np.ceil((sprite.x + r - cx) * scale + width / 2)) + 1
    y0 = int(np.floor((sprite.y - r - cy) * scale + height / 2))
    y1 = int(np.ceil((sprite.y + r - cy) * scale + height / 2)) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    return None if x0 >= x1 or y0 >= y1 else (slice(y0, y1), slice(x0, x1))


def _draw_sprite(level: Level, sprite: Sprite, x, y, scale, height, material, normal, uv, motion, ao) -> None:
    box = _bbox(level, sprite, scale, height.shape[::-1])
    if box is None:
        return
    dx, dy = x[box] - sprite.x, y[box] - sprite.y
    r = sprite.radius
    inside = dx * dx + dy * dy < r * r
    cap, cap_normal = _dome(dx, dy, r, max(sprite.dome, 1e-3))
    top = sprite.height + cap
    seen = inside & (top > height[box])
    if not seen.any():
        return
    height[box][seen] = top[seen]
    material[box][seen] = sprite.material
    normal[box][seen] = cap_normal[seen]
    uv[box][seen] = np.stack([dx / (2 * r) + 0.5, dy / (2 * r) + 0.5], -1)[seen]
    moved = np.array([sprite.x - sprite.prev_x, sprite.y - sprite.prev_y]) + level.prev_camera - level.camera
    motion[box][seen] = (moved * scale).astype(np.float32)
    ao[box][seen] = 1.0


def _ambient_occlusion(level: Level, x: np.ndarray, y: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Ground near walls and under trees is darker: the tall tiles' coverage, blurred over a tile and sampled
    bilinearly at each pixel; surfaces above the ground are open."""
    tall = np.where(level.tiles == Tile.WALL, 1.0, np.where(level.tiles == Tile.TREE, 0.8, 0.0)).astype(np.float32)
    padded = np.pad(tall, 1)
    blurred = sum(padded[1 + dy:1 + dy + tall.shape[0], 1 + dx:1 + dx + tall.shape[1]] * wgt
                  for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                  for wgt in [(0.25 if dx == dy == 0 else 0.125 if dx == 0 or dy == 0 else 0.0625)])
    n = tall.shape[0]
    sx, sy = np.clip(x - 0.5, 0, n - 1.001), np.clip(y - 0.5, 0, n - 1.001)
    ix, iy = sx.astype(np.int64), sy.astype(np.int64)
    fx, fy = sx - ix, sy - iy
    occ = ((blurred[iy, ix] * (1 - fx) + blurred[iy, ix + 1] * fx) * (1 - fy)
           + (blurred[iy + 1, ix] * (1 - fx) + blurred[iy + 1, ix + 1] * fx) * fy)
    return np.where(height < 0.5, 1.0 - 0.6 * np.clip(occ, 0, 1), 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Light


def _occluder_height(level: Level, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """How high the map's own geometry (walls and canopies, not sprites) reaches at world points."""
    n = level.cfg.tiles
    ix, iy = np.clip(x.astype(np.int64), 0, n - 1), np.clip(y.astype(np.int64), 0, n - 1)
    tile = level.tiles[iy, ix]
    out = np.where(tile == Tile.WALL, WALL_HEIGHT, 0.0)
    tree = tile == Tile.TREE
    if tree.any():
        c = level.canopies[iy[tree], ix[tree]]
        q2 = ((x[tree] - c[:, 0]) ** 2 + (y[tree] - c[:, 1]) ** 2) / np.maximum(c[:, 2], 1e-3) ** 2
        out[tree] = np.where(q2 < 1, CANOPY_BASE + CANOPY_DOME * np.sqrt(np.clip(1 - q2, 0, 1)), 0.0)
    return out


def sun(level: Level, geo: Geometry, style: TileStyle) -> np.ndarray:
    """(H, W) float32 in [0, 1]: the style's direct sunlight, cosine × soft cast shadow (walls, canopies and the
    sprites' own discs)."""
    light = style.light
    lambert = np.clip(geo.normal @ light.astype(np.float32), 0, 1)
    across = np.hypot(light[0], light[1])
    towards = light[0] / across, light[1] / across           # the sun's direction on the map
    rise = light[2] / across                                 # height gained per tile walked towards the sun
    reach = min((WALL_HEIGHT + CANOPY_BASE + CANOPY_DOME) / rise, 4.0)
    shadow = np.zeros_like(lambert)
    for s in np.arange(0.12, reach, 0.16):
        occ = _occluder_height(level, geo.x + towards[0] * s, geo.y + towards[1] * s)
        shadow = np.maximum(shadow, np.clip((occ - geo.height - s * rise) / 0.12, 0, 1))
    for sprite in level.sprites():   # each sprite's disc, cast along the light onto what lies below it
        if sprite.material in (Tile.DUST, Tile.SPARK):
            continue
        lift = sprite.height + 0.6 * sprite.dome
        cast = Sprite(sprite.x - light[0] / light[2] * lift, sprite.y - light[1] / light[2] * lift,
                      sprite.radius * 0.9, 0, 0, sprite.material)
        box = _bbox(level, cast, geo.scale, lambert.shape[::-1], pad=0.1)
        if box is None:
            continue
        d = np.hypot(geo.x[box] - cast.x, geo.y[box] - cast.y)
        soft = np.clip((cast.radius - d) / 0.08 + 0.5, 0, 1) * (geo.height[box] < lift - 0.05)
        shadow[box] = np.maximum(shadow[box], soft)
    return (lambert * (1 - shadow)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# The two frames


def cheap_frame(geo: Geometry) -> np.ndarray:
    """(H, W, 3) uint8: every material one flat colour, what the game draws on its own."""
    return FLAT[geo.material]


def _albedo(geo: Geometry, style: TileStyle) -> np.ndarray:
    x, y, m, u, v, t = geo.x, geo.y, geo.material, geo.uv[..., 0], geo.uv[..., 1], geo.time
    out = np.zeros((*m.shape, 3), np.float32)

    def paint(which: Tile, colour: np.ndarray) -> None:
        mask = m == which
        if mask.any():
            out[mask] = np.broadcast_to(colour, (*m.shape, 3))[mask] if colour.ndim == 3 else colour

    fine, coarse = noise(x * 9, y * 9, 1), noise(x * 1.3, y * 1.3, 2)
    streaks = noise(x * 31, y * 23, 3)
    blades = (0.75 + 0.25 * coarse + 0.3 * (fine - 0.5) + 0.2 * (streaks - 0.5))[..., None]
    grass = np.asarray(style.grass, np.float32) * blades
    paint(Tile.GRASS, grass)
    petals = (noise(x * 6, y * 6, 4) > 0.72)[..., None]
    hue = np.where(noise(x * 2, y * 2, 5)[..., None] > 0.5, np.float32([0.95, 0.85, 0.25]),
                   np.float32([0.9, 0.35, 0.55]))
    paint(Tile.FLOWERS, np.where(petals, hue, grass))
    paint(Tile.SAND, np.float32([0.80, 0.70, 0.48]) * (0.88 + 0.2 * fine[..., None]))
    # cobbles: 3 × 3 stones a tile, mortar between them
    cu, cv = u * 3, v * 3
    edge = np.minimum(np.abs(cu - np.round(cu)), np.abs(cv - np.round(cv)))
    stone = 0.75 + 0.25 * _hash(np.floor(x * 3), np.floor(y * 3), 6)
    cobbles = np.float32([0.62, 0.58, 0.52]) * np.where(edge < 0.08, 0.55, stone)[..., None]
    paint(Tile.PATH, cobbles)
    # bricks: four courses a tile, every other course offset by half a brick
    row = np.floor(v * 4)
    bu = u * 2 + 0.5 * (row % 2)
    mortar = (np.abs(v * 4 - np.round(v * 4)) < 0.09) | (np.abs(bu - np.round(bu)) < 0.05)
    brick = 0.8 + 0.2 * _hash(np.floor(x * 2 + 0.5 * (row % 2)), np.floor(y * 4), 7)
    paint(Tile.WALL, np.float32([0.60, 0.55, 0.52]) * np.where(mortar, 0.6, brick)[..., None])
    leaves = 0.6 + 0.5 * noise(x * 12, y * 12, 8)[..., None] * (0.7 + 0.3 * np.clip(1.3 - geo.height, 0, 1)[..., None])
    paint(Tile.TREE, np.asarray(style.leaves, np.float32) * leaves)
    ripple = 0.85 + 0.15 * np.sin(5.0 * x + 1.7 * t + 3 * noise(x * 2, y * 2, 9)) * np.sin(4.0 * y - 1.3 * t)
    paint(Tile.WATER, np.asarray(style.water, np.float32) * ripple[..., None])
    paint(Tile.VOID, np.asarray(style.water, np.float32) * 0.6)
    belt = np.abs(v - 0.62) < 0.06
    paint(Tile.PLAYER, np.where(belt[..., None], np.float32([0.3, 0.2, 0.1]), np.float32([0.82, 0.18, 0.14])))
    paint(Tile.SLIME, np.float32([0.30, 0.78, 0.38]) * (0.85 + 0.15 * noise(x * 20, y * 20, 10))[..., None])
    paint(Tile.COIN, np.float32([0.98, 0.78, 0.22]) * (0.8 + 0.2 * (np.hypot(u - 0.5, v - 0.5) < 0.3))[..., None])
    paint(Tile.DUST, np.float32([0.78, 0.72, 0.62]))
    paint(Tile.SPARK, np.float32([1.0, 0.95, 0.7]))
    return out


def rich_frame(geo: Geometry, sunlight: np.ndarray, style: TileStyle) -> np.ndarray:
    """(H, W, 3) uint8: the frame the game wishes it could draw, in `style` (sunlight from `sun`)."""
    albedo = _albedo(geo, style)
    m = geo.material
    ambient = np.asarray(style.ambient, np.float32) * (0.35 + 0.65 * geo.ao)[..., None]
    colour = albedo * (ambient + np.asarray(style.sun, np.float32) * sunlight[..., None])
    # highlights: water ripples, shiny coins and slimes catch the sun
    normal = geo.normal.copy()
    water = (m == Tile.WATER)
    wx, wy, t = geo.x[water], geo.y[water], geo.time
    normal[water, 0] += 0.3 * (noise(wx * 4 + 0.6 * t, wy * 4, 11) - noise(wx * 4 - 0.4 * t, wy * 4 + 0.5 * t, 12))
    normal[water, 1] += 0.3 * (noise(wx * 4, wy * 4 + 0.5 * t, 13) - noise(wx * 4 + 0.3 * t, wy * 4 - 0.6 * t, 14))
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
    half = style.light + np.array([0, 0, 1.0])
    half = (half / np.linalg.norm(half)).astype(np.float32)
    shine = np.where(water, 60.0, np.where(m == Tile.COIN, 12.0, np.where(m == Tile.SLIME, 20.0, 0.0)))
    spec = np.where(shine > 0, np.clip(normal @ half, 0, 1) ** np.maximum(shine, 1), 0.0) * (sunlight > 0.05)
    colour += 0.6 * spec[..., None] * np.asarray(style.sun, np.float32)
    colour[m == Tile.SPARK] = np.float32([1.0, 0.95, 0.7])     # sparks glow
    return (np.clip(colour, 0, 1) ** (1 / 1.15) * 255 + 0.5).astype(np.uint8)
