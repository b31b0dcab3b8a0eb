"""The video transformer, its attention modes and the KV cache (models.network.dit, models.network.kv_cache), on
tiny random models: behaviour does not depend on trained weights."""

import re
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from models.io import checkpoint
from models.network.dit import Conditioning, VideoDiT, block_causal_mask, make_config
from models.network.kv_cache import KVCache
from models.network.loading import load_network

ROOT = Path(__file__).resolve().parents[1]


def random_model(seed: int = 0, **overrides) -> VideoDiT:
    """A tiny model with every weight random: the zero-initialised adaLN-Zero gates would otherwise make every
    block the identity and hide attention bugs."""
    torch.manual_seed(seed)
    model = VideoDiT(make_config("tiny", **overrides)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.1)
    return model


def clip(model: VideoDiT, frames: int, batch: int = 2, seed: int = 1):
    cfg = model.cfg
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.frame_size
    x = torch.randn(batch, frames, cfg.channels, h, w, generator=g)
    sigma = torch.rand(batch, frames, generator=g)
    cond = Conditioning(low=torch.randn(batch, frames, cfg.channels, h, w, generator=g),
                        gbuffers=torch.randn(batch, frames, 4, h, w, generator=g),
                        style=torch.randn(batch, 384, generator=g))
    return x, sigma, cond


@torch.no_grad()
def test_chunks_through_the_cache_equal_one_block_causal_forward():
    """Guards the cache bookkeeping: positions, the order of cached keys and what is written must reproduce the
    masked full forward exactly (fp32, 1e-5)."""
    model = random_model()
    k = model.cfg.chunk_frames
    x, sigma, cond = clip(model, 4 * k)
    full = model(x, sigma, cond, "block_causal")
    cache = model.new_cache(batch=2, window_chunks=4, sink_chunks=1)
    chunks = []
    for c in range(4):
        frames = slice(c * k, (c + 1) * k)
        chunks.append(model.step(x[:, frames], sigma[:, frames], cond.frames(frames), cache, write=True))
    torch.testing.assert_close(torch.cat(chunks, 1), full, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_a_chunk_never_sees_later_frames():
    model = random_model()
    k = model.cfg.chunk_frames
    x, sigma, cond = clip(model, 3 * k)
    before = model(x, sigma, cond, "block_causal")
    x2 = x.clone()
    x2[:, 2 * k:] = torch.randn_like(x2[:, 2 * k:])
    cond.low[:, 2 * k:] += 1.0
    after = model(x2, sigma, cond, "block_causal")
    torch.testing.assert_close(after[:, : 2 * k], before[:, : 2 * k], atol=0, rtol=0)
    assert not torch.allclose(after[:, 2 * k:], before[:, 2 * k:])
    # and the bidirectional teacher does look ahead
    assert not torch.allclose(model(x2, sigma, cond)[:, :k], model(x, sigma, cond)[:, :k])


def test_block_causal_mask_shape():
    mask = block_causal_mask(frames=4, chunk_frames=2, tokens_per_frame=1)
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected)


