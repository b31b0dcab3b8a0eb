"""Backbone v2 (models.network.unet): the U-Net around a coarse transformer, on tiny random models. Behaviour does
not depend on trained weights: causality, the KV-cached path, absent structure, the structure computed once per
frame, and the FLOP count."""

from __future__ import annotations

import pytest
import torch

from models.network import flow
from models.io.data import GBUFFERS
from models.network.dit import GBUFFER_CHANNELS, GEOMETRY_CHANNELS, Conditioning
from models.network.unet import MATERIAL_IDS, UV_GATE_RATE, UNetDiT, flops_per_frame, make_config, periodic_uv

ALL_GBUFFERS = sum(channels for _, channels in GBUFFERS)  # depth .. sun, then the material id


# the tiny size as it is, and shaped for the matrix units: pixel-unshuffled into fewer, wider full-resolution cells
SHAPES = {"full_resolution": {}, "unshuffled": {"unshuffle": 2, "widths": (16, 32)},
          "unshuffled_refined": {"unshuffle": 2, "widths": (16, 32), "refine": 4}}


def tiny_model(seed: int = 0, **overrides) -> UNetDiT:
    """A tiny model with every weight perturbed: a fresh one starts with zero outputs and residuals, which would
    hide what its inputs do."""
    torch.manual_seed(seed)
    model = UNetDiT(make_config("tiny", **overrides)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def tiny_cond(b: int, f: int, seed: int = 1, history: bool = True) -> Conditioning:
    g = torch.Generator().manual_seed(seed)
    h, w = make_config("tiny").frame_size

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g)

    gbuffers = rand(b, f, ALL_GBUFFERS, h, w)
    gbuffers[:, :, -1] = torch.randint(0, 14, (b, f, h, w), generator=g).float()  # material ids, 0 = sky
    return Conditioning(low=rand(b, f, 3, h, w), gbuffers=gbuffers, style=rand(b, 384),
                        history=rand(b, f, 4, h, w) if history else None)


