"""Training data as tensors: windows of consecutive frames from the clips `restyler record-data` wrote.

Called by the training stages, evaluation, the runtime (normalize_depth) and tests. It reads the "Recorded data"
format of docs/interfaces.md on its own (models/ imports nothing from the game, the bridge or the renderer). Shards
are opened lazily and memory-mapped, and a window reads only its own frames, so a dataset larger than memory trains
fine.

Every item is a dict of tensors, frame-major as inside the models, (F, C, H, W); a dataset recorded from a game with
fewer buffers (the manifest's "buffers") gives only those, and `sun` only when it lists "sun":
    low          float32 (F, 3, H, W)  low-detail pass in [-1, 1]
    style        float32 (F, 3, H, W)  the target: reference style `style_index`, in [-1, 1]
    depth        float32 (F, 1, H, W)  log depth in [-1, 1], see normalize_depth
    normals      float32 (F, 3, H, W)  view-space unit normals (x right, y up, z to the camera); sky = 0
    material     int64   (F, 1, H, W)  material id, 0 = sky (raw ids: embedding or one-hot is the model's choice)
    motion       float32 (F, 2, H, W)  screen-space motion to the previous frame, in pixels (dx right, dy down)
    uv           float32 (F, 2, H, W)  position within the block's face, [0, 1) mapped to [-1, 1]; sky = -1
    ao           float32 (F, 1, H, W)  voxel ambient occlusion, [0, 1] mapped to [-1, 1]; sky = -1
    sun          float32 (F, 1, H, W)  direct sunlight of the target style's sun (cosine × shadow), [0, 1] mapped to
                                       [-1, 1]; sky = -1
    style_index  int64   ()            index into the manifest's "styles"
    seed, start  int64   ()            which clip and which first frame the window came from
A loader stacks these into (B, F, C, H, W).
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.numpy import load_file
from torch.utils.data import DataLoader, Dataset

FORMAT = 3  # 2 added the uv, ao and per-style sun G-buffers; 3 lists the buffers and the prompts in the manifest
READABLE_FORMATS = (2, 3)   # a format-2 dataset holds every buffer (the demo game's), its prompts are the game's
MANIFEST = "manifest.json"
# The game's far plane (GameConfig.far, in blocks); the sky is recorded at this depth. Depth beyond it is clamped.
DEPTH_FAR = 120.0
OPEN_SHARDS = 64  # memory-mapped shards kept open per process; older ones are closed first

# What each stored tensor must look like: name -> (safetensors dtype, trailing dims after (F, H, W)).
_STORED = {"depth": ("F16", ()), "normals": ("F16", (3,)), "material": ("U8", ()),
           "motion": ("F16", (2,)), "uv": ("F16", (2,)), "ao": ("F16", ())}
_RERUN = "rerun `restyler record-data` with the same --out, --seeds, --frames and --size to re-record it"


class DataError(RuntimeError):
    """A dataset that cannot be read; the message names the file and what to do about it."""


def style_key(index: int) -> str:
    return f"style/{index}"


def sun_key(index: int) -> str:
    return f"sun/{index}"


def read_manifest(root: Path | str) -> dict[str, Any]:
    path = Path(root) / MANIFEST
    if not path.is_file():
        raise DataError(f"no {MANIFEST} in {root}: record data first with `restyler record-data --out {root} "
                        "--seeds A:B --frames N`")
    try:
        manifest = json.loads(path.read_text())
        fmt = manifest["format"]
        missing = [key for key in ("size", "frames", "styles", "clips") if key not in manifest]
        if missing:
            raise KeyError(", ".join(missing))
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path} is not a valid manifest ({exc!r}); record the data again into a fresh --out") from None
    if fmt not in READABLE_FORMATS:
        raise DataError(f"{path} has format {fmt!r}; this version reads formats {list(READABLE_FORMATS)}: record the "
                        "clips again into a fresh --out")
    manifest.setdefault("buffers", [*_STORED, "sun"])
    return manifest


def recorded_buffers(manifest: dict[str, Any]) -> list[str]:
    """The per-frame buffers besides the cheap frame that every clip of the dataset holds, "sun" included."""
    return [name for name in (*_STORED, "sun") if name in manifest["buffers"]]


def normalize_depth(depth: torch.Tensor, far: float = DEPTH_FAR) -> torch.Tensor:
    """Linear depth in blocks -> [-1, 1] on a log scale: log1p(d) / log1p(far) * 2 - 1.

    Log spacing gives near geometry, where detail lives, most of the range; the sky (d = far) maps to 1, the camera
    to -1. A fixed `far` (not per-frame min/max) keeps the encoding stable over time so it cannot flicker.
    """
    depth = depth.float().clamp(0.0, far)
    return torch.log1p(depth) * (2.0 / math.log1p(far)) - 1.0


def denormalize_depth(normalized: torch.Tensor, far: float = DEPTH_FAR) -> torch.Tensor:
    """The inverse of normalize_depth: linear depth in blocks (for the depth test of motion warping)."""
    return torch.expm1((normalized.float() + 1.0) * (math.log1p(far) / 2.0))


def rgb_to_unit(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]."""
    return rgb.movedim(-1, -3).float().div(127.5).sub(1.0)


