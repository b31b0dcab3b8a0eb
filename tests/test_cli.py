"""The `restyler` command line (restyler/): the commands docs/design.md lists, their error messages and exit codes, and
how play and record-data hand their arguments to the game."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from restyler import main as cli
from restyler import play
from renderer import DEFAULT_MODEL

COMMANDS = ["play", "capture", "restyle", "record-data", "train", "eval", "bench", "generate"]

def run_main(argv: list[str]) -> int:
    """restyler.main's exit code, whether it returns it or argparse raises SystemExit."""
    try:
        return cli.main(argv)
    except SystemExit as exc:
        return exc.code


def test_module_entry_point_help():
    """Guards against `python -m restyler` breaking (missing __main__, an import error at CLI import time, or a heavy
    import that makes --help slow)."""
    result = subprocess.run([sys.executable, "-m", "restyler", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert command in result.stdout
    probe = "import sys, restyler.main; print(sorted({'torch', 'moderngl', 'pygame'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "[]"


@pytest.mark.parametrize("command", COMMANDS)
def test_subcommand_help(command: str, capsys):
    """Guards against a subcommand missing from the documented interface or an option without practical help."""
    assert run_main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: restyler {command}")
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    undocumented = [a.dest for a in sub._actions if a.dest != "help" and not a.help]
    assert undocumented == []


@pytest.mark.parametrize(
    "argv, option, expected",
    [
        (["record-data", "--out", "d", "--seeds", "5:3", "--frames", "4"], "--seeds", "A:B"),
        (["record-data", "--out", "d", "--seeds", "abc", "--frames", "4"], "--seeds", "A:B"),
        (["record-data", "--out", "d", "--seeds", "0:3", "--frames", "0"], "--frames", "positive integer"),
        (["record-data", "--out", "d", "--seeds", "0:3", "--frames", "4", "--size", "100x100"], "--size",
         "multiples of 8"),
        (["play", "--size", "64"], "--size", "WxH"),
        (["capture", "--region", "0,0,-5,10"], "--region", "X,Y,W,H"),
        (["restyle", "in.mp4", "out.avi"], "OUT.mp4", ".mp4"),
        (["eval", "--model", "m", "--seeds", "1000:1001", "--json", "e.json", "--teacher-guidance", "0"],
         "--teacher-guidance", "positive"),
    ],
)
def test_bad_arguments_one_clear_error(argv, option, expected, capsys):
    """Guards against bad arguments producing a traceback or a vague message instead of one line that names the
    option and what was expected, with exit code 2."""
    assert run_main(argv) == 2
    err_lines = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err_lines) == 1 and option in err_lines[0] and expected in err_lines[0]


@pytest.mark.parametrize("argv, expected", [
    (["train", "ode", "--data", "d", "--out", "r", "--steps", "10"], "restyler train teacher --out r"),
    (["train", "dmd", "--data", "d", "--out", "r", "--steps", "10"], "restyler train teacher --out r"),
    (["eval", "--model", "m", "--seeds", "1000:1004", "--frames", "8", "--json", "e.json"], "restyler train teacher|ode|dmd --out m"),
    (["train", "gen", "--data", "d", "--out", "r"], "pass --init RUN"),
    (["train", "ode", "--data", "d", "--out", "r", "--guidance", "1"], "the teacher's settings"),
    (["train", "ode", "--data", "d", "--out", "r", "--clip-frames", "4"], "take the teacher's"),
])
def test_distillation_and_eval_without_a_model_say_what_to_train(argv, expected, capsys, tmp_path, monkeypatch):
    """A missing teacher or student: one line that says which stage writes it, exit 2, nothing written."""
    monkeypatch.chdir(tmp_path)
    assert run_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "e.json").exists()


