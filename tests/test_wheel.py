"""The wheel as a user installs it: built from the repository's files, installed into a fresh virtualenv, run from
a folder outside the repository. It must carry every file the command reads besides code (shaders, the served
pages, the default streaming model), and `restyler play --headless` must write its video.

The package comes from the wheel alone. Its dependencies are borrowed from the project's virtualenv through a .pth
file (the same pinned versions; installing torch again would cost minutes of the suite), without that
virtualenv's editable install of the repository, so nothing of the repository can stand in for a file the wheel
forgot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# what a wheel must carry besides code: every file of these folders, as the repository has them
DATA_FOLDERS = ("demo_game/shaders", "renderer/web")
SHIPPED_MODEL = ("models/weights/default/student.json", "models/weights/default/student.safetensors",
                 "models/weights/default/upsampler.json", "models/weights/default/upsampler.safetensors")


def _source_files() -> list[str]:
    """The repository's files as a fresh clone has them (tracked, or new and not ignored), less what no wheel
    takes: the tests, the docs' media and the model directories other than the default."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.splitlines()
    skip = ("tests/", "docs/media/", "models/weights/generation/", "models/weights/tiles/", "models/weights/v2/")
    return [f for f in listed if not f.startswith(skip) and (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh virtualenv with the wheel built from a copy of the repository installed; its folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"   # a copy: a build/ folder left in the checkout could slip stale files into the wheel
    for name in _source_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp / "dist")], check=True, capture_output=True, timeout=300)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    wheel = next((tmp / "dist").glob("restyler-*.whl"))
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], check=True,
                   capture_output=True, timeout=300)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "restyler_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return tmp


def _run(installed: Path, *argv: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """A command of the installed package, run from a folder outside the repository."""
    elsewhere = installed / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(SDL_VIDEODRIVER="offscreen", SDL_AUDIODRIVER="dummy")
    env.pop("DISPLAY", None)
    return subprocess.run([str(installed / "venv" / "bin" / argv[0]), *argv[1:]], cwd=elsewhere, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow
@pytest.mark.shipped
def test_the_wheel_carries_every_shader_page_and_the_default_model(installed):
    wheel = next((installed / "dist").glob("restyler-*.whl"))
    carried = set(zipfile.ZipFile(wheel).namelist())
    needed = [f.relative_to(ROOT).as_posix() for folder in DATA_FOLDERS for f in (ROOT / folder).iterdir()
              if f.is_file()]
    missing = sorted(set(needed) - carried) + sorted(set(SHIPPED_MODEL) - carried)
    assert missing == [], f"the wheel lacks {missing}: add them to [tool.setuptools.package-data] in pyproject.toml"
    assert not any(name.startswith("tests/") for name in carried)


@pytest.mark.slow
@pytest.mark.shipped
def test_the_installed_wheel_plays_headless_outside_the_repository(installed):
    where = _run(installed, "python", "-c", "import restyler, models, renderer; "
                                            "print(restyler.__file__, models.__file__, renderer.__file__)")
    assert where.returncode == 0, where.stderr
    assert all(str(installed / "venv") in path for path in where.stdout.split()), where.stdout   # not the checkout

    played = _run(installed, "restyler", "play", "--headless", "--seconds", "2", "--out", "out")
    assert played.returncode == 0, played.stderr[-3000:]
    assert "Traceback" not in played.stderr
    from bridge.video import read_video

    video = read_video(installed / "elsewhere" / "out" / "play.mp4")
    assert video.shape[0] >= 10 and video.std() > 1   # frames of a game, not a blank window

    # what the wheel does not carry is one line that says where it is
    generated = _run(installed, "restyler", "generate", "--prompt", "snowy winter", "--frames", "4", "--out",
                     "g.mp4")
    assert generated.returncode == 2 and len(generated.stderr.strip().splitlines()) == 1, generated.stderr
    assert "carries only the default streaming model" in generated.stderr
