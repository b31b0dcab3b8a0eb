"""Shared pytest setup: headless SDL for every test, and one EGL context for the tests that render.

Tests run without a display, a GPU or network. SDL must be told before pygame initialises, hence at import time.
"""

import os

os.environ["SDL_VIDEODRIVER"] = "offscreen"  # never open a real window, even under a desktop session
os.environ["SDL_AUDIODRIVER"] = "dummy"

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def egl_ctx():
    """One headless moderngl context (EGL) for the whole session; creating one per test would dominate run time."""
    try:
        import moderngl

        ctx = moderngl.create_standalone_context(backend="egl")
    except Exception as exc:  # no libEGL, no Mesa driver, no device: all mean "cannot render here"
        if os.environ.get("CI"):
            # CI installs Mesa (.ci/run): a context that fails there is a broken machine, not a reason to skip
            # every rendering test and go green.
            pytest.fail(f"headless EGL context unavailable on CI ({type(exc).__name__}: {exc})")
        pytest.skip(f"headless EGL context unavailable ({type(exc).__name__}: {exc}); "
                    "install libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri (see .ci/run)")
    yield ctx
    ctx.release()


def write_synthetic_clips(root, seeds=(0, 1, 2), frames: int = 10, size=(64, 64),
                          styles=("sunny summer", "snowy winter")):
    """A dataset in the recorded format (docs/interfaces.md) made of random tensors: what model and training
    tests need without rendering the game. Each style is a fixed colour transform of the low-detail frame, so a
    model has something learnable."""
    import json
    from pathlib import Path

    import numpy as np
    from safetensors.numpy import save_file

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    width, height = size
    clips = {}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        low = rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
        tensors = {
            "low": low,
            "depth": rng.uniform(0.5, 120, (frames, height, width)).astype(np.float16),
            "normals": rng.normal(size=(frames, height, width, 3)).astype(np.float16),
            "material": rng.integers(0, 14, (frames, height, width), dtype=np.uint8),
            "motion": rng.normal(size=(frames, height, width, 2)).astype(np.float16),
            "uv": rng.uniform(0, 1, (frames, height, width, 2)).astype(np.float16),
            "ao": rng.uniform(0, 1, (frames, height, width)).astype(np.float16),
        }
        for i in range(len(styles)):
            tensors[f"style/{i}"] = (255 - low if i % 2 else low // 2 + 64).astype(np.uint8)
            tensors[f"sun/{i}"] = rng.uniform(0, 1, (frames, height, width)).astype(np.float16)
        name = f"seed_{seed:04d}"
        save_file(tensors, str(root / f"{name}.safetensors"))
        clips[name] = {"seed": seed, "file": f"{name}.safetensors", "frames": frames}
    manifest = {"format": 2, "size": [width, height], "frames": frames, "fps": 30, "styles": list(styles),
                "clips": clips}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture(scope="session")
def synthetic_clips(tmp_path_factory):
    return write_synthetic_clips(tmp_path_factory.mktemp("synthetic_clips"))


def write_random_model(root, frame_size=(64, 64), teacher_steps: int = 3, seed: int = 0, generation: bool = True):
    """A model directory (teacher + student, tiny, random weights) in the shipped layout: what runtime, capture,
    generation and benchmark tests need. Speed and plumbing do not depend on trained weights. `generation` marks
    the student as having had the generation stage (models.recipe.gen), as the shipped one has."""
    from dataclasses import asdict
    from pathlib import Path

    import torch

    from models.io import checkpoint
    from models.network.dit import VideoDiT, make_config
    from models.network.loading import student_meta
    from models.network.streaming import StudentSampler

    root = Path(root)
    torch.manual_seed(seed)
    cfg = make_config("tiny", frame_size=frame_size)
    prompts = {"sunny summer": ["sunny summer day"], "snowy winter": ["snowy winter village"]}
    teacher_meta = {"kind": "teacher", "config": asdict(cfg), "prompts": prompts, "styles": list(prompts),
                    "sampler": {"steps": teacher_steps, "shift": 3.0, "guidance": 1.5}}

    def random_dit() -> dict:
        # A fresh VideoDiT predicts a constant grey (its output layers start at zero); perturbed weights give
        # frames that depend on the input, the style and the cache, as a trained model's do.
        weights = VideoDiT(cfg).state_dict()
        return {k: v + 0.1 * torch.randn_like(v) if v.is_floating_point() else v for k, v in weights.items()}

    checkpoint.save_checkpoint(root, "teacher", random_dit(), teacher_meta, dtype=torch.float16)
    sampler = StudentSampler(refresh="last_step")
    meta = student_meta(teacher_meta, cfg, sampler)
    if generation:
        from models.recipe.gen import GenConfig

        meta["generation"] = asdict(GenConfig())
    checkpoint.save_checkpoint(root, "student", random_dit(), meta, dtype=torch.float16)
    return root


def write_random_v2_student(root, sampler=None, seed: int = 0):
    """A model directory whose student is a tiny backbone-v2 network with random weights, streaming one step with
    its warped history and its noise carried along the motion (the shipped student's sampler) unless `sampler`
    says otherwise."""
    from dataclasses import asdict
    from pathlib import Path

    import torch

    from models.io import checkpoint
    from models.network.loading import student_meta
    from models.network.streaming import StudentSampler
    from models.network.unet import UNetDiT, make_config

    root = Path(root)
    torch.manual_seed(seed)
    cfg = make_config("tiny")
    prompts = {"sunny summer": ["sunny summer day"], "snowy winter": ["snowy winter village"]}
    teacher_meta = {"kind": "teacher", "config": asdict(cfg), "prompts": prompts, "styles": list(prompts),
                    "sampler": {"steps": 3, "shift": 3.0, "guidance": 1.0}}
    sampler = sampler or StudentSampler(timesteps=(1000,), refresh="last_step", noise="warped", history=True)
    weights = UNetDiT(cfg).state_dict()
    weights = {k: v + 0.1 * torch.randn_like(v) if v.is_floating_point() else v for k, v in weights.items()}
    checkpoint.save_checkpoint(root, "student", weights, student_meta(teacher_meta, cfg, sampler),
                               dtype=torch.float16)
    return root


@pytest.fixture(scope="session")
def random_v2_model(tmp_path_factory):
    return write_random_v2_student(tmp_path_factory.mktemp("random_v2_model"))


@pytest.fixture(scope="session")
def random_model(tmp_path_factory):
    return write_random_model(tmp_path_factory.mktemp("random_model"))


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A tiny recipe on synthetic clips named like the game's styles: teacher, ode, dmd (a few steps each). Built
    once per session and shared: a test that trains further copies the run first."""
    from demo_game.styles import STYLES
    from models.recipe.dmd import DmdConfig
    from models.recipe.run import run_stage

    root = tmp_path_factory.mktemp("distill")
    data = write_synthetic_clips(root / "data", seeds=(0, 1, 2), frames=8, styles=tuple(STYLES))
    run = root / "run"
    prompts = {s.name: list(s.prompts) for s in STYLES.values()}
    run_stage("teacher", data, run, size="tiny", prompts=prompts, steps=3, batch=4, overrides={"sample_every": 1000})
    run_stage("ode", data, run, steps=3, batch=4, pair_clips=4, overrides={"sample_every": 1000})
    run_stage("dmd", data, run, steps=2, batch=2, overrides={"sample_every": 1000},
                      dmd_cfg=DmdConfig(fake_updates=2))
    return data, run


def render_held_out_world(ctx, frames: int, size: tuple[int, int]):
    """World 1000 (held out from training), a little way in from the spawn view, at `size` (W, H): `frames` game
    packets per style as {style: [FramePacket]}, each carrying that style's sun G-buffer as the game hands it over
    for the style it asks for, and every style's reference renders as {style: (frames, H, W, 3) uint8}. What the
    shipped-model tests score against."""
    from dataclasses import replace

    import numpy as np

    from demo_game import STYLES, GameConfig, GameSession

    packets, references = {name: [] for name in STYLES}, {name: [] for name in STYLES}
    with GameSession(GameConfig(seed=1000, width=size[0], height=size[1]), ctx=ctx) as game:
        for _ in range(30):   # walk in a little: the first frames face the spawn point
            game.advance()
        for _ in range(frames):
            packet = game.step()
            for name in STYLES:
                packets[name].append(replace(packet, sun=game.render_sun(name)))
                references[name].append(game.render_style(name))
    return packets, {name: np.stack(f) for name, f in references.items()}


def start_recording_process(path):
    """A separate Python process recording a grey 64×64 video to `path` with Mp4Writer, without end; returned once
    it has written 20 frames, for the tests that interrupt or kill a recording at an arbitrary point."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    script = textwrap.dedent(f"""
        import sys, numpy as np
        sys.path.insert(0, {str(repo)!r})
        from bridge.video import Mp4Writer
        frame = np.full((64, 64, 3), 120, np.uint8)
        with Mp4Writer({str(path)!r}, fps=30, size=(64, 64)) as out:
            while True:
                out.write(frame)
                if out.frames_written == 20:
                    print("recording", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc.stdout.readline().strip() != b"recording":
        proc.kill()
        raise AssertionError(proc.stderr.read().decode())
    return proc
