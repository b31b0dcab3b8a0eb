"""The scripted bot that plays the game for recording and headless runs.

It walks to the nearest gem, turns with a capped rate like a player on a mouse, slows down in sharp turns, sweeps its
view now and then, steers around obstacles and gives up on targets it cannot reach. Its only randomness is its own
seeded generator, so the same seed replays the same path frame for frame.
"""
from __future__ import annotations

import numpy as np

from .config import GameConfig
from .controls import Actions
from .player import Player
from .world import World

STUCK_SECONDS = 3.0          # no progress for this long → the target is abandoned
GIVE_UP_SECONDS = 6.0        # how long an abandoned target stays off the list
PROBE_BLOCKS = 1.6           # how far ahead the bot checks the way is free
STEER_OFFSETS = (0.0, 0.5, -0.5, 1.0, -1.0, 1.6, -1.6, 2.4, -2.4)   # radians tried when the way ahead is blocked


def _wrap(angle: float) -> float:
    return (angle + np.pi) % (2 * np.pi) - np.pi


class Bot:
    def __init__(self, world: World, config: GameConfig):
        self.world, self.config = world, config
        self.rng = np.random.default_rng(config.seed + 7919)   # independent of world generation
        self.target: np.ndarray | None = None
        self.banned_until: dict[int, float] = {}
        self.target_id = -1
        self.best_dist = np.inf
        self.last_progress = 0.0
        self.look_around_until = -1.0
        self.look_dir = 1.0
        self.next_look_around = float(self.rng.uniform(4, 9))
        self.phases = self.rng.uniform(0, 2 * np.pi, 3)

    def act(self, player: Player, gems: np.ndarray, collected: np.ndarray, time: float) -> Actions:
        dt = self.config.dt
        max_turn = self.config.turn_speed * dt
        # Pitch drifts gently, as a player glancing around.
        wanted_pitch = -0.12 + 0.12 * np.sin(0.31 * time + self.phases[0]) + 0.05 * np.sin(0.83 * time + self.phases[1])
        look = float(np.clip(wanted_pitch - player.pitch, -max_turn * 0.3, max_turn * 0.3))

        if time < self.look_around_until:
            return Actions(forward=0.15, turn=self.look_dir * max_turn * 0.55, look=look)
        if time >= self.next_look_around:
            self.look_around_until = time + float(self.rng.uniform(1.2, 2.4))
            self.look_dir = float(self.rng.choice([-1.0, 1.0]))
            self.next_look_around = self.look_around_until + float(self.rng.uniform(5, 11))

        self._choose_target(player, gems, collected, time)
        pos = player.feet[[0, 2]]
        to_target = self.target - pos
        dist = float(np.linalg.norm(to_target))
        if dist < self.best_dist - 0.3:
            self.best_dist, self.last_progress = dist, time
        elif time - self.last_progress > STUCK_SECONDS:
            if self.target_id >= 0:
                self.banned_until[self.target_id] = time + GIVE_UP_SECONDS
            self.target = None
            return Actions(turn=-max_turn, look=look)

        desired = float(np.arctan2(to_target[0], to_target[1]))
        desired = self._steer(player, desired)
        err = _wrap(desired - player.yaw)
        turn = -float(np.clip(err, -max_turn, max_turn))   # Actions.turn is screen-right; yaw grows screen-left
        forward = float(np.clip(np.cos(err), 0.0, 1.0)) * (0.6 if dist < 2.0 else 1.0)
        return Actions(forward=forward, turn=turn, look=look)

    def _choose_target(self, player: Player, gems: np.ndarray, collected: np.ndarray, time: float) -> None:
        if self.target is not None and (self.target_id < 0 or not collected[self.target_id]):
            if self.target_id >= 0 or np.linalg.norm(self.target - player.feet[[0, 2]]) > 1.0:
                return
        pos = player.feet[[0, 2]]
        best, best_d = -1, np.inf
        for i, g in enumerate(gems):
            if collected[i] or self.banned_until.get(i, -1.0) > time:
                continue
            d = float(np.linalg.norm(g[[0, 2]] - pos))
            if d < best_d:
                best, best_d = i, d
        if best >= 0:
            self.target, self.target_id = gems[best][[0, 2]].astype(np.float64), best
        else:
            lo = self.config.play_margin + 2
            hi = self.config.world_size - self.config.play_margin - 2
            self.target, self.target_id = self.rng.uniform(lo, hi, 2), -1
        self.best_dist, self.last_progress = np.inf, time

    def _steer(self, player: Player, desired: float) -> float:
        """The first heading near the desired one whose next steps are free."""
        for off in STEER_OFFSETS:
            yaw = desired + off
            ok = True
            for frac in (0.5, 1.0):
                p = player.feet[[0, 2]] + frac * PROBE_BLOCKS * np.array([np.sin(yaw), np.cos(yaw)])
                if not player.can_stand(p[0], p[1]):
                    ok = False
                    break
            if ok:
                return yaw
        return desired + np.pi / 2
