"""Reprojection by motion vectors and the noise carried along them (models.network.motion)."""

from __future__ import annotations

import torch

from models.network.motion import (HISTORY_CHANNELS, StreamMemory, chunk_history, chunk_noise, clip_history, reproject,
                                    warp_noise)

H, W = 16, 20


def flat(depth: float = 5.0) -> torch.Tensor:
    return torch.full((H, W), depth)


def fresh_like(noise: torch.Tensor, seed: int) -> torch.Tensor:
    """What warp_noise draws for its fresh pixels with a generator seeded `seed`."""
    return torch.randn(noise.shape, generator=torch.Generator().manual_seed(seed))


def test_no_motion_keeps_the_previous_noise_exactly():
    previous = torch.randn(3, H, W)
    out = warp_noise(previous, torch.zeros(2, H, W), flat(), flat(), torch.Generator().manual_seed(1))
    assert torch.equal(out, previous)


def test_a_shift_carries_the_noise_and_the_border_that_comes_into_view_is_fresh():
    """The camera pans: every pixel was 2 columns to its left, so the 2 columns entering on the left are new."""
    previous = torch.randn(3, H, W)
    motion = torch.zeros(2, H, W)
    motion[0] = 2.0
    out = warp_noise(previous, motion, flat(), flat(), torch.Generator().manual_seed(1))
    assert torch.equal(out[:, :, 2:], previous[:, :, :-2])
    assert torch.equal(out[:, :, :2], fresh_like(previous, 1)[:, :, :2])


def test_a_disocclusion_is_fresh():
    """Where the depth at the source pixel is far from this pixel's (a surface that was hidden), the noise is new."""
    previous = torch.randn(3, H, W)
    depth, previous_depth = flat(), flat()
    previous_depth[4:8, 5:9] = 1.0  # an object stood in front of these pixels a frame ago
    out = warp_noise(previous, torch.zeros(2, H, W), depth, previous_depth, torch.Generator().manual_seed(3))
    hidden = torch.zeros(H, W, dtype=torch.bool)
    hidden[4:8, 5:9] = True
    assert torch.equal(out[:, hidden], fresh_like(previous, 3)[:, hidden])
    assert torch.equal(out[:, ~hidden], previous[:, ~hidden])
    assert torch.equal(reproject(torch.zeros(2, H, W), depth, previous_depth)[2], ~hidden)


def test_each_noise_value_goes_to_one_pixel_at_most_where_the_motion_magnifies():
    """A zoom in: pairs of pixels read the same source pixel. The first keeps it and the second is fresh, so no two
    pixels share a value (the noise stays independent per pixel)."""
    previous = torch.randn(1, H, W)
    xx = torch.arange(W).float().expand(H, W)
    motion = torch.zeros(2, H, W)
    motion[0] = xx - torch.floor(xx / 2)  # pixel x reads source x // 2
    out = warp_noise(previous, motion, flat(), flat(), torch.Generator().manual_seed(5))
    assert torch.equal(out[0, :, 0::2], previous[0, :, :W // 2])
    assert torch.equal(out[0, :, 1::2], fresh_like(previous, 5)[0, :, 1::2])
    assert out.flatten().unique().numel() == H * W


def test_warped_noise_stays_unit_gaussian_over_a_long_stream():
    """Random motion for many frames: the noise keeps mean 0 and standard deviation 1."""
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(4, 64, 64, generator=g)
    depth = torch.full((64, 64), 5.0)
    for _ in range(30):
        motion = torch.randn(2, 64, 64, generator=g) * 1.5
        noise = warp_noise(noise, motion, depth, depth, g)
    assert abs(float(noise.mean())) < 0.03 and abs(float(noise.std()) - 1.0) < 0.03


# ---------------------------------------------------------------------------------------------------------------
# What a stream carries into its next chunk


def chunk_of(motion: torch.Tensor, frames: int = 2, depth: float = 5.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A one-clip chunk: the same motion (2, H, W) every frame, flat depth."""
    return motion[None, None].expand(1, frames, 2, H, W), torch.full((1, frames, H, W), depth)


def test_history_is_the_last_output_where_nothing_moves_and_absent_without_motion():
    memory = StreamMemory()
    motion, depth = chunk_of(torch.zeros(2, H, W))
    start = chunk_history(memory, motion, depth)
    assert start.shape == (1, 2, HISTORY_CHANNELS, H, W) and not start.any()  # a stream's start: nothing valid
    last = torch.randn(1, 2, 3, H, W)
    memory.remember(last, depth, None)
    history = chunk_history(memory, motion, depth)
    assert torch.equal(history[0, :, :3], last[0, -1:].expand(2, 3, H, W)) and history[:, :, 3].all()
    assert chunk_history(memory, None, None) is None  # screen capture: no motion, no history
    memory.clear()
    assert not chunk_history(memory, motion, depth).any()


def test_history_follows_a_pan_over_both_frames_of_a_chunk():
    """Each frame moves 1 column right: the second frame reads the last output 2 columns to its left, and the 2
    columns that entered on the left are not valid."""
    memory = StreamMemory()
    motion = torch.zeros(2, H, W)
    motion[0] = 1.0
    motion, depth = chunk_of(motion)
    last = torch.randn(1, 1, 3, H, W)
    memory.remember(last, depth[:, :1], None)
    history = chunk_history(memory, motion, depth)[0, 1]
    assert torch.equal(history[:3, :, 2:], last[0, 0, :, :, :-2])
    assert not history[3, :, :2].any() and history[3, :, 2:].all() and not history[:3, :, :2].any()


def test_clip_history_feeds_each_chunk_the_frame_before_it():
    frames = torch.randn(1, 4, 3, H, W)
    motion, depth = chunk_of(torch.zeros(2, H, W), frames=4)
    history = clip_history(frames, motion, depth, 2)
    assert not history[:, :2].any()
    assert torch.equal(history[0, 2:, :3], frames[0, 1:2].expand(2, 3, H, W)) and history[0, 2:, 3].all()


def test_chunk_noise_is_fresh_at_the_start_carried_where_still_and_kept_without_motion():
    fresh = torch.randn(1, 2, 3, H, W)
    assert torch.equal(chunk_noise(None, None, None, None, lambda: fresh), fresh)
    previous = torch.randn(1, 3, H, W)
    motion, depth = chunk_of(torch.zeros(2, H, W))
    carried = chunk_noise(previous, depth[:, 0], motion, depth, lambda: torch.randn(1, 2, 3, H, W))
    assert torch.equal(carried, previous[:, None].expand(1, 2, 3, H, W))
    kept = chunk_noise(previous, None, None, None, lambda: torch.randn(1, 2, 3, H, W))
    assert torch.equal(kept, previous[:, None].expand(1, 2, 3, H, W))


def test_a_disocclusion_gets_the_fresh_draw_in_a_chunk():
    previous = torch.randn(1, 3, H, W)
    motion, depth = chunk_of(torch.zeros(2, H, W))
    depth = depth.clone()
    depth[:, :, 4:8, 4:8] = 1.0  # something comes close in front of the camera: those pixels were not seen
    fresh = torch.randn(1, 2, 3, H, W)
    out = chunk_noise(previous, torch.full((1, H, W), 5.0), motion, depth, lambda: fresh)
    assert torch.equal(out[0, 0, :, 4:8, 4:8], fresh[0, 0, :, 4:8, 4:8])
    assert torch.equal(out[0, 0, :, :4], previous[0, :, :4])
