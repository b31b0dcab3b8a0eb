"""The upsampler (models.network.upsampler) and its path through the engine, the packet and the worker: shapes at
several scales, exactly bilinear while its learned residual is zero, the RGB-only fallback, and clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from bridge import FramePacket, InvalidFrameError
from models.io import checkpoint
from models.network.upsampler import GUIDE_CHANNELS, Upsampler, UpsamplerConfig, bilinear, joint_bilateral


def _random_upsampler(scale: int, frame_size=(32, 32), zero: bool = False, seed: int = 0) -> Upsampler:
    torch.manual_seed(seed)
    model = Upsampler(UpsamplerConfig(scale=scale, frame_size=frame_size, width=8))
    if not zero:
        for p in model.parameters():
            p.data.normal_(0, 0.1)
    return model.eval()


@pytest.mark.parametrize("scale,size", [(2, (32, 32)), (3, (16, 24)), (4, (8, 8))])
def test_shapes_at_several_scales(scale, size):
    h, w = size
    model = _random_upsampler(scale, size)
    frame = torch.rand(2, 3, h, w) * 2 - 1
    guide = torch.randn(2, GUIDE_CHANNELS, h * scale, w * scale)
    assert model(frame, guide).shape == (2, 3, h * scale, w * scale)
    assert joint_bilateral(frame, guide, scale).shape == (2, 3, h * scale, w * scale)
    assert model.cfg.display_size == (h * scale, w * scale)


def test_zero_residual_is_exactly_bilinear():
    """A new upsampler's last layer is zero: it draws bilinear upsampling, whatever the guide says."""
    model = _random_upsampler(2, zero=True)
    for p in model.out.parameters():
        assert not p.any()
    torch.nn.init.normal_(model.guide_in.weight)   # the rest may be anything
    frame = torch.rand(1, 3, 32, 32) * 2 - 1
    out = model(frame, torch.randn(1, GUIDE_CHANNELS, 64, 64))
    assert torch.equal(out, bilinear(frame, 2))


def test_guide_of_the_wrong_size_is_one_clear_error():
    model = _random_upsampler(2)
    with pytest.raises(ValueError, match=r"wants a guide of 11 channels at 64x64 for a 32x32 frame"):
        model(torch.zeros(1, 3, 32, 32), torch.zeros(1, GUIDE_CHANNELS, 48, 48))


def test_joint_bilateral_keeps_a_flat_frame_and_follows_depth_edges():
    """A constant frame stays constant; across a depth edge a display pixel takes the colour of the cells on its
    own side, where bilinear upsampling blends both."""
    guide = torch.zeros(1, GUIDE_CHANNELS, 32, 32)
    flat = torch.full((1, 3, 16, 16), 0.25)
    assert torch.allclose(joint_bilateral(flat, guide, 2), flat.new_full((1, 3, 32, 32), 0.25), atol=1e-6)
    frame = torch.full((1, 3, 16, 16), -1.0)
    frame[..., 8:] = 1.0                      # cells 8.. are white
    guide[:, 3, :, 16:] = 0.5                 # display pixels 16.. are far: exactly the white cells
    out = joint_bilateral(frame, guide, 2)
    assert out[0, 0, 5, 15] < -0.99 and out[0, 0, 5, 16] > 0.99
    assert bilinear(frame, 2)[0, 0, 5, 16] < 0.9


def _model_with_upsampler(tmp_path, random_v2_model, zero: bool = False):
    model_dir = tmp_path / "model"
    shutil.copytree(random_v2_model, model_dir)
    up = _random_upsampler(2, (64, 64), zero=zero)
    meta = {"kind": "upsampler", "config": {"scale": 2, "frame_size": [64, 64], "guide_channels": GUIDE_CHANNELS,
                                            "width": 8}}
    checkpoint.save_checkpoint(model_dir, "upsampler", up.state_dict(), meta, dtype=torch.float16)
    return model_dir


def _packet(size, rng, display=None, index=0):
    w, h = size
    return FramePacket(rgb=rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
                       depth=rng.uniform(1, 50, (h, w)).astype(np.float32),
                       normals=rng.normal(size=(h, w, 3)).astype(np.float32),
                       uv=rng.uniform(0, 1, (h, w, 2)).astype(np.float32),
                       ao=rng.uniform(0, 1, (h, w)).astype(np.float32),
                       sun=rng.uniform(0, 1, (h, w)).astype(np.float32), material=np.ones((h, w), np.uint8),
                       motion=np.zeros((h, w, 2), np.float32), index=index, display=display)