@pytest.mark.slow
def test_cache_rolls_with_sinks_and_flat_memory():
    """10,000 frames through the student's per-chunk step: the cache keeps its preallocated storage, holds at most
    sink + window chunks, keeps the first chunk as the sink, and the process does not grow."""
    model = random_model()
    k = model.cfg.chunk_frames
    cache = model.new_cache(batch=1, window_chunks=3, sink_chunks=1)
    storage, nbytes = cache.k.data_ptr(), cache.nbytes()
    x, sigma, cond = clip(model, k, batch=1)

    def rss_mb() -> float:
        return int(Path("/proc/self/statm").read_text().split()[1]) * 4096 / 2**20

    with torch.no_grad():
        model.step(x, sigma, cond, cache, write=True)
        sink_k = cache.k[:, :, :, : cache.chunk_tokens].clone()
        rss_start = None
        for i in range(10_000 // k - 1):
            model.step(torch.randn_like(x), sigma, cond, cache, write=True)
            if i == 50:
                rss_start = rss_mb()  # after the allocator has settled
    assert cache.appended == 10_000 // k
    assert cache.chunks == 4 and cache.frames == 4 * k
    assert cache.k.data_ptr() == storage and cache.nbytes() == nbytes
    torch.testing.assert_close(cache.k[:, :, :, : cache.chunk_tokens], sink_k, atol=0, rtol=0)
    assert rss_mb() - rss_start < 20


def test_cache_eviction_order_and_reset():
    cache = KVCache(layers=1, batch=1, heads=1, head_dim=2, chunk_frames=1, tokens_per_frame=1,
                    window_chunks=2, sink_chunks=1)
    for value in range(5):
        chunk = torch.full((1, 1, 1, 1, 2), float(value))
        cache.append(chunk, chunk)
    k, v = cache.view(0)
    assert k[0, 0, :, 0].tolist() == [0.0, 3.0, 4.0]  # the sink, then the two newest
    cache.reset()
    assert cache.frames == 0 and cache.view(0)[0].shape[2] == 0
    with pytest.raises(ValueError, match="expects k and v of shape"):
        cache.append(torch.zeros(1, 1, 1, 2, 2), torch.zeros(1, 1, 1, 2, 2))


def test_step_refuses_a_wrong_chunk_length():
    model = random_model()
    x, sigma, cond = clip(model, 3)
    with pytest.raises(ValueError, match="one chunk of 2 frames"):
        model.step(x, sigma, cond, model.new_cache(2, 2, 1))


def test_same_seed_same_model_and_output():
    a, b = random_model(seed=3), random_model(seed=3)
    x, sigma, cond = clip(a, 2)
    with torch.no_grad():
        assert torch.equal(a(x, sigma, cond), b(x, sigma, cond))


def test_absent_conditioning_runs_and_differs():
    """Screen capture has no G-buffers; guidance's unconditional branch has no style."""
    model = random_model()
    x, sigma, cond = clip(model, 2)
    with torch.no_grad():
        full = model(x, sigma, cond)
        rgb_only = model(x, sigma, Conditioning(low=cond.low, style=cond.style))
        nothing = model(x, sigma, Conditioning())
    assert full.shape == rgb_only.shape == nothing.shape == x.shape
    assert not torch.allclose(full, rgb_only)


def test_untrained_model_predicts_zero():
    """adaLN-Zero and a zero output layer: training starts from predicting the data mean."""
    torch.manual_seed(0)
    model = VideoDiT(make_config("tiny"))
    x, sigma, cond = clip(model, 2)
    with torch.no_grad():
        assert float(model(x, sigma, cond).abs().max()) == 0.0


def test_config_sizes():
    s = make_config("S")
    assert s.tokens_per_frame == 64 and s.head_dim == 32
    with pytest.raises(ValueError, match="multiple of down"):
        make_config("S", frame_size=(100, 128))
    with pytest.raises(ValueError, match="unknown model size"):
        make_config("XL")


def test_checkpoint_round_trip(tmp_path):
    model = random_model(seed=5)
    checkpoint.save_checkpoint(tmp_path, "teacher", model.state_dict(), {"kind": "teacher",
                                                                         "config": asdict(model.cfg)})
    loaded, meta = load_network(tmp_path, "teacher")
    assert loaded.cfg == model.cfg and meta["kind"] == "teacher"
    x, sigma, cond = clip(model, 2)
    with torch.no_grad():
        assert torch.equal(loaded(x, sigma, cond), model(x, sigma, cond))
    # fp16 shipping copy loads back into fp32 compute
    checkpoint.save_checkpoint(tmp_path / "half", "teacher", model.state_dict(), {"config": asdict(model.cfg)},
                               dtype=torch.float16)
    half, _ = load_network(tmp_path / "half", "teacher")
    assert half.out.weight.dtype == torch.float32
    assert (tmp_path / "half" / "teacher.safetensors").stat().st_size < (tmp_path / "teacher.safetensors").stat().st_size


def test_missing_and_corrupt_checkpoints_give_one_clear_error(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="missing checkpoint file .*teacher.safetensors.*restyler train"):
        load_network(tmp_path, "teacher")
    model = random_model()
    checkpoint.save_checkpoint(tmp_path, "teacher", model.state_dict(), {"config": asdict(model.cfg)})
    weights = tmp_path / "teacher.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])
    with pytest.raises(checkpoint.DamagedCheckpointError, match="teacher.safetensors is damaged .truncated"):
        load_network(tmp_path, "teacher")
    (tmp_path / "teacher.json").write_text("{not json")
    with pytest.raises(checkpoint.DamagedCheckpointError, match="teacher.json is damaged .not valid JSON"):
        load_network(tmp_path, "teacher")


def test_a_checkpoint_of_another_size_is_refused(tmp_path):
    model = random_model()
    other = VideoDiT(make_config("tiny", hidden=32, heads=2))
    checkpoint.save_checkpoint(tmp_path, "teacher", other.state_dict(), {"config": asdict(model.cfg)})
    with pytest.raises(checkpoint.CheckpointError, match="does not match this model"):
        load_network(tmp_path, "teacher")


def test_no_pickle_anywhere_in_models():
    """Checkpoints are safetensors + JSON only: torch.load and pickle can execute code from a downloaded file."""
    for path in (ROOT / "models").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"torch\.load\(|import pickle|pickle\.load", text), path


