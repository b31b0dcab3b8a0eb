"""A seeded top-down level: the tile map, the things that move on it, and the bot that plays it.

Everything here is plain state stepped at a fixed tick; tile_game.render draws it. Its only randomness is the seeded
generators made from `seed`, so the same seed replays the same level and path frame for frame.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np


class Tile(IntEnum):
    """Material ids, shared by the tile map, the sprites and the recorded material buffer. 0 is the void past the
    map's edge (the top-down game's sky). The numbers follow the demo game's materials where the two games have
    something alike (grass, sand, stone, water, leaves, cobbles, the collectible, the player), so a restyler trained
    on the demo game starts from ids that already mean something close."""

    VOID = 0
    GRASS = 1
    FLOWERS = 2
    SAND = 3
    WALL = 4
    WATER = 5
    SLIME = 6
    TREE = 7
    DUST = 8
    SPARK = 9
    PATH = 10
    COIN = 12
    PLAYER = 13


WALKABLE = (Tile.GRASS, Tile.SAND, Tile.FLOWERS, Tile.PATH)


@dataclass(frozen=True)
class LevelConfig:
    seed: int = 0
    tiles: int = 48            # the map is tiles × tiles; water all round its edge
    ruins: int = 7             # rectangles of wall with gaps
    slimes: int = 10
    coins: int = 40
    speed: float = 3.2         # the player's walking speed, tiles per second
    fps: int = 30


@dataclass
class Sprite:
    """A disc seen from above: a dome of `radius` tiles rising `dome` above its base `height`."""

    x: float
    y: float
    radius: float
    height: float
    dome: float
    material: Tile
    prev_x: float = 0.0         # where it was the tick before: its motion vectors
    prev_y: float = 0.0
    age: float = 0.0            # particles: seconds lived; others: their own clock
    life: float = np.inf
    vx: float = 0.0             # particles drift at a constant velocity, tiles per second
    vy: float = 0.0

    def remember(self) -> None:
        self.prev_x, self.prev_y = self.x, self.y


def _smooth_noise(rng: np.random.Generator, tiles: int, cells: int) -> np.ndarray:
    """(tiles, tiles) in [0, 1]: random values on a coarse grid, bilinearly interpolated."""
    grid = rng.random((cells + 1, cells + 1))
    t = np.linspace(0, cells, tiles, endpoint=False)
    i = np.floor(t).astype(int)
    f = t - i
    f = f * f * (3 - 2 * f)
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None] + rows[:, i + 1] * f[None]


def generate_map(cfg: LevelConfig) -> np.ndarray:
    """(tiles, tiles) uint8 of Tile ids: a lake or two, beaches, meadows with flowers and trees, ruined walls and
    cobbled paths, water along the edge."""
    rng = np.random.default_rng(cfg.seed)
    n = cfg.tiles
    elevation = 0.65 * _smooth_noise(rng, n, 5) + 0.35 * _smooth_noise(rng, n, 11)
    yy, xx = np.mgrid[0:n, 0:n]
    edge = np.minimum.reduce([xx, yy, n - 1 - xx, n - 1 - yy]) / 6.0
    elevation = elevation * np.clip(edge, 0, 1) ** 0.5
    tiles = np.full((n, n), Tile.GRASS, np.uint8)
    tiles[elevation < 0.40] = Tile.SAND
    tiles[elevation < 0.33] = Tile.WATER
    tiles[(tiles == Tile.GRASS) & (rng.random((n, n)) < 0.07)] = Tile.FLOWERS
    for _ in range(cfg.ruins):  # hollow rectangles with gaps: rooms to walk round and into
        w, h = rng.integers(4, 9, 2)
        x0, y0 = rng.integers(3, n - 3 - max(w, h), 2)
        ring = np.zeros((h, w), bool)
        ring[[0, -1], :] = True
        ring[:, [0, -1]] = True
        ring &= rng.random((h, w)) > 0.18
        area = tiles[y0:y0 + h, x0:x0 + w]
        area[ring & (area != Tile.WATER)] = Tile.WALL
    for _ in range(3):  # cobbled paths: random walks
        x, y = rng.integers(6, n - 6, 2)
        for _ in range(int(rng.integers(20, 50))):
            if tiles[y, x] in (Tile.GRASS, Tile.FLOWERS, Tile.SAND):
                tiles[y, x] = Tile.PATH
            dx, dy = ((1, 0), (-1, 0), (0, 1), (0, -1))[int(rng.integers(4))]
            x, y = int(np.clip(x + dx, 2, n - 3)), int(np.clip(y + dy, 2, n - 3))
    trees = (tiles == Tile.GRASS) & (rng.random((n, n)) < 0.09)
    tiles[trees] = Tile.TREE
    return tiles


def tree_canopies(cfg: LevelConfig, tiles: np.ndarray) -> np.ndarray:
    """(tiles, tiles, 3) float32: each tree tile's canopy centre (x, y in tiles) and radius; zero elsewhere."""
    rng = np.random.default_rng(cfg.seed + 101)
    n = tiles.shape[0]
    jitter = rng.uniform(-0.08, 0.08, (n, n, 2))
    radius = rng.uniform(0.36, 0.47, (n, n))
    yy, xx = np.mgrid[0:n, 0:n]
    out = np.stack([xx + 0.5 + jitter[..., 0], yy + 0.5 + jitter[..., 1], radius], -1).astype(np.float32)
    out[tiles != Tile.TREE] = 0
    return out