def _shard_error(path: Path, problem: str) -> DataError:
    return DataError(f"shard {path} {problem}; {_RERUN}")


def _check_shard(path: Path, frames: int, size: tuple[int, int], n_styles: int, buffers: Sequence[str]) -> None:
    """Read a shard's header and check it has every tensor the manifest implies; raise DataError otherwise."""
    if not path.is_file():
        raise _shard_error(path, "is missing")
    width, height = size
    expected = {"low": ("U8", (3,)), **{name: _STORED[name] for name in buffers if name in _STORED}}
    expected.update({style_key(i): ("U8", (3,)) for i in range(n_styles)})
    if "sun" in buffers:
        expected.update({sun_key(i): ("F16", ()) for i in range(n_styles)})
    try:
        with safe_open(str(path), framework="pt") as f:
            missing = sorted(set(expected) - set(f.keys()))
            if missing:
                raise _shard_error(path, f"lacks tensors {missing}")
            for name, (dtype, trailing) in expected.items():
                tensor = f.get_slice(name)
                shape = (frames, height, width, *trailing)
                if tensor.get_dtype() != dtype or tuple(tensor.get_shape()) != shape:
                    raise _shard_error(path, f"has {name} {tensor.get_dtype()} {tuple(tensor.get_shape())}, "
                                             f"expected {dtype} {shape}")
    except (SafetensorError, OSError) as exc:
        raise _shard_error(path, f"is unreadable ({exc})") from None


def load_clip(root: Path | str, seed: int) -> dict[str, np.ndarray]:
    """Every tensor of one recorded clip as stored: low (F, H, W, 3) uint8, depth (F, H, W) float16, ...,
    style/<i> (F, H, W, 3) uint8 in manifest "styles" order."""
    root = Path(root)
    manifest = read_manifest(root)
    entry = next((e for e in manifest["clips"].values() if e["seed"] == seed), None)
    if entry is None:
        recorded = sorted(e["seed"] for e in manifest["clips"].values())
        raise DataError(f"seed {seed} is not recorded in {root}; recorded seeds: {recorded}")
    path = root / entry["file"]
    _check_shard(path, entry["frames"], tuple(manifest["size"]), len(manifest["styles"]), recorded_buffers(manifest))
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise _shard_error(path, f"is unreadable ({exc})") from None


