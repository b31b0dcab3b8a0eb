"""Distillation: the DMD gradient on toy distributions, the fake score, ODE pairs at the student's levels, both
rollouts, the ode and dmd stages end to end with resume, and `restyler eval` writing every key of docs/design.md."""

import json

import pytest
import torch

from models.network import flow
from models.network.loading import load_student
from models.network.streaming import StudentSampler, stream_clip
from models.recipe.run import run_stage
from models.network.dit import Conditioning, VideoDiT, make_config
from models.recipe.dmd import DmdConfig, dmd_gradient, dmd_loss, fake_score_loss, rollout
from models.network.sampling import sample_teacher, teacher_levels
from models.recipe.loop import TrainError


def gaussian_x0(x_t: torch.Tensor, sigma: float, mean: float, std: float) -> torch.Tensor:
    """E[x0 | x_t] for data N(mean, std²) under x_t = (1 − σ)·x0 + σ·ε: the exact denoiser of a 1-D Gaussian."""
    a = 1 - sigma
    gain = a * std ** 2 / (a ** 2 * std ** 2 + sigma ** 2)
    return mean + gain * (x_t - a * mean)


def test_dmd_gradient_points_from_fake_to_real_and_is_normalised():
    x0 = torch.zeros(2, 4)
    real = torch.ones(2, 4)  # the teacher would denoise toward +1
    fake = x0.clone()  # the fake score knows the student makes 0
    g = dmd_gradient(x0, real, fake)
    torch.testing.assert_close(g, -torch.ones(2, 4))  # descent moves x0 up, toward the real score
    # normalised by the mean distance to the real x0: scaling that distance leaves the gradient's size unchanged
    torch.testing.assert_close(dmd_gradient(x0, 10 * real, fake), -torch.ones(2, 4))
    x = x0.clone().requires_grad_(True)
    dmd_loss(x, g).backward()
    torch.testing.assert_close(x.grad, g / x.numel())


def test_dmd_moves_a_generator_onto_the_real_distribution():
    """A 1-D generator x = θ + 0.5·z trained with DMD against exact Gaussian scores ends near the real mean."""
    real_mean, std = 2.0, 0.5
    theta = torch.zeros((), requires_grad=True)
    opt = torch.optim.SGD([theta], lr=0.05)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        x0 = theta + std * torch.randn(256, 1, generator=gen)
        sigma = float(flow.shift_sigma(0.1 + 0.8 * torch.rand((), generator=gen), 3.0))
        x_t = flow.add_noise(x0.detach(), torch.randn(x0.shape, generator=gen), torch.full((256,), sigma))
        real = gaussian_x0(x_t, sigma, real_mean, std)
        fake = gaussian_x0(x_t, sigma, theta.item(), std)  # a perfectly fitted fake score
        opt.zero_grad()
        dmd_loss(x0, dmd_gradient(x0.detach(), real, fake)).backward()
        opt.step()
    assert abs(theta.item() - real_mean) < 0.1


def tiny_model(**overrides) -> VideoDiT:
    torch.manual_seed(0)
    return VideoDiT(make_config("tiny", **overrides))


def tiny_cond(b: int, f: int, hw: int = 64) -> Conditioning:
    g = torch.Generator().manual_seed(1)
    return Conditioning(low=torch.rand(b, f, 3, hw, hw, generator=g) * 2 - 1,
                        gbuffers=torch.rand(b, f, 4, hw, hw, generator=g), style=torch.randn(b, 384, generator=g))