@pytest.mark.parametrize("argv", [
    ["capture", "--region", "0,0,64,64", "--headless", "--record", "x.mp4", "--model", "nowhere"],
    ["restyle", "in.mp4", "out.mp4", "--model", "nowhere"],
    ["eval-video", "in.mp4", "--json", "e.json", "--model", "nowhere"],
    ["bench", "--model", "nowhere", "--json", "b.json"],
    ["play", "--headless", "--model", "nowhere"],
    ["generate", "--prompt", "snowy winter", "--frames", "4", "--out", "g.mp4", "--model", "nowhere"],
])
def test_runtime_commands_without_a_model_say_how_to_get_one(argv, capsys, tmp_path, monkeypatch):
    """A missing model: one line naming the directory and how to get a model (make train, the shipped one)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISPLAY", ":0")   # capture would otherwise stop at "no display" first
    assert run_main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no model at nowhere" in err and "make train" in err, err
    assert not any(tmp_path.iterdir())


@pytest.fixture
def fake_run_play(monkeypatch):
    """Stands in for demo_game.game.run_play and records what the CLI passed."""
    calls = []

    def run_play(style, headless, seconds, out, seed, size, model, worker, steps, server=None, upsample=False,
                 precision="fp32"):
        calls.append(dict(style=style, headless=headless, seconds=seconds, out=out, seed=seed, size=size,
                          model=model, **({} if server is None else {"server": server}),
                          **({"upsample": True} if upsample else {})))
        return 0

    monkeypatch.setitem(sys.modules, "demo_game.game", types.SimpleNamespace(run_play=run_play))
    return calls


def test_play_without_display_runs_headless_with_the_shipped_model(fake_run_play, monkeypatch, capsys):
    """Guards against `restyler play` (and `make play`) failing on a machine with no display instead of falling
    back to a short headless run, and against AI rendering being off when a model ships."""
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert run_main(["play"]) == 0
    assert fake_run_play == [dict(style=None, headless=True, seconds=play.HEADLESS_SECONDS, out=play.HEADLESS_OUT,
                                  seed=0, size=(256, 256), model=DEFAULT_MODEL)]
    assert "headless" in capsys.readouterr().err

    monkeypatch.setenv("DISPLAY", ":0")
    assert run_main(["play", "--style", "neon night", "--seed", "7", "--size", "256x192", "--no-ai"]) == 0
    assert fake_run_play[-1] == dict(style="neon night", headless=False, seconds=0.0, out=play.HEADLESS_OUT, seed=7,
                                     size=(256, 192), model=None)
    assert run_main(["play", "--style", "an underwater castle"]) == 0   # with a model any prompt is a style
    assert fake_run_play[-1]["style"] == "an underwater castle"
    # the upsampler to display size: off on a CPU unless asked for (it halves the frame rate there), on with a GPU
    assert "upsample" not in fake_run_play[-1]
    assert run_main(["play", "--upsample", "on"]) == 0
    assert fake_run_play[-1]["upsample"] is True
    monkeypatch.setattr(play, "cuda_available", lambda: True)
    assert run_main(["play"]) == 0
    assert fake_run_play[-1]["upsample"] is True
    assert run_main(["play", "--upsample", "off"]) == 0
    assert "upsample" not in fake_run_play[-1]


def test_play_unknown_style_one_line(fake_run_play, capsys):
    """Guards against an unknown --style (without a model, only the game's reference styles exist) ending in a
    KeyError traceback instead of one line that lists the known styles."""
    assert run_main(["play", "--headless", "--no-ai", "--style", "underwater castle"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown style 'underwater castle'" in err[0] and "sunny summer" in err[0]
    assert fake_run_play == []


def test_play_serve_starts_the_web_server_and_closes_it_after(fake_run_play, monkeypatch, capsys):
    """Guards against `play --serve` not handing the game a running server (or leaving it running after the game),
    and against --serve without a model or on a bad address failing with a traceback instead of one line."""
    import urllib.request

    monkeypatch.setenv("DISPLAY", ":0")
    assert run_main(["play", "--serve", "0"]) == 0
    server = fake_run_play[-1]["server"]
    assert server.host == "127.0.0.1" and server.port > 0 and server.token is None
    assert "/view" in capsys.readouterr().err
    with pytest.raises(OSError):   # closed once the game ended
        urllib.request.urlopen(server.url + "/api/stats", timeout=2)

    assert run_main(["play", "--no-ai", "--serve", "0"]) == 2
    assert "needs a model" in capsys.readouterr().err
    assert run_main(["play", "--serve", "localhost:port"]) == 2
    assert "expected [HOST:]PORT" in capsys.readouterr().err


def test_record_data_passes_arguments(monkeypatch, capsys, tmp_path: Path):
    """Guards against record-data parsing seeds/size differently from what the recorder expects, and against its
    refusals (e.g. eval seeds) escaping as a traceback instead of one line with exit code 2."""
    from demo_game import record

    calls = []
    monkeypatch.setattr(record, "record_dataset", lambda *args, **kwargs: calls.append((args, kwargs)))
    argv = ["record-data", "--out", str(tmp_path), "--seeds", "3:7", "--frames", "12", "--size", "64x32"]
    assert run_main(argv) == 0
    assert calls == [((tmp_path, range(3, 7), 12, (64, 32)), {"force_eval_seeds": False, "pace": 1.0})]

    def refuse(*args, **kwargs):
        raise record.RecordError("seeds 1000..1001 are held-out evaluation worlds")

    monkeypatch.setattr(record, "record_dataset", refuse)
    assert run_main(argv[:4] + ["1000:1002", "--frames", "2"]) == 2
    expected = "restyler record-data: error: seeds 1000..1001 are held-out evaluation worlds"
    assert capsys.readouterr().err.strip() == expected
