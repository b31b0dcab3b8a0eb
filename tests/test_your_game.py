"""docs/your-game.md runs as written: its recipe block, with tiny sizes in place of its first line, records Tile Quest
through the recording API, fine-tunes the shipped student on it, scores it on held-out levels, exports it, plays it
headless through the runtime and overlay, and benchmarks it beside the game."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = "SEEDS=0:2 FRAMES=8 STEPS=2 CALM_STEPS=1 EVAL_FRAMES=8 SECONDS=3 BENCH_SECONDS=2"


def recipe_block() -> list[str]:
    text = (ROOT / "docs" / "your-game.md").read_text()
    block = re.search(r"```bash\n(SEEDS=.*?)```", text, re.S)
    assert block, "docs/your-game.md lost its recipe block"
    return block.group(1).splitlines()


@pytest.mark.slow
@pytest.mark.shipped
def test_tutorial_steps_run_verbatim(tmp_path: Path):
    lines = recipe_block()
    assert [part.split("=")[0] for part in lines[0].split()] == [part.split("=")[0] for part in TINY.split()]
    script = "\n".join(["set -euo pipefail", TINY, *lines[1:]])
    (tmp_path / "models" / "weights").mkdir(parents=True)
    (tmp_path / "models" / "weights" / "default").symlink_to(ROOT / "models" / "weights" / "default")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "SDL_VIDEODRIVER": "offscreen", "SDL_AUDIODRIVER": "dummy"}
    env.pop("DISPLAY", None)
    run = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    manifest = json.loads((tmp_path / "data" / "tiles128" / "manifest.json").read_text())
    assert manifest["styles"] == ["sunny summer", "autumn dusk"] and len(manifest["clips"]) == 2
    scores = json.loads((tmp_path / "runs" / "tiles_student_calm" / "eval.json").read_text())
    assert scores["rows"]["student"]["psnr"] > 0
    student = json.loads((tmp_path / "models" / "weights" / "tiles" / "student.json").read_text())
    assert student["styles"] == ["sunny summer", "autumn dusk"] and "autumn dusk" in student["prompts"]
    assert (tmp_path / "out" / "tile_play" / "play.mp4").stat().st_size > 0
    bench = json.loads((tmp_path / "runs" / "tiles_student_calm" / "bench.json").read_text())
    assert bench["throughput_fps"] > 0
