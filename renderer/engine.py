"""StreamEngine: the synchronous per-chunk step of the causal student, K incoming frames -> K stylized frames.

Everything that turns frames into stylized frames lives here, with no threads: the streaming runtime's worker calls
`step()` for each chunk it gathered, `restyler restyle` calls it for every chunk of a file, and `restyler bench` times
its stages one by one (`to_model`, `denoise`, `to_frames`, `upsample`). Numbered as the design's data flow:

    1 gather K frames into a chunk (model resolution, [-1, 1], structure channels)
    2 encode; noise to t* (SDEdit start)
    3 few causal denoise steps attending to the KV cache
    4 write the chunk's K/V into the cache (rolling window + sinks; `last_step` or `clean` refresh)
    5 decode to (H, W, 3) uint8; frames-only sources (capture, video) also get their letterbox bars cut off and
      keep the picture where the captured frame is still (renderer.still)
    6 when the model ships an upsampler and the packets carry their frame at display size: the AI frame at that
      size, guided by the G-buffers there (models.network.upsampler)

A style switch empties the cache: measured in docs/distillation.md, the reset switches within one frame where keeping
or re-encoding the cache (LongLive) leaves old-style pixels in the context for several chunks.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from bridge import FramePacket
from models.io import checkpoint
from models.io.data import GBUFFERS, encode_gbuffer, gbuffers_from_arrays
from models.network.autoencoder import Autoencoder
from models.network.dit import Conditioning, VideoDiT
from models.network.loading import load_autoencoder, load_student, load_upsampler
from models.network.precision import FP32, Precision, PrecisionError, resolve_precision
from models.network.prompt import PromptEncoder, nearest_style
from models.network.streaming import StudentSampler, stream_chunk
from models.network.upsampler import TemporalResolve, Upsampler
from renderer import DEFAULT_MODEL
from renderer.still import StillHold

GBUFFER_NAMES = [name for name, _ in GBUFFERS]  # the packet fields the G-buffers come from, in the models' order
# the display frame's G-buffers the upsampler reads (after its RGB), in the order of models.network.upsampler.GUIDE
UPSAMPLER_BUFFERS = ("depth", "normals", "uv", "ao", "sun")

HOW_TO_GET_A_MODEL = ("the default model ships in models/weights/default (restore it with `git checkout -- "
                      "models/weights`), `make train` reproduces it, and `--model RUN` takes any finished training run")


# What an installed wheel carries (pyproject.toml's package data): the default model's student and upsampler only.
INSTALLED_HAS = ("the installed restyler package carries only the default streaming model; the other models, the "
                 "teacher and the training recipe come with the repository (`make train` there), and `--model RUN` "
                 "takes any finished training run")


def how_to_get_a_model() -> str:
    """Where models come from: the repository's words in a checkout, the wheel's in an installed package."""
    in_repository = (DEFAULT_MODEL.parent.parent.parent / "pyproject.toml").is_file()
    return HOW_TO_GET_A_MODEL if in_repository else INSTALLED_HAS


class ModelError(RuntimeError):
    """A model directory that cannot be used for streaming; the message says how to get one."""


def damaged_model(model_dir: Path, exc: checkpoint.DamagedCheckpointError) -> str:
    """What to say about a damaged file of a model: a shipped model is restored as it shipped, not retrained."""
    shipped = model_dir.resolve().parent == DEFAULT_MODEL.parent.resolve()
    if shipped:
        how = (f"the shipped model comes back whole with `git checkout -- models/weights/{model_dir.resolve().name}` "
               "in the repository (or by reinstalling the restyler package)")
    else:
        how = "copy the model directory again from where it came, or rerun the training stage that wrote the file"
    return f"{exc.path} is damaged ({exc.reason}): {how}"


@dataclass
class StudentBundle:
    """What a stream needs from a model directory: the student, how it samples, and its decoder if latent."""

    student: VideoDiT
    sampler: StudentSampler
    autoencoder: Autoencoder | None
    meta: dict[str, Any]
    upsampler: Upsampler | None = None
    precision: Precision = FP32   # what the student runs at

    @property
    def display_size(self) -> tuple[int, int] | None:
        """(W, H) the upsampler draws at, or None without one."""
        if self.upsampler is None:
            return None
        h, w = self.upsampler.cfg.display_size
        return w, h

    @property
    def frame_size(self) -> tuple[int, int]:
        """(W, H) of the frames the model reads and writes."""
        h, w = self.student.cfg.frame_size
        return w, h


def resolve_device(device: str) -> torch.device:
    """'auto' -> cuda when a GPU is visible, else cpu; 'cuda' without one is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelError("device 'cuda' was asked for but no CUDA GPU is visible; use 'auto' or 'cpu'")
    if device not in ("cpu", "cuda"):
        raise ModelError(f"device must be 'auto', 'cpu' or 'cuda'; got {device!r}")
    return torch.device(device)


