"""GameConfig: every size and rate of the demo game in one injected dataclass (no module-level state)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypeVar

# The bot's pace (a multiple of its walking and turning speed) for the calm camera the generation stage learns
# from: `restyler record-data --pace 0.3` (docs/generation.md)
CALM_PACE = 0.3


@dataclass(frozen=True)
class GameConfig:
    seed: int = 0
    width: int = 128            # render size of the passes the AI sees (the model's resolution)
    height: int = 128
    fps: int = 30               # simulation tick rate; one step() advances 1/fps seconds
    world_size: int = 96        # blocks along x and z; the walkable area keeps `play_margin` from the edges
    world_height: int = 40
    play_margin: int = 18       # keeps the camera far enough inside that fog hides the world's edge
    water_level: int = 10
    trees: int = 70
    buildings: int = 4
    collectibles: int = 24
    fov_deg: float = 70.0
    near: float = 0.1
    far: float = 120.0
    eye_height: float = 1.62
    walk_speed: float = 4.3     # blocks per second, close to a walking game character
    turn_speed: float = 2.6     # radians per second: caps how fast the bot turns, like a player with a mouse
    third_person: bool = False  # camera behind and above the player instead of at the eyes
    shadow_map_size: int = 2048

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    @property
    def dt(self) -> float:
        return 1.0 / self.fps


Config = TypeVar("Config")


def at_pace(config: Config, pace: float) -> Config:
    """The same game with the player, and so the bot, walking and turning `pace` times as fast."""
    return replace(config, walk_speed=config.walk_speed * pace, turn_speed=config.turn_speed * pace)
