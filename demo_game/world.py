"""Seeded voxel world generation: terrain, water, trees, buildings and collectibles.

Pure numpy, no graphics: the mesher (mesh.py) turns the voxel grid into geometry and the session moves the player
over it. The same seed always gives the same world, which the recorder and every determinism test rely on.
Axes: x and z horizontal, y up; voxel (x, y, z) fills the unit cube [x, x+1] × [y, y+1] × [z, z+1].
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from .config import GameConfig


class Material(IntEnum):
    SKY = 0       # no geometry: the background
    GRASS = 1
    DIRT = 2
    SAND = 3
    STONE = 4
    WATER = 5
    WOOD = 6      # tree trunks
    LEAVES = 7
    PLANK = 8     # building walls
    ROOF = 9
    COBBLE = 10   # building floors and foundations
    GLASS = 11    # windows
    GEM = 12      # collectibles
    PLAYER = 13   # the avatar, seen only in third person


# Flat albedo of the low-detail pass (sRGB 0-255): the only thing the AI sees of a material when no G-buffers come.
LOW_DETAIL_PALETTE: dict[Material, tuple[int, int, int]] = {
    Material.SKY: (150, 190, 230),
    Material.GRASS: (96, 160, 64),
    Material.DIRT: (130, 94, 60),
    Material.SAND: (214, 200, 140),
    Material.STONE: (128, 128, 128),
    Material.WATER: (50, 100, 200),
    Material.WOOD: (110, 80, 45),
    Material.LEAVES: (50, 120, 40),
    Material.PLANK: (180, 140, 90),
    Material.ROOF: (150, 50, 40),
    Material.COBBLE: (100, 100, 110),
    Material.GLASS: (170, 210, 230),
    Material.GEM: (250, 210, 40),
    Material.PLAYER: (200, 40, 40),
}

@dataclass
class World:
    config: GameConfig
    voxels: np.ndarray            # (X, Y, Z) uint8 Material ids
    ground: np.ndarray            # (X, Z) int: y of the first free cell above the walkable surface
    blocked: np.ndarray           # (X, Z) bool: a wall, trunk or deep water stands in the way
    gems: np.ndarray              # (N, 3) float32 centres of the collectibles
    spawn: np.ndarray             # (3,) float32 feet position of the player at start
    buildings: list[tuple[int, int, int, int]] = field(default_factory=list)  # (x0, z0, x1, z1) footprints

    def ground_height(self, x: float, z: float) -> float:
        xi, zi = self.clamp_cell(x, z)
        return float(self.ground[xi, zi])

    def clamp_cell(self, x: float, z: float) -> tuple[int, int]:
        n = self.config.world_size
        return int(np.clip(np.floor(x), 0, n - 1)), int(np.clip(np.floor(z), 0, n - 1))

    def walkable(self, x: float, z: float) -> bool:
        lo = self.config.play_margin
        hi = self.config.world_size - self.config.play_margin
        if not (lo <= x < hi and lo <= z < hi):
            return False
        xi, zi = self.clamp_cell(x, z)
        return not bool(self.blocked[xi, zi])


def value_noise(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """Smooth noise on an n×n grid from a (cells+1)² lattice of random values, bicubically eased."""
    lattice = rng.random((cells + 1, cells + 1))
    coords = np.linspace(0, cells, n, endpoint=False)
    i = np.floor(coords).astype(int)
    f = coords - i
    f = f * f * (3 - 2 * f)  # smoothstep easing hides the lattice
    a = lattice[i][:, i]
    b = lattice[i + 1][:, i]
    c = lattice[i][:, i + 1]
    d = lattice[i + 1][:, i + 1]
    fx, fz = f[:, None], f[None, :]
    return (a * (1 - fx) + b * fx) * (1 - fz) + (c * (1 - fx) + d * fx) * fz


def fbm(rng: np.random.Generator, n: int, base_cells: int, octaves: int) -> np.ndarray:
    total = np.zeros((n, n))
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        total += amp * value_noise(rng, n, base_cells * 2**o)
        norm += amp
        amp *= 0.5
    return total / norm


def generate_world(config: GameConfig) -> World:
    rng = np.random.default_rng(config.seed)
    n, top = config.world_size, config.world_height
    wl = config.water_level

    # Terrain: rolling hills, some lakes, a few stony ridges.
    hills = fbm(rng, n, 3, 4)
    hills = (hills - hills.min()) / (np.ptp(hills) + 1e-9)   # stretch so every seed has both lakes and hills
    ridges = 1.0 - np.abs(2 * fbm(rng, n, 2, 3) - 1)
    height = 4 + hills * 16 + np.clip(ridges - 0.72, 0, None) * 30
    height = np.clip(np.round(height), 2, top - 12).astype(int)        # (X, Z)

    vox = np.zeros((n, top, n), dtype=np.uint8)
    ys = np.arange(top)[None, :, None]
    h3 = height[:, None, :]
    vox[ys < h3] = Material.STONE
    dirt = (ys >= h3 - 3) & (ys < h3)
    vox[dirt] = Material.DIRT
    surface = ys == h3 - 1
    beach = (height <= wl + 1)[:, None, :]
    rocky = (height >= 20)[:, None, :]
    vox[surface & ~beach & ~rocky] = Material.GRASS
    vox[surface & rocky] = Material.STONE
    vox[dirt & beach] = Material.SAND
    vox[(ys >= h3) & (ys < wl)] = Material.WATER

    ground = height.copy()
    blocked = height < wl - 1          # deep water: wading is fine, swimming is not modelled
    occupied = np.zeros((n, n), dtype=bool)   # where trees and buildings may not overlap
    lo, hi = config.play_margin - 8, n - config.play_margin + 8

    buildings = _place_buildings(rng, config, vox, height, ground, blocked, occupied, lo, hi)
    _place_trees(rng, config, vox, height, blocked, occupied, lo, hi)
    gems = _place_gems(rng, config, height, blocked, occupied)

    spawn_xz = _find_spawn(height, blocked, occupied, config)
    spawn = np.array([spawn_xz[0] + 0.5, ground[spawn_xz], spawn_xz[1] + 0.5], dtype=np.float32)
    return World(config, vox, ground, blocked, gems, spawn, buildings)


def _place_buildings(rng, config, vox, height, ground, blocked, occupied, lo, hi):
    wl = config.water_level
    footprints = []
    for _ in range(200):
        if len(footprints) >= config.buildings:
            break
        w, d = rng.integers(6, 10), rng.integers(6, 10)
        x0, z0 = rng.integers(lo, hi - w), rng.integers(lo, hi - d)
        patch = height[x0:x0 + w, z0:z0 + d]
        if patch.min() <= wl + 1 or patch.max() - patch.min() > 3 or occupied[x0 - 2:x0 + w + 2, z0 - 2:z0 + d + 2].any():
            continue
        floor = int(np.median(patch))
        wall_h = int(rng.integers(3, 5))
        x1, z1 = x0 + w, z0 + d
        # Level the plot: cobble foundation up to the floor, air above.
        vox[x0:x1, floor:, z0:z1] = Material.SKY
        vox[x0:x1, floor - 1, z0:z1] = Material.COBBLE
        for x in range(x0, x1):
            for z in range(z0, z1):
                vox[x, height[x, z] - 1:floor - 1, z] = Material.COBBLE
        walls = slice(floor, floor + wall_h)
        vox[x0:x1, walls, z0] = Material.PLANK
        vox[x0:x1, walls, z1 - 1] = Material.PLANK
        vox[x0, walls, z0:z1] = Material.PLANK
        vox[x1 - 1, walls, z0:z1] = Material.PLANK
        # Corner posts, windows and a door make the silhouette read as a house.
        for cx, cz in ((x0, z0), (x0, z1 - 1), (x1 - 1, z0), (x1 - 1, z1 - 1)):
            vox[cx, walls, cz] = Material.WOOD
        for x in range(x0 + 2, x1 - 2, 3):
            vox[x, floor + 1:floor + 2 + (wall_h > 3), z0] = Material.GLASS
            vox[x, floor + 1:floor + 2 + (wall_h > 3), z1 - 1] = Material.GLASS
        door = (x0 + x1) // 2
        vox[door, floor:floor + 2, z0] = Material.SKY
        # Stepped gable roof along x.
        for step in range((d + 1) // 2 + 1):
            y = floor + wall_h + step
            za, zb = z0 - 1 + step, z1 + 1 - step
            if za >= zb or y >= vox.shape[1]:
                break
            vox[x0 - 1:x1 + 1, y, za:zb] = Material.ROOF
        ground[x0:x1, z0:z1] = floor
        blocked[x0:x1, z0:z1] = True
        occupied[x0 - 2:x1 + 2, z0 - 2:z1 + 2] = True
        height[x0:x1, z0:z1] = floor
        footprints.append((int(x0), int(z0), int(x1), int(z1)))
    return footprints


def _place_trees(rng, config, vox, height, blocked, occupied, lo, hi):
    top = vox.shape[1]
    placed = 0
    for _ in range(config.trees * 8):
        if placed >= config.trees:
            break
        x, z = int(rng.integers(lo, hi)), int(rng.integers(lo, hi))
        h = height[x, z]
        if vox[x, h - 1, z] != Material.GRASS or occupied[x - 1:x + 2, z - 1:z + 2].any():
            continue
        trunk = int(rng.integers(4, 7))
        if h + trunk + 3 >= top:
            continue
        vox[x, h:h + trunk, z] = Material.WOOD
        r = float(rng.uniform(1.8, 2.8))
        cy = h + trunk
        ri = int(np.ceil(r))
        for dx in range(-ri, ri + 1):
            for dy in range(-ri, ri + 1):
                for dz in range(-ri, ri + 1):
                    d = np.sqrt(dx * dx + (dy * 1.3) ** 2 + dz * dz)
                    if d <= r and rng.random() > 0.12 * d / r:
                        px, py, pz = x + dx, cy + dy, z + dz
                        if vox[px, py, pz] == Material.SKY:
                            vox[px, py, pz] = Material.LEAVES
        blocked[x, z] = True
        occupied[x - 2:x + 3, z - 2:z + 3] = True
        placed += 1


def _place_gems(rng, config, height, blocked, occupied):
    lo, hi = config.play_margin + 2, config.world_size - config.play_margin - 2
    gems = []
    for _ in range(config.collectibles * 20):
        if len(gems) >= config.collectibles:
            break
        x, z = int(rng.integers(lo, hi)), int(rng.integers(lo, hi))
        if blocked[x, z] or occupied[x, z] or height[x, z] < config.water_level:
            continue
        if any(abs(g[0] - x - 0.5) + abs(g[2] - z - 0.5) < 5 for g in gems):
            continue
        gems.append((x + 0.5, height[x, z] + 0.9, z + 0.5))
    return np.array(gems, dtype=np.float32).reshape(-1, 3)


def _find_spawn(height, blocked, occupied, config):
    n = config.world_size
    c = n // 2
    best, best_d = (c, c), 1e9
    for x in range(config.play_margin, n - config.play_margin):
        for z in range(config.play_margin, n - config.play_margin):
            if blocked[x, z] or occupied[x, z] or height[x, z] < config.water_level + 1:
                continue
            d = (x - c) ** 2 + (z - c) ** 2
            if d < best_d:
                best, best_d = (x, z), d
    return best