def load_bundle(model_dir: Path | str, device: torch.device | str = "cpu",
                sampler_changes: dict[str, Any] | None = None, upsample: bool = True,
                precision: str = "auto") -> StudentBundle:
    """The student of a shipped model or a finished run, ready to stream at `precision` (models.network.precision:
    "auto" is bf16 on a GPU and on a CPU with AMX, fp32 elsewhere), and its upsampler when the directory has one and
    `upsample` is on."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelError(f"no model at {model_dir}: {how_to_get_a_model()}")
    try:
        resolved = resolve_precision(precision, device)
    except PrecisionError as exc:
        raise ModelError(str(exc)) from None
    try:
        student, sampler, meta = load_student(model_dir, "student", device, resolved)
        autoencoder = load_autoencoder(model_dir, device) if student.cfg.space == "latent" else None
        upsampler = load_upsampler(model_dir, device) if upsample else None
    except checkpoint.DamagedCheckpointError as exc:
        raise ModelError(damaged_model(model_dir, exc)) from None
    except (checkpoint.CheckpointError, KeyError, TypeError, ValueError) as exc:
        how = how_to_get_a_model()
        raise ModelError(f"cannot load the model in {model_dir}: {exc}. {how[0].upper()}{how[1:]}") from None
    if sampler_changes:
        sampler = replace(sampler, **sampler_changes)
    return StudentBundle(student, sampler, autoencoder, meta, upsampler, resolved)


class StreamEngine:
    """One stream of the student: its KV cache, its style, its noise. Not thread-safe; one owner calls it."""

    def __init__(self, bundle: StudentBundle, device: torch.device | str = "cpu", seed: int = 0):
        self.bundle = bundle
        self.model = bundle.student
        self.sampler = bundle.sampler
        self.device = torch.device(device)
        self.chunk_frames = self.model.cfg.chunk_frames
        self._warned_gbuffers = False
        self._warned_display = False
        self.width, self.height = bundle.frame_size
        self.cache = self.model.new_cache(1, self.sampler.window_chunks, self.sampler.sink_chunks)
        self.sigmas = self.sampler.sigmas()
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)
        self.style: torch.Tensor | None = None   # (1, 384) MiniLM embedding
        self.style_prompt: str | None = None
        # the trained style the prompt is nearest to (None: the model lists no training prompts): a game whose
        # G-buffers depend on the look (the demo game's sun) hands over that style's for a prompt it does not know
        self.look: str | None = None
        self._trained: dict[str, torch.Tensor] | None = None   # each trained style's prompt embeddings
        self.noise: list[torch.Tensor] | None = None
        # where the last chunk's frames sit inside the model's frame (top, left, height, width) when to_model
        # letterboxed them (a frames-only source of another aspect ratio); None: they fill it
        self.content: tuple[int, int, int, int] | None = None
        # frames-only sources keep the picture where the captured frame is still (renderer.still); the input it
        # compares, (K, 3, h, w) in [-1, 1] with the bars cut off, is the last to_model's (None with G-buffers)
        self.still = StillHold()
        self.still_input: torch.Tensor | None = None
        self.resolve = TemporalResolve(0.0 if bundle.upsampler is None else bundle.upsampler.cfg.temporal_keep)

    # -- state ------------------------------------------------------------------------------------------------
    def set_style(self, prompt: str, encoder: PromptEncoder | None = None) -> None:
        """Condition later chunks on `prompt`; the cache is emptied so no old-style context pulls the next chunk
        back (the next chunk is generated at once in the new style: no blank frame, just a cut)."""
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"a style prompt must be a non-empty string, e.g. 'snowy winter village'; got {prompt!r}")
        encoder = encoder or PromptEncoder.shared()
        embedding = encoder.encode([prompt.strip()])
        self.style = embedding.to(self.device)
        self.style_prompt = prompt.strip()
        prompts = self.bundle.meta.get("prompts") or {}
        if self._trained is None and prompts:
            self._trained = {name: encoder.encode(list(texts)) for name, texts in prompts.items()}
        self.look = nearest_style(embedding[0], self._trained) if self._trained else None
        self.reset()

    def reset(self) -> None:
        """Start a new stream: empty cache, new fixed noise (when the sampler uses it)."""
        self.cache.reset()
        self.noise = None
        self.resolve.reset()
        self.still.reset()

    # -- the step, in its stages --------------------------------------------------------------------------------
    def to_model(self, packets: Sequence[FramePacket]) -> tuple[torch.Tensor, Conditioning]:
        """1. K packets of any size -> incoming (1, K, C, H, W) in model space and its conditioning. Frames of
        another size are resized (area filter down, bilinear up); G-buffers are used only when every packet has
        them (screen capture has none: the model was trained with them dropped)."""
        if len(packets) != self.chunk_frames:
            raise ValueError(f"a chunk is {self.chunk_frames} frames; got {len(packets)}")
        if self.style is None:
            raise RuntimeError("set_style() before the first chunk: the student needs a style prompt")
        size = (self.height, self.width)
        rgb = np.stack([p.rgb for p in packets])
        gbuffers, self.content, self.still_input = None, None, None
        if all(p.depth is not None and p.normals is not None for p in packets):
            low = rgb_to_model_size(rgb, size, self.device)                                 # (K, 3, H, W)
            gb = gbuffers_from_arrays({name: np.stack([getattr(p, name) for p in packets])
                                       if all(getattr(p, name) is not None for p in packets) else None
                                       for name in GBUFFER_NAMES})
            gbuffers = resize(gb.to(self.device), size, "nearest")[None]                   # (1, K, ≤9, H, W)
            self._warn_missing_gbuffers(gbuffers.shape[2])
        else:   # frames only (capture, video): any aspect ratio, letterboxed
            low, self.content = letterbox_to_model_size(rgb, size, self.device)
            top, left, h, w = self.content or (0, 0, *size)
            self.still_input = low[:, :, top: top + h, left: left + w]
        low = low[None]                                                                     # (1, K, 3, H, W)
        ae = self.bundle.autoencoder
        incoming = low if ae is None else ae.encode_video(low)
        return incoming, Conditioning(low=incoming, gbuffers=gbuffers, style=self.style,
                                      motion=motion_to_model_size(packets, size, self.device))

    def _warn_missing_gbuffers(self, handed: int) -> None:
        """Once per engine: a game that hands over some G-buffers, but not every one the model reads, gets the
        frames-only picture (the model takes the buffers as absent); say which are missing."""
        reads = getattr(self.model.cfg, "gbuffer_channels", 0)
        if handed < reads and not self._warned_gbuffers:
            self._warned_gbuffers = True
            names, channels = [], 0
            for name, n in GBUFFERS:
                channels += n
                if handed < channels <= reads:
                    names.append(name)
            warnings.warn(f"the game hands over {handed} of the {reads} G-buffer channels this model reads (missing: "
                          f"{', '.join(names)}), so it runs on the frames alone; the demo game hands over the sun "
                          "with GameSession.render_fast(sun=style)", stacklevel=3)

    def denoise(self, incoming: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """2-4. Noise to t*, the few causal steps against the cache, the cache refresh -> x0 (1, K, C, H, W)."""
        if self.noise is None:
            self.noise = self.sampler.stream_noise(incoming, self.generator)
        return stream_chunk(self.model, incoming, cond, self.sampler, self.cache, self.generator, self.noise,
                            self.sigmas)

    def to_frames(self, x0: torch.Tensor) -> np.ndarray:
        """5. x0 (1, K, C, h, w) -> (K, H, W, 3) uint8 at the model's resolution. For a frames-only chunk, the
        letterbox bars of the last to_model cut off (the frames then have the captured aspect ratio) and the picture
        held where the captured frame is still."""
        frames = model_to_rgb(x0, self.bundle.autoencoder)
        if self.still_input is None:
            return frames
        if self.content is not None:
            top, left, h, w = self.content
            frames = frames[:, top: top + h, left: left + w]
        return self.still(self.still_input, frames)

    @torch.no_grad()
    def upsample(self, frames: np.ndarray, packets: Sequence[FramePacket]) -> np.ndarray:
        """6. The K frames (K, h, w, 3) uint8 at display size when the model has an upsampler and every packet
        carries its frame at that size with the G-buffers the upsampler reads; otherwise unchanged (the overlay
        stretches them). The upsampler reads the uint8 frames, as evaluation scores it."""
        upsampler = self.bundle.upsampler
        if upsampler is None or any(p.display is None for p in packets):
            self.resolve.reset()   # the next upsampled frame starts a new history
            return frames
        displays = [p.display for p in packets]
        want = self.bundle.display_size
        if any(d.size != want for d in displays):
            raise ValueError(f"the model's upsampler draws at {want[0]}x{want[1]}; the packets' display frames are "
                             f"{displays[0].size[0]}x{displays[0].size[1]}: render them at "
                             "StreamingRestyler.display_resolution")
        lacking = [name for name in UPSAMPLER_BUFFERS if any(getattr(d, name) is None for d in displays)]
        if lacking:
            if not self._warned_display:
                self._warned_display = True
                warnings.warn(f"the display frames lack {', '.join(lacking)}, which the upsampler reads; the AI frame "
                              "stays at the model's size", stacklevel=3)
            self.resolve.reset()
            return frames
        guide = display_guide(displays).to(self.device)
        out = upsampler(rgb_to_model_size(frames, frames.shape[1:3], self.device), guide).clamp(-1, 1)
        # the temporal resolve, frame by frame along the display frames' motion (dropped where a frame has none)
        out = torch.stack([self.resolve(frame, *_motion_and_depth(d, self.device)) for frame, d in zip(out, displays)])
        return model_to_rgb(out[None], None)

    @torch.no_grad()
    def step(self, packets: Sequence[FramePacket]) -> np.ndarray:
        """One chunk: K packets -> K stylized frames (K, H, W, 3) uint8, at display size when upsampled."""
        incoming, cond = self.to_model(packets)
        return self.upsample(self.to_frames(self.denoise(incoming, cond)), packets)

    @torch.no_grad()
    def warm_up(self) -> None:
        """Run chunks of a grey frame from an empty cache to a rolling one (every attention length the stream will
        see, with and without G-buffers), then forget them: the first real frame costs what a steady one does."""
        chunks = self.sampler.sink_chunks + self.sampler.window_chunks + 1

        def grey_frame(hw: tuple[int, int], **extra: Any) -> FramePacket:
            return FramePacket(rgb=np.full((*hw, 3), 128, np.uint8), depth=np.full(hw, 10.0, np.float32),
                               normals=np.zeros((*hw, 3), np.float32), uv=np.zeros((*hw, 2), np.float32),
                               ao=np.ones(hw, np.float32), sun=np.zeros(hw, np.float32),
                               material=np.ones(hw, np.uint8), **extra)

        display = self.bundle.display_size
        with_everything = grey_frame((self.height, self.width),
                                     display=None if display is None else grey_frame(display[::-1]))
        for packet in (with_everything, FramePacket(rgb=with_everything.rgb)):
            for _ in range(chunks):
                self.step([packet] * self.chunk_frames)
            self.reset()
        self.generator.manual_seed(self.seed)


def rgb_to_model_size(rgb: np.ndarray, size: tuple[int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """(F, H, W, 3) uint8 frames of any size -> (F, 3, *size) in [-1, 1]: area filter down, bilinear up."""
    rgb = np.ascontiguousarray(rgb) if rgb.flags.writeable else rgb.copy()  # torch wants writable memory
    x = torch.from_numpy(rgb).to(device)
    # contiguous, as evaluation's tensors are: a convolution may pick another kernel for another memory layout,
    # and the engine must match evaluation bit for bit
    x = x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0).contiguous()
    return resize(x, size, "area" if x.shape[-1] > size[1] else "bilinear")


def letterbox_to_model_size(rgb: np.ndarray, size: tuple[int, int], device: torch.device | str = "cpu"
                            ) -> tuple[torch.Tensor, tuple[int, int, int, int] | None]:
    """Frames (F, h, w, 3) uint8 of any aspect ratio -> (F, 3, *size) in [-1, 1], scaled to fit whole and centred
    between black bars (the model was trained with bars: models.recipe.domain), and where they sit (top, left,
    height, width), or None when they fill the frame (the same aspect ratio: plain rgb_to_model_size). Bars rather
    than a crop, so a HUD at the screen's edge stays in the picture."""
    h, w = rgb.shape[1:3]
    scale = min(size[0] / h, size[1] / w)
    inner = (min(size[0], max(1, round(h * scale))), min(size[1], max(1, round(w * scale))))
    if inner == size:
        return rgb_to_model_size(rgb, size, device), None
    top, left = (size[0] - inner[0]) // 2, (size[1] - inner[1]) // 2
    content = rgb_to_model_size(rgb, inner, device)
    out = content.new_full((content.shape[0], 3, *size), -1.0)
    out[:, :, top: top + inner[0], left: left + inner[1]] = content
    return out, (top, left, *inner)


