"""TileSession: one level being played, as the runtime and the recorder see it.

`frame()` gives the FramePacket the game streams to the restyler each tick (its cheap frame, G-buffers and motion);
`training_frame()` is the same tick with the rich frame of every style, which makes TileSession a RecordableGame
(bridge.recording) and `recordable` its GameFactory; `play_frame()` is a tick as it is played, for the benchmark.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from bridge import FramePacket
from bridge.recording import RecordingRequest, TrainingFrame

from .level import Level, LevelConfig
from .render import CAMERA_HEIGHT, STYLES, Geometry, cheap_frame, geometry, rich_frame, sun


class TileSession:
    def __init__(self, cfg: LevelConfig, size: tuple[int, int] = (128, 128)):
        self.level = Level(cfg)
        self.size = size
        self.fps = cfg.fps
        self.styles = {name: style.prompts for name, style in STYLES.items()}
        self.index = -1

    def step(self, move: tuple[float, float] | None = None) -> None:
        """One tick: the player walks by `move` (dx, dy in [-1, 1]), or the bot plays when it is None."""
        self.level.tick(move)
        self.index += 1

    def frame(self, size: tuple[int, int] | None = None, style: str | None = None) -> tuple[FramePacket, Geometry]:
        """The current tick as the restyler takes it, with the sun of `style` when one is given."""
        geo = geometry(self.level, size or self.size)
        world = geo.normal
        packet = FramePacket(
            rgb=cheap_frame(geo),
            depth=(CAMERA_HEIGHT - geo.height).astype(np.float32),
            normals=np.stack([world[..., 0], -world[..., 1], world[..., 2]], -1).astype(np.float32),  # view: y up
            material=geo.material,
            motion=geo.motion,
            uv=geo.uv,
            ao=geo.ao,
            sun=None if style is None else sun(self.level, geo, STYLES[style]),
            index=max(self.index, 0),
            t=self.level.time,
        )
        return packet, geo

    def play_frame(self, style: str | None = None) -> FramePacket:
        """One tick as the game streams it while playing (the bot walking): the packet alone, with the sun of
        `style` (default its first); what `restyler bench --game tile_game:recordable` runs beside the model."""
        self.step()
        return self.frame(style=style or next(iter(STYLES)))[0]

    def training_frame(self) -> TrainingFrame:
        self.step()
        packet, geo = self.frame()
        suns = {name: sun(self.level, geo, style) for name, style in STYLES.items()}
        targets = {name: rich_frame(geo, suns[name], style) for name, style in STYLES.items()}
        return TrainingFrame(packet, targets, suns)

    def close(self) -> None:
        pass


def recordable(request: RecordingRequest) -> TileSession:
    """The GameFactory `restyler record-data --game tile_game:recordable` records with: level `seed`, the bot
    walking at `pace` times its speed."""
    cfg = LevelConfig(seed=request.seed)
    return TileSession(replace(cfg, speed=cfg.speed * request.pace), request.size)
