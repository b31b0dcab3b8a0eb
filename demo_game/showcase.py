"""The README's pictures of a model, made from the game: a side-by-side of every style on a held-out world
(low-detail | AI at the CPU runtime's steps | AI at every step, when that is more | the reference renderer), a short
clip of the game window with AI rendering on, HUD included, and a sheet and clip of the generation modes (made by
the generation model, `renderer.GENERATION_MODEL` unless --generation-model says otherwise).

    python -m demo_game.showcase --model models/weights/default --out docs/media

Uses the game and the plugin exactly as `restyler play` does; the clip is the headless play run, re-encoded small.
"""
from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bridge.outputs import write_atomic

from .config import CALM_PACE, GameConfig, at_pace
from .headless import save_sheet
from .styles import STYLES

SEED = 1000          # held out: no model saw this world
WALK_TICKS = 60      # into the world, away from the spawn view
TILE = 256           # each 128x128 frame shown at 2x
CLIP_SECONDS = 6.0
CLIP_SIZE = (384, 384)


def _tile(frame: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(frame).resize((TILE, TILE), Image.BILINEAR))


def side_by_side(model: Path, path: Path) -> None:
    import moderngl

    from renderer.engine import StreamEngine, load_bundle
    from renderer.runtime import CPU_STEPS

    from .session import GameSession

    bundle = load_bundle(model)
    w, h = bundle.frame_size
    ctx = moderngl.create_standalone_context(backend="egl")
    with GameSession(GameConfig(seed=SEED, width=w, height=h), ctx=ctx) as game:
        for _ in range(WALK_TICKS):
            game.advance()
        # the student needs a chunk; it streams the 8 frames before the shown one so its cache is warm. Each style
        # gets its own sun G-buffer, as the game hands over the one for the style it asks for.
        packets = {name: [] for name in STYLES}
        for _ in range(8):
            packet = game.step()
            for name in STYLES:
                packets[name].append(replace(packet, sun=game.render_sun(name)))
        references = {name: game.render_style(name) for name in STYLES}
    ctx.release()
    levels = bundle.sampler.timesteps
    # the CPU runtime's step count, then every step; one column when they are the same (a one-step student)
    step_sets = list(dict.fromkeys((tuple(levels[:CPU_STEPS]), tuple(levels))))
    rows = []
    for name, style in STYLES.items():
        outputs = []
        for steps in step_sets:
            engine = StreamEngine(replace(bundle, sampler=replace(bundle.sampler, timesteps=steps)))
            engine.set_style(style.prompts[0])
            clip = packets[name]
            out = [engine.step(clip[i:i + 2]) for i in range(0, len(clip), 2)]
            outputs.append(out[-1][-1])
        rows.append(np.concatenate([_tile(packets[name][-1].rgb), *map(_tile, outputs), _tile(references[name])], 1))
    ai = [f"AI, {len(steps)} step{'s' * (len(steps) > 1)}{' (CPU)' * (len(steps) == len(levels[:CPU_STEPS]))}"
          for steps in step_sets]
    labels = ["low-detail (input)", *ai, "reference renderer"]
    save_sheet(np.concatenate(rows, 0), labels, TILE, path.with_suffix(".png"))
    img = Image.open(path.with_suffix(".png")).convert("RGB")
    draw = ImageDraw.Draw(img)
    for i, name in enumerate(STYLES):
        draw.text((4, 16 + i * TILE + TILE - 14), name, fill=(255, 255, 255))
    write_atomic(path, lambda tmp: img.save(tmp, format="JPEG", quality=88))
    path.with_suffix(".png").unlink()


def play_clip(model: Path, out_dir: Path) -> None:
    """The headless play run (bot driving, AI on, HUD), cut to a small mp4 and a JPEG strip for the README."""
    import torch

    from bridge.video import Mp4Writer, read_video
    from renderer import StreamingRestyler

    from .game import AI_GAME_FPS, run_ai_headless

    # the upsampler as `make play` (`restyler play --upsample auto`) uses it: on a GPU only, so the clip shows the
    # frame rate and picture a CPU player gets
    restyler = StreamingRestyler.from_pretrained(model, upsample=torch.cuda.is_available())
    with tempfile.TemporaryDirectory() as tmp:
        try:
            run_ai_headless(GameConfig(seed=SEED, fps=AI_GAME_FPS, width=restyler.resolution[0],
                                       height=restyler.resolution[1]), None, restyler, CLIP_SECONDS, Path(tmp),
                            CLIP_SIZE)
        finally:
            restyler.close()
        frames = read_video(Path(tmp) / "play.mp4")
        sheet = Image.open(Path(tmp) / "contact_sheet.png").convert("RGB")
    with Mp4Writer(out_dir / "play.mp4", AI_GAME_FPS / 2, CLIP_SIZE, crf=28) as video:
        for frame in frames:
            video.write(frame)
    write_atomic(out_dir / "play_strip.jpg", lambda tmp: sheet.save(tmp, format="JPEG", quality=85))