def motion_to_model_size(packets: Sequence[FramePacket], size: tuple[int, int], device: torch.device | str = "cpu"
                         ) -> torch.Tensor | None:
    """The packets' motion vectors (H, W, 2) in their pixels -> (1, K, 2, *size) in the model's pixels (nearest,
    each vector scaled by the resize), or None unless every packet has them."""
    if any(p.motion is None for p in packets):
        return None
    motion = torch.from_numpy(np.stack([p.motion for p in packets])).to(device)
    motion = motion.permute(0, 3, 1, 2).float().contiguous()
    h, w = motion.shape[-2:]
    scale = torch.tensor([size[1] / w, size[0] / h], device=motion.device).view(1, 2, 1, 1)
    return (resize(motion, size, "nearest") * scale)[None]


def display_guide(displays: Sequence[FramePacket]) -> torch.Tensor:
    """The upsampler's guide (K, C, H, W) from K display frames, in the training encoding (models.io.data: RGB and
    uv, ao, sun mapped to [-1, 1], log depth) and in the order of models.network.upsampler.GUIDE. Built pixel-major,
    so the tensor is channels-last, the layout the upsampler's convolutions read, with no copy to get there."""
    def stacked(name: str) -> torch.Tensor:
        x = torch.from_numpy(np.stack([getattr(d, name) for d in displays])).float()
        return x[..., None] if x.dim() == 3 else x

    parts = [stacked("rgb").div_(127.5).sub_(1.0), *(encode_gbuffer(name, stacked(name)) for name in UPSAMPLER_BUFFERS)]
    return torch.cat(parts, -1).permute(0, 3, 1, 2)


def _motion_and_depth(display: FramePacket, device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """A display frame's motion (2, H, W) and linear depth (H, W) for the temporal resolve, or (None, None)."""
    if display.motion is None or display.depth is None:
        return None, None
    # copies: arrays that came through the worker's pipe are read-only views of the message
    return (torch.tensor(display.motion, dtype=torch.float32, device=device).permute(2, 0, 1),
            torch.tensor(display.depth, dtype=torch.float32, device=device))


def model_to_rgb(x0: torch.Tensor, autoencoder: Autoencoder | None) -> np.ndarray:
    """x0 (1, F, C, h, w) in model space -> (F, H, W, 3) uint8 pixels (decoded first when the model is latent)."""
    x = x0 if autoencoder is None else autoencoder.decode_video(x0)
    x = x[0].clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)                       # (F, 3, H, W)
    return x.permute(0, 2, 3, 1).contiguous().cpu().numpy()


def resize(x: torch.Tensor, size: tuple[int, int], mode: str) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, *size); a no-op at the right size (the game renders at the model's resolution)."""
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
