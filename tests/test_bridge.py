"""Tests of the bridge without a display: FramePacket validation, the latest-frame mailbox, the in-process game
source, the MP4 writer/reader and the video-file source. Screen capture is in test_capture_xvfb.py."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bridge import (
    BridgeError,
    CallableSource,
    EndOfStream,
    FramePacket,
    InvalidFrameError,
    LatestMailbox,
    SourceClosedError,
    SourceOpenError,
)

H, W = 24, 32
REPO = Path(__file__).resolve().parents[1]


def full_packet(h: int = H, w: int = W) -> FramePacket:
    rng = np.random.default_rng(0)
    return FramePacket(
        rgb=rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        depth=rng.random((h, w), dtype=np.float32) * 100,
        normals=np.zeros((h, w, 3), np.float32),
        material=np.ones((h, w), np.uint8),
        motion=np.zeros((h, w, 2), np.float32),
        index=3,
        t=0.1,
    )


def smooth_frames(n: int, h: int, w: int) -> np.ndarray:
    """(n, h, w, 3) uint8 gradients that drift a little per frame: easy for a lossy codec, so errors are small."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = []
    for i in range(n):
        r = 40 + 170 * x / max(w - 1, 1)
        g = 30 + 180 * y / max(h - 1, 1)
        b = np.full_like(x, 60 + 10 * i)
        frames.append(np.stack([r, g, b], axis=-1).round().astype(np.uint8))
    return np.stack(frames)


# ---------------------------------------------------------------------------------------------------------------
# FramePacket


def test_good_packet_passes():
    """Guards against validation refusing a correct packet with every G-buffer (the game's normal output)."""
    p = full_packet()
    assert p.validate() is p
    assert p.size == (W, H) and p.has_gbuffers


def test_from_rgb_builds_a_valid_rgb_only_packet():
    """Guards against the rgb-only helper (screen and video sources) skipping validation or inventing G-buffers."""
    p = FramePacket.from_rgb(np.zeros((H, W, 3), np.uint8), index=5, t=1.5)
    assert (p.index, p.t, p.size, p.has_gbuffers) == (5, 1.5, (W, H), False)
    with pytest.raises(InvalidFrameError, match=r"rgb"):
        FramePacket.from_rgb(np.zeros((H, W), np.uint8))


def _bad(field, value):
    p = full_packet()
    setattr(p, field, value)
    return p


