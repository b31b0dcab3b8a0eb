"""Training stages on a synthetic dataset with tiny models: files written, exact resume, torchrun equivalence, errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from models.io import checkpoint
from models.recipe.loop import TrainConfig, TrainError, batch_indices, lr_at, stretch_note
from models.recipe.run import run_stage
from restyler.main import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = {"sunny summer": ["sunny summer day", "bright summer afternoon"],
           "snowy winter": ["snowy winter village", "frozen winter scene"]}
# Small and fast: 4-frame clips, 2-step sample grids, every step logged.
TINY = {"size": "tiny", "prompts": PROMPTS}
QUICK = {"clip_frames": 4, "sample_steps": 2, "log_every": 1, "checkpoint_every": 2, "warmup": 2}


def state_weights(run: Path, stage: str = "teacher") -> dict[str, torch.Tensor]:
    return {k: v for k, v in load_file(str(run / "state" / f"{stage}.safetensors")).items() if k.startswith("model/")}


def test_teacher_stage_writes_checkpoint_logs_and_samples(synthetic_clips, tmp_path):
    run = tmp_path / "run"
    record = run_stage("teacher", synthetic_clips, run, steps=3, batch=2, overrides=QUICK, **TINY)
    assert record["step"] == 3 and record["loss"] > 0
    meta = json.loads((run / "teacher.json").read_text())
    assert meta["kind"] == "teacher" and meta["step"] == 3 and meta["prompts"] == PROMPTS
    assert meta["config"]["size"] == "tiny" and meta["train"]["batch"] == 2
    lines = [json.loads(line) for line in (run / "logs" / "teacher.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3]
    assert all(r["loss_by_sigma"] for r in lines)  # per noise-level bins are logged
    assert (run / "samples" / "teacher_000003.png").stat().st_size > 0
    # refuses to overwrite a run without --resume
    with pytest.raises(TrainError, match="--resume"):
        run_stage("teacher", synthetic_clips, run, **TINY, steps=3, batch=2, overrides=QUICK)


def test_interrupted_and_resumed_run_equals_an_uninterrupted_one(synthetic_clips, tmp_path, monkeypatch):
    """Exact resume: the batch and every random draw of step n depend on (seed, n) only, and the optimizer and EMA
    state are checkpointed."""
    straight = tmp_path / "straight"
    run_stage("teacher", synthetic_clips, straight, **TINY, steps=4, batch=2, overrides=QUICK)

    from models.recipe import teacher as teacher_module

    interrupted = tmp_path / "interrupted"
    original = teacher_module.TeacherStage.loss
    calls = {"n": 0}

    def crash_on_third_step(self, *args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(teacher_module.TeacherStage, "loss", crash_on_third_step)
    with pytest.raises(KeyboardInterrupt):
        run_stage("teacher", synthetic_clips, interrupted, **TINY, steps=4, batch=2, overrides=QUICK)
    monkeypatch.setattr(teacher_module.TeacherStage, "loss", original)
    assert json.loads((interrupted / "state" / "teacher.json").read_text())["step"] == 2
    run_stage("teacher", synthetic_clips, interrupted, **TINY, steps=4, batch=2, resume=True,
              overrides=QUICK)
    a, b = state_weights(straight), state_weights(interrupted)
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=0, rtol=0, msg=name)


@pytest.mark.torchrun
@pytest.mark.slow
def test_two_gloo_processes_take_the_steps_of_one_process_with_the_whole_batch(synthetic_clips, tmp_path):
    """`restyler train` unchanged under torchrun with 2 CPU processes (batch 2 each) against 1 process with batch 4:
    the same loss and gradient norm (a sum instead of a mean over ranks would double it) and the same weights."""
    from demo_game.styles import STYLES

    single = tmp_path / "single"
    game_prompts = {style.name: list(style.prompts) for style in STYLES.values()}  # what the CLI trains on
    run_stage("teacher", synthetic_clips, single, size="tiny", prompts=game_prompts, steps=3, batch=4)
    ddp = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "restyler", "train", "teacher", "--data", str(synthetic_clips), "--out", str(ddp), "--size", "tiny",
         "--steps", "3", "--batch", "4", "--device", "cpu"],
        env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    log_single, log_ddp = (json.loads((run / "logs" / "teacher.jsonl").read_text().splitlines()[-1])
                           for run in (single, ddp))
    assert log_ddp["step"] == log_single["step"] == 3
    assert log_ddp["loss"] == pytest.approx(log_single["loss"], rel=1e-4)
    assert log_ddp["grad_norm"] == pytest.approx(log_single["grad_norm"], rel=1e-4)
    a, b = state_weights(single), state_weights(ddp)
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-7, rtol=1e-5, msg=name)


def test_autoencoder_stage_and_latent_teacher(synthetic_clips, tmp_path):
    run = tmp_path / "run"
    run_stage("autoencoder", synthetic_clips, run, **TINY, steps=2, batch=4,
              overrides={"log_every": 1, "sample_every": 2})
    tensors, meta = checkpoint.load_checkpoint(run, "autoencoder")
    assert meta["kind"] == "autoencoder"
    # the latent statistics were measured, not left at their identity defaults
    assert not torch.equal(tensors["latent_std"], torch.ones_like(tensors["latent_std"]))
    assert (run / "samples" / "autoencoder_000002.png").is_file()
    run_stage("teacher", synthetic_clips, run, **TINY, steps=1, batch=2, space="latent", overrides=QUICK)
    assert json.loads((run / "teacher.json").read_text())["config"]["space"] == "latent"


def test_latent_teacher_without_autoencoder_says_how_to_get_one(synthetic_clips, tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="restyler train autoencoder"):
        run_stage("teacher", synthetic_clips, tmp_path / "run", **TINY, steps=1, batch=2,
                  space="latent", overrides=QUICK)


def test_cli_train_errors_are_one_line(synthetic_clips, tmp_path, capsys):
    assert cli_main(["train", "teacher", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path / "r")]) == 2
    assert "record data first" in capsys.readouterr().err
    # size S models 128x128 frames; the synthetic clips are 64x64
    assert cli_main(["train", "teacher", "--data", str(synthetic_clips), "--out", str(tmp_path / "r2"),
                     "--steps", "1"]) == 2
    assert "record data at the model's size" in capsys.readouterr().err


def test_schedule_and_batches():
    cfg = TrainConfig(steps=100, lr=1.0, warmup=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1) and lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(99, cfg) == pytest.approx(0.1, abs=1e-3) and lr_at(55, cfg) < 1.0
    # every item once per epoch, in a seeded order, batches crossing the epoch end included
    seen = [i for step in range(5) for i in batch_indices(step, 2, 10, seed=0)]
    assert sorted(seen) == list(range(10))
    assert batch_indices(7, 3, 10, 0) == batch_indices(7, 3, 10, 0)


def test_resume_with_other_settings_is_refused(synthetic_clips, tmp_path):
    """A different batch or seed would silently break exact resume."""
    run = tmp_path / "run"
    run_stage("teacher", synthetic_clips, run, **TINY, steps=1, batch=2, overrides=QUICK)
    with pytest.raises(TrainError, match="batch: 2 -> 4"):
        run_stage("teacher", synthetic_clips, run, **TINY, steps=2, batch=4, resume=True, overrides=QUICK)


def test_a_longer_steps_notes_the_stretched_schedule_and_a_finished_leg_does_not():
    """make train-student reruns each ODE leg's shorter --steps after the run is past it: those legs train nothing,
    so they must not claim to stretch the schedule."""
    assert stretch_note(TrainConfig(steps=3500), TrainConfig(steps=9000), done=3500) == \
        "note: --steps 3500 -> 9000 stretches the cosine schedule of the remaining steps"
    assert stretch_note(TrainConfig(steps=14000), TrainConfig(steps=3500), done=13400) is None


def test_init_starts_a_new_run_from_another_runs_weights(synthetic_clips, tmp_path):
    first = tmp_path / "first"
    run_stage("teacher", synthetic_clips, first, **TINY, steps=2, batch=2, overrides=QUICK)
    second = tmp_path / "second"
    run_stage("teacher", synthetic_clips, second, **TINY, steps=1, batch=2, init=first,
              overrides={**QUICK, "loss_min_sigma": 0.5, "lr": 0.0})
    a, _ = checkpoint.load_checkpoint(first, "teacher")
    b, meta = checkpoint.load_checkpoint(second, "teacher")
    assert meta["train"]["loss_min_sigma"] == 0.5
    for name in a:  # lr 0: the second run's weights are exactly the first run's
        torch.testing.assert_close(b[name], a[name], atol=0, rtol=0, msg=name)


def test_the_teacher_starts_from_the_regression_baseline(synthetic_clips, tmp_path):
    """`--init RUN` on a backbone-v2 teacher takes RUN's regression weights when RUN holds no teacher."""
    run = tmp_path / "run"
    run_stage("regression", synthetic_clips, run, steps=2, batch=1, overrides=QUICK, arch="unet", **TINY)
    teacher = tmp_path / "teacher"
    lines = []
    run_stage("teacher", synthetic_clips, teacher, steps=1, batch=1, overrides={**QUICK, "lr": 1e-12},
              arch="unet", init=run, progress=lines.append, **TINY)
    assert any("regression" in line for line in lines)
    start = load_file(str(run / "regression.safetensors"))
    after = load_file(str(teacher / "teacher.safetensors"))
    assert torch.allclose(after["out.weight"].float(), start["out.weight"].float(), atol=1e-4)