def count_steps(model: VideoDiT) -> dict:
    calls = {"n": 0}
    original = model.step

    def counted(*args, **kwargs):
        calls["n"] += 1
        return original(*args, **kwargs)

    model.step = counted
    return calls


def test_student_sampler_advances_the_cache_once_per_chunk_and_is_seeded():
    """Both refresh modes write exactly one chunk; 'last_step' saves one pass; same generator, same frames."""
    from models.network import flow
    from models.network.sampling import sample_student_chunk

    sigmas = flow.student_sigmas([700, 400], shift=3.0)
    outputs = {}
    for refresh, passes in (("clean", 3), ("last_step", 2)):
        model = random_model()
        x, _, cond = clip(model, 2, batch=1)
        cache = model.new_cache(1, window_chunks=2, sink_chunks=1)
        calls = count_steps(model)
        for chunk in range(3):
            out = sample_student_chunk(model, x, cond, cache, sigmas, refresh,
                                       torch.Generator().manual_seed(chunk))
            assert out.shape == x.shape
        assert cache.appended == 3 and calls["n"] == 3 * passes
        outputs[refresh] = out
        cache.reset()
        again = [sample_student_chunk(model, x, cond, cache, sigmas, refresh, torch.Generator().manual_seed(c))
                 for c in range(3)][-1]
        assert torch.equal(again, out)
    with pytest.raises(ValueError, match="refresh must be"):
        sample_student_chunk(model, x, cond, cache, sigmas, "sometimes")


def test_a_half_replaced_checkpoint_pair_is_refused(tmp_path):
    """A save interrupted between its two renames leaves new weights beside an old JSON: never load that pair."""
    model = random_model()
    checkpoint.save_checkpoint(tmp_path / "a", "teacher", model.state_dict(), {"config": asdict(model.cfg)})
    checkpoint.save_checkpoint(tmp_path / "b", "teacher", model.state_dict(), {"config": asdict(model.cfg)})
    (tmp_path / "a" / "teacher.json").write_bytes((tmp_path / "b" / "teacher.json").read_bytes())
    with pytest.raises(checkpoint.CheckpointError, match="different saves"):
        load_network(tmp_path / "a", "teacher")
    assert (tmp_path / "b" / "teacher.safetensors").stat().st_mode & 0o044  # readable by others, like any file


@torch.no_grad()
def test_after_eviction_the_cache_reads_as_sink_then_window_at_contiguous_positions():
    """Guards the re-rotation on eviction: with one layer a chunk's K/V depend on that chunk alone, so after the
    window has rolled, a step must equal a fresh block-causal forward over [sink chunk, window chunks, new chunk]
    placed at contiguous positions."""
    model = random_model(depth=1)
    k = model.cfg.chunk_frames
    x, sigma, cond = clip(model, 6 * k, batch=1)
    cache = model.new_cache(batch=1, window_chunks=2, sink_chunks=1)
    for c in range(5):  # chunks 0 (sink), 1 and 2 evicted in turn, 3 and 4 in the window
        frames = slice(c * k, (c + 1) * k)
        model.step(x[:, frames], sigma[:, frames], cond.frames(frames), cache, write=True)
    last = slice(5 * k, 6 * k)
    streamed = model.step(x[:, last], sigma[:, last], cond.frames(last), cache)
    keep = torch.cat([torch.arange(0, k), torch.arange(3 * k, 6 * k)])
    reduced = Conditioning(low=cond.low[:, keep], gbuffers=cond.gbuffers[:, keep], style=cond.style)
    fresh = model(x[:, keep], sigma[:, keep], reduced, "block_causal")[:, -k:]
    torch.testing.assert_close(streamed, fresh, atol=1e-5, rtol=1e-5)


def test_pixel_head_matrix_products_equal_its_linear_layers():
    """The pixel head runs its per-cell MLP as batched matrix products for speed; it must equal the Linear layers it
    holds applied cell by cell (guards a weight-layout or activation mismatch)."""
    import torch

    from models.network.dit import VideoDiT, make_config

    torch.manual_seed(0)
    model = VideoDiT(make_config("tiny"))
    for p in model.pixel_head.parameters():
        torch.nn.init.normal_(p)   # unit weights: outputs of order 10, so compare to float32 rounding of that
    b, f, (h, w) = 1, 2, model.cfg.sample_size
    parts = [torch.randn(b, f, c, h, w) for c in (model.cfg.head_channels, 3, 3, 4)]
    cells = torch.cat(parts, 2).movedim(2, -1)
    expected = model.pixel_head.mlp(cells).movedim(-1, 2)
    torch.testing.assert_close(model.pixel_head(*parts), expected, rtol=1e-4, atol=1e-4)
