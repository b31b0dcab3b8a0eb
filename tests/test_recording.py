"""The recording API any game calls (bridge.recording): what a game hands over, what lands on disk, how training
reads a game with fewer buffers than the demo's, and the one clear error each kind of bad input gets with no finished
clip lost."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest

from bridge import FramePacket
from bridge import recording
from bridge.recording import (DatasetWriter, RecordError, RecordingRequest, TrainingFrame, load_factory,
                              record_dataset, spec_for)
from models.io.data import ClipDataset, collate, gbuffers_of

SIZE = (24, 16)  # (W, H)
FRAMES = 4


class ToyGame:
    """A game with one style, frames only (no G-buffers) unless `buffers` names some: deterministic per seed."""

    fps = 30

    def __init__(self, request: RecordingRequest, buffers: tuple[str, ...] = (), suns: bool = False):
        self.request, self.buffers, self.with_suns = request, buffers, suns
        self.styles = {"lit": ("warm torchlight", "lit by torches")}
        self.tick = 0
        self.closed = False

    def training_frame(self) -> TrainingFrame:
        rng = np.random.default_rng([self.request.seed, self.tick])
        self.tick += 1
        w, h = self.request.size
        extra = {}
        if "depth" in self.buffers:
            extra["depth"] = rng.uniform(1, 50, (h, w)).astype(np.float32)
        if "motion" in self.buffers:
            extra["motion"] = rng.normal(0, 2, (h, w, 2)).astype(np.float32)
        packet = FramePacket(rgb=rng.integers(0, 256, (h, w, 3), dtype=np.uint8), index=self.tick, **extra)
        targets = {"lit": rng.integers(0, 256, (h, w, 3), dtype=np.uint8)}
        suns = {"lit": rng.uniform(0, 1, (h, w)).astype(np.float32)} if self.with_suns else None
        return TrainingFrame(packet, targets, suns)

    def close(self) -> None:
        self.closed = True


def record(out: Path, seeds=range(0, 2), factory=None, **kwargs):
    return record_dataset(out, factory or ToyGame, seeds, FRAMES, SIZE, progress=False, **kwargs)


def test_frames_only_game_records_and_trains(tmp_path: Path):
    """A game with nothing but its frames: the manifest lists no buffers and the prompts it gave, the loader gives
    low and style only, and the G-buffer stack is absent (the model's frames-only path), not a KeyError."""
    manifest = record(tmp_path)
    assert manifest["format"] == recording.FORMAT and manifest["buffers"] == []
    assert manifest["prompts"] == {"lit": ["warm torchlight", "lit by torches"]}
    data = ClipDataset(tmp_path, clip_frames=2)
    item = data[0]
    assert set(item) == {"low", "style", "style_index", "seed", "start"}
    assert item["low"].shape == (2, 3, SIZE[1], SIZE[0])
    assert gbuffers_of(collate([item])) is None
    assert data.prompts == {"lit": ["warm torchlight", "lit by torches"]}


def test_buffers_round_trip_and_prefix(tmp_path: Path):
    """The buffers a game hands over are stored and read back (float16 on disk, the training encoding out), the
    sun per style; the G-buffer stack stops at the first one missing (depth without normals: 1 channel)."""
    game = ToyGame(RecordingRequest(0, SIZE), ("depth", "motion"), suns=True)
    frames = [game.training_frame() for _ in range(FRAMES)]
    manifest = record(tmp_path, range(0, 1),
                      factory=lambda request: ToyGame(request, ("depth", "motion"), suns=True))
    assert manifest["buffers"] == ["depth", "motion", "sun"]
    item = ClipDataset(tmp_path, clip_frames=FRAMES)[0]
    assert set(item) >= {"depth", "motion", "sun"} and "normals" not in item
    np.testing.assert_allclose(item["motion"][2].permute(1, 2, 0).numpy(), frames[2].packet.motion, atol=0.01)
    np.testing.assert_array_equal(item["low"][1].permute(1, 2, 0).add(1).mul(127.5).round().byte().numpy(),
                                  frames[1].packet.rgb)
    assert gbuffers_of(collate([item])).shape[2] == 1


def test_resume_skips_finished_clips_and_refuses_other_settings(tmp_path: Path):
    opened = []

    def factory(request):
        opened.append(request.seed)
        return ToyGame(request)

    record(tmp_path, range(0, 2), factory)
    record(tmp_path, range(0, 3), factory)
    assert opened == [0, 1, 2]
    with pytest.raises(RecordError, match="frames 4.*frames 5"):
        record_dataset(tmp_path, ToyGame, range(0, 1), 5, SIZE, progress=False)
    with pytest.raises(RecordError, match="buffers"):
        record(tmp_path, range(3, 4), lambda r: ToyGame(r, ("depth",)))
    assert sorted(json.loads((tmp_path / "manifest.json").read_text())["clips"]) == [
        "seed_0000", "seed_0001", "seed_0002"]


@pytest.mark.parametrize("bad, match", [
    (lambda f: setattr(f.packet, "rgb", f.packet.rgb.astype(np.float32)), "FramePacket.rgb: expected a uint8"),
    (lambda f: setattr(f.packet, "depth", np.zeros((3, 3), np.float32)), r"FramePacket.depth: .*\(16, 24\)"),
    (lambda f: f.targets.update(lit=f.targets["lit"][:-2]), r"targets\['lit'\] should be a uint8 array of shape "
                                                             r"\(16, 24, 3\).*\(14, 24, 3\)"),
    (lambda f: f.targets.update(lit=f.targets["lit"].astype(np.float32)), "targets.*float32"),
    (lambda f: f.targets.pop("lit"), r"targets has styles \[\], expected \['lit'\]"),
    (lambda f: setattr(f, "packet", f.packet.rgb), "expected a FramePacket"),
])
def test_bad_frames_get_one_clear_error_and_lose_no_clip(tmp_path: Path, bad, match):
    """Each kind of bad input from a game is refused where it enters, naming the seed, frame and field; the clips
    recorded before it stay listed and intact."""
    record(tmp_path, range(0, 1))

    class Broken(ToyGame):
        def training_frame(self):
            frame = super().training_frame()
            if self.tick == 3:
                bad(frame)
            return frame

    with pytest.raises(RecordError, match=match) as info:
        record(tmp_path, range(1, 2), Broken)
    assert "seed 1 frame 2" in str(info.value) or "TrainingFrame.packet" in str(info.value)
    assert list(json.loads((tmp_path / "manifest.json").read_text())["clips"]) == ["seed_0000"]
    assert not list(tmp_path.glob("*.partial")) and len(ClipDataset(tmp_path, clip_frames=FRAMES)) == 1


def test_a_game_must_honour_the_size_and_keep_its_buffers(tmp_path: Path):
    with pytest.raises(RecordError, match="drew 12x8 frames when asked for 24x16"):
        record(tmp_path / "a", factory=lambda r: ToyGame(RecordingRequest(r.seed, (12, 8))))

    class Dropping(ToyGame):
        def training_frame(self):
            frame = super().training_frame()
            if self.tick > 1:
                frame.packet.depth = None
            return frame

    with pytest.raises(RecordError, match=r"carries buffers \[\], every frame of this dataset carries \['depth'\]"):
        record(tmp_path / "b", factory=lambda r: Dropping(r, ("depth",)))


def test_disk_full_keeps_finished_clips(tmp_path: Path, monkeypatch):
    """A full disk while writing a shard: one RecordError saying so, no temporary file left, the clips written
    before still listed; the rerun with space again goes on from there."""
    record(tmp_path, range(0, 1))
    real_save = recording.save_file

    def full(arrays, path, metadata=None):
        Path(path).write_bytes(b"half a shard")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(recording, "save_file", full)
    with pytest.raises(RecordError, match="disk is full.*is kept"):
        record(tmp_path, range(0, 2))
    assert not list(tmp_path.glob("*.partial")) and not (tmp_path / "seed_0001.safetensors").exists()
    assert list(json.loads((tmp_path / "manifest.json").read_text())["clips"]) == ["seed_0000"]
    monkeypatch.setattr(recording, "save_file", real_save)
    assert list(record(tmp_path, range(0, 2))["clips"]) == ["seed_0000", "seed_0001"]


def test_interrupted_clip_is_dropped_and_the_game_closed(tmp_path: Path):
    """Ctrl-C in the middle of a clip: nothing of that clip is written, the game is closed, the rerun records it."""
    games = []

    class Interrupted(ToyGame):
        def training_frame(self):
            if self.request.seed == 1 and self.tick == 2:
                raise KeyboardInterrupt
            return super().training_frame()

    def factory(request):
        games.append(Interrupted(request))
        return games[-1]

    with pytest.raises(KeyboardInterrupt):
        record(tmp_path, range(0, 2), factory)
    assert all(g.closed for g in games)
    assert list(json.loads((tmp_path / "manifest.json").read_text())["clips"]) == ["seed_0000"]
    assert list(record(tmp_path, range(0, 2))["clips"]) == ["seed_0000", "seed_0001"]


def test_push_api_for_a_game_with_its_own_loop(tmp_path: Path):
    """DatasetWriter.clip: a game that runs its own loop pushes frames; a clip left short writes nothing."""
    game = ToyGame(RecordingRequest(5, SIZE))
    first = game.training_frame()
    writer = DatasetWriter(tmp_path, FRAMES, SIZE)
    with writer.clip(5, spec_for(first, game, FRAMES, 1.0)) as clip:
        clip.add(first)
        for _ in range(FRAMES - 1):
            clip.add(game.training_frame())
    with pytest.raises(RecordError, match="ended after 2 of its 4 frames"):
        with writer.clip(6) as clip:
            clip.add(game.training_frame())
            clip.add(game.training_frame())
    assert list(json.loads((tmp_path / "manifest.json").read_text())["clips"]) == ["seed_0005"]


def test_load_factory_errors():
    assert load_factory("tile_game:recordable").__name__ == "recordable"
    for spec, match in [("tile_game", "module:factory"), ("no_such_module:f", "cannot import"),
                        ("tile_game:nothing", "no callable 'nothing'")]:
        with pytest.raises(RecordError, match=match):
            load_factory(spec)


def test_eval_needs_motion_and_depth(tmp_path: Path):
    """A frames-only recording trains, but `restyler eval` scores the warp ratio along the game's motion and says
    so in one line rather than failing on a missing tensor."""
    from models.evaluation.restyle import EvalError, evaluate

    record_dataset(tmp_path, ToyGame, range(1000, 1001), FRAMES, (128, 128), progress=False, force_eval_seeds=True)
    with pytest.raises(EvalError, match="recorded without depth and motion"):
        evaluate(Path(__file__).resolve().parents[1] / "models" / "weights" / "tiles", tmp_path, FRAMES,
                 rows=("input", "student"))