def test_engine_upsamples_when_the_game_hands_over_display_frames(tmp_path, random_v2_model):
    from renderer.engine import StreamEngine, load_bundle

    model_dir = _model_with_upsampler(tmp_path, random_v2_model)
    bundle = load_bundle(model_dir)
    assert bundle.display_size == (128, 128)
    engine = StreamEngine(bundle)
    engine.set_style("sunny summer day")
    rng = np.random.default_rng(0)
    with_display = [_packet((64, 64), rng, display=_packet((128, 128), rng), index=i) for i in range(2)]
    assert engine.step(with_display).shape == (2, 128, 128, 3)
    # the RGB-only path (screen capture) and a game without display frames: the model's own size
    assert engine.step([FramePacket(rgb=p.rgb, index=p.index) for p in with_display]).shape == (2, 64, 64, 3)
    assert engine.step([_packet((64, 64), rng) for _ in range(2)]).shape == (2, 64, 64, 3)
    # without the upsampler (upsample=False), display frames are ignored
    plain = StreamEngine(load_bundle(model_dir, upsample=False))
    plain.set_style("sunny summer day")
    assert plain.step(with_display).shape == (2, 64, 64, 3)
    wrong = [_packet((64, 64), rng, display=_packet((96, 96), rng)) for _ in range(2)]
    with pytest.raises(ValueError, match=r"upsampler draws at 128x128; the packets' display frames are 96x96"):
        engine.step(wrong)


def test_engine_upsample_matches_the_evaluated_upsampler(tmp_path, random_v2_model):
    """The engine's step 6 is the network evaluation scores: the same uint8 frame and guide give the same pixels."""
    from models.io.data import normalize_depth
    from renderer.engine import StreamEngine, load_bundle

    model_dir = _model_with_upsampler(tmp_path, random_v2_model)
    engine = StreamEngine(load_bundle(model_dir))
    rng = np.random.default_rng(1)
    packets = [_packet((64, 64), rng, display=_packet((128, 128), rng)) for _ in range(2)]
    frames = rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    out = engine.upsample(frames, packets)
    d = [p.display for p in packets]

    def stack(name):
        return torch.from_numpy(np.stack([getattr(x, name) for x in d]))

    guide = torch.cat([torch.from_numpy(np.stack([x.rgb for x in d])).permute(0, 3, 1, 2).float() / 127.5 - 1,
                       normalize_depth(stack("depth")[:, None]), stack("normals").permute(0, 3, 1, 2),
                       stack("uv").permute(0, 3, 1, 2) * 2 - 1, stack("ao")[:, None] * 2 - 1,
                       stack("sun")[:, None] * 2 - 1], 1)
    with torch.no_grad():
        expected = engine.bundle.upsampler(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1, guide)
    expected = expected.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(out, expected)


def test_process_worker_carries_the_display_frames(tmp_path, random_v2_model):
    """Across the process pipe the display frames arrive and the AI frames come back at display size."""
    import time

    from renderer import StreamingRestyler

    model_dir = _model_with_upsampler(tmp_path, random_v2_model)
    rng = np.random.default_rng(2)
    with StreamingRestyler(model_dir, device="cpu", worker="process") as restyler:
        assert restyler.display_resolution == (128, 128)
        restyler.prepare("sunny summer day")
        deadline = time.monotonic() + 60
        i = 0
        while restyler.latest_frame() is None and time.monotonic() < deadline:
            restyler.submit(_packet((64, 64), rng, display=_packet((128, 128), rng), index=i))
            i += 1
            time.sleep(0.02)
        frame = restyler.latest_frame()
        assert restyler.error is None and frame is not None
        assert frame.rgb.shape == (128, 128, 3)


def test_packet_display_is_validated_and_named():
    rng = np.random.default_rng(3)
    with pytest.raises(InvalidFrameError, match=r"FramePacket.display: expected a FramePacket"):
        _packet((8, 8), rng, display=np.zeros((16, 16, 3), np.uint8)).validate()
    bad = _packet((16, 16), rng)
    bad.depth = bad.depth.astype(np.float64)
    with pytest.raises(InvalidFrameError, match=r"FramePacket.display.depth: expected a float32"):
        _packet((8, 8), rng, display=bad).validate()
    nested = _packet((16, 16), rng, display=_packet((32, 32), rng))
    with pytest.raises(InvalidFrameError, match=r"cannot carry a display of its own"):
        _packet((8, 8), rng, display=nested).validate()


def test_temporal_resolve_blends_where_seen_clamps_and_forgets():
    from models.network.upsampler import TemporalResolve

    resolve = TemporalResolve(keep=0.75)
    depth = torch.full((8, 8), 10.0)
    still = torch.zeros(2, 8, 8)
    first = torch.zeros(3, 8, 8)
    first[:, :, 4:] = 1.0
    assert torch.equal(resolve(first, still, depth), first)        # nothing to carry yet
    second = torch.full((3, 8, 8), 0.5)
    second[:, 0, 0] = 0.4                                           # the neighbourhood of pixel (0, 0): 0.4 .. 0.5
    out = resolve(second, still, depth)
    # the history (0 or 1) is clamped into the new frame's 3×3 range first: no ghost of the old picture
    assert torch.allclose(out[:, 0, 0], torch.full((3,), 0.4))
    assert torch.allclose(out[:, 5, 5], torch.full((3,), 0.5))
    # where the depth test fails (a disocclusion) the new frame is taken as it is
    third = torch.full((3, 8, 8), 0.2)
    assert torch.equal(resolve(third, still, torch.full((8, 8), 50.0)), third)
    # no motion: the history is dropped, and the frame after starts afresh
    resolve(third, None, None)
    assert resolve.previous is None
    # zero weight: every frame alone
    plain = TemporalResolve(keep=0.0)
    plain(first, still, depth)
    assert torch.equal(plain(second, still, depth), second)
    with pytest.raises(ValueError, match=r"history's weight must be in \[0, 1\)"):
        TemporalResolve(keep=1.0)


