"""Restyler's plugin side: the streaming runtime, the overlay, capture and restyle, benchmarks and generation.

Games import this package to restyle their frames; it knows no particular game and imports nothing of the training
recipe (models.network and models.io only). Importing it stays cheap (no torch, no GL) so that the `restyler` command
(restyler/) starts instantly: `StreamingRestyler` loads renderer.runtime (and torch) on first use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["DEFAULT_MODEL", "GENERATION_MODEL", "ModelError", "StreamingRestyler"]

# The shipped model, found from the package's own location so that `restyler play` works from any folder.
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "weights" / "default"
# The model `restyler generate` uses: the backbone-v1 student trained to generate without incoming frames (`restyler
# train gen`). The default restyler is backbone v2's one-step student, which has no generation stage yet
# (docs/generation.md).
GENERATION_MODEL = DEFAULT_MODEL.parent / "generation"


def __getattr__(name: str) -> Any:
    if name in ("ModelError", "StreamingRestyler"):
        from renderer import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'renderer' has no attribute {name!r}")
