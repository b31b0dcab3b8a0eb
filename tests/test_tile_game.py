"""The second sample game (tile_game), written against the public API only: seeded and deterministic, its cheap frame
and G-buffers from the same geometry as its rich frame, motion vectors that carry one frame onto the next, recorded
through `restyler record-data --game`, and played through the runtime and overlay."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bridge.recording import RecordingRequest
from models.io.data import ClipDataset, collate, gbuffers_of
from tile_game import LevelConfig, TileSession, recordable
from tile_game.level import Tile
from tile_game.render import FLAT

ROOT = Path(__file__).resolve().parents[1]
SIZE = (64, 64)


def frames(seed: int, n: int, size=SIZE):
    game = recordable(RecordingRequest(seed, size))
    return [game.training_frame() for _ in range(n)]


def test_imports_nothing_from_the_demo_game():
    """The second game is what a user's game looks like: it may use bridge and renderer, never demo_game."""
    for path in (ROOT / "tile_game").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.startswith("demo_game") for n in names), path


def test_deterministic_per_seed():
    a, b, other = frames(3, 12), frames(3, 12), frames(4, 2)
    for fa, fb in zip(a, b):
        np.testing.assert_array_equal(fa.packet.rgb, fb.packet.rgb)
        np.testing.assert_array_equal(fa.packet.motion, fb.packet.motion)
        for style in fa.targets:
            np.testing.assert_array_equal(fa.targets[style], fb.targets[style])
            np.testing.assert_array_equal(fa.suns[style], fb.suns[style])
    assert not np.array_equal(a[0].packet.rgb, other[0].packet.rgb)


def test_pairs_are_exact_and_buffers_in_range():
    """The cheap frame is the flat colour of the very material buffer the rich frame was shaded from (one geometry
    pass per tick), and every buffer keeps the packet contract's ranges."""
    for frame in frames(7, 6):
        p = frame.packet.validate()
        np.testing.assert_array_equal(p.rgb, FLAT[p.material])
        assert 0 <= p.uv.min() and p.uv.max() < 1 and 0 <= p.ao.min() and p.ao.max() <= 1
        np.testing.assert_allclose(np.linalg.norm(p.normals, axis=-1), 1, atol=1e-4)
        styles = list(frame.targets)
        assert len(styles) == 2 and not np.array_equal(frame.targets[styles[0]], frame.targets[styles[1]])
        # the rich frame's sprites sit where the material buffer says (the player is red in every style)
        player = p.material == Tile.PLAYER
        if player.any():
            rgb = frame.targets[styles[0]][player].astype(int)
            assert (rgb[:, 0] > rgb[:, 2]).mean() > 0.8


def test_motion_carries_the_previous_frame_onto_this_one():
    """Following each pixel's motion back to the previous frame finds the same material (where it was visible):
    what the student's warped history and noise rely on."""
    session = TileSession(LevelConfig(seed=11), SIZE)
    matches = []
    previous = None
    for _ in range(40):
        session.step()
        packet, _ = session.frame()
        if previous is not None:
            h, w = packet.material.shape
            yy, xx = np.mgrid[0:h, 0:w]
            sx = np.round(xx - packet.motion[..., 0]).astype(int)
            sy = np.round(yy - packet.motion[..., 1]).astype(int)
            inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
            same = previous[sy[inside], sx[inside]] == packet.material[inside]
            matches.append(same.mean())
        previous = packet.material
    assert np.mean(matches) > 0.97


def test_record_data_with_the_game_factory(tmp_path: Path):
    """`restyler record-data --game tile_game:recordable` writes a dataset with every G-buffer the models read."""
    out = tmp_path / "tiles"
    cmd = [sys.executable, "-m", "restyler", "record-data", "--game", "tile_game:recordable", "--out", str(out),
           "--seeds", "0:2", "--frames", "4", "--size", "32x32"]
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
    data = ClipDataset(out, clip_frames=2)
    assert data.style_names == ["sunny summer", "autumn dusk"] and data.prompts["autumn dusk"][0]
    assert gbuffers_of(collate([data[0]])).shape == (1, 2, 9, 32, 32)
    refused = subprocess.run(cmd[:-6] + ["--seeds", "1000:1001", "--frames", "2"], cwd=ROOT, capture_output=True,
                             text=True)
    assert refused.returncode == 2 and "held-out" in refused.stderr


@pytest.mark.slow
def test_plays_headless_without_a_model(tmp_path: Path):
    env = {**os.environ, "SDL_VIDEODRIVER": "offscreen", "SDL_AUDIODRIVER": "dummy"}
    subprocess.run([sys.executable, "-m", "tile_game", "--headless", "--seconds", "1", "--out", str(tmp_path)],
                   check=True, cwd=ROOT, env=env, capture_output=True)
    assert (tmp_path / "play.mp4").stat().st_size > 0 and (tmp_path / "contact_sheet.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.shipped
def test_shipped_tiles_student_on_a_held_out_level(tmp_path: Path):
    """models/weights/tiles keeps its bar on a level it never saw: at least 6 dB over the cheap frame."""
    env = {**os.environ, "SDL_VIDEODRIVER": "offscreen", "SDL_AUDIODRIVER": "dummy"}
    out = tmp_path / "eval.json"
    subprocess.run([sys.executable, "-m", "restyler", "eval", "--model", "models/weights/tiles", "--game",
                    "tile_game:recordable", "--seeds", "1000:1001", "--frames", "8", "--rows", "input,student",
                    "--drift-frames", "0", "--worlds", str(tmp_path), "--json", str(out)],
                   check=True, cwd=ROOT, env=env, capture_output=True)
    rows = json.loads(out.read_text())["rows"]
    assert rows["student"]["psnr"] >= rows["input"]["psnr"] + 6