def generation_sheet(model: Path, out_dir: Path, frames: int = 48) -> None:
    """The student's generation modes (renderer.generate), one row each, six frames across: text-to-video, a
    prompt switch halfway, image-to-video from a held-out reference frame, and an extension of a held-out clip
    (its last given frame first). Also their four clips side by side as one small mp4."""
    import moderngl

    from bridge.video import Mp4Writer
    from renderer.generate import VideoGenerator

    from .session import GameSession

    generator = VideoGenerator.from_pretrained(model, "cpu")
    w, h = generator.frame_size
    ctx = moderngl.create_standalone_context(backend="egl")
    try:  # the calm camera the generation stage trains on
        with GameSession(at_pace(GameConfig(seed=SEED, width=w, height=h), CALM_PACE), ctx=ctx) as game:
            for _ in range(WALK_TICKS):
                game.advance()
            clip = []
            for _ in range(generator.context_frames):
                game.step()
                clip.append(game.render_style("autumn sunset"))
    finally:
        ctx.release()
    half = frames // 2
    runs = {
        "text: sunny summer day": generator.generate(STYLES["sunny summer"].prompts[0], frames),
        "text: snowy winter, then neon night": generator.generate(
            STYLES["snowy winter"].prompts[0], frames, switches={half: STYLES["neon night"].prompts[0]}),
        "image (frame 0) -> video": generator.generate(STYLES["autumn sunset"].prompts[0], frames, image=clip[0]),
        "extension (given | new)": np.concatenate([np.stack(clip[-1:]), generator.generate(
            STYLES["autumn sunset"].prompts[0], frames - 1, extend=np.stack(clip))]),
    }
    picks = np.linspace(0, frames - 1, 6).round().astype(int)
    rows = [np.concatenate([_tile(video[i]) for i in picks], 1) for video in runs.values()]
    save_sheet(np.concatenate(rows, 0), [f"frame {i}" for i in picks], TILE, out_dir / "generate.png")
    img = Image.open(out_dir / "generate.png").convert("RGB")
    draw = ImageDraw.Draw(img)
    for i, name in enumerate(runs):
        draw.text((4, 16 + i * TILE + TILE - 14), name, fill=(255, 255, 255))
    write_atomic(out_dir / "generate.jpg", lambda tmp: img.save(tmp, format="JPEG", quality=88))
    (out_dir / "generate.png").unlink()
    videos = list(runs.values())
    grid = [np.concatenate([np.concatenate(videos[:2], 2), np.concatenate(videos[2:], 2)], 1)[i]
            for i in range(frames)]
    with Mp4Writer(out_dir / "generate.mp4", 15, (2 * w, 2 * h), crf=26) as video:
        for frame in grid:
            video.write(np.ascontiguousarray(frame))


def main() -> None:
    parser = argparse.ArgumentParser(description="Make the README's side-by-side, game clip and generation "
                                                 "sheet for a model.")
    parser.add_argument("--model", type=Path, default=Path("models/weights/default"))
    parser.add_argument("--generation-model", type=Path, default=None,
                        help="the model of the generation sheet (default: renderer.GENERATION_MODEL)")
    parser.add_argument("--out", type=Path, default=Path("docs/media"))
    parser.add_argument("--only", choices=["restyle", "play", "generate"], default=None,
                        help="make one of the three (default: all)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.only in (None, "restyle"):
        side_by_side(args.model, args.out / "side_by_side.jpg")
    if args.only in (None, "play"):
        play_clip(args.model, args.out)
    if args.only in (None, "generate"):
        from renderer import GENERATION_MODEL

        generation_sheet(args.generation_model or GENERATION_MODEL, args.out)
    print(f"wrote the README media to {args.out}")


if __name__ == "__main__":
    main()
