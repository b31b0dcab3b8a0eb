"""`restyler generate` and renderer.generate.VideoGenerator: the plumbing of the three modes on a tiny random model
(frame counts, determinism, prompt switches, one clear error for bad input). What the shipped model generates is
checked in tests/test_generate_shipped.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bridge.video import Mp4Writer, read_video
from restyler import main as cli


def write_clip(path, frames: np.ndarray, fps: float = 24) -> None:
    with Mp4Writer(path, fps, (frames.shape[2], frames.shape[1])) as out:
        for frame in frames:
            out.write(frame)


@pytest.fixture(scope="module")
def generator(random_model):
    from renderer.generate import VideoGenerator

    return VideoGenerator.from_pretrained(random_model, "cpu", steps=2)


@pytest.mark.parametrize("mode", ["text", "image", "extend"])
def test_each_mode_writes_n_frames_from_the_cli(mode, random_model, tmp_path, capsys):
    """An odd N (a partial last chunk) comes out exactly, at the model's size, from a start of another size."""
    rng = np.random.default_rng(0)
    start = []
    if mode == "image":
        from PIL import Image

        Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)).save(tmp_path / "start.png")
        start = ["--image", str(tmp_path / "start.png")]
    if mode == "extend":
        write_clip(tmp_path / "start.mp4", rng.integers(0, 256, (9, 48, 80, 3), dtype=np.uint8))
        start = ["--extend", str(tmp_path / "start.mp4")]
    out = tmp_path / "out.mp4"
    argv = ["generate", "--prompt", "snowy winter village", "--frames", "7", "--out", str(out), "--steps", "2",
            "--model", str(random_model), "--device", "cpu", *start]
    assert cli.main(argv) == 0
    assert f"wrote 7 frames to {out}" in capsys.readouterr().out
    frames = read_video(out)
    assert frames.shape == (7, 64, 64, 3)
    assert frames.std() > 1  # not a blank clip


def test_the_seed_decides_the_video(generator):
    a = generator.generate("sunny summer day", 4, seed=3)
    assert np.array_equal(a, generator.generate("sunny summer day", 4, seed=3))
    assert not np.array_equal(a, generator.generate("sunny summer day", 4, seed=4))


def test_the_start_and_the_prompt_both_matter(generator):
    image = np.zeros((64, 64, 3), np.uint8)
    plain = generator.generate("sunny summer day", 4)
    assert not np.array_equal(plain, generator.generate("sunny summer day", 4, image=image))
    assert not np.array_equal(plain, generator.generate("snowy winter village", 4))


def test_a_switch_changes_only_the_chunks_from_its_frame(generator):
    """Frames before the switch are exactly the unswitched video's; from the switch's chunk on they differ."""
    plain = generator.generate("sunny summer day", 6)
    switched = generator.generate("sunny summer day", 6, switches={4: "snowy winter village"})
    assert np.array_equal(plain[:4], switched[:4])
    assert not np.array_equal(plain[4:], switched[4:])


def test_an_extension_reads_only_the_frames_the_cache_holds(generator):
    """A long video and its last context_frames frames give the same continuation."""
    rng = np.random.default_rng(1)
    video = rng.integers(0, 256, (20, 64, 64, 3), dtype=np.uint8)
    tail = video[-generator.context_frames:]
    assert np.array_equal(generator.generate("neon night city", 4, extend=video),
                          generator.generate("neon night city", 4, extend=tail))


def test_generation_streams_past_the_cache_window(random_model):
    """More chunks than the cache holds roll through its window: the API's clip is exactly the models-level rollout
    (models.network.generation.generate) in pixels, and the rollout is causal, so a longer clip begins with the
    shorter one."""
    from models.network.generation import generate
    from models.network.prompt import PromptEncoder
    from renderer.engine import model_to_rgb
    from renderer.generate import VideoGenerator

    generator = VideoGenerator.from_pretrained(random_model, "cpu", steps=2)
    student, sampler = generator.bundle.student, generator.sampler
    chunks_held = sampler.window_chunks + sampler.sink_chunks
    frames = 2 * (chunks_held + 2) * student.cfg.chunk_frames
    style = PromptEncoder.shared().encode(["snowy winter village"])
    out = generate(student, sampler, lambda _: style, frames, None, torch.Generator().manual_seed(0))
    assert out.shape == (1, frames, 3, 64, 64) and torch.isfinite(out).all()
    video = generator.generate("snowy winter village", frames, seed=0)
    assert np.array_equal(video, model_to_rgb(out, None))
    short = frames // 2
    assert np.array_equal(generator.generate("snowy winter village", short, seed=0), video[:short])


@pytest.mark.parametrize("argv, expected", [
    (["--switch", "12:neon night"], "outside the 8 frames"),
    (["--switch", "neon night"], "FRAME:PROMPT"),
    (["--image", "missing.png"], "missing.png was not found"),
    (["--image", "notes.png"], "not a readable image"),
    (["--extend", "notes.png"], "cannot extend"),
])
def test_bad_input_one_clear_error_and_no_file(argv, expected, random_model, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.png").write_text("not an image")
    assert cli.main(["generate", "--prompt", "snowy winter", "--frames", "8", "--out", "g.mp4", "--model",
                     str(random_model), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "g.mp4").exists()


def test_a_model_without_generation_training_says_how_to_get_one(tmp_path, capsys):
    from tests.conftest import write_random_model

    model = write_random_model(tmp_path / "model", generation=False)
    assert cli.main(["generate", "--prompt", "snowy winter", "--frames", "4", "--out", str(tmp_path / "g.mp4"),
                     "--model", str(model)]) == 2
    err = capsys.readouterr().err.strip()
    assert "restyler train gen --init RUN" in err and not (tmp_path / "g.mp4").exists()


def test_api_rejects_bad_arrays_and_both_starts(generator):
    from renderer.generate import GenerateError

    with pytest.raises(GenerateError, match="RGB uint8 array"):
        generator.generate("snowy winter", 4, image=np.zeros((64, 64), np.uint8))
    with pytest.raises(GenerateError, match="not both"):
        generator.generate("snowy winter", 4, image=np.zeros((64, 64, 3), np.uint8),
                           extend=np.zeros((4, 64, 64, 3), np.uint8))
    with pytest.raises(GenerateError, match="positive whole number"):
        generator.generate("snowy winter", 0)


def test_image_to_video_opens_with_the_image(generator):
    """Frame 0 is the image as the model reads it (here at the model's own size: exactly the image); N frames in
    all, so N − 1 are generated."""
    image = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    video = generator.generate("snowy winter village", 5, image=image)
    assert video.shape == (5, 64, 64, 3)
    assert np.abs(video[0].astype(int) - image).max() <= 1
    assert generator.generate("snowy winter village", 1, image=image).shape == (1, 64, 64, 3)


def test_a_switch_inside_a_chunk_applies_from_that_chunk(generator):
    """A chunk takes the prompt in force at its last frame: a switch at frame 5 (chunk 4-5) is the switch at 4."""
    at_4 = generator.generate("sunny summer day", 8, switches={4: "snowy winter village"})
    at_5 = generator.generate("sunny summer day", 8, switches={5: "snowy winter village"})
    assert np.array_equal(at_4, at_5)