class ClipDataset(Dataset):
    """Windows of `clip_frames` consecutive frames, one item per (clip, window start, style).

    `styles` picks target styles by name or manifest index (default: all). `stride` is the step between window
    starts (default `clip_frames`: windows do not overlap, so an epoch sees every frame once per style; 1 gives
    every possible window).
    """

    def __init__(self, root: Path | str, clip_frames: int, styles: Sequence[str | int] | None = None,
                 stride: int | None = None, depth_far: float = DEPTH_FAR):
        self.root = Path(root)
        manifest = read_manifest(self.root)
        self.style_names: list[str] = list(manifest["styles"])
        self.buffers = recorded_buffers(manifest)
        # style -> the prompts the game gave for it (styles it gave none for left out); None for format 2 (the demo
        # game's, known from its styles)
        self.prompts: dict[str, list[str]] | None = (
            None if "prompts" not in manifest else {s: p for s, p in manifest["prompts"].items() if p})
        self.size: tuple[int, int] = tuple(manifest["size"])  # (W, H)
        self.clip_frames = clip_frames
        self.depth_far = depth_far
        self.style_indices = self._select_styles(styles)
        stride = clip_frames if stride is None else stride
        if clip_frames <= 0 or stride <= 0:
            raise DataError(f"clip_frames and stride must be positive; got {clip_frames} and {stride}")

        # (file, seed, start) for every window, clips in seed order so indexing is reproducible.
        self.windows: list[tuple[Path, int, int]] = []
        for entry in sorted(manifest["clips"].values(), key=lambda e: e["seed"]):
            path = self.root / entry["file"]
            _check_shard(path, entry["frames"], self.size, len(self.style_names), self.buffers)
            if clip_frames > entry["frames"]:
                raise DataError(f"clip_frames={clip_frames} exceeds the {entry['frames']} frames recorded per clip "
                                f"in {self.root}; lower clip_frames or record longer clips")
            self.windows.extend((path, entry["seed"], s) for s in range(0, entry["frames"] - clip_frames + 1, stride))
        if not self.windows:
            raise DataError(f"{self.root} holds no clips yet; record some with `restyler record-data`")
        self._handles: OrderedDict[Path, Any] = OrderedDict()

    def _select_styles(self, styles: Sequence[str | int] | None) -> list[int]:
        if styles is None:
            return list(range(len(self.style_names)))
        chosen = []
        for s in styles:
            if isinstance(s, str) and s in self.style_names:
                chosen.append(self.style_names.index(s))
            elif isinstance(s, int) and 0 <= s < len(self.style_names):
                chosen.append(s)
            else:
                raise DataError(f"unknown style {s!r}; {self.root} has styles {self.style_names}")
        return chosen

    def __len__(self) -> int:
        return len(self.windows) * len(self.style_indices)

    def __getstate__(self) -> dict[str, Any]:
        # Open memory maps do not cross process boundaries; each DataLoader worker reopens its own.
        state = self.__dict__.copy()
        state["_handles"] = OrderedDict()
        return state

    def _open(self, path: Path) -> Any:
        handle = self._handles.get(path)
        if handle is None:
            try:
                handle = safe_open(str(path), framework="pt")
            except (SafetensorError, OSError) as exc:
                raise _shard_error(path, f"is unreadable ({exc})") from None
            self._handles[path] = handle
            while len(self._handles) > OPEN_SHARDS:
                self._handles.popitem(last=False)
        else:
            self._handles.move_to_end(path)
        return handle

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        window, style_pos = divmod(index, len(self.style_indices))
        path, seed, start = self.windows[window]
        style_index = self.style_indices[style_pos]
        f = self._open(path)
        frames = slice(start, start + self.clip_frames)

        def read(name: str) -> torch.Tensor:
            try:
                return f.get_slice(name)[frames]  # (F, H, W, ...) read from the memory map
            except (SafetensorError, OSError) as exc:
                raise _shard_error(path, f"is unreadable ({exc})") from None

        item = {
            "low": rgb_to_unit(read("low")).contiguous(),                              # (F, 3, H, W)
            "style": rgb_to_unit(read(style_key(style_index))).contiguous(),           # (F, 3, H, W)
        }
        decode = {
            "depth": lambda: normalize_depth(read("depth"), self.depth_far).unsqueeze(1),      # (F, 1, H, W)
            "normals": lambda: read("normals").movedim(-1, 1).float().contiguous(),            # (F, 3, H, W)
            "material": lambda: read("material").long().unsqueeze(1),                          # (F, 1, H, W)
            "motion": lambda: read("motion").movedim(-1, 1).float().contiguous(),              # (F, 2, H, W)
            "uv": lambda: read("uv").movedim(-1, 1).float().mul(2.0).sub(1.0).contiguous(),   # (F, 2, H, W)
            "ao": lambda: read("ao").float().mul(2.0).sub(1.0).unsqueeze(1),                  # (F, 1, H, W)
            "sun": lambda: read(sun_key(style_index)).float().mul(2.0).sub(1.0).unsqueeze(1), # (F, 1, H, W)
        }
        item.update({name: decode[name]() for name in self.buffers})
        item.update(style_index=torch.tensor(style_index), seed=torch.tensor(seed), start=torch.tensor(start))
        return item


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack items into a batch: every tensor gains a leading batch dim, e.g. low (B, F, 3, H, W)."""
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


# The G-buffer channels the models read, in order; a model reads the first `gbuffer_channels` of them (the DiT only
# depth and normals), so a game that hands over a prefix of this list serves every model that reads no further.
# The material channel carries the raw id as a float (0 = sky); a model that reads it embeds it (models.network.unet).
GBUFFERS = (("depth", 1), ("normals", 3), ("uv", 2), ("ao", 1), ("sun", 1), ("material", 1))


def gbuffer_slice(buffer: str) -> slice:
    """Where `buffer`'s channels lie among the stacked G-buffers (the order of GBUFFERS)."""
    names = [name for name, _ in GBUFFERS]
    start = sum(channels for _, channels in GBUFFERS[:names.index(buffer)])
    return slice(start, start + GBUFFERS[names.index(buffer)][1])


