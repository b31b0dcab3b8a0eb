"""The streaming runtime: the engine's step, the latest-frame hand-off, style switches, failures, both worker kinds.

Random tiny models (tests/conftest.write_random_model): the runtime's behaviour does not depend on trained weights.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from bridge import ChunkMailbox, FramePacket
from renderer.engine import ModelError, StreamEngine, load_bundle
from renderer.runtime import StreamingRestyler
from renderer.workers import ThreadWorker, pack, unpack

SIZE = 64


def packet(i: int, gbuffers: bool = True) -> FramePacket:
    rng = np.random.default_rng(i)
    rgb = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    if not gbuffers:
        return FramePacket(rgb=rgb, index=i)
    # a depth field that varies slowly and motion of about a pixel: most pixels pass the warp's depth test
    depth = (20 + 5 * np.sin(np.arange(SIZE) / 9.0 + i / 7.0))[None, :].repeat(SIZE, 0).astype(np.float32)
    return FramePacket(rgb=rgb, depth=depth, normals=rng.normal(size=(SIZE, SIZE, 3)).astype(np.float32),
                       motion=rng.normal(0, 1, (SIZE, SIZE, 2)).astype(np.float32), index=i)


def full_packet(i: int) -> FramePacket:
    """packet(i) with every G-buffer backbone v2 reads (uv, AO, the style's sun, material) besides depth and normals."""
    from dataclasses import replace

    rng = np.random.default_rng(1000 + i)
    return replace(packet(i), uv=rng.random((SIZE, SIZE, 2), dtype=np.float32),
                   ao=rng.random((SIZE, SIZE), dtype=np.float32), sun=rng.random((SIZE, SIZE), dtype=np.float32),
                   material=rng.integers(0, 8, (SIZE, SIZE), dtype=np.uint8))


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.005)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("reset_every", [0, 2])
@pytest.mark.parametrize("model", ["random_model", "random_v2_model"])
def test_engine_step_is_the_evaluated_sampler(model, reset_every, precision, request):
    """The runtime must restyle exactly as evaluation scored: the engine's chunk steps on packets equal
    models.network.streaming.stream_clip on the same tensors with the same noise, also with a scheduled cache reset
    (guards against a conversion or cache-handling difference between the product and its numbers); for the DiT
    student and for the one-step backbone-v2 student with its warped history and noise carried along the motion;
    bit-equal at each precision."""
    from dataclasses import replace

    from models.network.dit import Conditioning
    from models.network.streaming import stream_clip

    bundle = load_bundle(request.getfixturevalue(model), precision=precision)
    bundle.sampler = replace(bundle.sampler, reset_every=reset_every)
    engine = StreamEngine(bundle, seed=3)
    engine.set_style("sunny summer day")
    # every G-buffer the model reads: the v2 student's material embedding and uv waves run too
    packets = [(full_packet if model == "random_v2_model" else packet)(i) for i in range(12)]
    ours = np.concatenate([engine.step(packets[i:i + 2]) for i in range(0, 12, 2)])

    engine.reset()
    parts = [engine.to_model(packets[i:i + 2]) for i in range(0, 12, 2)]
    incoming = torch.cat([p[0] for p in parts], 1)
    cond = Conditioning(low=incoming, gbuffers=torch.cat([p[1].gbuffers for p in parts], 1), style=engine.style,
                        motion=torch.cat([p[1].motion for p in parts], 1))
    x0 = stream_clip(bundle.student, incoming, cond, bundle.sampler, torch.Generator().manual_seed(3))
    theirs = np.concatenate([engine.to_frames(x0[:, i:i + 2]) for i in range(0, 12, 2)])
    np.testing.assert_array_equal(ours, theirs)


def test_engine_takes_frames_of_any_size_without_gbuffers(random_model):
    """Screen capture hands over RGB of any size: a square one resized to the model, G-buffers absent, output at
    model size."""
    engine = StreamEngine(load_bundle(random_model))
    engine.set_style("neon night city")   # any prompt, not only trained ones
    big = FramePacket(rgb=np.zeros((160, 160, 3), np.uint8))
    out = engine.step([big, big])
    assert out.shape == (2, SIZE, SIZE, 3) and out.dtype == np.uint8