def test_init_from_a_model_without_the_uv_gate_starts_the_gate_fresh(synthetic_clips, tmp_path):
    """Fine-tuning with the per-material uv gate from a model trained without it: the gate starts at ones (the
    identity) and says so; every other missing weight is still refused."""
    run = tmp_path / "run"
    run_stage("regression", synthetic_clips, run, steps=1, batch=1, overrides=QUICK, arch="unet", **TINY)
    lines = []
    gated = tmp_path / "gated"
    run_stage("teacher", synthetic_clips, gated, steps=1, batch=1, overrides={**QUICK, "lr": 1e-12}, arch="unet",
              init=run, progress=lines.append, model_options={"uv_material_gate": True}, **TINY)
    assert any("uv_gate.weight start fresh" in line for line in lines)
    gate = load_file(str(gated / "teacher.safetensors"))["uv_gate.weight"].float()
    torch.testing.assert_close(gate, torch.zeros_like(gate), atol=1e-5, rtol=0)  # the gate 1 + 10·w is one
    with pytest.raises(checkpoint.CheckpointError, match="does not match this model"):
        run_stage("teacher", synthetic_clips, tmp_path / "wide", steps=1, batch=1, overrides=QUICK, arch="unet",
                  init=run, model_options={"material_embedding": 6}, **TINY)


