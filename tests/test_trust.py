"""What a user gives is never lost, and no input ends in a traceback: the same file in and out, an existing output
when a run is refused, fails or is interrupted, a blank style, a model directory whose JSON or weights are broken.
Each ends in one line on stderr and exit status 2 (130 for Ctrl-C), and nothing of the user's is lost or left
half-written. The streaming server's malformed requests are in test_serve.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest

from bridge.video import Mp4Writer, read_video
from restyler import main as cli


def run_main(argv: list[str]) -> int:
    try:
        return cli.main([str(a) for a in argv])
    except SystemExit as exc:   # argparse's own exit for a bad argument
        return exc.code


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def write_video(path: Path, frames: int = 6, size: tuple[int, int] = (48, 32), seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    with Mp4Writer(path, 24, size) as out:
        for _ in range(frames):
            out.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
    return path.read_bytes()


# -- outputs that would destroy an input ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["same", "dot", "symlink", "hardlink"])
def test_restyle_refuses_an_output_that_is_its_input(how, random_model, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    original = write_video(tmp_path / "x.mp4")
    out = {"same": "x.mp4", "dot": "./sub/../x.mp4", "symlink": "link.mp4", "hardlink": "hard.mp4"}[how]
    (tmp_path / "sub").mkdir()
    if how == "symlink":
        (tmp_path / "link.mp4").symlink_to(tmp_path / "x.mp4")
    if how == "hardlink":
        os.link(tmp_path / "x.mp4", tmp_path / "hard.mp4")
    assert run_main(["restyle", "x.mp4", out, "--model", random_model]) == 2
    assert "is the input" in one_error_line(capsys)
    assert (tmp_path / "x.mp4").read_bytes() == original


@pytest.mark.parametrize("argv", [
    ["capture", "--region", "0,0,64,64", "--headless", "--record", "a.mp4", "--record-source", "./a.mp4"],
    ["eval-video", "x.mp4", "--json", "x.mp4"],
    ["generate", "--prompt", "snowy winter", "--frames", "4", "--extend", "x.mp4", "--out", "x.mp4"],
])
def test_every_command_refuses_an_output_that_is_an_input_or_another_output(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    original = write_video(tmp_path / "x.mp4")
    assert run_main(argv) == 2
    assert "give" in one_error_line(capsys)
    assert (tmp_path / "x.mp4").read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mp4"]


# -- an existing output survives a refused, failed or killed run -------------------------------------------------


@pytest.mark.parametrize("case", ["no model", "not a video"])
def test_a_refused_restyle_leaves_an_existing_output_as_it_was(case, random_model, tmp_path, capsys):
    earlier = write_video(tmp_path / "out.mp4", seed=1)
    source = tmp_path / "in.mp4"
    if case == "not a video":
        source.write_text("not a video")
    else:
        write_video(source)
    model = tmp_path / "nowhere" if case == "no model" else random_model
    assert run_main(["restyle", source, tmp_path / "out.mp4", "--model", model]) == 2
    one_error_line(capsys)
    assert (tmp_path / "out.mp4").read_bytes() == earlier
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]   # no temporary file left behind


@pytest.mark.slow
def test_an_interrupted_restyle_leaves_a_playable_video_of_what_was_done(random_model, tmp_path, capsys,
                                                                         monkeypatch):
    """Ctrl-C after three frames: exit 130, and the output holds those three frames, moved into place."""
    import renderer.capture as capture

    write_video(tmp_path / "in.mp4", frames=8)
    write_video(tmp_path / "out.mp4", frames=2, seed=1)   # an earlier output, replaced by the new frames
    real, calls = capture._upscale, []

    def upscale(frame, size):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(frame, size)

    monkeypatch.setattr(capture, "_upscale", upscale)
    assert run_main(["restyle", tmp_path / "in.mp4", tmp_path / "out.mp4", "--model", random_model]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert read_video(tmp_path / "out.mp4").shape == (3, 32, 48, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.mp4", "out.mp4"]


def test_a_writer_closed_without_frames_or_failing_leaves_the_existing_file(tmp_path):
    earlier = write_video(tmp_path / "v.mp4", seed=1)
    with Mp4Writer(tmp_path / "v.mp4", 24, (48, 32)):
        pass
    with pytest.raises(RuntimeError):
        with Mp4Writer(tmp_path / "v.mp4", 24, (48, 32)):
            raise RuntimeError("the input broke before the first frame")
    assert (tmp_path / "v.mp4").read_bytes() == earlier
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


@pytest.mark.slow
def test_a_killed_recording_never_touches_the_file_at_its_name(tmp_path):
    """SIGKILL mid-recording (no chance to finalise): the earlier file at the output's name stays whole, and what
    is left of the new one is a hidden file beside it."""
    from conftest import start_recording_process

    target = tmp_path / "rec.mp4"
    earlier = write_video(target, seed=1)
    proc = start_recording_process(target)
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=20)
    finally:
        proc.kill()
    assert target.read_bytes() == earlier
    assert [p.name.startswith(".rec.mp4.") for p in tmp_path.iterdir() if p != target] == [True]


# -- a blank style ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["restyle", "x.mp4", "y.mp4", "--style", "   "],
    ["play", "--headless", "--style", "   "],
    ["capture", "--region", "0,0,64,64", "--headless", "--record", "c.mp4", "--style", " \t "],
    ["eval-video", "x.mp4", "--json", "e.json", "--style", ""],
    ["generate", "--prompt", "   ", "--frames", "4", "--out", "g.mp4"],
])
def test_a_blank_style_is_one_line_and_writes_nothing(argv, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_video(tmp_path / "x.mp4")
    assert run_main(argv) == 2
    assert "printable words" in one_error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mp4"]   # play made no out/ folder


# -- broken model directories -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key, value, expected", [
    ("config", None, "the UNetConfig is null; expected a JSON object"),
    ("config.chunk_frames", 0, "chunk_frames is 0; expected a number >= 1"),
    ("config.hidden", "wide", 'hidden is "wide"; expected a whole number'),
    ("config.widths", "abc", 'widths is "abc"; expected a list of whole numbers'),
    ("config.frame_size", "128x128", 'frame_size is "128x128"; expected a list of 2 whole numbers'),
    ("config.mlp_ratio", -1, "mlp_ratio is -1; expected a number > 0"),
    ("config.colour", 3, "UNetConfig has no field colour"),
    ("sampler", None, "the StudentSampler is null"),
    ("sampler.noise", "loud", 'noise is "loud"; expected one of "fresh", "fixed", "warped"'),
    ("sampler.timesteps", [500, 1000], "expected decreasing levels in 1..1000"),
])
def test_a_broken_model_config_names_the_field_and_what_was_expected(key, value, expected, random_v2_model,
                                                                      tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(random_v2_model, model)
    meta = json.loads((model / "student.json").read_text())
    part, _, field = key.partition(".")
    if field:
        meta[part][field] = value
    else:
        meta[part] = value
    (model / "student.json").write_text(json.dumps(meta))
    write_video(tmp_path / "x.mp4")
    assert run_main(["restyle", tmp_path / "x.mp4", tmp_path / "y.mp4", "--model", model]) == 2
    err = one_error_line(capsys)
    assert expected in err and f"{model}/student.json" in err, err
    assert not (tmp_path / "y.mp4").exists()


@pytest.mark.parametrize("key, value, expected", [
    ("config", None, "the UNetConfig is null"),
    ("frame_size", "128x128", 'frame_size is "128x128"; expected a list of 2 whole numbers'),
])
def test_eval_of_a_broken_model_config_is_one_line_before_any_world_is_rendered(key, value, expected,
                                                                                 random_v2_model, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(random_v2_model, model)
    meta = json.loads((model / "student.json").read_text())
    if key == "config":
        meta["config"] = value
    else:
        meta["config"][key] = value
    (model / "student.json").write_text(json.dumps(meta))
    argv = ["eval", "--model", model, "--seeds", "1000:1001", "--json", tmp_path / "e.json",
            "--worlds", tmp_path / "worlds"]
    assert run_main(argv) == 2
    assert expected in one_error_line(capsys)
    assert not (tmp_path / "e.json").exists() and not (tmp_path / "worlds").exists()


@pytest.mark.parametrize("shipped", [False, True])
def test_damaged_weights_say_so_and_how_to_get_the_file_back(shipped, random_model, tmp_path, capsys, monkeypatch):
    """A truncated weights file is damaged, not missing: restore it (a shipped model with git), not retrain it."""
    import renderer.engine as engine

    model = tmp_path / "models" / "weights" / "default"
    shutil.copytree(random_model, model)
    weights = (model / "student.safetensors").read_bytes()
    (model / "student.safetensors").write_bytes(weights[: len(weights) // 3])
    if shipped:
        monkeypatch.setattr(engine, "DEFAULT_MODEL", model)
    write_video(tmp_path / "x.mp4")
    assert run_main(["restyle", tmp_path / "x.mp4", tmp_path / "y.mp4", "--model", model]) == 2
    err = one_error_line(capsys)
    assert "student.safetensors is damaged" in err and "restyler train" not in err, err
    assert ("git checkout -- models/weights/default" in err) == shipped, err


# -- the config checker itself -------------------------------------------------------------------------------------


def test_configs_from_json_keep_defaults_for_fields_written_before_they_existed():
    from models.io.config import ConfigError, config_from_json
    from models.network.streaming import StudentSampler
    from models.network.unet import UNetConfig

    assert config_from_json(StudentSampler, {"timesteps": [1000]}) == StudentSampler(timesteps=(1000,))
    cfg = config_from_json(UNetConfig, {"widths": [8, 16], "frame_size": [64, 64], "mlp_ratio": 4})
    assert cfg.widths == (8, 16) and cfg.frame_size == (64, 64) and cfg.refine == 0
    with pytest.raises(ConfigError, match="uv_material_gate is 1; expected true or false"):
        config_from_json(UNetConfig, {"uv_material_gate": 1})
    with pytest.raises(ConfigError, match="chunk_frames is true; expected a whole number"):
        config_from_json(UNetConfig, {"chunk_frames": True})