def gbuffers_of(batch: dict[str, torch.Tensor], device: torch.device | str | None = None) -> torch.Tensor | None:
    """(B, F, C, H, W): the channels of GBUFFERS, in order, as float32 (on `device` when given), up to the first
    buffer the data lacks (all 9 for the demo game's); None when it has none of them (a game that hands over its
    frames alone)."""
    parts = []
    for name, _ in GBUFFERS:
        if name not in batch:
            break
        parts.append(batch[name].float())
    if not parts:
        return None
    stacked = torch.cat(parts, 2)
    return stacked if device is None else stacked.to(device)


def gbuffers_from_arrays(buffers: dict[str, np.ndarray | None]) -> torch.Tensor:
    """The runtime's side of gbuffers_of: a packet's buffers stacked over K frames (depth (K, H, W), normals
    (K, H, W, 3), uv (K, H, W, 2), ao, sun and material (K, H, W)) -> (K, C, H, W) in the training encoding, C
    counting the channels of GBUFFERS up to the first buffer the game did not hand over."""
    parts = []
    for name, _ in GBUFFERS:
        array = buffers.get(name)
        if array is None:
            break
        x = torch.from_numpy(np.ascontiguousarray(array)).float()
        parts.append(encode_gbuffer(name, x[:, None] if x.dim() == 3 else x.permute(0, 3, 1, 2)))
    return torch.cat(parts, 1)


def encode_gbuffer(name: str, x: torch.Tensor) -> torch.Tensor:
    """One G-buffer as the packet carries it (float) -> the training encoding, any layout: log depth, normals and
    material ids as they are, the [0, 1] buffers (uv, ao, sun) mapped to [-1, 1]."""
    return normalize_depth(x) if name == "depth" else x if name in ("normals", "material") else x * 2 - 1


def make_loader(root: Path | str, batch: int, clip_frames: int, *, styles: Sequence[str | int] | None = None,
                stride: int | None = None, shuffle: bool = True, num_workers: int = 0, seed: int = 0,
                drop_last: bool = True) -> DataLoader:
    """Batches of windows: every tensor of an item gains a leading batch dim, e.g. low (B, F, 3, H, W).

    `seed` fixes the shuffle order so a resumed run can replay it; `drop_last` keeps every batch the same size.
    """
    dataset = ClipDataset(root, clip_frames, styles=styles, stride=stride)
    if drop_last and len(dataset) < batch:
        raise DataError(f"{root} gives {len(dataset)} windows of {clip_frames} frames, fewer than one batch of "
                        f"{batch}; lower the batch or clip_frames, or record more seeds")
    return DataLoader(dataset, batch_size=batch, shuffle=shuffle, num_workers=num_workers, drop_last=drop_last,
                      generator=torch.Generator().manual_seed(seed), persistent_workers=num_workers > 0)
