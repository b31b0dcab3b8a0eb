"""The player: walks over the voxel ground, blocked by walls, trunks, deep water and the play area's edge."""
from __future__ import annotations

import numpy as np

from .camera import Camera
from .config import GameConfig
from .controls import Actions
from .world import World

BODY_RADIUS = 0.3      # blocks: keeps the eye further from walls than the near plane
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
        self.prev_feet, self.prev_yaw = self.feet.copy(), self.yaw   # last tick's pose, for motion vectors

    def apply(self, a: Actions, dt: float) -> None:
        self.prev_feet, self.prev_yaw = self.feet.copy(), self.yaw
        # Yaw grows from +z towards +x, which is to the left on screen (the view is right-handed, y up), so a
        # right turn lowers it and the screen's right is (-cos, +sin).
        self.yaw = (self.yaw - a.turn + np.pi) % (2 * np.pi) - np.pi
        self.pitch = float(np.clip(self.pitch + a.look, -PITCH_LIMIT, PITCH_LIMIT))
        fwd = np.array([np.sin(self.yaw), np.cos(self.yaw)])
        right = np.array([-np.cos(self.yaw), np.sin(self.yaw)])
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
        """The body (a square of BODY_RADIUS around the feet) fits: every corner is walkable and within a step."""
        r = BODY_RADIUS
        for cx, cz in ((x - r, z - r), (x + r, z - r), (x - r, z + r), (x + r, z + r)):
            if not self.world.walkable(cx, cz) or abs(self.world.ground_height(cx, cz) - self.feet[1]) > MAX_STEP:
                return False
        return True

    def camera(self) -> Camera:
        if not self.third_person:
            eye = self.feet + np.array([0.0, self.config.eye_height, 0.0])
            return Camera(eye, self.yaw, self.pitch)
        back = np.array([np.sin(self.yaw), 0.0, np.cos(self.yaw)])
        eye = self.feet + np.array([0.0, 3.2, 0.0]) - back * 4.5
        return Camera(eye, self.yaw, self.pitch - 0.3)