@dataclass
class Level:
    """One seeded level in play: the map, the player, slimes, coins and particles, stepped by `tick`."""

    cfg: LevelConfig
    tiles: np.ndarray = field(init=False)
    canopies: np.ndarray = field(init=False)
    player: Sprite = field(init=False)
    slimes: list[Sprite] = field(init=False)
    coins: list[Sprite] = field(init=False)
    particles: list[Sprite] = field(init=False)
    camera: np.ndarray = field(init=False)       # the view's centre in tiles
    prev_camera: np.ndarray = field(init=False)
    time: float = 0.0
    score: int = 0

    def __post_init__(self) -> None:
        cfg = self.cfg
        self.tiles = generate_map(cfg)
        self.canopies = tree_canopies(cfg, self.tiles)
        self.rng = np.random.default_rng(cfg.seed + 7919)   # the bot's and the slimes' own generator
        free = np.argwhere(np.isin(self.tiles, WALKABLE))
        centre = np.array([cfg.tiles / 2, cfg.tiles / 2])
        start = free[np.argmin(np.abs(free - centre).sum(1))]
        self.player = Sprite(start[1] + 0.5, start[0] + 0.5, 0.3, 0.25, 0.45, Tile.PLAYER)
        picks = free[self.rng.choice(len(free), cfg.slimes + cfg.coins, replace=False)]
        self.slimes = [Sprite(x + 0.5, y + 0.5, 0.27, 0.0, 0.35, Tile.SLIME, age=float(self.rng.uniform(0, 9)))
                       for y, x in picks[:cfg.slimes]]
        self.coins = [Sprite(x + 0.5, y + 0.5, 0.16, 0.3, 0.05, Tile.COIN, age=float(self.rng.uniform(0, 9)))
                      for y, x in picks[cfg.slimes:]]
        self.particles = []
        for s in self.sprites():
            s.remember()
        self.camera = np.array([self.player.x, self.player.y])
        self.prev_camera = self.camera.copy()
        self.target: np.ndarray | None = None
        self.target_since = 0.0
        self.slime_goals = [np.array([s.x, s.y]) for s in self.slimes]

    @property
    def dt(self) -> float:
        return 1.0 / self.cfg.fps

    def sprites(self) -> list[Sprite]:
        """Drawn back to front: coins and slimes, the player, then particles above everything on the ground."""
        return [*self.coins, *self.slimes, self.player, *self.particles]

    def tile_at(self, x: float, y: float) -> int:
        n = self.cfg.tiles
        if not (0 <= x < n and 0 <= y < n):
            return Tile.VOID
        return int(self.tiles[int(y), int(x)])

    def walkable(self, x: float, y: float, radius: float = 0.2) -> bool:
        return all(self.tile_at(x + dx, y + dy) in WALKABLE
                   for dx, dy in ((radius, 0), (-radius, 0), (0, radius), (0, -radius)))

    # ------------------------------------------------------------------------------------------------------------
    def tick(self, move: tuple[float, float] | None = None) -> None:
        """Advance one tick. `move` is the player's wish (dx, dy), each in [-1, 1]; None lets the bot play."""
        dt = self.dt
        for s in self.sprites():
            s.remember()
        self.prev_camera = self.camera.copy()
        self.time += dt
        move = self._bot_move() if move is None else move
        self._walk(self.player, np.asarray(move, float), self.cfg.speed * dt)
        for i, slime in enumerate(self.slimes):
            self._wander(slime, i, dt)
        for coin in self.coins:
            coin.age += dt
            coin.height = 0.3 + 0.06 * np.sin(3.0 * coin.age)
        self._collect()
        self._update_particles(dt, moving=bool(np.hypot(*move) > 0.1))
        # the camera trails the player a little, as top-down games do
        self.camera = self.camera + (np.array([self.player.x, self.player.y]) - self.camera) * (1 - np.exp(-4 * dt))

    def _walk(self, sprite: Sprite, direction: np.ndarray, distance: float) -> bool:
        norm = np.hypot(*direction)
        if norm < 1e-6:
            return True
        step = direction / max(norm, 1.0) * distance
        moved = False
        for dx, dy in ((step[0], step[1]), (step[0], 0.0), (0.0, step[1])):   # slide along walls
            if self.walkable(sprite.x + dx, sprite.y + dy, sprite.radius * 0.8):
                sprite.x += dx
                sprite.y += dy
                moved = True
                break
        return moved

    def _bot_move(self) -> tuple[float, float]:
        """Walk to the nearest coin within reach, else to a random free spot; give up on targets after 4 s."""
        p = np.array([self.player.x, self.player.y])
        if self.target is None or np.linalg.norm(self.target - p) < 0.3 or self.time - self.target_since > 4.0:
            near = [np.array([c.x, c.y]) for c in self.coins if np.linalg.norm([c.x - p[0], c.y - p[1]]) < 6]
            if near and self.rng.random() < 0.7:
                self.target = near[int(self.rng.integers(len(near)))]
            else:
                for _ in range(20):
                    cand = p + self.rng.uniform(-6, 6, 2)
                    if self.walkable(*cand):
                        self.target = cand
                        break
            self.target_since = self.time
        if self.target is None:
            return (0.0, 0.0)
        d = self.target - p
        d = d / max(np.linalg.norm(d), 1e-6)
        if not self.walkable(p[0] + d[0] * 0.4, p[1] + d[1] * 0.4):
            self.target = None    # blocked: pick another next tick
        return float(d[0]), float(d[1])

    def _wander(self, slime: Sprite, i: int, dt: float) -> None:
        slime.age += dt
        slime.dome = 0.35 + 0.06 * np.sin(6.0 * slime.age)     # slimes squash as they hop
        goal = self.slime_goals[i]
        d = goal - (slime.x, slime.y)
        if np.linalg.norm(d) < 0.2 or not self._walk(slime, d, 1.1 * dt):
            cand = np.array([slime.x, slime.y]) + self.rng.uniform(-3, 3, 2)
            if self.walkable(*cand):
                self.slime_goals[i] = cand

    def _collect(self) -> None:
        p = self.player
        for coin in [c for c in self.coins if np.hypot(c.x - p.x, c.y - p.y) < p.radius + c.radius]:
            self.coins.remove(coin)
            self.score += 1
            for _ in range(8):   # a burst of sparks
                a = self.rng.uniform(0, 2 * np.pi)
                self.particles.append(Sprite(coin.x, coin.y, 0.06, 0.5, 0.0, Tile.SPARK, coin.x, coin.y,
                                             life=0.6, vx=float(np.cos(a)), vy=float(np.sin(a))))

    def _update_particles(self, dt: float, moving: bool) -> None:
        alive = []
        for s in self.particles:
            s.age += dt
            if s.age >= s.life:
                continue
            s.x += s.vx * dt
            s.y += s.vy * dt
            if s.material == Tile.DUST:
                s.radius = 0.05 + 0.15 * s.age / s.life
            else:
                s.radius = 0.07 * (1 - s.age / s.life) + 0.02
            alive.append(s)
        self.particles = alive
        if moving and int(self.time * self.cfg.fps) % 4 == 0:   # dust at the player's heels
            x, y = self.player.x, self.player.y + 0.2
            vx, vy = self.rng.uniform(-0.2, 0.2, 2)
            self.particles.append(Sprite(x, y, 0.05, 0.02, 0.0, Tile.DUST, x, y, life=0.5, vx=float(vx),
                                         vy=float(vy)))
