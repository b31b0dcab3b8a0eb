"""`restyler restyle` and `restyler bench` end to end, with a random tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bridge import FramePacket
from bridge.video import Mp4Writer, read_video
from restyler import main as cli

BENCH_KEYS = {"device", "resolution", "display", "steps", "chunk_frames", "first_frame_latency_ms", "latency_p50_ms",
              "latency_p95_ms", "throughput_fps", "game_fps", "mfu", "gflop_per_frame", "upsampler_gflop_per_frame",
              "teacher_first_frame_latency_ms", "teacher_throughput_fps", "precision", "matmul_peak_gflops_fp32",
              "matmul_peak_gflops_bf16"}


@pytest.mark.slow
def test_restyle_writes_every_frame_at_the_input_size(random_model, tmp_path, capsys):
    """An odd frame count (a partial last chunk) and a size other than the model's: every input frame comes out,
    at the input's size, and the output is not the input."""
    src = tmp_path / "in.mp4"
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 256, (7, 48, 80, 3), dtype=np.uint8)
    with Mp4Writer(src, 24, (80, 48)) as out:
        for frame in clip:
            out.write(frame)
    dst = tmp_path / "out.mp4"
    assert cli.main(["restyle", str(src), str(dst), "--model", str(random_model), "--style", "snowy winter"]) == 0
    assert "wrote 7 frames" in capsys.readouterr().out
    frames = read_video(dst)
    assert frames.shape == (7, 48, 80, 3)
    assert np.abs(frames.astype(int) - read_video(src).astype(int)).mean() > 10


def test_restyle_refuses_a_file_that_is_not_a_video(random_model, tmp_path, capsys):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    assert cli.main(["restyle", str(bad), str(tmp_path / "o.mp4"), "--model", str(random_model)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not a readable video file" in err
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.slow
def test_bench_reports_every_design_key(random_model):
    """run_bench with a game-like producer: exactly the bench keys of docs/design.md, plausible values, teacher
    ratios."""
    from renderer.bench import run_bench, table

    rng = np.random.default_rng(0)
    count = iter(range(10**9))

    def produce() -> FramePacket:
        return FramePacket(rgb=rng.integers(0, 256, (64, 64, 3), dtype=np.uint8),
                           depth=np.full((64, 64), 5.0, np.float32), normals=np.zeros((64, 64, 3), np.float32),
                           index=next(count))

    result = run_bench(random_model, produce, "cpu", seconds=1.5, game_fps=60, worker="thread", say=lambda s: None,
                       precision="fp32")
    s = result.scores
    assert set(s) == BENCH_KEYS
    # mfu is taken against the peak of the precision the student runs at
    assert s["precision"] == "fp32" and s["matmul_peak_gflops_fp32"] > 0 and s["matmul_peak_gflops_bf16"] > 0
    assert result.details["matmul_peak_gflops"] == s["matmul_peak_gflops_fp32"]
    assert s["resolution"] == "64x64" and s["steps"] == 1 and s["chunk_frames"] == 2
    assert s["display"] == "64x64" and s["upsampler_gflop_per_frame"] == 0   # no upsampler: the model's own size
    assert 0 < s["first_frame_latency_ms"] < 5000 and 0 < s["latency_p50_ms"] <= s["latency_p95_ms"]
    # rates are the bench's to report, not the test's to bar: a busy machine runs the game slower
    assert s["throughput_fps"] > 0 and 0 < s["game_fps"] <= 61 and 0 < s["mfu"] < 1
    assert s["teacher_first_frame_latency_ms"] > 0 and s["teacher_throughput_fps"] > 0
    assert result.details["student_profile"]["denoise_ms"] > 0
    assert "teacher first frame" in table(result)


@pytest.mark.slow
def test_bench_cli_writes_json_beside_its_details(random_model, tmp_path, capsys):
    """The command itself, with the demo game as the frame producer: FILE has exactly the keys, FILE_details.json
    the profile."""
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "--model", str(random_model), "--device", "cpu", "--seconds", "1", "--json", str(out),
                     "--worker", "thread", "--no-teacher"]) == 0
    scores = json.loads(out.read_text())
    assert set(scores) == BENCH_KEYS and scores["teacher_throughput_fps"] is None
    details = json.loads((tmp_path / "bench_details.json").read_text())
    assert {"student_profile", "game_frame_ms_p95", "machine"} <= set(details)
    assert "throughput" in capsys.readouterr().out
