"""Recipe stage `upsampler`: the AI frame at display resolution (models.network.upsampler), trained after the
student on what the student really draws.

Its data are two recordings of the same worlds, made by `restyler record-data` with the same seeds and frame count
at two sizes: the model's (128×128, what the student restyles) and the display's (e.g. 256×256: the cheap pass,
the G-buffers and the reference styles there). The bot's path does not depend on the render size, so frame i of
both is the same camera. The student streams every clip of the model-size recording once per style, exactly as the
runtime does (its KV cache, its noise), and those frames are kept on disk (`student_frames`); the upsampler then
learns, frame by frame, student frame + display-size guide -> display-size reference, by L1.

    RUN/student_frames/<recording>/seed_NNNN.safetensors   frames (styles, F, h, w, 3) uint8, + manifest.json
    RUN/upsampler.{safetensors,json}                       the EMA weights and UpsamplerConfig
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import load_file, save_file
from torch.utils.data import Dataset

from models.evaluation.restyle import row_generator, to_uint8
from models.io.atomic import write_atomic
from models.io.data import ClipDataset, DataError, collate, gbuffers_of
from models.io.images import save_grid
from models.network.dit import Conditioning
from models.network.loading import load_student
from models.network.precision import Precision
from models.network.prompt import PromptEncoder
from models.network.streaming import stream_clip
from models.network.upsampler import Upsampler, UpsamplerConfig, bilinear, guide_of
from models.recipe.loop import Stage, StepInput, StepLoss, TrainConfig, TrainError

FRAMES_MANIFEST = "manifest.json"
def default_config() -> TrainConfig:
    # whole display-size frames, 8 a step; still gaining at 12,000 steps (docs/upsampling.md)
    return TrainConfig(steps=16000, batch=8, lr=2e-3, warmup=50, ema_decay=0.995, ema_start=200, sample_every=1000,
                       checkpoint_every=250)


@torch.no_grad()
def student_frames(model_dir: Path, clips_dir: Path, out: Path, device: torch.device | str = "cpu",
                   progress: Callable[[str], None] = print, precision: Precision | None = None) -> Path:
    """The student of `model_dir` streamed over every clip and style of `clips_dir` (in `precision`, fp32 when
    None), kept in `out` one shard per clip. Resumes: clips already kept for the same student at the same precision
    are skipped; another student's frames are made again."""
    student, sampler, meta = load_student(model_dir, "student", device, precision)
    data = ClipDataset(clips_dir, clip_frames=_clip_frames(clips_dir), stride=1 << 30)
    key = {"model": str(model_dir), "student_step": meta.get("step"), "student_id": meta.get("save_id"),
           "clips": str(clips_dir), "size": list(data.size), "styles": data.style_names,
           **({} if precision is None or precision.name == "fp32" else {"precision": precision.name})}
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / FRAMES_MANIFEST
    kept: dict[str, Any] = {"key": key, "clips": {}}
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old.get("key") == key:
            kept = old
    missing = [s for s in data.style_names if s not in meta["prompts"]]
    if missing:
        raise DataError(f"the student of {model_dir} knows no prompts for styles {missing} of {clips_dir}")
    table = PromptEncoder.shared().encode([meta["prompts"][name][0] for name in data.style_names])
    n_styles = len(data.style_indices)
    for first in range(0, len(data), n_styles):
        seed = int(data.windows[first // n_styles][1])
        name = f"seed_{seed:04d}.safetensors"
        if name in kept["clips"].values() and (out / name).exists():
            continue
        items = collate([data[i] for i in range(first, first + n_styles)])
        cond = Conditioning(low=items["low"].to(device), gbuffers=gbuffers_of(items, device),
                            style=table[items["style_index"]].to(device), motion=items["motion"].to(device))
        # the noise of `restyler eval`'s student row, so the frames kept for held-out worlds are the ones it scores
        frames = stream_clip(student, cond.low, cond, sampler, row_generator(0, seed, "student"))
        pixels = to_uint8(frames.cpu()).contiguous()
        write_atomic(out / name, lambda path: save_file({"frames": pixels.numpy()}, str(path)))
        kept["clips"][str(seed)] = name
        write_atomic(manifest_path, lambda path: Path(path).write_text(json.dumps(kept, indent=1)))
        progress(f"student frames: world {seed} kept ({first // n_styles + 1} of {len(data) // n_styles})")
    return out


def _clip_frames(clips_dir: Path) -> int:
    return int(json.loads((clips_dir / "manifest.json").read_text())["frames"])


class UpsampleData(Dataset):
    """One item per (world, frame, style): the student's frame, the display-size guide and reference.

        frame      float32 (3, h, w)   the student's frame in [-1, 1]
        guide      float32 (C, H, W)   GUIDE at display size
        reference  float32 (3, H, W)   the reference style at display size in [-1, 1]
        seed, start, style_index  int64
    """

    def __init__(self, display_clips: Path, frames_dir: Path):
        self.clips = ClipDataset(display_clips, clip_frames=1, stride=1)
        manifest = json.loads((frames_dir / FRAMES_MANIFEST).read_text())
        self.frames_dir, self.files = frames_dir, {int(s): f for s, f in manifest["clips"].items()}
        if manifest["key"]["styles"] != self.clips.style_names:
            raise DataError(f"{display_clips} holds styles {self.clips.style_names}, the student's frames in "
                            f"{frames_dir} {manifest['key']['styles']}; record both with the same game")
        low_w, low_h = manifest["key"]["size"]
        width, height = self.clips.size
        if width % low_w or height % low_h or width // low_w != height // low_h:
            raise DataError(f"{display_clips} is {width}x{height}, not a whole multiple of the student's "
                            f"{low_w}x{low_h}")
        self.scale = width // low_w
        absent = sorted({seed for _, seed, _ in self.clips.windows} - set(self.files))
        if absent:
            raise DataError(f"{display_clips} has worlds {absent[:5]} that the student's frames in {frames_dir} "
                            "lack; record the model-size data with the same --seeds")
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.clips)

    def student(self, seed: int) -> np.ndarray:
        if seed not in self._cache:
            self._cache[seed] = load_file(str(self.frames_dir / self.files[seed]))["frames"]
        return self._cache[seed]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        item = self.clips[index]
        seed, start, style = int(item["seed"]), int(item["start"]), int(item["style_index"])
        kept = self.student(seed)
        if start >= kept.shape[1]:
            raise DataError(f"the student's frames of world {seed} stop at {kept.shape[1]}; the display recording "
                            f"has frame {start}: record both with the same --frames")
        frame = torch.from_numpy(kept[style, start]).permute(2, 0, 1).float() / 127.5 - 1
        return {"frame": frame, "guide": guide_of(item)[0], "reference": item["style"][0],
                "seed": item["seed"], "start": item["start"], "style_index": item["style_index"]}


@dataclass(frozen=True)
class UpsampleSettings:
    """The upsampler's size; the defaults are the shipped one, chosen by quality per millisecond beside the student
    (docs/upsampling.md)."""
    width: int = 16
    depth: int = 2
    context: int = 32


class UpsamplerStage(Stage):
    name = "upsampler"

    def __init__(self, data: UpsampleData, settings: UpsampleSettings, student_meta: dict[str, Any],
                 device: torch.device):
        self.dataset, self._settings, self.device = data, settings, device
        frame = data[0]["frame"]
        self.cfg = UpsamplerConfig(scale=data.scale, frame_size=tuple(frame.shape[-2:]), width=settings.width,
                                   depth=settings.depth, context=settings.context)
        self.model = Upsampler(self.cfg).to(device)
        self.student_meta = student_meta

    def settings(self) -> UpsampleSettings:
        return self._settings

    def loss(self, step: StepInput) -> StepLoss:
        items = step.items
        out = self.model(items["frame"].to(self.device), items["guide"].to(self.device))
        loss = F.l1_loss(out, items["reference"].to(self.device))
        with torch.no_grad():
            base = F.l1_loss(bilinear(items["frame"], self.cfg.scale), items["reference"]).item()
        return StepLoss(loss, logged={"bilinear_l1": base})

    def meta(self) -> dict[str, Any]:
        return {"kind": "upsampler", "config": asdict(self.cfg), "styles": self.dataset.clips.style_names,
                "student_step": self.student_meta.get("step")}

    @torch.no_grad()
    def sample_grid(self, model: Upsampler, path: Path) -> None:
        items = collate([self.dataset[i] for i in range(0, len(self.dataset), max(1, len(self.dataset) // 4))[:4]])
        out = model(items["frame"].to(self.device), items["guide"].to(self.device)).clamp(-1, 1).cpu()
        save_grid(path, [bilinear(items["frame"], self.cfg.scale), out, items["reference"]])


def run_upsampler(display_data: Path, low_data: Path, model_dir: Path, run: Path, *, steps: int | None = None,
                  batch: int | None = None, lr: float | None = None, resume: bool = False, device: str = "cpu",
                  settings: UpsampleSettings = UpsampleSettings(), progress: Callable[[str], None] = print,
                  precision: str = "auto") -> dict[str, Any]:
    """Keep the student's frames on `low_data` (fp32), then train the upsampler into `run` on `display_data` with
    its forward passes in `precision` (models.network.precision)."""
    from models.recipe.loop import setup_distributed, close_distributed, train

    if not (display_data / "manifest.json").exists() or not (low_data / "manifest.json").exists():
        raise TrainError(f"the upsampler needs two recordings of the same worlds: {display_data} at display size and "
                         f"{low_data} at the model's size (`restyler record-data` with the same --seeds and --frames)")
    cfg = default_config()
    cfg = TrainConfig(**{**asdict(cfg), **{k: v for k, v in (("steps", steps), ("batch", batch), ("lr", lr))
                                           if v is not None}})
    dist_info = setup_distributed(device, precision)
    try:
        frames_dir = student_frames(model_dir, low_data, run / "student_frames" / low_data.name, dist_info.device,
                                    progress)
        data = UpsampleData(display_data, frames_dir)
        stage = UpsamplerStage(data, settings, load_student(model_dir, "student")[2],
                               dist_info.device)
        return train(stage, run, cfg, dist_info, resume, progress)
    finally:
        close_distributed(dist_info)
