"""Tile Quest: a second sample game, top-down and 2D, written against Restyler's public API only.

A seeded tile map (meadows, beaches, lakes, ruined walls, cobbled paths, trees), a player the bot or the keyboard
drives, hopping slimes, coins and particles, under a camera that scrolls after the player. Its cheap frame is flat
colours; its rich frame has textures, the sun with soft shadows, ambient occlusion and highlights. It records its
training data through bridge.recording (`restyler record-data --game tile_game:recordable`) and plays with AI
rendering through renderer's runtime and overlay (`python -m tile_game`). docs/your-game.md walks through it.
It imports nothing from demo_game.
"""
from .level import Level, LevelConfig, Tile
from .render import STYLES, TileStyle
from .session import TileSession, recordable

__all__ = ["Level", "LevelConfig", "Tile", "STYLES", "TileStyle", "TileSession", "recordable"]
