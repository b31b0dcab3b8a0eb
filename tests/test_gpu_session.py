"""scripts/gpu_session.sh, the one call a session makes on a lent CUDA GPU, dry-run on the CPU at tiny sizes: every
command it runs there runs here, so a session that is lent a GPU spends none of its 15 minutes on a broken script."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_gpu_session_runs_end_to_end_at_tiny_sizes(random_model, tmp_path, egl_ctx):
    """Bench rows, every stage's speed, the polish and finish, the fp16 student and one results.json back, with
    the prompt encoder replaced by the table `prepare` writes (the GPU machine has no encoder package): a prompt
    the call uses but the table lacks would fail here."""
    from demo_game.styles import STYLES
    from models.network.prompt import write_prompt_table
    from renderer.bench import STYLE

    table = write_prompt_table(tmp_path / "prompts.safetensors",
                               [STYLE] + [p for s in STYLES.values() for p in s.all_prompts])
    out = tmp_path / "out"
    env = {**os.environ, "TINY": "1", "OUT": str(out), "WORK": str(tmp_path / "work"), "MODEL": str(random_model),
           "PYTHON": sys.executable, "PROMPT_TABLE": str(table)}
    done = subprocess.run(["bash", "scripts/gpu_session.sh", "run"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "session.log", "student.json",
                                                     "student.safetensors"]   # at most 8 files come back
    results = json.loads((out / "results.json").read_text())
    assert results["bench"]["student_1"]["precision"] == "fp32" and results["bench"]["student_1"]["throughput_fps"] > 0
    assert results["bench"]["with_teacher"]["teacher_throughput_fps"] > 0
    for stage in ("stages/regression", "stages/teacher", "stages/ode", "stages/dmd", "polish/dmd", "finish/dmd"):
        assert results["stages"][stage]["sec_per_step"] > 0, stage
    assert {t.dtype for t in load_file(str(out / "student.safetensors")).values()} == {torch.float16}
    assert "RESTYLER_PROMPT_TABLE" not in os.environ   # the table was the script's, not this process's


def test_the_gpu_session_says_how_to_use_it():
    done = subprocess.run(["bash", "scripts/gpu_session.sh"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "prepare|run|restore" in done.stderr
