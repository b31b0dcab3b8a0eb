"""The demo game: a seeded voxel world, its fast and reference passes, the bot, the recorder and the playable loop.

It integrates the plugin exactly as any game would, through `bridge` (frames out) and `renderer` (the AI).
"""
from .config import GameConfig
from .controls import Actions
from .styles import STYLES, Style, style_for_prompt
from .world import LOW_DETAIL_PALETTE, Material

__all__ = ["GameConfig", "Actions", "STYLES", "Style", "style_for_prompt", "Material", "LOW_DETAIL_PALETTE",
           "GameSession"]


def __getattr__(name):
    # The session pulls in moderngl and bridge; importing the package for its config or styles should not.
    if name == "GameSession":
        from .session import GameSession
        return GameSession
    raise AttributeError(name)