def test_model_options_change_backbone_v2_and_only_it(synthetic_clips, tmp_path):
    run = tmp_path / "run"
    run_stage("regression", synthetic_clips, run, steps=1, batch=1, overrides=QUICK, arch="unet",
              model_options={"gbuffer_channels": 4}, **TINY)
    assert json.loads((run / "regression.json").read_text())["config"]["gbuffer_channels"] == 4
    with pytest.raises(TrainError, match="--model-option"):
        run_stage("teacher", synthetic_clips, tmp_path / "dit", steps=1, model_options={"depth": 1}, **TINY)


def test_clip_frames_sets_the_clip_of_the_first_stages_only(synthetic_clips, tmp_path):
    """More, shorter clips a step (docs/model.md): the clip length reaches backbone v2's config; the stages after
    the teacher take the teacher's and refuse their own."""
    run = tmp_path / "run"
    run_stage("regression", synthetic_clips, run, steps=1, batch=2, overrides={**QUICK, "clip_frames": 2},
              arch="unet", **TINY)
    assert json.loads((run / "regression.json").read_text())["config"]["clip_frames"] == 2
    with pytest.raises(TrainError, match="--clip-frames"):
        run_stage("ode", synthetic_clips, run, overrides={"clip_frames": 2}, **TINY)