def test_fake_score_loss_falls_on_fixed_samples():
    fake = tiny_model()
    cond = tiny_cond(1, 8)
    samples = torch.randn(1, 8, 3, 64, 64, generator=torch.Generator().manual_seed(2)).clamp(-1, 1)
    opt = torch.optim.AdamW(fake.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(3)
    fixed_sigma = torch.full((1, 8), 0.5)
    fixed_noise = torch.randn(samples.shape, generator=gen)
    with torch.no_grad():
        before = float(fake_score_loss(fake, samples, fixed_sigma, fixed_noise, cond, 0.05))
    for _ in range(25):
        sigma = flow.sample_train_sigma((1, 1), 3.0, gen).expand(1, 8)
        loss = fake_score_loss(fake, samples, sigma, torch.randn(samples.shape, generator=gen), cond, 0.05)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        after = float(fake_score_loss(fake, samples, fixed_sigma, fixed_noise, cond, 0.05))
    assert after < 0.8 * before


@pytest.mark.parametrize("timesteps", [(1000, 500), (700, 400, 200)])
def test_ode_pairs_sit_exactly_at_the_student_levels(timesteps):
    teacher = tiny_model().eval()
    sampler = StudentSampler(timesteps=timesteps)
    levels = sampler.sigmas()[:-1]
    grid = teacher_levels(10, 3.0, float(levels[0]), levels)
    assert all(any(abs(g - float(s)) < 1e-7 for g in grid) for s in levels)
    assert grid[0] == pytest.approx(float(levels[0])) and grid[-1] == 0.0
    cond = tiny_cond(1, 8)
    start = torch.randn(1, 8, 3, 64, 64)
    _, kept = sample_teacher(teacher, cond, (1, 8, 3, 64, 64), 10, 3.0, 1.5, torch.Generator().manual_seed(0),
                             keep_sigmas=levels, start=start, start_sigma=float(levels[0]))
    assert sorted(kept) == sorted(round(float(s), 6) for s in levels)
    torch.testing.assert_close(kept[round(float(levels[0]), 6)], start)  # the first state is where v2v starts
    assert not torch.equal(kept[round(float(levels[1]), 6)], start)


@pytest.mark.parametrize("mode", ["self_forcing", "parallel"])
def test_rollouts_give_a_clip_with_gradients(mode):
    model = tiny_model()
    cond = tiny_cond(2, 8)
    sampler = StudentSampler()
    x0 = rollout(model, cond.low, cond, sampler.sigmas(), "clean", mode, torch.Generator().manual_seed(0),
                 sampler.window_chunks, sampler.sink_chunks)
    assert x0.shape == (2, 8, 3, 64, 64)
    (x0 - 1).square().mean().backward()  # away from the zero-initialised output, so gradients are non-zero
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_self_forcing_rollout_without_grad_matches_the_streaming_sampler():
    """With every chunk exiting at its last level, the self-forcing rollout is exactly what the runtime streams."""
    model = tiny_model().eval()
    for p in model.parameters():  # a non-trivial model: adaLN-Zero starts every branch at zero
        p.data.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    cond = tiny_cond(1, 8)
    sampler = StudentSampler(timesteps=(1000,))  # one level: every chunk's exit is its last step
    a = rollout(model, cond.low, cond, sampler.sigmas(), "clean", "self_forcing",
                torch.Generator().manual_seed(5), sampler.window_chunks, sampler.sink_chunks).detach()
    # stream_clip draws each chunk's start noise from the same generator in the same order
    g = torch.Generator().manual_seed(5)
    torch.randint(1, (4,), generator=g)  # the rollout's exit draws come first
    b = stream_clip(model, cond.low, cond, sampler, g)
    torch.testing.assert_close(a, b)


def test_ode_and_dmd_stages_write_students(tiny_run):
    data, run = tiny_run
    manifest = json.loads((run / "ode_pairs" / "manifest.json").read_text())
    assert manifest["settings"]["clips"] == 4 and manifest["settings"]["timesteps"] == [1000, 500]
    for name in ("student_ode", "student"):
        _, sampler, meta = load_student(run, name)
        assert meta["kind"] == "student" and sampler == StudentSampler()
        assert set(meta["prompts"]) == set(json.loads((data / "manifest.json").read_text())["styles"])
    logs = [json.loads(line) for line in (run / "logs" / "dmd.jsonl").read_text().splitlines()]
    assert logs[-1]["step"] == 2 and logs[-1]["fake"] > 0 and logs[-1]["real_gap"] > 0


def test_dmd_resumes_and_refuses_changed_settings(tiny_run, tmp_path):
    import shutil

    data, shared = tiny_run
    run = shutil.copytree(shared, tmp_path / "run")   # resuming writes into the run: keep the shared one as it was
    with pytest.raises(TrainError, match="other settings"):
        run_stage("dmd", data, run, steps=3, batch=2, resume=True, dmd_cfg=DmdConfig(fake_updates=3))
    with pytest.raises(TrainError, match="--resume"):
        run_stage("dmd", data, run, steps=3, batch=2, dmd_cfg=DmdConfig(fake_updates=2))
    run_stage("dmd", data, run, steps=3, batch=2, resume=True, overrides={"sample_every": 1000},
              dmd_cfg=DmdConfig(fake_updates=2))
    assert json.loads((run / "student.json").read_text())["step"] == 3


def test_dmd_frames_only_steps_stream_without_gbuffers_on_randomised_clips(tiny_run, tmp_path, monkeypatch):
    """--rgb-only 1 --randomise 1: every rollout streams as screen capture does, with no G-buffers and no motion,
    and the student's checkpoint records the settings (the randomised pairs are tested in test_domain.py)."""
    import shutil

    import models.recipe.dmd as dmd

    data, shared = tiny_run
    run = shutil.copytree(shared, tmp_path / "run")
    seen, original = [], dmd.rollout

    def spy(model, incoming, cond, *args, **kwargs):
        seen.append((cond.gbuffers, cond.motion))
        return original(model, incoming, cond, *args, **kwargs)

    monkeypatch.setattr(dmd, "rollout", spy)
    run_stage("dmd", data, run / "frames_only", steps=2, batch=2, init=run, overrides={"sample_every": 1000},
              dmd_cfg=DmdConfig(fake_updates=1, rgb_only=1.0, randomise=1.0))
    assert len(seen) == 2 and all(g is None and m is None for g, m in seen)
    assert json.loads((run / "frames_only" / "student.json").read_text())["dmd"]["rgb_only"] == 1.0


def test_dmd_state_of_an_earlier_layout_is_one_clear_error(tiny_run, tmp_path):
    """A dmd state saved before the critic moved into the training loop cannot be resumed; it says so in one line
    instead of failing on a missing tensor."""
    import shutil

    data, shared = tiny_run
    run = shutil.copytree(shared, tmp_path / "run")
    meta_path = run / "state" / "dmd.json"
    meta = json.loads(meta_path.read_text())
    del meta["critic_optimizer"]
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(TrainError, match="earlier version of the recipe"):
        run_stage("dmd", data, run, steps=3, batch=2, resume=True, dmd_cfg=DmdConfig(fake_updates=2))


def test_dmd_needs_the_ode_student_first(tmp_path, tiny_run):
    data, run = tiny_run
    fresh = tmp_path / "run"
    fresh.mkdir()
    for suffix in (".safetensors", ".json"):
        (fresh / f"teacher{suffix}").write_bytes((run / f"teacher{suffix}").read_bytes())
    with pytest.raises(Exception, match="train ode|student_ode"):
        run_stage("dmd", data, fresh, steps=1, batch=2)


@pytest.mark.slow
def test_eval_cli_writes_every_key(tiny_run, tmp_path, egl_ctx):
    from restyler.main import main

    _, run = tiny_run
    out = tmp_path / "eval.json"
    code = main(["eval", "--model", str(run), "--seeds", "1000:1001", "--frames", "8", "--json", str(out),
                 "--drift-frames", "16", "--teacher-steps", "2", "--worlds", str(tmp_path / "worlds"),
                 "--device", "cpu"])
    assert code == 0
    scores = json.loads(out.read_text())
    assert set(scores) == {"rows", "drift", "style_switch_frames", "precision"}
    assert scores["precision"] in ("fp32", "bf16")   # what --precision auto resolved to on this machine
    assert set(scores["rows"]) == {"input", "regression", "teacher", "student", "no_dmd", "per_frame", "student_rgb",
                                   "regression_rgb"}
    baseline = {"regression", "regression_rgb"}
    for row, values in scores["rows"].items():
        assert set(values) == {"psnr", "ssim", "spectral", "blockiness", "warp_ratio"}
        # the run holds no regression baseline: its rows are there, null
        assert all(isinstance(v, float) if row not in baseline else v is None for v in values.values())
    assert set(scores["drift"]) == {"psnr_first", "psnr_last", "frames"} and scores["drift"]["frames"] == 16
    # a 3-step model may never settle on the new style: then the key is null, otherwise a count within the stream
    assert scores["style_switch_frames"] is None or 1 <= scores["style_switch_frames"] <= 4
    details = json.loads((tmp_path / "eval_details.json").read_text())
    assert len(details["style_switch"]) == 4 and details["worlds"] == [1000]
    media = tmp_path / "eval_media"
    assert (tmp_path / "eval.md").read_text().startswith("| row |")
    assert len(list(media.glob("strip_*.png"))) == 1
    from PIL import Image

    with Image.open(media / "side_by_side.png") as image:   # full size: 4 styles × (6 rows + reference) of 64²
        assert image.size == (7 * 64, 4 * 64)
    for rows_of_style in details["scores_by_style"].values():   # every style, every row run, every metric
        assert set(rows_of_style) == set(scores["rows"]) - baseline
        assert all(set(v) == {"psnr", "ssim", "spectral", "blockiness"} for v in rows_of_style.values())
    assert details["reference_blockiness"] > 0 and details["blockiness_period"] == 16
    from bridge.video import read_video

    for row in ("input", "teacher", "student", "no_dmd", "per_frame", "student_rgb"):
        assert read_video(media / f"{row}.mp4").shape[0] == 8 * 4  # 8 frames × 4 styles of one world


@pytest.mark.slow
def test_eval_scores_the_regression_baseline_without_a_student(tiny_run, tmp_path, egl_ctx):
    """A run before distillation (a teacher and the regression baseline, no student) is scored on the rows it
    can run; asking for a row whose network is missing is one clear error."""
    from restyler.main import main
    from models.recipe.run import run_stage

    data, shared = tiny_run
    run = tmp_path / "run"
    run.mkdir()
    for suffix in (".safetensors", ".json"):
        (run / f"teacher{suffix}").write_bytes((shared / f"teacher{suffix}").read_bytes())
    prompts = json.loads((run / "teacher.json").read_text())["prompts"]
    run_stage("regression", data, run, size="tiny", prompts=prompts, steps=2, batch=1,
              overrides={"sample_every": 1000})
    out = tmp_path / "eval.json"
    argv = ["eval", "--model", str(run), "--seeds", "1000:1001", "--frames", "8", "--json", str(out),
            "--teacher-steps", "2", "--worlds", str(tmp_path / "worlds"), "--device", "cpu"]
    assert main([*argv, "--rows", "input,regression,teacher"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert all(isinstance(rows[r]["psnr"], float) for r in ("input", "regression", "teacher"))
    assert all(rows[r]["psnr"] is None for r in ("student", "no_dmd", "per_frame"))
    assert main(argv) == 0   # every row the run can score, the baseline on frames alone too
    rows = json.loads(out.read_text())["rows"]
    assert rows["regression"]["psnr"] is not None and rows["regression_rgb"]["psnr"] is not None
    assert rows["regression_rgb"]["psnr"] != rows["regression"]["psnr"]   # it was not handed the G-buffers
    assert not any(p.name.startswith("drift") for p in (tmp_path / "worlds").iterdir())   # no student: no stream
    assert main([*argv, "--rows", "student"]) == 2


def test_eval_scores_a_run_after_its_ode_stage_alone(tiny_run, tmp_path, egl_ctx):
    """A run whose student has had only its ODE initialisation (student_ode, no student yet) scores the no_dmd row,
    streaming with the sampler the ODE stage saved with it (the ablations of a recipe's first leg)."""
    from restyler.main import main

    _, shared = tiny_run
    run = tmp_path / "run"
    run.mkdir()
    for name in ("teacher", "student_ode"):
        for suffix in (".safetensors", ".json"):
            (run / f"{name}{suffix}").write_bytes((shared / f"{name}{suffix}").read_bytes())
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", str(run), "--seeds", "1000:1001", "--frames", "8", "--json", str(out),
                 "--worlds", str(tmp_path / "worlds"), "--device", "cpu", "--rows", "input,no_dmd",
                 "--drift-frames", "0"]) == 0
    scores = json.loads(out.read_text())
    assert isinstance(scores["rows"]["no_dmd"]["psnr"], float) and scores["rows"]["student"]["psnr"] is None


def test_eval_refuses_training_seeds(tiny_run, tmp_path, capsys):
    from restyler.main import main

    _, run = tiny_run
    assert main(["eval", "--model", str(run), "--seeds", "5:6", "--json", str(tmp_path / "e.json")]) == 2
    assert "held-out" in capsys.readouterr().err


@pytest.mark.torchrun
@pytest.mark.slow
def test_dmd_under_two_gloo_processes_matches_one_process(tiny_run, tmp_path):
    """`restyler train dmd` under torchrun (2 CPU processes, batch 1 each) takes the same steps as one process with
    batch 2: the rollout noise is drawn for the global batch and gradients are averaged by hand."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from models.io import checkpoint

    data, run = tiny_run
    root = Path(__file__).resolve().parents[1]
    runs = {}
    for name in ("single", "ddp"):
        runs[name] = tmp_path / name
        runs[name].mkdir()
        for stem in ("teacher", "student_ode"):
            for suffix in (".safetensors", ".json"):
                (runs[name] / f"{stem}{suffix}").write_bytes((run / f"{stem}{suffix}").read_bytes())
    args = ["train", "dmd", "--data", str(data), "--steps", "2", "--batch", "2", "--fake-updates", "1",
            "--device", "cpu"]
    from restyler.main import main

    assert main([*args, "--out", str(runs["single"])]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             "-m", "restyler", *args, "--out", str(runs["ddp"])],
                            env=env, capture_output=True, text=True, timeout=300, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    a, b = (checkpoint.load_checkpoint(runs[n] / "state", "dmd")[0] for n in ("single", "ddp"))
    for name in a:
        if name.startswith(("model/", "critic/")):   # the student and the fake score
            torch.testing.assert_close(b[name], a[name], atol=1e-6, rtol=1e-4, msg=name)


def test_switch_frames_count_until_the_output_stays_with_the_new_style():
    from models.evaluation.restyle import frames_to_switch

    assert frames_to_switch([True, True, True]) == 1
    assert frames_to_switch([False, False, True, True]) == 3
    assert frames_to_switch([True, False, True]) == 3  # closer once, then back: it had not switched yet
    assert frames_to_switch([False, False]) is None


def test_fixed_stream_noise_makes_chunks_independent_of_the_generator():
    """With the sampler's fixed noise a stream draws noise once; what follows no longer depends on the generator,
    and a static scene is restyled the same way chunk after chunk except for what the cache adds."""
    model = tiny_model().eval()
    cond = tiny_cond(1, 8)
    sampler = StudentSampler(noise="fixed")
    noise = sampler.stream_noise(cond.low[:, :2], torch.Generator().manual_seed(0))
    assert len(noise) == len(sampler.timesteps) and noise[0].shape == (1, 1, 3, 64, 64)
    a = stream_clip(model, cond.low, cond, sampler, torch.Generator().manual_seed(1), noise=noise)
    b = stream_clip(model, cond.low, cond, sampler, torch.Generator().manual_seed(2), noise=noise)
    torch.testing.assert_close(a, b)
    fresh = StudentSampler()
    assert fresh.stream_noise(cond.low, None) is None
    with pytest.raises(ValueError, match="fresh.*fixed.*warped"):
        StudentSampler(noise="sticky").stream_noise(cond.low, None)


def test_student_configs_saved_before_the_noise_option_still_load():
    from models.io.checkpoint import config_from_json

    old = {"timesteps": [1000, 500], "shift": 3.0, "refresh": "clean", "window_chunks": 2, "sink_chunks": 1}
    assert config_from_json(StudentSampler, old) == StudentSampler()


def test_recache_with_the_same_prompt_rebuilds_the_same_cache():
    """Re-encoding the held chunks under unchanged conditioning gives back the cache the stream built itself (before
    any eviction; afterwards deeper layers differ, since a chunk once attended to chunks now evicted), so the switch
    path changes only what the prompt changes. After evictions it re-encodes the sinks and the latest window."""
    from models.network.streaming import held_chunks, recache
    from models.network.sampling import sample_student_chunk

    model = tiny_model().eval()
    for p in model.parameters():
        p.data.add_(0.02 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    cond = tiny_cond(1, 10)
    sampler = StudentSampler()
    cache = model.new_cache(1, sampler.window_chunks, sampler.sink_chunks)
    history = []
    gen = torch.Generator().manual_seed(0)
    for c in range(5):  # 5 chunks through 1 sink + 2 window slots: two evictions after the third
        chunk = slice(2 * c, 2 * c + 2)
        x0 = sample_student_chunk(model, cond.low[:, chunk], cond.frames(chunk), cache, sampler.sigmas(), "clean",
                                  gen)
        history.append((x0, cond.frames(chunk)))
        if c == 2:
            held = held_chunks(cache, history)
            assert [h[0] for h in held] == [h[0] for h in history]
            k, v = cache.k.clone(), cache.v.clone()
            recache(model, cache, held)
            torch.testing.assert_close(cache.k, k, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(cache.v, v, atol=1e-5, rtol=1e-4)
    held = held_chunks(cache, history)
    assert [h[0] for h in held] == [history[0][0], history[3][0], history[4][0]]
    recache(model, cache, held)
    assert cache.chunks == 3 and cache.frames == 6
    with pytest.raises(ValueError, match="3 chunks"):
        recache(model, cache, held[:2])


def test_temporal_loss_is_zero_for_a_stream_that_follows_the_motion():
    """The temporal term must not punish a stream that moves exactly with the game's motion vectors, must punish
    one that flickers, and must pull only the later frame (the earlier one is detached)."""
    import torch

    from models.io.data import normalize_depth
    from models.recipe.dmd import temporal_loss

    torch.manual_seed(0)
    b, f, h, w = 1, 3, 16, 16
    base = torch.rand(1, 3, h, w + 2 * f)
    # content pans 1 px left per frame: motion (to the previous frame) is -1 in x everywhere
    moving = torch.stack([base[..., t: t + w] for t in range(f)], 1)          # (1, F, 3, H, W)
    motion = torch.zeros(b, f, 2, h, w)
    motion[:, :, 0] = -1.0
    depth = normalize_depth(torch.full((b, f, 1, h, w), 10.0))
    assert temporal_loss(moving, motion, depth).item() < 1e-6
    flicker = moving + 0.3 * torch.randn_like(moving)
    flicker.requires_grad_(True)
    loss = temporal_loss(flicker, motion, depth)
    assert loss.item() > 0.1
    loss.backward()
    assert flicker.grad[:, 0].abs().sum() == 0 and flicker.grad[:, 1:].abs().sum() > 0


def test_dmd_init_fine_tunes_a_finished_student_with_the_temporal_term(tmp_path, tiny_run):
    """`train dmd --init RUN --temporal W` (the shipped recipe's second pass): a new run directory that is a
    complete model (the teacher and ODE student copied in), a generator that starts from RUN's student, and the
    temporal term logged."""
    import torch

    from models.network.loading import load_network

    data, run = tiny_run
    ode, dmd = load_network(run, "student_ode")[0], load_network(run, "student")[0]
    moved = max((a - b).abs().max().item() for a, b in zip(ode.parameters(), dmd.parameters()))
    assert moved > 1e-6   # so "starts from RUN's student" below is told apart from "starts from its ODE student"
    second = tmp_path / "second"
    run_stage("dmd", data, second, steps=1, batch=2, overrides={"sample_every": 1000, "lr": 1e-12},
                      dmd_cfg=DmdConfig(fake_updates=1, temporal=0.3), init=run)
    for name in ("teacher", "student_ode", "student"):
        assert (second / f"{name}.safetensors").is_file()
    assert json.loads((second / "student.json").read_text())["init"]["run"] == str(run)
    log = json.loads((second / "logs" / "dmd.jsonl").read_text().splitlines()[-1])
    assert log["temporal"] > 0
    before, after = load_network(run, "student")[0], load_network(second, "student")[0]
    for a, b in zip(before.parameters(), after.parameters()):   # a negligible lr: it started from RUN's student
        torch.testing.assert_close(a, b, atol=moved / 10, rtol=0)
    with pytest.raises(TrainError, match="only|train dmd"):
        run_stage("ode", data, tmp_path / "third", steps=1, batch=2, init=run)


def test_reset_every_one_chunk_is_the_per_frame_student():
    """`reset_every` empties the cache on schedule: every chunk is exactly the per_frame row, and a stream with no
    reset due differs from it (the cache is used)."""
    import torch

    from models.network.streaming import StudentSampler, stream_clip

    torch.manual_seed(0)
    model = tiny_model()
    with torch.no_grad():   # a fresh model's zero-initialised output layers would ignore the cache entirely
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    cond = tiny_cond(1, 8)
    no_context = stream_clip(model, cond.low, cond, StudentSampler(), torch.Generator().manual_seed(1),
                             no_context=True)
    every = stream_clip(model, cond.low, cond, StudentSampler(reset_every=1), torch.Generator().manual_seed(1))
    never = stream_clip(model, cond.low, cond, StudentSampler(), torch.Generator().manual_seed(1))
    torch.testing.assert_close(every, no_context)
    assert not torch.allclose(never, no_context)
    # every 2 chunks: the same as streaming each 2-chunk segment from an empty cache
    k = model.cfg.chunk_frames
    pairs = stream_clip(model, cond.low, cond, StudentSampler(reset_every=2), torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(1)
    segments = [stream_clip(model, cond.low[:, s:s + 2 * k], cond.frames(slice(s, s + 2 * k)), StudentSampler(), g)
                for s in range(0, 8, 2 * k)]
    torch.testing.assert_close(pairs, torch.cat(segments, 1))


def test_the_discriminator_judges_patches_and_reads_the_style():
    from models.network.discriminator import PatchDiscriminator, discriminator_loss, generator_loss

    torch.manual_seed(0)
    disc = PatchDiscriminator(width=8)
    frames, low = torch.randn(2, 2, 3, 64, 64), torch.randn(2, 2, 3, 64, 64)
    gbuffers, style = torch.randn(2, 2, 9, 64, 64), torch.randn(2, 384)
    logits = disc(frames, low, gbuffers, style)
    assert logits.shape == (4, 4, 4)  # one logit per 16x16-pixel patch of each frame
    assert not torch.equal(logits, disc(frames, low, gbuffers, torch.randn(2, 384)))
    assert disc(frames, low, None, style).shape == (4, 4, 4)  # screen capture: no G-buffers
    # the losses push real logits up and fake ones down, and the generator's fake ones up
    real, fake = torch.zeros(3, requires_grad=True), torch.zeros(3, requires_grad=True)
    discriminator_loss(real, fake).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()
    fake.grad = None
    generator_loss(fake).backward()
    assert (fake.grad < 0).all()
