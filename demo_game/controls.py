"""What moves the player each tick, whoever decides it: the keyboard and mouse, or the scripted bot."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Actions:
    forward: float = 0.0   # -1 back .. 1 forward
    strafe: float = 0.0    # -1 left .. 1 right
    turn: float = 0.0      # heading change this tick, radians (positive turns right on screen)
    look: float = 0.0      # pitch change this tick, radians (positive looks up)
