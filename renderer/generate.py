"""Generation with the shipped generation student: text-to-video, image-to-video and video extension
(models.network.generation).

Python API:

    from renderer.generate import VideoGenerator
    generator = VideoGenerator.from_pretrained()                          # the shipped generation model
    video = generator.generate("snowy winter village", frames=48)         # (48, H, W, 3) uint8, text-to-video
    video = generator.generate("neon night city", 48, image="shot.png")   # image-to-video
    video = generator.generate("autumn sunset", 48, extend="clip.mp4",    # extension, with a prompt switch
                               switches={24: "snowy winter village"})
    generator.write(video, "out.mp4")

`restyler generate` (restyler/generate.py) is `run_generate`: the same calls with a progress bar. Frames come out at
the model's resolution; a start image or video of another size is resized to it. A clip of N frames from an image
opens with the image, then N − 1 generated frames; an extension holds only the N new frames (its source video is
not repeated).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from renderer.engine import ModelError, StudentBundle, load_bundle, model_to_rgb, resolve_device, rgb_to_model_size

FPS = 30  # of text- and image-to-video; an extension keeps its source video's rate


class GenerateError(ValueError):
    """Bad input to generation (an unreadable image, a switch past the end, a model that cannot generate); the
    message says what was expected."""


def parse_switch(text: str) -> tuple[int, str]:
    """'FRAME:PROMPT' (the CLI's --switch) -> (frame, prompt)."""
    frame, sep, prompt = text.partition(":")
    if not sep or not frame.strip().isdigit() or not prompt.strip():
        raise GenerateError(f"--switch expects FRAME:PROMPT, e.g. 48:snowy winter village; got {text!r}")
    return int(frame), prompt.strip()


def load_image(path: Path | str) -> np.ndarray:
    """An image file as (1, H, W, 3) uint8 RGB."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))[None]
    except FileNotFoundError:
        raise GenerateError(f"image {path} was not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise GenerateError(f"image {path} is not a readable image (PNG, JPEG, ...): {exc}") from None


def load_video_tail(path: Path | str, frames: int) -> tuple[np.ndarray, float]:
    """The last `frames` frames of a video as (F, H, W, 3) uint8 RGB, and its frame rate."""
    from bridge import BridgeError, VideoFileSource

    try:
        with VideoFileSource(path) as src:
            fps = src.fps
            tail = deque((p.rgb for p in src), maxlen=frames)
    except BridgeError as exc:
        raise GenerateError(f"cannot extend {path}: {exc}") from None
    if not tail:
        raise GenerateError(f"cannot extend {path}: it holds no frames")
    return np.stack(tail), fps


def _as_frames(start: np.ndarray | str | Path, what: str) -> np.ndarray:
    """An image / video start given as an array: (H, W, 3) or (F, H, W, 3) uint8."""
    frames = np.asarray(start)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not frames.shape[0]:
        raise GenerateError(f"{what} must be an RGB uint8 array of (H, W, 3) or (F, H, W, 3), or a file path; got "
                            f"{frames.dtype} {frames.shape}")
    return frames


@dataclass(frozen=True)
class GenerationPlan:
    """A checked request: how many frames, the prompt embedding from each switch frame on, the clean start in
    model space, and whether that start is an image that opens the video (image-to-video)."""
    frames: int
    embeddings: list[tuple[int, torch.Tensor]]
    context: torch.Tensor | None
    image_first: bool = False


class VideoGenerator:
    """The student of a model directory as a video generator. One instance, one caller at a time."""

    def __init__(self, bundle: StudentBundle, device: torch.device | str = "cpu", steps: int | None = None):
        from models.network.generation import GenerationSampler

        if "generation" not in bundle.meta:
            raise GenerateError("this model was not trained to generate without incoming frames (its student has "
                                "no generation stage); use the shipped models/weights/generation, or train one "
                                "with `restyler train gen --init RUN`")
        self.bundle = bundle
        self.device = torch.device(device)
        s = bundle.sampler
        # the cache and shift are the student's own; steps and carry were measured for this model and shipped
        # with it (models.recipe.export --gen-steps/--gen-carry)
        self.sampler = GenerationSampler(shift=s.shift, window_chunks=s.window_chunks, sink_chunks=s.sink_chunks,
                                         **bundle.meta["generation"].get("sampler", {}))
        if steps is not None:
            if steps < 1:
                raise GenerateError(f"steps must be at least 1; got {steps}")
            self.sampler = replace(self.sampler, steps=steps)
        self._embeddings: dict[str, torch.Tensor] = {}

    @classmethod
    def from_pretrained(cls, model_dir: Path | str | None = None, device: str = "auto",
                        steps: int | None = None) -> "VideoGenerator":
        """The shipped generation model by default; `device` 'auto' takes a GPU when one is visible. It runs in fp32:
        generation has no --precision, its bf16 picture was never measured."""
        from renderer import GENERATION_MODEL

        dev = resolve_device(device)
        return cls(load_bundle(model_dir or GENERATION_MODEL, dev, precision="fp32"), dev, steps)

    @property
    def frame_size(self) -> tuple[int, int]:
        """(W, H) of the frames it generates."""
        return self.bundle.frame_size

    @property
    def context_frames(self) -> int:
        """How many of a video's last frames an extension reads: what the KV cache holds."""
        return (self.sampler.sink_chunks + self.sampler.window_chunks) * self.bundle.student.cfg.chunk_frames

    def _embedding(self, prompt: str) -> torch.Tensor:
        from models.network.prompt import PromptEncoder

        if not isinstance(prompt, str) or not prompt.strip():
            raise GenerateError(f"a prompt must be a non-empty string, e.g. 'snowy winter village'; got {prompt!r}")
        if prompt not in self._embeddings:
            self._embeddings[prompt] = PromptEncoder.shared().encode([prompt]).to(self.device)
        return self._embeddings[prompt]

    def _to_model(self, frames: np.ndarray) -> torch.Tensor:
        """(F, H, W, 3) uint8 -> (1, F, C, h, w) in model space at the model's size."""
        w, h = self.frame_size
        x = rgb_to_model_size(frames, (h, w), self.device)[None]  # resized as the renderer resizes
        ae = self.bundle.autoencoder
        return x if ae is None else ae.encode_video(x)

    def generate(self, prompt: str, frames: int, image: np.ndarray | str | Path | None = None,
                 extend: np.ndarray | str | Path | None = None, switches: Mapping[int, str] | None = None,
                 seed: int = 0, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """A clip of `frames` frames (frames, H, W, 3) uint8 at the model's size: all generated, or the image and
        then frames − 1 generated ones.

        prompt    the style, as for the renderer (any text; the trained styles are the presets)
        image     image-to-video: a path or an RGB uint8 array; the video starts from it
        extend    extension: a video path or frames (F, H, W, 3); the video continues after its last frame
        switches  {frame: prompt}: the prompt changes at that frame (at the chunk that holds it)
        seed      the noise: the same seed and inputs give the same video
        progress  called with the number of frames done after each chunk"""
        return self.render(self.plan(prompt, frames, image, extend, switches), seed, progress)

    def plan(self, prompt: str, frames: int, image: np.ndarray | str | Path | None = None,
             extend: np.ndarray | str | Path | None = None, switches: Mapping[int, str] | None = None
             ) -> "GenerationPlan":
        """Check and load everything `generate` needs, before any frame is made (bad input fails fast)."""
        if image is not None and extend is not None:
            raise GenerateError("give a start image or a video to extend, not both")
        if not isinstance(frames, int) or frames < 1:
            raise GenerateError(f"frames must be a positive whole number; got {frames!r}")
        schedule = sorted({0: prompt, **dict(switches or {})}.items())
        late = [f for f, _ in schedule if not isinstance(f, int) or f < 0 or f >= frames]
        if late:
            raise GenerateError(f"a prompt switch at frame {late[0]} is outside the {frames} frames to generate "
                                f"(0..{frames - 1})")
        embeddings = [(f, self._embedding(p)) for f, p in schedule]
        context = None
        if image is not None:
            context = self._to_model(load_image(image) if isinstance(image, (str, Path))
                                     else _as_frames(image, "image"))
        elif extend is not None:
            tail = (load_video_tail(extend, self.context_frames)[0] if isinstance(extend, (str, Path))
                    else _as_frames(extend, "extend")[-self.context_frames:])
            context = self._to_model(tail)
        return GenerationPlan(frames, embeddings, context, image_first=image is not None)

    def render(self, plan: "GenerationPlan", seed: int = 0, progress: Callable[[int], None] | None = None
               ) -> np.ndarray:
        """Roll the student out for a checked plan (`plan`), as `generate` does. An image-to-video clip opens
        with the image itself (as the model reads it: at its size, through its space), then the new frames."""
        from models.network.generation import generate

        opening = plan.context[:, -1:] if plan.image_first else None
        skip = 0 if opening is None else 1   # the output frames that are given, not generated

        def style_at(frame: int) -> torch.Tensor:
            return [e for f, e in plan.embeddings if f <= frame + skip][-1]

        def advance(done: int) -> None:
            if progress is not None:
                progress(done + skip)

        new = plan.frames - skip
        x0 = (generate(self.bundle.student, self.sampler, style_at, new, plan.context,
                       torch.Generator().manual_seed(seed), advance) if new else None)
        if opening is not None:
            x0 = opening if x0 is None else torch.cat([opening, x0], 1)
        return model_to_rgb(x0, self.bundle.autoencoder)

    def write(self, video: np.ndarray, out: Path | str, fps: float = FPS) -> int:
        """Write frames (F, H, W, 3) uint8 to an mp4; returns the frames written."""
        from bridge.video import Mp4Writer

        h, w = video.shape[1:3]
        with Mp4Writer(out, fps, (w, h)) as writer:
            for frame in video:
                writer.write(np.ascontiguousarray(frame))
            return writer.frames_written


def run_generate(model_dir: Path, prompt: str, frames: int, out: Path, image: Path | None = None,
                 extend: Path | None = None, switches: list[tuple[int, str]] = (), device: str = "auto",
                 seed: int = 0, steps: int | None = None, progress: bool = True) -> int:
    """`restyler generate`: write `frames` generated frames to `out` with a progress bar; returns the count."""
    from tqdm import tqdm

    if not Path(out).parent.is_dir():
        raise GenerateError(f"cannot write {out}: the folder {Path(out).parent} does not exist")
    generator = VideoGenerator.from_pretrained(model_dir, device, steps)
    fps, start = FPS, None
    if extend is not None:
        start, fps = load_video_tail(extend, generator.context_frames)
    plan = generator.plan(prompt, frames, image, start, dict(switches))
    bar = tqdm(total=frames, unit="frame", desc="generate", disable=not progress)

    def advance(done: int) -> None:
        bar.update(done - bar.n)

    try:
        video = generator.render(plan, seed, advance)
    finally:
        bar.close()
    return generator.write(video, out, fps)


__all__ = ["GenerateError", "ModelError", "VideoGenerator", "parse_switch", "run_generate"]
