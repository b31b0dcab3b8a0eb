"""Record the demo game's training data: the scripted bot plays one clip per seed, through the recording API any
game uses (bridge.recording).

Called by `restyler record-data` (restyler/record_data.py), eval and tests; read back by models/io/data.py. The demo game
hands over every buffer the format has, and the sun of every style, so its shards are the ones recorded before the
API existed, byte for byte. `recordable` is the demo game as a GameFactory (`restyler record-data --game
demo_game.record:recordable` is the same as leaving --game out).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Iterable

from bridge.recording import (FIRST_EVAL_SEED, FORMAT, RecordError, RecordingRequest, TrainingFrame,
                              record_dataset as record_game)

from .config import at_pace

__all__ = ["FIRST_EVAL_SEED", "FORMAT", "RecordError", "DemoRecording", "recordable", "record_dataset"]


# ---------------------------------------------------------------------------------------------------------------
# Seams the tests replace: the game and its GL context are imported lazily so that `restyler --help` stays fast
# and this module imports on machines without a GL stack.


def _load_game() -> tuple[type, type, dict]:
    from demo_game import STYLES, GameConfig, GameSession

    return GameConfig, GameSession, STYLES


def _open_context() -> Any:
    """One headless EGL context shared by every clip: creating one per clip costs more than a short clip."""
    from demo_game.session import create_headless_context

    try:
        return create_headless_context()
    except RuntimeError as exc:  # no EGL here: one line for the CLI, not a traceback
        raise RecordError(str(exc)) from None


class DemoRecording:
    """The demo game as a RecordableGame: the bot plays the seeded world; every reference style is the target."""

    def __init__(self, request: RecordingRequest, ctx: Any):
        GameConfig, GameSession, styles = _load_game()
        width, height = request.size
        config = at_pace(replace(GameConfig(width=width, height=height), seed=request.seed), request.pace)
        self.fps = config.fps
        self.styles = {name: style.prompts for name, style in styles.items()}
        self.session = GameSession(config, ctx=ctx)

    def training_frame(self) -> TrainingFrame:
        packet = self.session.step()
        return TrainingFrame(packet, self.session.render_styles(), self.session.render_suns())

    def close(self) -> None:
        self.session.close()


def recordable(request: RecordingRequest) -> DemoRecording:
    """GameFactory of the demo game, with an EGL context of its own (record_dataset shares one across clips)."""
    return DemoRecording(request, ctx=None)


def record_dataset(out, seeds: Iterable[int], frames: int, size: tuple[int, int], force_eval_seeds: bool = False,
                   progress: bool = True, ctx: Any = None, pace: float = 1.0) -> dict[str, Any]:
    """Record one demo-game clip per seed into `out`; bridge.recording.record_dataset says how it resumes and what
    it refuses. `ctx` is a moderngl context to render with; by default one EGL context is opened on the first clip
    that needs recording and shared by all."""
    own: list[Any] = []

    def open_game(request: RecordingRequest) -> DemoRecording:
        if ctx is None and not own:
            own.append(_open_context())
        return DemoRecording(request, ctx if ctx is not None else own[0])

    try:
        return record_game(out, open_game, seeds, frames, size, force_eval_seeds=force_eval_seeds,
                           progress=progress, pace=pace)
    finally:
        for context in own:
            context.release()