def test_engine_letterboxes_frames_of_another_aspect_ratio(random_model):
    """A 16:9 capture is fitted whole between black bars (not squashed), and the stylized frames come back with the
    bars cut off: the capture's aspect ratio at the model's width."""
    engine = StreamEngine(load_bundle(random_model))
    engine.set_style("sunny summer day")
    wide = FramePacket(rgb=np.full((90, 160, 3), 255, np.uint8))
    incoming, _ = engine.to_model([wide, wide])
    height = round(90 * SIZE / 160)
    top = (SIZE - height) // 2
    assert engine.content == (top, 0, height, SIZE)
    assert torch.all(incoming[0, :, :, :top] == -1) and torch.all(incoming[0, :, :, top + height:] == -1)
    assert torch.all(incoming[0, :, :, top: top + height] == 1)
    out = engine.step([wide, wide])
    assert out.shape == (2, height, SIZE, 3)
    tall = FramePacket(rgb=np.zeros((160, 90, 3), np.uint8))
    assert engine.step([tall, tall]).shape == (2, SIZE, height, 3)


def test_engine_says_once_which_gbuffers_a_game_leaves_out(random_v2_model):
    """A game that hands over some G-buffers but not all the model reads gets the frames-only picture: the engine
    names the missing buffers once, and says nothing when every buffer arrives."""
    import warnings
    from dataclasses import replace

    engine = StreamEngine(load_bundle(random_v2_model))
    engine.set_style("sunny summer day")
    full = [full_packet(i) for i in range(4)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine.step(full[:2])
    no_sun = [replace(p, sun=None) for p in full]
    with pytest.warns(UserWarning, match=r"hands over 7 of the 9 G-buffer channels .*missing: sun, material"):
        engine.step(no_sun[:2])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        engine.step(no_sun[2:])   # once, not every chunk


def test_chunk_mailbox_keeps_the_newest_frames():
    """A slow consumer must get the newest K consecutive frames, never a backlog."""
    box: ChunkMailbox[int] = ChunkMailbox(2)
    for i in range(5):
        box.put(i)
    assert box.take(timeout=0) == [3, 4] and box.dropped == 3
    box.put(5)
    assert box.take(timeout=0.01) is None   # only one new frame: a chunk needs two
    box.put(6)
    assert box.take(timeout=0) == [5, 6]


def test_a_dropped_frame_hands_its_motion_on_to_the_next():
    """The worker skips frames it is too slow for; the next frame's motion must then reach back to the frame the
    worker last took, or the student would carry its history and noise by the wrong amount."""
    from renderer.runtime import chain_motion
    from renderer.workers import Submitted

    def moving(dx: float, index: int) -> Submitted:
        motion = np.zeros((8, 8, 2), np.float32)
        motion[..., 0] = dx
        return Submitted(FramePacket(rgb=np.zeros((8, 8, 3), np.uint8), motion=motion, index=index), 0.0)

    box: ChunkMailbox[Submitted] = ChunkMailbox(2, merge=chain_motion)
    for i in range(4):  # a pan of 1 pixel a frame; frames 0 and 1 are dropped
        box.put(moving(1.0, i))
    first, second = box.take(timeout=0)
    assert (first.packet.index, second.packet.index) == (2, 3)
    assert np.all(first.packet.motion[..., 0][:, 2:] == 3.0) and np.all(second.packet.motion[..., 0] == 1.0)
    box.put(Submitted(FramePacket(rgb=np.zeros((8, 8, 3), np.uint8), index=4), 0.0))  # a cut: no motion
    box.put(moving(1.0, 5))
    box.put(moving(1.0, 6))
    first, _ = box.take(timeout=0)
    assert first.packet.index == 5 and first.packet.motion is None  # what came before the cut is gone


def test_a_dropped_frame_hands_its_display_motion_on_too():
    """The display frames' motion (the upsampler's temporal resolve follows it) is chained like the model's; after
    a dropped frame that had no display frame the resolve is told to start again (no motion)."""
    from renderer.runtime import chain_motion
    from renderer.workers import Submitted

    def moving(index: int, display: bool = True) -> Submitted:
        def frame(size: int, dx: float) -> FramePacket:
            motion = np.zeros((size, size, 2), np.float32)
            motion[..., 0] = dx
            return FramePacket(rgb=np.zeros((size, size, 3), np.uint8), motion=motion, index=index)
        packet = frame(8, 1.0)
        packet.display = frame(16, 2.0) if display else None
        return Submitted(packet, 0.0)

    box: ChunkMailbox[Submitted] = ChunkMailbox(2, merge=chain_motion)
    for i in range(4):
        box.put(moving(i))
    first, second = box.take(timeout=0)
    assert np.all(first.packet.display.motion[..., 0][:, 4:] == 6.0)   # three frames of 2 display pixels
    assert np.all(first.packet.motion[..., 0][:, 2:] == 3.0)
    assert np.all(second.packet.display.motion[..., 0] == 2.0)
    box.put(moving(4, display=False))
    box.put(moving(5))
    box.put(moving(6))
    first, _ = box.take(timeout=0)
    assert first.packet.display is not None and first.packet.display.motion is None
    assert np.all(first.packet.motion[..., 0][:, 2:] == 2.0)


def test_wire_format_round_trip():
    arrays = {"rgb": np.arange(24, dtype=np.uint8).reshape(2, 2, 2, 3), "depth": np.ones((2, 2, 2), np.float32)}
    kind, meta, back = unpack(pack("chunk", {"indices": [4, 5]}, arrays))
    assert kind == "chunk" and meta == {"indices": [4, 5]}
    for name in arrays:
        np.testing.assert_array_equal(back[name], arrays[name])


def slow_engine(monkeypatch, seconds: float) -> None:
    real = StreamEngine.step

    def step(self, packets):
        time.sleep(seconds)
        return real(self, packets)

    monkeypatch.setattr(StreamEngine, "step", step)


@pytest.mark.slow
def test_submit_never_blocks_and_stale_frames_are_dropped(random_model, monkeypatch):
    """With a model twenty times slower than the game, submit() must not wait for the model, the game loop's frame
    time must stay what it is without the model, and the shown frame must be recent (no queue of seconds of lag).

    The time bounds are a quarter of one model step (50 ms), not a speed target: a submit or frame that waited for
    the model would take at least 200 ms, while a busy CI machine can stretch a lock hand-off past a few ms."""
    slow_engine(monkeypatch, 0.2)

    def game_loop(r: StreamingRestyler | None, frames: int) -> tuple[list[float], list[float]]:
        submit_s, frame_s = [], []
        for i in range(frames):
            start = time.perf_counter()
            np.linalg.svd(np.random.default_rng(i).normal(size=(60, 60)))   # the game's own work
            if r is not None:
                t = time.perf_counter()
                r.submit(packet(i))
                submit_s.append(time.perf_counter() - t)
                r.latest()
            frame_s.append(time.perf_counter() - start)
            time.sleep(max(0.0, 0.01 - (time.perf_counter() - start)))
        return submit_s, frame_s

    _, alone = game_loop(None, 150)
    with StreamingRestyler(random_model, "cpu", worker="thread") as r:
        r.prepare("sunny summer day")
        started = time.perf_counter()
        submit_s, beside = game_loop(r, 150)
        wait_for(lambda: r.latest_frame() is not None and r.latest_frame().index >= 140, timeout=5)
        elapsed = time.perf_counter() - started
        stats = r.stats
    step_quarter = 0.2 / 4
    assert max(submit_s) < step_quarter
    assert np.percentile(beside, 95) < np.percentile(alone, 95) + step_quarter
    # no queue, however loaded the machine: the model ran at most one chunk per 0.2 s step, and every frame it did
    # not take was dropped (the inbox holds at most one chunk), not kept for later
    assert stats.chunks <= elapsed / 0.2 + 1
    assert stats.dropped >= stats.submitted - 2 * (stats.chunks + 1)


@pytest.mark.slow
def test_soak_10k_frames_keeps_memory_flat(random_model):
    """Ten thousand frames through the runtime after a warm-up: memory must not grow (bounded mailboxes, pacer,
    statistics and cache). A leak of one 64x64 frame per submit would add 120 MB; allocator noise stays well
    under the bound, and Python-level allocations must stay under 1 MB."""
    import tracemalloc

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6

    with StreamingRestyler(random_model, "cpu", worker="thread") as r:
        r.prepare("sunny summer day")
        frames = [packet(i) for i in range(16)]

        def run(first: int, count: int) -> None:
            for i in range(first, first + count):
                p = frames[i % 16]
                r.submit(FramePacket(rgb=p.rgb, depth=p.depth, normals=p.normals, index=i))
                r.latest()
                if i % 50 == 0:
                    time.sleep(0.01)   # let the worker take chunks, as a game's frame pacing would

        run(0, 2_000)
        tracemalloc.start()
        before, python_before = rss_mb(), tracemalloc.get_traced_memory()[0]
        run(2_000, 10_000)
        after, python_after = rss_mb(), tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        stats = r.stats
        assert r.error is None
    assert stats.chunks > 100 and stats.submitted == 12_000
    assert after - before < 40
    assert python_after - python_before < 1e6


def test_style_switch_mid_stream_never_shows_a_blank_frame(random_model):
    """After the first stylized frame, every frame shown is a real frame (never None, never flat), the switch
    happens without a restart, and frames in the new style follow (StreamDiffusion issue #167's failure)."""
    with StreamingRestyler(random_model, "cpu", worker="thread") as r:
        r.prepare("sunny summer day")
        shown = []
        for i in range(120):
            r.submit(packet(i))
            if i == 60:
                r.update_style("snowy winter village")
            frame = r.latest_frame()
            if frame is not None or shown:
                shown.append(frame)
            time.sleep(0.01)
        wait_for(lambda: r.latest_frame().style == "snowy winter village")
    assert shown and all(f is not None for f in shown)
    assert all(f.rgb.std() > 1 for f in shown)
    styles = [f.style for f in shown]
    switch = styles.index("snowy winter village")
    assert set(styles[:switch]) == {"sunny summer day"} and set(styles[switch:]) == {"snowy winter village"}


def test_frames_name_the_trained_style_nearest_to_their_prompt(random_model):
    """A prompt the model was not trained on still says which trained style it is nearest to, so a game whose
    G-buffers depend on the look (the demo game's sun) can hand over that style's."""
    with StreamingRestyler(random_model, "cpu", worker="thread") as r:
        r.prepare("a frozen village in a blizzard")
        for i in range(2):
            r.submit(packet(i))
        wait_for(lambda: r.latest_frame() is not None)
        assert r.latest_frame().look == "snowy winter"
        r.update_style("a hot cloudless summer noon")
        for i in range(2, 40):
            r.submit(packet(i))
            time.sleep(0.01)
        wait_for(lambda: r.latest_frame().style == "a hot cloudless summer noon")
        assert r.latest_frame().look == "sunny summer"


def test_worker_crash_keeps_the_game_running_and_restart_recovers(random_model, monkeypatch):
    """An exception in the worker must not reach the game: submit keeps working, the last frame stays, `error`
    says why; restart() brings frames back."""
    real = StreamEngine.step
    calls = {"n": 0}

    def flaky(self, packets):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("out of memory (simulated)")
        return real(self, packets)

    with StreamingRestyler(random_model, "cpu", worker="thread") as r:
        r.prepare("sunny summer day")
        monkeypatch.setattr(StreamEngine, "step", flaky)   # after the warm-up, which steps too
        for i in range(200):
            r.submit(packet(i))
            r.latest()
            time.sleep(0.005)
            if r.error:
                break
        assert r.error is not None and "out of memory (simulated)" in r.error
        time.sleep(0.2)   # the pacer may still hold frames of the last finished chunk; let them come out first
        last = r.latest_frame()
        for i in range(200, 220):
            r.submit(packet(i))   # the game goes on; nothing raises
        assert r.latest_frame() is last
        monkeypatch.setattr(StreamEngine, "step", real)
        r.restart()
        assert r.error is None
        for i in range(220, 260):
            r.submit(packet(i))
            time.sleep(0.005)
        wait_for(lambda: r.latest_frame().index >= 220)


@pytest.mark.slow
def test_process_worker_matches_thread_worker_and_survives_a_killed_process(random_model):
    """The process worker must restyle bit-identically to the thread worker (same seed, frames over the pipe), and
    a killed worker process must become an error message, not a hung or crashed game."""
    def first_chunk(worker: str) -> tuple[np.ndarray, StreamingRestyler]:
        r = StreamingRestyler(random_model, "cpu", worker=worker)
        r.prepare("sunny summer day")
        r.submit(packet(0))
        r.submit(packet(1))
        wait_for(lambda: r.latest_frame() is not None and r.latest_frame().index == 1)
        return r.latest(), r

    thread_frame, r = first_chunk("thread")
    thread_look = r.latest_frame().look
    r.close()
    process_frame, r = first_chunk("process")
    try:
        np.testing.assert_array_equal(process_frame, thread_frame)
        assert r.latest_frame().look == thread_look == "sunny summer"   # the nearest trained style crosses too
        os.kill(r._worker.process.pid, signal.SIGKILL)
        for i in range(2, 40):
            r.submit(packet(i))
            time.sleep(0.01)
        wait_for(lambda: r.error is not None, timeout=10)
        assert "worker process" in r.error
        r.restart()
        r.submit(packet(50))
        r.submit(packet(51))
        wait_for(lambda: r.latest_frame().index == 51)
    finally:
        r.close()


def test_missing_or_corrupt_model_is_one_clear_error(tmp_path, random_model):
    with pytest.raises(ModelError, match="make train"):
        StreamingRestyler(tmp_path / "nowhere", "cpu")
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("student.json", "student.safetensors"):
        (broken / name).write_bytes((random_model / name).read_bytes())
    (broken / "student.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ModelError, match="corrupt"):
        StreamingRestyler(broken, "cpu")


def test_cpu_runs_one_step_unless_asked(random_model):
    """On a CPU the runtime streams with the student's first level only (the measured real-time choice)."""
    assert StreamingRestyler(random_model, "cpu").sampler.timesteps == (1000,)
    assert StreamingRestyler(random_model, "cpu", steps=2).sampler.timesteps == (1000, 500)
    with pytest.raises(ValueError, match="steps"):
        StreamingRestyler(random_model, "cpu", steps=3)


def test_a_chunk_message_carries_exactly_the_buffers_a_model_reads():
    """The worker process gets every buffer of models.io.data.GBUFFERS the game handed over and the motion, and
    nothing else."""
    from models.io.data import GBUFFERS
    from renderer.workers import MODEL_BUFFERS, Submitted, _chunk_message

    assert list(MODEL_BUFFERS) == [name for name, _ in GBUFFERS] + ["motion"]
    h = w = 8
    frames = [FramePacket(rgb=np.zeros((h, w, 3), np.uint8), index=i, depth=np.ones((h, w), np.float32),
                          normals=np.zeros((h, w, 3), np.float32), uv=np.zeros((h, w, 2), np.float32),
                          material=np.zeros((h, w), np.uint8), motion=np.zeros((h, w, 2), np.float32))
              for i in range(2)]
    kind, meta, arrays = unpack(_chunk_message([Submitted(f, 0.0) for f in frames]))
    assert kind == "chunk" and meta["indices"] == [0, 1]
    assert set(arrays) == {"rgb", "depth", "normals", "uv", "material", "motion"}  # no AO or sun: not handed over
    assert arrays["uv"].shape == (2, h, w, 2)


def test_thread_worker_reports_exceptions_without_raising(random_model):
    """The worker's loop catches everything: an error callback, never an exception in the game's thread."""
    from renderer.workers import WorkerSpec

    errors = []
    box: ChunkMailbox = ChunkMailbox(2)
    worker = ThreadWorker(WorkerSpec(str(random_model), "cpu", {}, 0, 1), box, lambda r: None, errors.append)
    worker.start("sunny summer day")
    worker.engine.to_model = None   # the next chunk fails inside the worker
    from renderer.workers import Submitted

    box.put(Submitted(packet(0), 0.0))
    box.put(Submitted(packet(1), 0.0))
    wait_for(lambda: bool(errors))
    worker.stop()
    assert "TypeError" in errors[0]


@pytest.mark.slow
def test_reset_drops_a_chunk_in_flight(random_model, monkeypatch):
    """A cut must not show frames from before it: a chunk the worker was computing when reset() came is dropped
    on arrival, and the next frames shown come from after the cut."""
    slow_engine(monkeypatch, 0.3)
    with StreamingRestyler(random_model, "cpu", worker="thread") as r:
        r.prepare("sunny summer day")
        r.submit(packet(0))
        r.submit(packet(1))
        time.sleep(0.1)   # the worker has taken the chunk and is computing it
        r.reset()
        time.sleep(0.5)
        assert r.latest_frame() is None
        r.submit(packet(10))
        r.submit(packet(11))
        wait_for(lambda: r.latest_frame() is not None)
        assert r.latest_frame().index >= 10


def test_a_worker_that_fails_to_start_is_one_error_and_leaves_nothing_running(tmp_path, random_model):
    """A model whose weights load in the parent but not in the worker (here: deleted in between) must give one
    error from prepare(), with no worker process left behind."""
    import shutil

    model = tmp_path / "m"
    shutil.copytree(random_model, model)
    r = StreamingRestyler(model, "cpu", worker="process")
    (model / "student.safetensors").unlink()
    with pytest.raises(RuntimeError, match="failed to start"):
        r.prepare("sunny summer day")
    assert r._worker is None


def test_the_still_hold_follows_changes_and_calms_the_rest():
    """Where the captured frame changed, the new stylized pixels show; elsewhere the screen moves only RELAX of the
    way toward them; a reset starts over with the new frame whole."""
    from renderer.still import RELAX, WIDEN, StillHold

    hold = StillHold()
    source = torch.zeros(1, 3, 32, 32)
    first, second = np.full((1, 32, 32, 3), 100, np.uint8), np.full((1, 32, 32, 3), 200, np.uint8)
    assert np.array_equal(hold(source, first), first)          # a stream's first frame shows whole
    moved = source.clone()
    moved[:, :, 10:14, 10:14] = 1.0
    shown = hold(moved, second)[0].astype(int)
    assert np.all(shown[10:14, 10:14] == 200)                  # changed: the new output
    far = np.ones((32, 32), bool)
    far[10 - 2 * WIDEN: 14 + 2 * WIDEN, 10 - 2 * WIDEN: 14 + 2 * WIDEN] = False
    assert np.all(np.abs(shown[far] - (100 + RELAX * 100)) <= 0.5)   # still: a small step toward it
    hold.reset()
    assert np.array_equal(hold(moved, second), second)


def test_a_still_capture_stays_calm_where_it_is_still(random_model):
    """Frames-only sources have no motion vectors: a still capture under fresh noise changes from frame to frame
    by a small fraction of what the student's raw output does."""
    from renderer.still import StillHold

    bundle = load_bundle(random_model)
    still = FramePacket(rgb=np.random.default_rng(0).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8))

    def mean_change(hold: StillHold) -> float:
        engine = StreamEngine(replace(bundle, sampler=replace(bundle.sampler, noise="fresh")))
        engine.still = hold
        engine.set_style("sunny summer day")
        frames = np.concatenate([engine.step([still, still]) for _ in range(6)]).astype(float)
        return float(np.abs(np.diff(frames[4:], axis=0)).mean())

    raw = mean_change(StillHold(relax=1.0))   # every pixel takes the new output: no hold
    assert raw > 1.0 and mean_change(StillHold()) < 0.2 * raw