def sample(b: int, f: int, seed: int = 2) -> torch.Tensor:
    h, w = make_config("tiny").frame_size
    return torch.randn(b, f, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("shape", SHAPES)
@torch.no_grad()
def test_chunks_through_the_kv_cache_equal_the_masked_full_forward(shape):
    model = tiny_model(**SHAPES[shape])
    k = model.cfg.chunk_frames
    x, cond = sample(2, 4 * k), tiny_cond(2, 4 * k)
    sigma = torch.rand(2, 4 * k, generator=torch.Generator().manual_seed(3))
    full = model(x, sigma, cond, "block_causal")
    cache = model.new_cache(2, window_chunks=4, sink_chunks=0)
    chunks = []
    for start in range(0, 4 * k, k):
        frames = slice(start, start + k)
        chunks.append(model.step(x[:, frames], sigma[:, frames], cond.frames(frames), cache, write=True))
    torch.testing.assert_close(torch.cat(chunks, 1), full, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("shape", SHAPES)
@torch.no_grad()
def test_a_chunk_does_not_depend_on_later_frames(shape):
    model = tiny_model(**SHAPES[shape])
    k = model.cfg.chunk_frames
    x, cond = sample(1, 3 * k), tiny_cond(1, 3 * k)
    sigma = torch.full((1, 3 * k), 0.5)
    out = model(x, sigma, cond, "block_causal")
    later = slice(2 * k, 3 * k)
    x2, low2 = x.clone(), cond.low.clone()
    x2[:, later] += 1.0
    low2[:, later] -= 1.0
    changed = model(x2, sigma, Conditioning(low=low2, gbuffers=cond.gbuffers, style=cond.style,
                                             history=cond.history), "block_causal")
    torch.testing.assert_close(changed[:, :2 * k], out[:, :2 * k])
    assert not torch.allclose(changed[:, later], out[:, later])
    # bidirectionally every frame sees the clip
    both = model(x, sigma, cond, "bidirectional"), model(x2, sigma, replace_low(cond, low2), "bidirectional")
    assert not torch.allclose(both[0][:, :k], both[1][:, :k])


def replace_low(cond: Conditioning, low: torch.Tensor) -> Conditioning:
    return Conditioning(low=low, gbuffers=cond.gbuffers, style=cond.style, history=cond.history)


@torch.no_grad()
def test_absent_structure_works_and_equals_dropping_it():
    """Screen capture has no G-buffers and the first frame no history: None runs, matters, and is exactly what
    training-time dropout (keep_* False) shows the network."""
    model = tiny_model()
    x, cond = sample(2, 4), tiny_cond(2, 4)
    sigma = torch.full((2, 4), 0.7)
    given = model(x, sigma, cond)
    for part in ("gbuffers", "history", "low"):
        absent = Conditioning(**{**vars(cond), part: None})
        dropped = Conditioning(**{**vars(cond), f"keep_{part}": torch.tensor([False, False])})
        out = model(x, sigma, absent)
        assert torch.isfinite(out).all() and not torch.allclose(out, given)
        torch.testing.assert_close(model(x, sigma, dropped), out)
    # a game that hands over depth and normals but no uv and AO: the model reads its G-buffers as absent
    geometry_only = Conditioning(**{**vars(cond), "gbuffers": cond.gbuffers[:, :, :GEOMETRY_CHANNELS]})
    torch.testing.assert_close(model(x, sigma, geometry_only), model(x, sigma, Conditioning(**{**vars(cond),
                                                                                               "gbuffers": None})))
    bare = model(x, sigma, Conditioning(style=cond.style), "bidirectional")   # a prompt alone
    assert bare.shape == x.shape and torch.isfinite(bare).all()
    with pytest.raises(ValueError, match="batch and frame count"):
        model.prepare(Conditioning(style=cond.style))


@torch.no_grad()
def test_the_structure_encoder_runs_once_per_frame_however_many_steps():
    from models.network.sampling import sample_student_chunk, sample_teacher

    model = tiny_model()
    calls = []
    model.structure_encoder.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    k = model.cfg.chunk_frames
    cond = tiny_cond(1, k)
    cache = model.new_cache(1, 2, 1)
    sigmas = flow.student_sigmas((1000, 750, 500, 250), 3.0)   # 4 levels and a clean refresh: 5 passes
    sample_student_chunk(model, cond.low, cond, cache, sigmas, refresh="clean", generator=torch.Generator())
    assert calls == [k]   # one batch of the chunk's K frames
    calls.clear()
    sample_teacher(model, tiny_cond(1, 8), (1, 8, 3, *model.cfg.frame_size), steps=6, guidance=1.5,
                   generator=torch.Generator().manual_seed(0))
    assert calls == [8]


def test_periodic_uv_puts_block_edges_at_cos_one_and_is_continuous_across_them():
    """uv arrives as 2·fraction − 1; the structure encoder reads sin/cos of 2π·k·fraction instead, so a block edge
    (fraction 0 or 1) is cos = 1 on both sides, and every other channel passes through unchanged."""
    cfg = make_config("tiny", uv_harmonics=2, gbuffer_channels=GBUFFER_CHANNELS, material_embedding=0)
    fraction = torch.tensor([0.0, 0.001, 0.5, 0.999])
    gbuffers = torch.randn(1, 1, GBUFFER_CHANNELS, 1, 4)
    gbuffers[0, 0, 4] = 2 * fraction - 1                      # u varies, v stays at the face's middle
    gbuffers[0, 0, 5] = 0.0
    out = periodic_uv(gbuffers, cfg)
    assert out.shape[2] == cfg.structure_gbuffer_channels == GBUFFER_CHANNELS - 2 + 4 * 2
    cos_u = out[0, 0, 6, 0]                                   # order: sin u, sin v, cos u, cos v for k = 1, then k = 2
    torch.testing.assert_close(cos_u, torch.cos(2 * torch.pi * fraction))
    assert cos_u[0] == pytest.approx(1.0) and cos_u[2] == pytest.approx(-1.0)
    assert abs(cos_u[1] - cos_u[3]) < 1e-4                    # the two sides of an edge read the same
    torch.testing.assert_close(out[:, :, :4], gbuffers[:, :, :4])
    torch.testing.assert_close(out[:, :, -2:], gbuffers[:, :, -2:])
    # a model reading raw uv (the first format-2 models), or fewer buffers than uv, is left as it is
    assert periodic_uv(gbuffers, make_config("tiny", uv_harmonics=0)) is gbuffers
    assert make_config("tiny", uv_harmonics=2, gbuffer_channels=4).structure_gbuffer_channels == 4
    torch.manual_seed(0)
    model = UNetDiT(cfg).eval()
    with torch.no_grad():
        out = model(sample(1, 4), torch.full((1, 4), 0.5), tiny_cond(1, 4))
    assert out.shape == sample(1, 4).shape and torch.isfinite(out).all()


@torch.no_grad()
def test_the_material_id_is_read_through_its_embedding():
    """The last G-buffer channel is a material id: the structure encoder reads its embedding row (a category, not a
    quantity), ids beyond the table share its last row, and a game that hands over only the buffers before the
    material (a prefix) leaves this model reading every G-buffer as absent."""
    model = tiny_model()
    cfg = model.cfg
    assert cfg.reads_material and cfg.structure_gbuffer_channels == GBUFFER_CHANNELS - 2 + 4 * 2 + 4
    cond = tiny_cond(1, 2)
    gbuffers = cond.gbuffers.clone()
    gbuffers[0, 0, -1, 0, :3] = torch.tensor([0.0, 5.0, 200.0])
    out = model.structure_gbuffers(gbuffers)
    assert out.shape[2] == cfg.structure_gbuffer_channels
    table = model.material_embed.weight
    torch.testing.assert_close(out[0, 0, -4:, 0, 0], table[0])
    torch.testing.assert_close(out[0, 0, -4:, 0, 1], table[5])
    torch.testing.assert_close(out[0, 0, -4:, 0, 2], table[MATERIAL_IDS - 1])
    torch.testing.assert_close(out[:, :, :-4], periodic_uv(gbuffers, cfg)[:, :, :-1])  # the rest as before
    x, sigma = sample(1, 2), torch.full((1, 2), 0.5)
    prefix = Conditioning(**{**vars(cond), "gbuffers": cond.gbuffers[:, :, :-1]})
    absent = Conditioning(**{**vars(cond), "gbuffers": None})
    torch.testing.assert_close(model(x, sigma, prefix), model(x, sigma, absent))
    other = cond.gbuffers.clone()
    other[:, :, -1] = (other[:, :, -1] + 1) % 14
    assert not torch.allclose(model(x, sigma, Conditioning(**{**vars(cond), "gbuffers": other})),
                              model(x, sigma, cond))
    with pytest.raises(ValueError, match="material_embedding > 0"):
        make_config("tiny", material_embedding=0)


@torch.no_grad()
def test_the_uv_waves_are_gated_by_material():
    """Each material scales the uv waves by its own learned gate, ones at the start (so the gate changes nothing
    until trained, and `--init` from a model without it may start it fresh); a zero row removes the waves on that
    material only."""
    model = UNetDiT(make_config("tiny", uv_material_gate=True))
    cfg = model.cfg
    assert cfg.uv_material_gate and model.identity_at_init() == ("uv_gate.weight",)
    gbuffers = tiny_cond(1, 2).gbuffers
    waves = slice(4, 4 + cfg.uv_wave_channels)
    torch.testing.assert_close(model.structure_gbuffers(gbuffers)[:, :, waves], periodic_uv(gbuffers, cfg)[:, :, waves])
    model.uv_gate.weight[5] = -1 / UV_GATE_RATE  # the demo game's water: gate 0
    gated = model.structure_gbuffers(gbuffers)[:, :, waves]
    water = (gbuffers[:, :, -1] == 5).unsqueeze(2).expand_as(gated)
    assert water.any() and (~water).any()
    assert gated[water].abs().max() == 0
    torch.testing.assert_close(gated[~water], periodic_uv(gbuffers, cfg)[:, :, waves][~water])
    with pytest.raises(ValueError, match="uv_material_gate"):
        make_config("tiny", uv_harmonics=0, uv_material_gate=True)
    ungated = UNetDiT(make_config("tiny"))  # the named sizes
    assert ungated.uv_gate is None and ungated.identity_at_init() == ()


@pytest.mark.parametrize("shape", SHAPES)
def test_flops_per_frame_matches_a_counted_forward(shape):
    """The formula against torch's own count of every convolution, linear layer and attention product (attention
    in its math form, so the products are visible to the counter)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    model = tiny_model(**SHAPES[shape])
    f = 8
    with FlopCounterMode(display=False) as counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        model(sample(1, f), torch.full((1, f), 0.5), tiny_cond(1, f))
    assert counter.get_total_flops() / f == pytest.approx(flops_per_frame(model.cfg, context_frames=f), rel=0.005)
    # every further denoising step costs everything but the structure encoder again
    one, two = flops_per_frame(model.cfg, f, steps=1), flops_per_frame(model.cfg, f, steps=2)
    assert 0 < two - one < one


def test_configs_refuse_sizes_that_do_not_tile():
    with pytest.raises(ValueError, match="multiple of the token size"):
        make_config("tiny", frame_size=(30, 32))
    with pytest.raises(ValueError, match="unknown model size"):
        make_config("XL")
    with pytest.raises(ValueError, match="structure_from_level must be a level"):
        make_config("tiny", structure_from_level=3)
    with pytest.raises(ValueError, match="unshuffle is 0; expected a number >= 1"):
        make_config("tiny", unshuffle=0)
    with pytest.raises(ValueError, match="refine is -1; expected a number >= 0"):
        make_config("tiny", refine=-1)
    # unshuffling by 2 doubles the token's side: 40 pixels tile into tiny's tokens of 8, not into 16
    make_config("tiny", frame_size=(40, 40))
    with pytest.raises(ValueError, match="multiple of the token size 16"):
        make_config("tiny", unshuffle=2, frame_size=(40, 40))


@torch.no_grad()
def test_an_unshuffled_model_keeps_every_pixel_its_own():
    """Space-to-depth at the edge is lossless: level 0 holds every pixel as a channel and shuffling it back gives
    the frame in the same order (guards against a transposed shuffle, which would draw each 2×2 block mirrored);
    the model reads and writes full-resolution frames."""
    from models.network.unet import to_level0

    x = torch.randn(3, 5, 8, 8)
    level0 = to_level0(x, 2)
    assert level0.shape == (3, 20, 4, 4) and level0.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(torch.nn.functional.pixel_shuffle(level0, 2), x)
    model = tiny_model(**SHAPES["unshuffled"])
    f = model.cfg.chunk_frames
    out = model(sample(1, f), torch.full((1, f), 0.5), tiny_cond(1, f))
    assert out.shape == (1, f, 3, *model.cfg.frame_size) and model.stem.in_channels == 3 * 4


@torch.no_grad()
def test_structure_from_the_coarsest_level_only_ignores_the_finer_features():
    """The structure-path ablation: with structure_from_level at the token level, the full-resolution structure
    features no longer reach the sample's U-Net."""
    torch.manual_seed(0)
    model = UNetDiT(make_config("tiny", structure_from_level=2)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, sigma = sample(1, 4), torch.full((1, 4), 0.5)
    cond = model.prepare(tiny_cond(1, 4))
    finer_zeroed = [torch.zeros_like(t) for t in cond.structure[:-1]] + [cond.structure[-1]]
    torch.testing.assert_close(model(x, sigma, Conditioning(**{**vars(cond), "structure": finer_zeroed})),
                               model(x, sigma, cond))
    coarse_zeroed = cond.structure[:-1] + [torch.zeros_like(cond.structure[-1])]
    assert not torch.allclose(model(x, sigma, Conditioning(**{**vars(cond), "structure": coarse_zeroed})),
                              model(x, sigma, cond))


@pytest.mark.slow
def test_the_recipe_runs_on_backbone_v2(tmp_path):
    """teacher (--arch unet) -> ode -> dmd on tiny sizes: every stage builds, loads and saves the new architecture,
    and the student streams through its KV cache like the DiT's."""
    from conftest import write_synthetic_clips

    from models.network.loading import load_network, load_student
    from models.network.streaming import stream_clip
    from models.network.unet import UNetDiT
    from models.recipe.dmd import DmdConfig
    from models.recipe.run import run_stage

    prompts = {"sunny summer": ["sunny summer day"], "snowy winter": ["snowy winter village"]}
    data = write_synthetic_clips(tmp_path / "data", seeds=(0, 1), frames=8)
    run = tmp_path / "run"
    quick = {"sample_every": 1000, "sample_steps": 2}
    run_stage("teacher", data, run, size="tiny", prompts=prompts, arch="unet", steps=2, batch=2, overrides=quick)
    run_stage("ode", data, run, steps=2, batch=2, pair_clips=2, overrides=quick)
    run_stage("dmd", data, run, steps=1, batch=2, overrides=quick, dmd_cfg=DmdConfig(fake_updates=1))
    teacher, meta = load_network(run, "teacher")
    student, sampler, _ = load_student(run)
    assert isinstance(teacher, UNetDiT) and isinstance(student, UNetDiT) and meta["architecture"] == "unet"
    cond = tiny_cond(1, 4, history=False)
    out = stream_clip(student, cond.low, cond, sampler, torch.Generator().manual_seed(0))
    assert out.shape == (1, 4, 3, 64, 64) and torch.isfinite(out).all()


def test_a_reset_forgets_the_history_and_the_carried_noise():
    """A one-step student that reads its warped history and carries its noise along the motion: after a reset the
    next chunk is exactly a new stream's first chunk, and without a reset the noise stays where nothing moves."""
    from models.network.streaming import StudentSampler, stream_chunk

    model = tiny_model()
    sampler = StudentSampler(timesteps=(1000,), refresh="last_step", noise="warped", history=True)
    cond = tiny_cond(1, 4, history=False)
    cond.motion = torch.zeros(1, 4, 2, *model.cfg.frame_size)
    cond.gbuffers[:, :, 0] = 0.0  # a still camera on a still scene: every pixel passes the depth test
    first, second = cond.frames(slice(0, 2)), cond.frames(slice(2, 4))
    cache = model.new_cache(1, sampler.window_chunks, sampler.sink_chunks)
    start = stream_chunk(model, first.low, first, sampler, cache, torch.Generator().manual_seed(3))
    noise = cache.memory.noise[0].clone()
    carried = stream_chunk(model, second.low, second, sampler, cache, torch.Generator().manual_seed(4))
    assert torch.equal(cache.memory.noise[0], noise)  # nothing moved: the same noise on the same pixels
    cache.reset()
    assert cache.memory.frame is None and cache.memory.noise is None and cache.chunks == 0
    again = stream_chunk(model, first.low, first, sampler, cache, torch.Generator().manual_seed(3))
    assert torch.equal(again, start)
    restarted = stream_chunk(model, second.low, second, sampler, cache, torch.Generator().manual_seed(4))
    assert torch.equal(restarted, carried)
    fresh_cache = model.new_cache(1, sampler.window_chunks, sampler.sink_chunks)
    no_past = stream_chunk(model, second.low, second, sampler, fresh_cache, torch.Generator().manual_seed(4))
    assert not torch.equal(no_past, carried)  # the history (and the cache) did reach the second chunk


def test_the_one_step_student_recipe_on_backbone_v2(tmp_path):
    """teacher -> ode at the `student` size, reading its warped history and carrying its noise (teacher-forced
    history, the paired term) -> dmd on rollouts of two teacher windows with the adversarial and temporal terms."""
    import json

    from conftest import write_synthetic_clips

    from models.network.loading import load_student
    from models.network.streaming import StudentSampler, stream_clip
    from models.recipe.dmd import DmdConfig
    from models.recipe.ode import OdeConfig
    from models.recipe.run import run_stage

    prompts = {"sunny summer": ["sunny summer day"], "snowy winter": ["snowy winter village"]}
    data = write_synthetic_clips(tmp_path / "data", seeds=(0, 1), frames=8)
    run = tmp_path / "run"
    quick = {"sample_every": 1000, "sample_steps": 2}
    run_stage("teacher", data, run, size="tiny", prompts=prompts, arch="unet", steps=1, batch=2,
              overrides={**quick, "clip_frames": 4})
    wanted = StudentSampler(timesteps=(1000,), refresh="last_step", noise="warped", history=True)
    run_stage("ode", data, run, size="student", steps=2, batch=2, pair_clips=2, overrides=quick, sampler=wanted,
              ode_cfg=OdeConfig(regression=0.5))
    run_stage("dmd", data, run, steps=1, batch=2, overrides={**quick, "clip_frames": 8},
              dmd_cfg=DmdConfig(fake_updates=1, gan=0.1, temporal=0.1))
    student, sampler, meta = load_student(run)
    assert student.cfg.widths == make_config("student").widths and student.cfg.frame_size == (64, 64)
    assert sampler == StudentSampler(**{**wanted.__dict__, "shift": sampler.shift}) and meta["dmd"]["gan"] == 0.1
    log = json.loads((run / "logs" / "dmd.jsonl").read_text().splitlines()[-1])
    assert {"dmd", "fake", "gan", "disc", "regression", "temporal"} <= set(log)
    cond = tiny_cond(1, 4, history=False)
    cond.motion = torch.zeros(1, 4, 2, 64, 64)
    out = stream_clip(student, cond.low, cond, sampler, torch.Generator().manual_seed(0))
    assert out.shape == (1, 4, 3, 64, 64) and torch.isfinite(out).all()


def test_the_unshuffled_student_keeps_the_students_tokens_and_transformer():
    """`student_unshuffled` is the streamed student reshaped for matrix units: the same token grid, transformer and
    KV cache (so the sampler, the cache and the runtime need nothing new), wide level-0 layers at 64², and the FLOPs
    docs/runtime.md reports."""
    student, unshuffled = make_config("student"), make_config("student_unshuffled")
    assert unshuffled.grid == student.grid == (8, 8) and unshuffled.token_size == student.token_size == 16
    assert (unshuffled.hidden, unshuffled.depth, unshuffled.heads) == (student.hidden, student.depth, student.heads)
    assert min(unshuffled.widths) >= 32 and all(w % 32 == 0 for w in unshuffled.widths)
    assert round(flops_per_frame(unshuffled, 8) / 1e9, 2) == 2.68   # 2.65 and the full-resolution refinement
    assert round(flops_per_frame(student, 8) / 1e9, 2) == 1.21
