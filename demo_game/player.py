"""The player: walks over the voxel ground, blocked by walls, trunks, deep water and the play area's edge."""
from __future__ import annotations

import numpy as np

from .camera import Camera
from .config import GameConfig
from .controls import Actions
from .world import World

MAX_STEP = 2.1         # blocks up (an auto-jump) or down; equal limits mean no pit can trap the player
PITCH_LIMIT = 1.2      # radians, just short of straight up or down


class Player:
    def __init__(self, world: World, config: GameConfig):
        self.world, self.config = world, config
        self.feet = world.spawn.astype(np.float64).copy()    # (3,) x, y, z
        centre = config.world_size / 2
        self.yaw = float(np.arctan2(centre - self.feet[0], centre + 10 - self.feet[2]))
        self.pitch = -0.1
        self.third_person = config.third_person   # the window toggles it (V)

    def apply(self, a: Actions, dt: float) -> None:
        self.yaw = (self.yaw + a.turn + np.pi) % (2 * np.pi) - np.pi
        self.pitch = float(np.clip(self.pitch + a.look, -PITCH_LIMIT, PITCH_LIMIT))
        fwd = np.array([np.sin(self.yaw), np.cos(self.yaw)])
        right = np.array([np.cos(self.yaw), -np.sin(self.yaw)])
        move = (fwd * a.forward + right * a.strafe)
        norm = np.linalg.norm(move)
        if norm > 1.0:
            move /= norm
        step = move * self.config.walk_speed * dt
        # Axis-separated moves let the player slide along walls instead of sticking to them.
        for axis in (0, 1):
            trial = self.feet[[0, 2]].copy()
            trial[axis] += step[axis]
            if self.can_stand(trial[0], trial[1]):
                self.feet[0 if axis == 0 else 2] = trial[axis]
        ground = self.world.ground_height(self.feet[0], self.feet[2])
        # Ease onto the ground: steps up and down read as a smooth walk, not a teleport.
        self.feet[1] += (ground - self.feet[1]) * min(1.0, dt * 12.0)

    def can_stand(self, x: float, z: float) -> bool:
        if not self.world.walkable(x, z):
            return False
        return abs(self.world.ground_height(x, z) - self.feet[1]) <= MAX_STEP

    def camera(self) -> Camera:
        if not self.third_person:
            eye = self.feet + np.array([0.0, self.config.eye_height, 0.0])
            return Camera(eye, self.yaw, self.pitch)
        back = np.array([np.sin(self.yaw), 0.0, np.cos(self.yaw)])
        eye = self.feet + np.array([0.0, 3.2, 0.0]) - back * 4.5
        return Camera(eye, self.yaw, self.pitch - 0.3)