BAD_PACKETS = {
    # id: (packet, field named in the message, a fragment of what arrived)
    "rgb grey (H, W)": (_bad("rgb", np.zeros((H, W), np.uint8)), "rgb", f"({H}, {W})"),
    "rgb RGBA": (_bad("rgb", np.zeros((H, W, 4), np.uint8)), "rgb", f"({H}, {W}, 4)"),
    "rgb float": (_bad("rgb", np.zeros((H, W, 3), np.float32)), "rgb", "float32"),
    "rgb None": (_bad("rgb", None), "rgb", "None"),
    "rgb list": (_bad("rgb", [[0, 0, 0]]), "rgb", "list"),
    "rgb empty": (_bad("rgb", np.zeros((0, W, 3), np.uint8)), "rgb", f"(0, {W}, 3)"),
    "depth size mismatch": (_bad("depth", np.zeros((H // 2, W // 2), np.float32)), "depth", f"({H // 2}, {W // 2})"),
    "depth float64": (_bad("depth", np.zeros((H, W), np.float64)), "depth", "float64"),
    "depth NaN": (_bad("depth", np.full((H, W), np.nan, np.float32)), "depth", "NaN"),
    "normals inf": (_bad("normals", np.full((H, W, 3), np.inf, np.float32)), "normals", "inf"),
    "normals 2 channels": (_bad("normals", np.zeros((H, W, 2), np.float32)), "normals", f"({H}, {W}, 2)"),
    "material float": (_bad("material", np.zeros((H, W), np.float32)), "material", "float32"),
    "motion width mismatch": (_bad("motion", np.zeros((H, W + 1, 2), np.float32)), "motion", f"({H}, {W + 1}, 2)"),
    "motion NaN": (_bad("motion", np.full((H, W, 2), np.nan, np.float32)), "motion", "NaN"),
    "index negative": (_bad("index", -1), "index", "-1"),
    "index float": (_bad("index", 1.5), "index", "1.5"),
    "t NaN": (_bad("t", float("nan")), "t", "nan"),
}


@pytest.mark.parametrize("case", list(BAD_PACKETS), ids=list(BAD_PACKETS))
def test_bad_packet_gives_one_clear_error(case):
    """Guards against a malformed frame (wrong shape/dtype, NaN, G-buffer of another size) slipping through to the
    model, or being refused with a message that does not say which field, what was expected and what arrived."""
    packet, field, arrived = BAD_PACKETS[case]
    with pytest.raises(InvalidFrameError) as info:
        packet.validate()
    msg = str(info.value)
    assert msg.startswith(f"FramePacket.{field}:"), msg
    assert "expected" in msg and arrived in msg, msg


def test_invalid_frame_error_is_a_bridge_error_and_value_error():
    """Guards against callers that catch BridgeError (the CLI) or ValueError (generic code) missing frame errors."""
    assert issubclass(InvalidFrameError, BridgeError) and issubclass(InvalidFrameError, ValueError)
    assert issubclass(EndOfStream, SourceClosedError) and issubclass(SourceClosedError, BridgeError)


# ---------------------------------------------------------------------------------------------------------------
# LatestMailbox


def test_mailbox_put_never_blocks_and_newest_wins():
    """Guards against the producer (the game loop) stalling when nobody consumes, and against stale frames being
    delivered instead of the newest one."""
    box: LatestMailbox[int] = LatestMailbox()
    for i in range(10_000):   # nobody takes: a blocking put would hang here
        box.put(i)
    assert box.dropped == 9_999 and box.puts == 10_000
    assert box.peek() == 9_999  # peek does not take
    assert box.get() == 9_999
    assert box.get(timeout=0) is None  # get emptied the slot
    assert box.dropped == 9_999


def test_mailbox_get_timeout_and_wakeup():
    """Guards against get() ignoring its timeout, or not waking up when a value arrives from another thread."""
    box: LatestMailbox[str] = LatestMailbox()
    t0 = time.monotonic()
    assert box.get(timeout=0.05) is None
    assert 0.04 <= time.monotonic() - t0 < 30   # waited its timeout, and returned (the bound is not a speed bar)
    threading.Timer(0.05, box.put, args=("hello",)).start()
    assert box.get(timeout=5) == "hello"


def test_mailbox_close_wakes_consumer_and_ignores_later_puts():
    """Guards against a model worker blocked forever in get() at shutdown, and a producer crashing after it."""
    box: LatestMailbox[int] = LatestMailbox()
    result = []
    consumer = threading.Thread(target=lambda: result.append(box.get()))
    consumer.start()
    time.sleep(0.02)
    box.close()
    consumer.join(timeout=2)
    assert not consumer.is_alive() and result == [None]
    box.put(1)  # no error, no effect
    assert box.get(timeout=0) is None and box.closed
    with pytest.raises(ValueError):
        LatestMailbox().put(None)


def test_mailbox_threaded_producer_consumer():
    """Guards against lost or duplicated updates and races between a fast producer and a slow consumer: the
    consumer sees strictly increasing values ending with the last one, and taken + dropped == put."""
    box: LatestMailbox[int] = LatestMailbox()
    n = 20_000
    seen: list[int] = []

    def consume():
        while True:
            v = box.get(timeout=2)
            if v is None:
                return
            seen.append(v)
            if v == n - 1:
                return
            time.sleep(0.0001)  # a slower consumer than producer, like the model

    consumer = threading.Thread(target=consume)
    consumer.start()
    for i in range(n):
        box.put(i)
    consumer.join(timeout=10)
    assert not consumer.is_alive()
    assert seen[-1] == n - 1
    assert all(a < b for a, b in zip(seen, seen[1:]))
    assert len(seen) + box.dropped == n
    assert box.dropped > 0  # the producer really outran the consumer


# ---------------------------------------------------------------------------------------------------------------
# CallableSource (the game's framebuffers)


def test_callable_source_wraps_arrays_and_keeps_the_size_probe_frame():
    """Guards against asking `size` before reading losing (skipping) the game's first frame, and against bare
    arrays getting no running index."""
    frames = iter([np.full((H, W, 3), i, np.uint8) for i in range(3)])
    closed = []
    with CallableSource(lambda: next(frames), on_close=lambda: closed.append(1)) as src:
        assert src.size == (W, H)
        got = list(src)
    assert [p.index for p in got] == [0, 1, 2]
    assert [int(p.rgb[0, 0, 0]) for p in got] == [0, 1, 2]
    assert all(b.t >= a.t for a, b in zip(got, got[1:]))
    assert closed == [1]
    with pytest.raises(SourceClosedError):
        src.read()
    src.close()  # idempotent: on_close not called twice
    assert closed == [1]


def test_callable_source_validates_every_packet():
    """Guards against a game handing over a depth buffer of the wrong size (or NaNs) and the renderer finding out
    later with an obscure shape error."""
    good = full_packet()
    bad = full_packet()
    bad.depth = np.zeros((H + 2, W), np.float32)
    packets = iter([good, bad])
    src = CallableSource(lambda: next(packets))
    assert src.read() is good
    with pytest.raises(InvalidFrameError, match=r"FramePacket\.depth"):
        src.read()
    with pytest.raises(TypeError, match="FramePacket"):
        CallableSource(lambda: "not a frame").read()


def test_iteration_propagates_a_vanished_source():
    """Guards against a capture that died mid-stream (window closed) ending a `for` loop as silently as a file
    that simply ended: only EndOfStream is quiet, SourceClosedError reaches the caller."""
    calls = iter([np.zeros((H, W, 3), np.uint8)])

    def produce():
        try:
            return next(calls)
        except StopIteration:
            raise SourceClosedError("window went away") from None

    with pytest.raises(SourceClosedError, match="went away"):
        for _ in CallableSource(produce):
            pass


# ---------------------------------------------------------------------------------------------------------------
# Mp4Writer / read_video / VideoFileSource


def test_mp4_roundtrip_frame_count_and_colours(tmp_path):
    """Guards against dropped frames at the end (encoder not flushed on close), a wrong channel order, or a colour
    shift between what we record and what we read back."""
    from bridge.video import Mp4Writer, read_video

    frames = smooth_frames(12, 48, 64)
    path = tmp_path / "clip.mp4"
    with Mp4Writer(path, fps=30, size=(64, 48)) as out:
        for f in frames:
            out.write(f)
    assert out.closed and out.frames_written == 12
    back = read_video(path)
    assert back.shape == frames.shape and back.dtype == np.uint8
    err = np.abs(back.astype(np.int16) - frames.astype(np.int16)).mean(axis=(0, 1, 2))  # per channel
    assert (err < 4).all(), err


def test_mp4_mpeg4_fallback_codec_works(tmp_path):
    """Guards against the fallback path (FFmpeg builds without libx264) being broken because it is never used."""
    from bridge.video import Mp4Writer, read_video

    frames = smooth_frames(5, 32, 48)
    with Mp4Writer(tmp_path / "m4.mp4", fps=24, size=(48, 32), codec="mpeg4") as out:
        for f in frames:
            out.write(FramePacket.from_rgb(f))  # packets are accepted as well as arrays
    back = read_video(tmp_path / "m4.mp4")
    assert back.shape == frames.shape
    assert np.abs(back.astype(np.int16) - frames).mean() < 6


def test_mp4_odd_size_is_padded_not_refused(tmp_path):
    """Guards against an odd-sized window capture crashing the recorder (yuv420p needs even sizes)."""
    from bridge.video import Mp4Writer, read_video

    frames = smooth_frames(3, 31, 45)
    with Mp4Writer(tmp_path / "odd.mp4", fps=30, size=(45, 31)) as out:
        assert out.coded_size == (46, 32)
        for f in frames:
            out.write(f)
    back = read_video(tmp_path / "odd.mp4")
    assert back.shape == (3, 32, 46, 3)
    assert np.abs(back[:, :31, :45].astype(np.int16) - frames).mean() < 4


def test_mp4_bad_frames_and_bad_arguments(tmp_path):
    """Guards against a wrongly sized frame being silently rescaled or crashing inside FFmpeg, and against unclear
    errors for bad writer arguments."""
    from bridge.video import Mp4Writer

    with Mp4Writer(tmp_path / "x.mp4", fps=30, size=(64, 48)) as out:
        with pytest.raises(InvalidFrameError, match=r"\(48, 64, 3\).*\(48, 63, 3\)"):
            out.write(np.zeros((48, 63, 3), np.uint8))
        with pytest.raises(InvalidFrameError, match="float32"):
            out.write(np.zeros((48, 64, 3), np.float32))
    with pytest.raises(BridgeError, match="after close"):
        out.write(np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(BridgeError, match="does not exist"):
        Mp4Writer(tmp_path / "missing_dir" / "x.mp4", fps=30, size=(64, 48))
    with pytest.raises(BridgeError, match="fps"):
        Mp4Writer(tmp_path / "y.mp4", fps=0, size=(64, 48))


def test_mp4_interrupted_inside_with_block_is_still_decodable(tmp_path):
    """Guards against losing a recording when the user presses Ctrl-C mid-recording: KeyboardInterrupt inside the
    `with` block must still finalise the MP4 with every frame written so far."""
    from bridge.video import Mp4Writer, read_video

    frames = smooth_frames(7, 32, 32)
    path = tmp_path / "interrupted.mp4"
    with pytest.raises(KeyboardInterrupt):
        with Mp4Writer(path, fps=30, size=(32, 32)) as out:
            for i, f in enumerate(frames):
                if i == 5:
                    raise KeyboardInterrupt
                out.write(f)
    back = read_video(path)
    assert back.shape == (5, 32, 32, 3)
    assert np.abs(back.astype(np.int16) - frames[:5]).mean() < 4


def test_mp4_real_sigint_during_recording_leaves_a_valid_file(tmp_path):
    """Guards against a real Ctrl-C (SIGINT delivered at an arbitrary point, not a tidy `raise`) leaving an MP4
    without its index: a recording process is interrupted mid-stream and its file must decode."""
    from conftest import start_recording_process

    path = tmp_path / "sigint.mp4"
    proc = start_recording_process(path)
    try:
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert b"KeyboardInterrupt" in err
    from bridge.video import read_video

    back = read_video(path)
    assert back.shape[0] >= 20 and back.shape[1:] == (64, 64, 3)
    assert abs(float(back.mean()) - 120) < 3


def test_video_file_source_yields_ordered_packets(tmp_path):
    """Guards against a video source numbering frames wrongly, timestamps that do not follow the pts, or an end of
    file that is not reported as EndOfStream."""
    from bridge import VideoFileSource
    from bridge.video import Mp4Writer

    frames = smooth_frames(8, 32, 48)
    path = tmp_path / "src.mp4"
    with Mp4Writer(path, fps=25, size=(48, 32)) as out:
        for f in frames:
            out.write(f)
    with VideoFileSource(path) as src:
        assert src.size == (48, 32) and src.fps == pytest.approx(25)
        packets = list(src)
        with pytest.raises(EndOfStream):
            src.read()
    assert [p.index for p in packets] == list(range(8))
    assert [p.t for p in packets] == pytest.approx([i / 25 for i in range(8)], abs=1e-3)
    for p in packets:
        p.validate()
        assert p.rgb.shape == (32, 48, 3) and not p.has_gbuffers
    with pytest.raises(SourceClosedError, match="after close"):
        src.read()


def test_video_file_source_missing_or_not_a_video(tmp_path):
    """Guards against a typo in a path or a non-video file producing an FFmpeg traceback instead of one clear
    error naming the file."""
    from bridge import VideoFileSource

    with pytest.raises(SourceOpenError, match="not found"):
        VideoFileSource(tmp_path / "nope.mp4")
    with pytest.raises(SourceOpenError, match="directory"):
        VideoFileSource(tmp_path)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x01 this is not a video" * 100)
    with pytest.raises(SourceOpenError, match="junk.mp4"):
        VideoFileSource(junk)


def test_importing_bridge_does_not_load_native_capture_libraries():
    """Guards against the game paying for mss/PyAV (and their native libraries) just to build FramePackets."""
    code = "import sys, bridge; print('av' in sys.modules, 'mss' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