def test_edge_error_splits_a_regressions_error_by_region(synthetic_clips, tmp_path):
    """The measurement behind backbone v2's uv waves (docs/model.md): every style's pixels and error split over
    block edges, sky and the rest, each a share that sums to one."""
    from models.evaluation.edge_error import REGIONS, edge_error

    run = tmp_path / "run"
    run_stage("regression", synthetic_clips, run, steps=1, batch=1, overrides=QUICK, arch="unet", **TINY)
    shares = edge_error(run, synthetic_clips)
    assert set(shares) == set(PROMPTS)
    for regions in shares.values():
        assert set(regions) == set(REGIONS)
        for key in ("pixels", "error"):
            assert sum(r[key] for r in regions.values()) == pytest.approx(1.0)
            assert all(0.0 <= r[key] <= 1.0 for r in regions.values())


def test_material_error_splits_by_material_and_flat_uv_changes_only_that_material(synthetic_clips, tmp_path):
    """The measurement behind the grid on the water (docs/model.md): shares per material id sum to one, each with a
    psnr; holding uv flat on one material changes the regression's error there."""
    from models.evaluation.edge_error import material_error

    run = tmp_path / "run"
    run_stage("regression", synthetic_clips, run, steps=3, batch=1, overrides=QUICK, arch="unet", **TINY)
    shares = material_error(run, synthetic_clips)
    assert set(shares) == set(PROMPTS)
    for materials in shares.values():
        assert materials and all(m.isdigit() for m in materials)
        for key in ("pixels", "error"):
            assert sum(m[key] for m in materials.values()) == pytest.approx(1.0)
        assert all(m["psnr"] > 0 for m in materials.values())
    busiest = max(shares[next(iter(PROMPTS))].items(), key=lambda kv: kv[1]["pixels"])[0]
    flat = material_error(run, synthetic_clips, flat_uv_on=int(busiest))
    assert flat[next(iter(PROMPTS))][busiest]["psnr"] != shares[next(iter(PROMPTS))][busiest]["psnr"]


def test_exporting_first_stages_needs_a_teacher_and_takes_no_student_options(synthetic_clips, tmp_path):
    """`models.recipe.export --first-stages` ships a run without a student; each thing it cannot ship is one error
    that says what to do."""
    from models.recipe.export import export_model

    run = tmp_path / "run"
    run_stage("regression", synthetic_clips, run, steps=1, batch=1, overrides=QUICK, arch="unet", **TINY)
    with pytest.raises(checkpoint.CheckpointError, match="holds no student.*--first-stages"):
        export_model(run, tmp_path / "out")
    with pytest.raises(checkpoint.CheckpointError, match="holds no teacher"):
        export_model(run, tmp_path / "out", first_stages=True)
    run_stage("teacher", synthetic_clips, run, steps=1, batch=1, overrides=QUICK, arch="unet", init=run, **TINY)
    with pytest.raises(checkpoint.CheckpointError, match="have none"):
        export_model(run, tmp_path / "out", {"reset_every": 4}, first_stages=True)
    assert not (tmp_path / "out").exists()
    written = export_model(run, tmp_path / "out", first_stages=True)
    assert sorted(p.name for p in written) == ["regression.json", "regression.safetensors", "teacher.json",
                                               "teacher.safetensors"]


