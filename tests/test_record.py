"""Recording and reading training data: demo_game/record.py writes the format of docs/interfaces.md,
models/io/data.py reads it back.

Most tests run twice: against a small fake game session (fast, pins the recorder's own logic) and against the real
GameSession (integration; skipped only while demo_game.session does not exist, or when EGL is unavailable).
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors import safe_open

from bridge import FramePacket
from demo_game import record
from demo_game.record import RecordError, record_dataset
from models.io.data import (ClipDataset, DataError, collate, gbuffers_from_arrays, gbuffers_of, load_clip, make_loader,
                            normalize_depth)

SIZE = (32, 32)  # (W, H)
FRAMES = 6


# ---------------------------------------------------------------------------------------------------------------
# A fake game with the session API of docs/interfaces.md: deterministic per (seed, frame), no GL.


@dataclass(frozen=True)
class FakeConfig:
    seed: int = 0
    width: int = 128
    height: int = 128
    fps: int = 30
    walk_speed: float = 4.3
    turn_speed: float = 2.6


FAKE_STYLES = {name: SimpleNamespace(prompts=(f"{name} day",)) for name in ("sunny", "snowy", "neon")}


class FakeContext:
    def __init__(self):
        self.released = False

    def release(self):
        self.released = True


class FakeSession:
    def __init__(self, config, ctx=None):
        self.config = config
        self.frame = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def close(self):
        pass

    def _rng(self, *salt: int) -> np.random.Generator:
        return np.random.default_rng([self.config.seed, self.frame, *salt])

    def step(self):
        self.frame += 1
        rng, hw = self._rng(), (self.config.height, self.config.width)
        normals = rng.normal(size=(*hw, 3)).astype(np.float32)
        return FramePacket(
            rgb=rng.integers(0, 256, (*hw, 3), dtype=np.uint8),
            depth=rng.uniform(0.1, 120.0, hw).astype(np.float32),
            normals=normals / np.linalg.norm(normals, axis=-1, keepdims=True),
            material=rng.integers(0, 9, hw, dtype=np.uint8),
            motion=rng.normal(0.0, 3.0, (*hw, 2)).astype(np.float32),
            uv=rng.uniform(0.0, 1.0, (*hw, 2)).astype(np.float32),
            ao=rng.uniform(0.0, 1.0, hw).astype(np.float32),
            index=self.frame - 1,
            t=(self.frame - 1) / self.config.fps,
        )

    def render_styles(self):
        hw = (self.config.height, self.config.width)
        return {name: self._rng(i + 1).integers(0, 256, (*hw, 3), dtype=np.uint8) for i, name in enumerate(FAKE_STYLES)}

    def render_suns(self):
        hw = (self.config.height, self.config.width)
        return {name: self._rng(i + 100).uniform(0, 1, hw).astype(np.float32) for i, name in enumerate(FAKE_STYLES)}


class SimulatedCrash(RuntimeError):
    pass


def crashing(session_cls: type, seed: int, after_steps: int = 3) -> type:
    """A session class that raises mid-clip for one seed, like a crash or Ctrl-C during recording."""

    class Crashing(session_cls):
        def __init__(self, config, ctx=None):
            super().__init__(config, ctx=ctx)
            self._crash_seed, self._steps = config.seed == seed, 0

        def step(self):
            self._steps += 1
            if self._crash_seed and self._steps > after_steps:
                raise SimulatedCrash(f"simulated crash in seed {seed}")
            return super().step()

    return Crashing


@dataclass
class Game:
    """Which game a test records with; `record` fills in the defaults every test shares."""

    kind: str
    config_cls: type
    session_cls: type
    styles: list[str]
    ctx: object

    def record(self, out: Path, seeds: range, frames: int = FRAMES, size=SIZE, session_cls: type | None = None,
               **kwargs):
        session_cls = session_cls or self.session_cls
        table = FAKE_STYLES if self.kind == "fake" else record._load_game()[2]
        styles = {name: table[name] for name in self.styles}
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(record, "_load_game", lambda: (self.config_cls, session_cls, styles))
            return record_dataset(out, seeds, frames, size, progress=False, ctx=self.ctx, **kwargs)


@pytest.fixture
def fake_game(monkeypatch) -> Game:
    monkeypatch.setattr(record, "_open_context", FakeContext)
    return Game("fake", FakeConfig, FakeSession, list(FAKE_STYLES), ctx=None)


@pytest.fixture(params=["fake", "real"])
def game(request, monkeypatch) -> Game:
    if request.param == "fake":
        return request.getfixturevalue("fake_game")
    if importlib.util.find_spec("demo_game.session") is None:
        pytest.skip("demo_game.session is not written yet")
    ctx = request.getfixturevalue("egl_ctx")
    config_cls, session_cls, styles = record._load_game()
    return Game("real", config_cls, session_cls, list(styles), ctx=ctx)


def file_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.iterdir())}


# ---------------------------------------------------------------------------------------------------------------


def test_round_trip_matches_contract(game: Game, tmp_path: Path):
    """Guards against the writer and the reader drifting from docs/interfaces.md (names, dtypes, frame-major shapes,
    style order) and against a loader that stacks batches in the wrong layout."""
    out = tmp_path / "data"
    game.record(out, range(0, 2))

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format"] == 3 and manifest["size"] == [32, 32] and manifest["frames"] == FRAMES
    assert manifest["fps"] == 30 and manifest["styles"] == game.styles
    assert manifest["buffers"] == ["depth", "normals", "material", "motion", "uv", "ao", "sun"]
    # the shards keep format 2's bytes (the manifest alone changed in format 3): the same header metadata as before
    with safe_open(str(out / "seed_0001.safetensors"), framework="np") as f:
        assert json.loads(f.metadata()["restyler"]) == {"format": 2, "seed": 1, "fps": 30, "styles": game.styles}
    assert manifest["clips"] == {
        f"seed_000{s}": {"seed": s, "file": f"seed_000{s}.safetensors", "frames": FRAMES} for s in (0, 1)
    }

    W, H = SIZE
    clip = load_clip(out, 1)
    expected = {"low": (np.uint8, (FRAMES, H, W, 3)), "depth": (np.float16, (FRAMES, H, W)),
                "normals": (np.float16, (FRAMES, H, W, 3)), "material": (np.uint8, (FRAMES, H, W)),
                "motion": (np.float16, (FRAMES, H, W, 2)), "uv": (np.float16, (FRAMES, H, W, 2)),
                "ao": (np.float16, (FRAMES, H, W))}
    expected.update({f"style/{i}": (np.uint8, (FRAMES, H, W, 3)) for i in range(len(game.styles))})
    expected.update({f"sun/{i}": (np.float16, (FRAMES, H, W)) for i in range(len(game.styles))})
    assert {k: (v.dtype, v.shape) for k, v in clip.items()} == {k: (np.dtype(d), s) for k, (d, s) in expected.items()}
    assert all(np.isfinite(clip[k].astype(np.float32)).all() for k in ("depth", "normals", "motion", "uv", "ao"))
    assert clip["uv"].min() >= 0 and clip["uv"].max() <= 1 and clip["ao"].min() >= 0 and clip["ao"].max() <= 1

    if game.kind == "fake":  # the fake's frames are known exactly: check values land in the right slots
        session = FakeSession(FakeConfig(seed=1, width=W, height=H))
        for f in range(FRAMES):
            packet, refs = session.step(), session.render_styles()
            np.testing.assert_array_equal(clip["low"][f], packet.rgb)
            np.testing.assert_array_equal(clip["depth"][f], packet.depth.astype(np.float16))
            np.testing.assert_array_equal(clip["material"][f], packet.material)
            np.testing.assert_array_equal(clip["uv"][f], packet.uv.astype(np.float16))
            np.testing.assert_array_equal(clip["style/2"][f], refs["neon"])
    else:  # the real game renders something, and the styles differ from the low-detail pass and each other
        assert clip["low"].std() > 0
        assert not np.array_equal(clip["style/0"], clip["low"])
        assert not np.array_equal(clip["style/0"], clip["style/1"])

    dataset = ClipDataset(out, clip_frames=3)
    assert len(dataset) == 2 * 2 * len(game.styles)  # clips x non-overlapping windows x styles
    item = dataset[len(game.styles) + 1]  # clip 0, second window, style 1
    assert item["start"].item() == 3 and item["seed"].item() == 0 and item["style_index"].item() == 1
    shapes = {"low": (3, 3, H, W), "style": (3, 3, H, W), "depth": (3, 1, H, W), "normals": (3, 3, H, W),
              "material": (3, 1, H, W), "motion": (3, 2, H, W), "uv": (3, 2, H, W), "ao": (3, 1, H, W),
              "sun": (3, 1, H, W)}
    assert {k: tuple(item[k].shape) for k in shapes} == shapes
    for key in ("low", "style", "depth", "uv", "ao", "sun"):
        assert item[key].dtype == torch.float32 and item[key].min() >= -1 and item[key].max() <= 1
    assert item["material"].dtype == torch.int64
    target = torch.from_numpy(load_clip(out, 0)["style/1"][3:6])  # (F, H, W, 3) uint8
    torch.testing.assert_close(item["style"], target.permute(0, 3, 1, 2).float() / 127.5 - 1)

    # the runtime encodes a game's buffers exactly as training reads them from disk (style 1's sun here)
    stored = load_clip(out, 0)
    buffers = {name: stored[name][3:6].astype(np.float32) for name in ("depth", "normals", "uv", "ao")}
    runtime = gbuffers_from_arrays({**buffers, "sun": stored["sun/1"][3:6].astype(np.float32),
                                    "material": stored["material"][3:6]})   # uint8 ids, as the game's packets carry
    torch.testing.assert_close(runtime, gbuffers_of(collate([item]))[0])
    assert gbuffers_from_arrays(buffers).shape[1] == 7  # no sun: the prefix the game handed over

    batch = next(iter(make_loader(out, batch=2, clip_frames=3, shuffle=True, seed=0)))
    assert batch["low"].shape == (2, 3, 3, H, W) and batch["motion"].shape == (2, 3, 2, H, W)
    assert batch["material"].shape == (2, 3, 1, H, W) and batch["style_index"].shape == (2,)


def test_rerun_skips_finished_clips(game: Game, tmp_path: Path):
    """Guards against a rerun re-recording (or rewriting) clips it already has, which would waste hours on a real
    dataset and could silently change data a model was trained on."""
    out = tmp_path / "data"
    game.record(out, range(0, 2))
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("*.safetensors")}

    game.record(out, range(0, 3))

    after = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("*.safetensors")}
    assert set(after) == set(before) | {"seed_0002.safetensors"}
    for name in before:
        assert after[name] == before[name], f"{name} was rewritten"
    assert sorted(json.loads((out / "manifest.json").read_text())["clips"]) == ["seed_0000", "seed_0001", "seed_0002"]


def test_interrupted_recording_resumes_to_identical_data(game: Game, tmp_path: Path):
    """Guards against an interrupted run losing finished clips, leaving a half-written shard or a broken manifest,
    or resuming into data that differs from an uninterrupted run."""
    interrupted, clean = tmp_path / "interrupted", tmp_path / "clean"
    with pytest.raises(SimulatedCrash):
        game.record(interrupted, range(0, 2), session_cls=crashing(game.session_cls, seed=1))

    assert sorted(p.name for p in interrupted.iterdir()) == ["manifest.json", "seed_0000.safetensors"]
    assert list(json.loads((interrupted / "manifest.json").read_text())["clips"]) == ["seed_0000"]
    assert len(ClipDataset(interrupted, clip_frames=FRAMES)) == len(game.styles)

    game.record(interrupted, range(0, 2))
    game.record(clean, range(0, 2))
    assert file_bytes(interrupted) == file_bytes(clean)


def test_eval_seeds_refused_without_force(fake_game: Game, tmp_path: Path):
    """Guards against held-out evaluation worlds (seeds >= 1000) leaking into training data by a typo in --seeds."""

    class MustNotRun(FakeSession):
        def __init__(self, *args, **kwargs):
            raise AssertionError("a session was opened for a refused request")

    out = tmp_path / "data"
    with pytest.raises(RecordError, match=r"1000.*--force-eval-seeds"):
        fake_game.record(out, range(998, 1001), session_cls=MustNotRun)
    assert not out.exists()

    fake_game.record(out, range(1000, 1001), force_eval_seeds=True)
    assert (out / "seed_1000.safetensors").is_file()


def test_mismatched_settings_refused(fake_game: Game, tmp_path: Path):
    """Guards against mixing clips of different size, length or style list in one directory, which the reader
    could not batch and which would corrupt a dataset that took hours to record."""
    out = tmp_path / "data"
    fake_game.record(out, range(0, 1))
    before = file_bytes(out)

    for kwargs in ({"frames": FRAMES + 2}, {"size": (16, 16)}):
        with pytest.raises(RecordError, match="new --out"):
            fake_game.record(out, range(0, 2), **kwargs)
    fake_game.styles = fake_game.styles[:2]
    with pytest.raises(RecordError, match="styles"):
        fake_game.record(out, range(0, 2))
    assert file_bytes(out) == before


def test_corrupt_or_missing_shard_gives_clear_error(fake_game: Game, tmp_path: Path):
    """Guards against a truncated or deleted shard surfacing as an opaque safetensors/torch error mid-training
    instead of one message naming the file and the fix, and against a rerun skipping the broken clip."""
    out = tmp_path / "data"
    fake_game.record(out, range(0, 2))
    good = (out / "seed_0001.safetensors").read_bytes()

    (out / "seed_0001.safetensors").write_bytes(good[: len(good) // 2])
    for read in (lambda: ClipDataset(out, clip_frames=2), lambda: load_clip(out, 1)):
        with pytest.raises(DataError, match=r"seed_0001\.safetensors.*record-data"):
            read()

    (out / "seed_0001.safetensors").unlink()
    with pytest.raises(DataError, match=r"seed_0001\.safetensors is missing.*record-data"):
        ClipDataset(out, clip_frames=2)

    fake_game.record(out, range(0, 2))  # the advised fix: rerun with the same settings
    assert (out / "seed_0001.safetensors").read_bytes() == good
    assert len(ClipDataset(out, clip_frames=2)) == 2 * 3 * 3

    with pytest.raises(DataError, match="no manifest.json.*record-data"):
        ClipDataset(tmp_path / "nothing-here", clip_frames=2)


def test_bad_session_output_named(fake_game: Game, tmp_path: Path):
    """Guards against a game that returns a missing G-buffer or a frame of the wrong size being recorded silently
    (or failing with a bare numpy broadcast error)."""

    class NoDepth(FakeSession):   # a game may have no depth at all, but not depth on some frames only
        def step(self):
            packet = super().step()
            if self.frame > 1:
                packet.depth = None
            return packet

    with pytest.raises(RecordError, match="depth"):
        fake_game.record(tmp_path / "a", range(0, 1), session_cls=NoDepth)

    class WrongSize(FakeSession):
        def render_styles(self):
            return {name: img[:-1] for name, img in super().render_styles().items()}

    with pytest.raises(RecordError, match=r"targets\['sunny'\] should be .* \(32, 32, 3\)"):
        fake_game.record(tmp_path / "b", range(0, 1), session_cls=WrongSize)


def test_own_context_released(fake_game: Game, tmp_path: Path, monkeypatch):
    """Guards against leaking the recorder's EGL context when a clip fails (a long-lived process would keep GPU
    memory), and against opening one when every clip is already recorded."""
    opened = []
    monkeypatch.setattr(record, "_open_context", lambda: opened.append(FakeContext()) or opened[-1])

    with pytest.raises(SimulatedCrash):
        fake_game.record(tmp_path, range(0, 1), session_cls=crashing(FakeSession, seed=0))
    fake_game.record(tmp_path, range(0, 1))
    fake_game.record(tmp_path, range(0, 1))
    assert len(opened) == 2 and all(ctx.released for ctx in opened)


def test_normalize_depth_range():
    """Guards against depth encodings that leave [-1, 1] or reorder distances (the model sees it as an image)."""
    depth = torch.tensor([0.0, 0.5, 4.0, 30.0, 120.0, 500.0])
    norm = normalize_depth(depth)
    assert norm[0] == -1 and torch.isclose(norm[4], torch.tensor(1.0)) and norm[5] == norm[4]
    assert torch.all(norm[1:5] > norm[:4])


def test_pace_scales_the_bot_and_is_part_of_the_dataset(fake_game: Game, tmp_path: Path):
    """`record-data --pace` (the calm camera of the generation data): the sessions get the bot's walking and
    turning speed scaled, the manifest records the pace, and a directory never mixes two paces."""
    configs = []

    class Session(FakeSession):
        def __init__(self, config, ctx=None):
            configs.append(config)
            super().__init__(config, ctx)

    out = tmp_path / "data"
    manifest = fake_game.record(out, range(0, 1), session_cls=Session, pace=0.3)
    base = fake_game.config_cls()
    assert manifest["pace"] == 0.3
    assert configs[0].walk_speed == pytest.approx(base.walk_speed * 0.3)
    assert configs[0].turn_speed == pytest.approx(base.turn_speed * 0.3)
    with pytest.raises(RecordError, match="pace"):
        fake_game.record(out, range(0, 2))
    with pytest.raises(RecordError, match="pace"):
        fake_game.record(tmp_path / "other", range(0, 1), pace=0)


def test_demo_shards_keep_the_bytes_of_format_2(egl_ctx, tmp_path: Path):
    """The demo game records through the recording API byte for byte as format 2's own writer did: the same
    passes of the same seed, stacked in the same order, float16 where it was, with the same single metadata key."""
    from safetensors.numpy import save_file

    from demo_game import STYLES, GameConfig, GameSession

    record_dataset(tmp_path, [3], 3, (32, 24), progress=False, ctx=egl_ctx)
    with GameSession(GameConfig(seed=3, width=32, height=24), ctx=egl_ctx) as game:
        ticks = [(game.step(), game.render_styles(), game.render_suns()) for _ in range(3)]
    stored = {"low": np.uint8, "depth": np.float16, "normals": np.float16, "material": np.uint8,
              "motion": np.float16, "uv": np.float16, "ao": np.float16}
    before = {name: np.stack([getattr(p, "rgb" if name == "low" else name) for p, _, _ in ticks]).astype(dtype)
              for name, dtype in stored.items()}
    before.update({f"style/{i}": np.stack([refs[s] for _, refs, _ in ticks]) for i, s in enumerate(STYLES)})
    before.update({f"sun/{i}": np.stack([suns[s] for _, _, suns in ticks]).astype(np.float16)
                   for i, s in enumerate(STYLES)})
    meta = {"format": 2, "seed": 3, "fps": 30, "styles": list(STYLES)}
    save_file(before, str(tmp_path / "before.safetensors"), metadata={"restyler": json.dumps(meta, sort_keys=True)})
    assert (tmp_path / "seed_0003.safetensors").read_bytes() == (tmp_path / "before.safetensors").read_bytes()