def test_temporal_resolve_follows_the_motion():
    """A picture moving one pixel right a frame is carried along with it, so the blend keeps it in place."""
    from models.network.upsampler import TemporalResolve

    resolve = TemporalResolve(keep=0.5)
    depth = torch.full((8, 16), 10.0)
    frame = torch.zeros(3, 8, 16)
    frame[:, :, 4] = 1.0
    resolve(frame, torch.zeros(2, 8, 16), depth)
    moved = torch.roll(frame, 1, dims=2)
    motion = torch.zeros(2, 8, 16)
    motion[0] = 1.0                                                 # every pixel came from one pixel to the left
    assert torch.allclose(resolve(moved, motion, depth)[:, :, 1:], moved[:, :, 1:], atol=1e-6)


def test_upsampler_stage_trains_resumes_and_is_scored(tmp_path, random_v2_model):
    """The recipe stage on synthetic worlds at two sizes: the student's frames kept, a few steps, a checkpoint that
    loads and resumes, and the display-size scores, where an upsampler with a zero residual scores as bilinear."""
    from conftest import write_synthetic_clips
    from models.evaluation.upsample import evaluate_upsampling
    from models.io.data import DataError
    from models.network.loading import load_upsampler
    from models.recipe.upsample import UpsampleSettings, run_upsampler

    low = write_synthetic_clips(tmp_path / "low", seeds=(0, 1), frames=4, size=(64, 64))
    display = write_synthetic_clips(tmp_path / "display", seeds=(0, 1), frames=4, size=(128, 128))
    run = tmp_path / "run"
    settings = UpsampleSettings(width=8, depth=2, context=8)
    run_upsampler(display, low, random_v2_model, run, steps=2, batch=2, settings=settings, progress=lambda _: None)
    model = load_upsampler(run)
    assert model.cfg.scale == 2 and model.cfg.frame_size == (64, 64) and model.cfg.context == 8
    kept = sorted(p.name for p in (run / "student_frames" / "low").iterdir())
    assert kept == ["manifest.json", "seed_0000.safetensors", "seed_0001.safetensors"]
    run_upsampler(display, low, random_v2_model, run, steps=3, batch=2, resume=True, settings=settings,
                  progress=lambda _: None)
    assert json.loads((run / "upsampler.json").read_text())["step"] == 3
    odd = write_synthetic_clips(tmp_path / "odd", seeds=(0, 1), frames=4, size=(96, 80))
    with pytest.raises(DataError, match=r"not a whole multiple of the student's 64x64"):
        run_upsampler(odd, low, random_v2_model, tmp_path / "run_odd", steps=1, batch=2, settings=settings,
                      progress=lambda _: None)

    scores = evaluate_upsampling(display, run / "student_frames" / "low", model, 4, 16)
    assert set(scores["rows"]) == {"bilinear", "bilateral", "learned_per_frame", "learned"}
    assert scores["side_by_side"].shape == (3, 2 * 128, 5 * 128)   # a line per style, 4 rows + the reference
    zero = _random_upsampler(2, (64, 64), zero=True)
    same = evaluate_upsampling(display, run / "student_frames" / "low", zero, 4, 16)["rows"]
    assert same["learned"] == same["bilinear"]


@pytest.mark.slow
def test_bench_measures_the_whole_chain_at_display_size(tmp_path, random_v2_model):
    from renderer.bench import run_bench, table

    model_dir = _model_with_upsampler(tmp_path, random_v2_model)
    rng = np.random.default_rng(4)
    count = iter(range(10**9))

    def produce() -> FramePacket:
        i = next(count)
        return _packet((64, 64), rng, display=_packet((128, 128), rng, index=i), index=i)

    result = run_bench(model_dir, produce, "cpu", seconds=1.5, game_fps=30, worker="thread", teacher=False,
                       upsample=True, say=lambda s: None)
    s = result.scores
    assert s["resolution"] == "64x64" and s["display"] == "128x128" and s["upsampler_gflop_per_frame"] > 0
    assert s["gflop_per_frame"] > s["upsampler_gflop_per_frame"] and s["throughput_fps"] > 0
    assert result.details["student_profile"]["upsample_ms"] > 0
    assert "128x128 (upsampled" in table(result)