@pytest.mark.slow
def test_make_train_v2_runs_its_profile_end_to_end(tmp_path):
    """The tiny profile of `make train-v2`: the same commands as the CPU and GPU profiles, on 64×64 worlds."""
    env = {**os.environ, "SDL_VIDEODRIVER": "offscreen", "SDL_AUDIODRIVER": "dummy"}
    result = subprocess.run(["make", "-s", "train-v2", "PROFILE=tiny", f"V2_RUN={tmp_path / 'run'}",
                             f"V2_DATA={tmp_path / 'data'}", f"V2_WORLDS={tmp_path / 'worlds'}"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    polished = tmp_path / "run_polish"  # the teacher's second schedule, beside a copy of the regression
    scores = json.loads((polished / "eval.json").read_text())
    assert {"input", "regression", "teacher"} <= set(scores["rows"])
    teacher = json.loads((polished / "teacher.json").read_text())
    assert teacher["architecture"] == "unet" and teacher["train"]["lr"] == 1e-4
    # the first stages are shipped in fp16 beside the run, where `restyler eval` scores them without a student
    shipped = tmp_path / "run_shipped"
    assert sorted(p.name for p in shipped.iterdir()) == ["regression.json", "regression.safetensors", "teacher.json",
                                                         "teacher.safetensors"]
    assert {str(t.dtype) for t in load_file(str(shipped / "teacher.safetensors")).values()} == {"torch.float16"}
    rescored = subprocess.run([sys.executable, "-m", "restyler", "eval", "--model", str(shipped), "--seeds", "1000:1001",
                               "--frames", "8", "--teacher-steps", "2", "--rows", "input,regression,teacher",
                               "--worlds", str(tmp_path / "worlds"), "--json", str(tmp_path / "shipped.json")],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert rescored.returncode == 0, rescored.stderr[-2000:]
    again = json.loads((tmp_path / "shipped.json").read_text())["rows"]
    assert again["regression"]["psnr"] == pytest.approx(scores["rows"]["regression"]["psnr"], abs=0.05)
    # and the one-step student from that teacher: `make train-student` with the same profile
    student = subprocess.run(["make", "-s", "train-student", "PROFILE=tiny", f"V2_RUN={tmp_path / 'run'}",
                              f"V2_DATA={tmp_path / 'data'}", f"V2_WORLDS={tmp_path / 'worlds'}"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert student.returncode == 0, student.stdout[-2000:] + student.stderr[-2000:]
    # the ODE stage in legs (STUDENT_ODE_STEPS): one step, then resumed to two on a longer schedule
    ode_log = (tmp_path / "run_student" / "logs" / "ode.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in ode_log] == [1, 2]
    distilled = json.loads((tmp_path / "run_student" / "student.json").read_text())
    assert distilled["dmd"]["distribution"] > 0 and distilled["dmd"]["gan"] == 0.05
    # the polish from the distilled student, DMD term off, then its finish with a lighter adversarial term: the
    # finish is what is scored and shipped
    student_polish = json.loads((tmp_path / "run_student_polish" / "student.json").read_text())
    assert student_polish["dmd"]["distribution"] == 0 and student_polish["dmd"]["gan"] == 0.05
    assert student_polish["init"]["save_id"] == distilled["save_id"]  # polished from that very student
    student_scores = json.loads((tmp_path / "run_student_finish" / "eval.json").read_text())["rows"]
    assert student_scores["student"]["psnr"] is not None and student_scores["student_rgb"]["psnr"] is not None
    meta = json.loads((tmp_path / "run_student_finish" / "student.json").read_text())
    assert meta["config"]["widths"] == [8, 16, 32, 64] and meta["sampler"]["history"] is True
    assert meta["sampler"]["noise"] == "warped" and meta["dmd"]["distribution"] == 0 and meta["dmd"]["gan"] == 0.02
    assert meta["init"]["save_id"] == student_polish["save_id"]
    # exported beside the run in fp16 with its teacher and regression baseline: a complete model directory
    exported = tmp_path / "run_student_shipped"
    assert sorted(p.name for p in exported.iterdir()) == [f"{n}.{e}" for n in ("regression", "student", "teacher")
                                                          for e in ("json", "safetensors")]
    assert {str(t.dtype) for t in load_file(str(exported / "student.safetensors")).values()} == {"torch.float16"}
    assert json.loads((exported / "student.json").read_text())["sampler"] == meta["sampler"]
    # and its upsampler: the same worlds at twice the size, trained on the student's frames, shipped beside it and
    # scored at display size
    upsampler = subprocess.run(["make", "-s", "train-upsampler", "PROFILE=tiny", f"V2_RUN={tmp_path / 'run'}",
                                f"V2_DATA={tmp_path / 'data'}", f"V2_WORLDS={tmp_path / 'worlds'}",
                                f"UP_DATA={tmp_path / 'data_display'}"],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert upsampler.returncode == 0, upsampler.stdout[-2000:] + upsampler.stderr[-2000:]
    display = json.loads((tmp_path / "run_upsampler" / "eval.json").read_text())["display"]
    assert display["display_size"] == [128, 128] and display["scale"] == 2
    assert set(display["rows"]) == {"bilinear", "bilateral", "learned_per_frame", "learned"}
    up_meta = json.loads((exported / "upsampler.json").read_text())
    assert up_meta["config"]["scale"] == 2 and up_meta["config"]["temporal_keep"] > 0
