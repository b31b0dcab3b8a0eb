"""Scoring a restyled video of a game never seen (models.evaluation.video, `restyler eval-video`): the metrics on
cases whose answer is known, and the command end to end on a short video of Tile Quest's cheap frames."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from models.evaluation.video import match_palette, score_video, still_flicker, structure, style_gain

ROOT = Path(__file__).resolve().parents[1]


def moving_squares(frames: int = 6, size: int = 32) -> torch.Tensor:
    """A bright square sliding over a still, textured background: edges, motion and still pixels."""
    g = torch.Generator().manual_seed(0)
    background = torch.rand(3, size, size, generator=g) * 0.5
    video = background.repeat(frames, 1, 1, 1)
    for t in range(frames):
        video[t, :, 8:16, 4 + 2 * t:12 + 2 * t] = torch.tensor([0.9, 0.8, 0.1])[:, None, None]
    return video


def test_identical_video_keeps_everything():
    video = moving_squares()
    scores = score_video(video, video.clone())
    assert scores["structure"] == pytest.approx(1.0, abs=1e-6)
    assert scores["flicker"] == pytest.approx(1.0, abs=1e-6)
    assert scores["still_flicker"] == 0.0


def test_each_metric_sees_what_it_is_for():
    video = moving_squares()
    flat = torch.full_like(video, 0.5)
    assert structure(video, flat) == 0.0                       # no edge kept
    boiling = video + 0.05 * torch.randn(video.shape, generator=torch.Generator().manual_seed(1))
    assert still_flicker(video, boiling) > 0.03                # the picture moves where the game stood still
    assert still_flicker(video, video * 0.5 + 0.2) == 0.0       # a steady recolouring does not boil
    style = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    assert style_gain(video, style, style) == pytest.approx(1.0)   # on the palette (histograms: any length)
    assert style_gain(video, video, style) == pytest.approx(0.0, abs=1e-6)


def test_palette_match_moves_only_the_colours():
    """The calibration beside style_gain: each channel recoloured onto the palette's values by rank. Onto its own
    palette a video is unchanged; onto another, every channel takes exactly the palette's values and the edges stay
    where they were."""
    video = moving_squares()
    assert torch.equal(match_palette(video, video), video)
    palette = torch.rand(video.shape, generator=torch.Generator().manual_seed(3)) ** 2
    matched = match_palette(video, palette)
    for c in range(3):
        assert torch.equal(matched[:, c].flatten().sort().values, palette[:, c].flatten().sort().values)
    assert structure(video, matched) > 0.5
    assert style_gain(video, matched, palette) > 0


def test_input_is_brought_to_the_output_size():
    big = torch.nn.functional.interpolate(moving_squares(), scale_factor=2, mode="nearest")
    scores = score_video(big, moving_squares())
    assert scores["structure"] > 0.95 and scores["still_flicker"] == 0.0


@pytest.mark.slow
@pytest.mark.shipped
def test_eval_video_command(tmp_path: Path):
    """`restyler eval-video` on 8 frames of a game the shipped model never saw: every score, the calibration on
    the demo game's own reference renderer, and the strip; a one-frame video is refused in one line."""
    from bridge.video import Mp4Writer
    from tile_game import LevelConfig, TileSession

    game = TileSession(LevelConfig(seed=1001), (96, 96))
    video = tmp_path / "tiles.mp4"
    with Mp4Writer(video, 30, (96, 96)) as out:
        for _ in range(8):
            out.write(game.play_frame().rgb)
    env = {**os.environ, "SDL_VIDEODRIVER": "offscreen", "SDL_AUDIODRIVER": "dummy"}
    cmd = [sys.executable, "-m", "restyler", "eval-video", str(video), "--worlds", str(tmp_path / "worlds"),
           "--json", str(tmp_path / "scores.json")]
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, capture_output=True)
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["frames"] == 8 and scores["palette_style"] == "sunny summer"
    assert 0 < scores["structure"] <= 1 and scores["still_flicker"] >= 0 and 0.3 < scores["reference_structure"] < 1
    assert {"flicker", "style_gain"} <= set(scores) and (tmp_path / "scores.png").stat().st_size > 0
    assert -1 <= scores["palette_match_style_gain"] <= 1
    refused = subprocess.run(cmd + ["--frames", "1"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert refused.returncode == 2 and "at least 2" in refused.stderr
