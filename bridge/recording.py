"""Record training data from any game: per frame, its cheap frame and the frame it wishes it could draw.

A game that wants its own restyler hands the recorder, every tick, a `TrainingFrame`: the FramePacket it would
stream at play time (the cheap RGB, and whichever G-buffers and motion it has) and its target look in every style it
offers (its own expensive render, or any look it wants learnt). The recorder writes the sharded dataset
`restyler train` reads (docs/interfaces.md, "Recorded data"):

    writer = DatasetWriter(out, frames=120, size=(128, 128))
    with writer.clip(seed, spec) as clip:        # spec: spec_for(first_frame, game, 120, pace=1.0)
        for _ in range(120):
            clip.add(TrainingFrame(packet, {"lit": expensive_rgb}))

or, with a `GameFactory` that opens a seeded game playing itself, `record_dataset(out, factory, seeds, ...)`,
which is what `restyler record-data --game module:factory` runs. The demo game records through this same path.

Nothing finished is ever lost: a clip is kept in memory until its last frame, then written under a temporary name
and renamed, and manifest.json is rewritten atomically after every clip. A clip whose frames are refused, a full
disk or an interrupted run lose at most the clip in progress; a rerun skips every clip already listed.
"""

from __future__ import annotations

import errno
import importlib
import json
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, Sequence

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from bridge.errors import InvalidFrameError
from bridge.outputs import write_atomic
from bridge.packet import FramePacket, describe

# 3 lists the buffers a dataset holds and its styles' prompts in the manifest; the shards are unchanged from
# format 2 (SHARD_FORMAT): a recording with every buffer writes the very bytes it did before
FORMAT = 3
SHARD_FORMAT = 2
READABLE_FORMATS = (2, 3)
FIRST_EVAL_SEED = 1000  # seeds from here up are held-out evaluation worlds (docs/evaluation.md)
MANIFEST = "manifest.json"
PARTIAL = ".partial"  # suffix of a file being written; never listed in the manifest

# The per-frame buffers a shard may hold besides the cheap frame ("low"): name -> (stored dtype, trailing dims after
# (H, W)), in the order a shard stacks them. A shard stacks every tensor frame-major, (F, H, W, *trailing).
LOW_FIELD = (np.dtype(np.uint8), (3,))   # packet.rgb, the cheap frame
BUFFERS: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "depth": (np.dtype(np.float16), ()),     # linear depth; float16 keeps ~0.06 at a 120-unit far plane
    "normals": (np.dtype(np.float16), (3,)),
    "material": (np.dtype(np.uint8), ()),
    "motion": (np.dtype(np.float16), (2,)),  # pixels; float16 resolves 1/32 px below 64 px of motion
    "uv": (np.dtype(np.float16), (2,)),      # position within the surface's texture tile, [0, 1)
    "ao": (np.dtype(np.float16), ()),        # ambient occlusion, [0, 1]
}
# per style: the target as style/<i>, and the style's sunlight as sun/<i> when the game hands it over
STYLE_FIELD = (np.dtype(np.uint8), (3,))
SUN_FIELD = (np.dtype(np.float16), ())
SUN = "sun"   # the name under which a dataset lists its per-style sun buffers among its buffers


class RecordError(ValueError):
    """A recording that cannot go on; the message says what was expected and what to do. Finished clips stay."""


def clip_name(seed: int) -> str:
    return f"seed_{seed:04d}"


def style_key(index: int) -> str:
    return f"style/{index}"


def sun_key(index: int) -> str:
    return f"sun/{index}"


# ---------------------------------------------------------------------------------------------------------------
# What a game hands over


@dataclass
class TrainingFrame:
    """One tick of a game being recorded.

    packet   the frame the game would stream at play time: its cheap RGB and any G-buffers and motion
             (FramePacket's contract; the sun buffer, which depends on the style, goes in `suns` instead)
    targets  style name -> uint8 (H, W, 3): the frame the game wishes it could draw, the packet's size, for every
             style the game offers, in the game's style order
    suns     style name -> float32 (H, W): the style's direct sunlight in [0, 1], for every style, or None when
             the game has no such buffer
    """

    packet: FramePacket
    targets: dict[str, np.ndarray]
    suns: dict[str, np.ndarray] | None = None


class RecordableGame(Protocol):
    """A seeded game that plays itself (a bot, a replay, a scripted camera) and hands over training frames."""

    styles: Mapping[str, Sequence[str]]   # style name -> the prompts a player would type for it, in target order
    fps: int

    def training_frame(self) -> TrainingFrame:
        """Advance one tick and return what it shows."""

    def close(self) -> None:
        """Release whatever the game holds (windows, GL contexts)."""

    # Optional: `def play_frame(self) -> FramePacket`, one tick as it is played (the packet alone, no targets),
    # which `restyler bench --game` runs the game with beside the model.


@dataclass(frozen=True)
class RecordingRequest:
    """What the recorder asks a GameFactory for: the level or world `seed`, the frame `size` (W, H), and `pace`, the
    speed of its bot as a multiple of normal (0.3: a calm camera)."""

    seed: int
    size: tuple[int, int]
    pace: float = 1.0


GameFactory = Callable[[RecordingRequest], RecordableGame]


def load_factory(spec: str) -> GameFactory:
    """`module:callable` -> the GameFactory it names, e.g. "tile_game:recordable"."""
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise RecordError(f"--game expects module:factory (for example tile_game:recordable), got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise RecordError(f"--game {spec}: cannot import {module_name!r} ({exc}); is it on the Python path?") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise RecordError(f"--game {spec}: {module_name} has no callable {attr!r}")
    return factory


# ---------------------------------------------------------------------------------------------------------------
# The dataset's shape


@dataclass(frozen=True)
class DatasetSpec:
    """What every clip in one dataset directory shares; two specs that differ must never share a directory."""

    size: tuple[int, int]  # (W, H)
    frames: int
    fps: int
    styles: tuple[str, ...]  # manifest order: style/<i> is styles[i]
    # the bot's walking and turning speed as a multiple of the game's: 1 for restyling data (the bot covers the
    # world fast); a calm camera (0.3) for the generation stage, whose continuations must be learnable
    pace: float = 1.0
    buffers: tuple[str, ...] = (*BUFFERS, SUN)   # which of BUFFERS (and SUN) every frame carries, in that order
    prompts: tuple[tuple[str, ...], ...] = ()     # per style, the prompts the game gave for it

    def layout(self) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
        """Tensor name -> (dtype, full shape) of one shard."""
        width, height = self.size
        fields = {"low": LOW_FIELD, **{name: BUFFERS[name] for name in self.buffers if name != SUN}}
        fields.update({style_key(i): STYLE_FIELD for i in range(len(self.styles))})
        if SUN in self.buffers:
            fields.update({sun_key(i): SUN_FIELD for i in range(len(self.styles))})
        return {name: (dtype, (self.frames, height, width, *trailing)) for name, (dtype, trailing) in fields.items()}

    def manifest(self, clips: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "size": list(self.size),
            "frames": self.frames,
            "fps": self.fps,
            "styles": list(self.styles),
            "prompts": {style: list(p) for style, p in zip(self.styles, self.prompts)},
            "buffers": list(self.buffers),
            "pace": self.pace,
            "clips": {name: clips[name] for name in sorted(clips)},
        }

    def diff(self, other: DatasetSpec) -> list[tuple[str, Any, Any]]:
        """(field, self's value, other's value) for every field that differs, as a user would write them."""
        mine, theirs = self.user_facing(), other.user_facing()
        return [(field, mine[field], theirs[field]) for field in mine if mine[field] != theirs[field]]

    def user_facing(self) -> dict[str, Any]:
        return {"size": f"{self.size[0]}x{self.size[1]}", "frames": self.frames, "fps": self.fps,
                "styles": list(self.styles), "pace": self.pace, "buffers": list(self.buffers),
                "prompts": [list(p) for p in self.prompts]}

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> DatasetSpec:
        width, height = manifest["size"]
        styles = tuple(manifest["styles"])
        prompts = manifest.get("prompts")   # format 2 recorded the demo game only; its prompts live in its styles
        return cls(size=(int(width), int(height)), frames=int(manifest["frames"]), fps=int(manifest["fps"]),
                   styles=styles, pace=float(manifest.get("pace", 1.0)),
                   buffers=tuple(manifest.get("buffers", (*BUFFERS, SUN))),
                   prompts=() if prompts is None else tuple(tuple(prompts[s]) for s in styles))


def handed_buffers(packet: FramePacket) -> list[str]:
    """The BUFFERS a packet carries, in the order a shard stacks them."""
    return [name for name in BUFFERS if getattr(packet, name) is not None]


def spec_for(frame: TrainingFrame, game: RecordableGame, frames: int, pace: float) -> DatasetSpec:
    """The dataset a game's first frame implies: its size, styles and prompts, and the buffers it hands over."""
    packet = frame.packet
    if not isinstance(packet, FramePacket):
        raise RecordError(f"TrainingFrame.packet: expected a FramePacket, got {describe(packet)}")
    buffers = handed_buffers(packet)
    if frame.suns is not None:
        buffers.append(SUN)
    styles = tuple(game.styles)
    if not styles:
        raise RecordError("the game offers no styles: RecordableGame.styles must name at least one target look")
    return DatasetSpec(size=packet.size, frames=frames, fps=int(game.fps), styles=styles, pace=pace,
                       buffers=tuple(buffers), prompts=tuple(tuple(game.styles[s]) for s in styles))


# ---------------------------------------------------------------------------------------------------------------
# Files


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """bridge.outputs.write_atomic under the recorder's ".partial" name (a later run drops such leftovers of a hard
    kill): `path` is either absent, the old file or the whole new one. A full disk or any other OSError is reported
    as one RecordError."""
    try:
        write_atomic(path, write, tmp=path.with_name(path.name + PARTIAL))
    except OSError as exc:
        why = "the disk is full" if exc.errno == errno.ENOSPC else str(exc)
        raise RecordError(f"could not write {path}: {why}. Every clip already listed in {path.parent / MANIFEST} "
                          "is kept; free some space and rerun the same command to go on") from None


def _write_json(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=1) + "\n"
    _write_atomic(path, lambda tmp: tmp.write_text(text))


def _write_shard(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
    # One metadata key only: safetensors writes metadata in hash order, and several keys would make two recordings
    # of the same seed differ byte-wise.
    meta = {"restyler": json.dumps(metadata, sort_keys=True)}
    _write_atomic(path, lambda tmp: save_file(arrays, str(tmp), metadata=meta))


def read_manifest(out: Path) -> dict[str, Any] | None:
    """The manifest of a dataset directory, or None when there is none yet."""
    path = Path(out) / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
        DatasetSpec.from_manifest(manifest)
        manifest["clips"]
    except (ValueError, KeyError, TypeError) as exc:
        raise RecordError(f"{path} is not a readable manifest ({exc}); move the directory aside and record into a "
                          "fresh --out") from None
    return manifest


_NP_DTYPES = {"U8": np.uint8, "F16": np.float16, "F32": np.float32, "I64": np.int64}  # safetensors dtype names


def shard_ok(path: Path, spec: DatasetSpec) -> bool:
    """Whether a shard on disk is complete and has the layout `spec` implies (reads the header only)."""
    layout = spec.layout()
    try:
        with safe_open(str(path), framework="np") as f:
            if set(f.keys()) != set(layout):
                return False
            for name, (dtype, shape) in layout.items():
                tensor = f.get_slice(name)
                if tuple(tensor.get_shape()) != shape or np.dtype(_NP_DTYPES[tensor.get_dtype()]) != dtype:
                    return False
    except (SafetensorError, OSError, KeyError):
        return False
    return True


# ---------------------------------------------------------------------------------------------------------------
# Writing


class ClipBuffer:
    """The frames of one clip in progress: `add` checks and stores each; nothing reaches the disk until the last."""

    def __init__(self, spec: DatasetSpec, seed: int):
        self.spec, self.seed, self.count = spec, seed, 0
        self.arrays = {name: np.empty(shape, dtype) for name, (dtype, shape) in spec.layout().items()}

    def _where(self) -> str:
        return f"seed {self.seed} frame {self.count}"

    def add(self, frame: TrainingFrame) -> None:
        spec = self.spec
        if self.count >= spec.frames:
            raise RecordError(f"seed {self.seed}: the clip already has its {spec.frames} frames")
        if not isinstance(frame, TrainingFrame):
            raise RecordError(f"{self._where()}: expected a TrainingFrame, got {describe(frame)}")
        packet = frame.packet
        try:
            if not isinstance(packet, FramePacket):
                raise InvalidFrameError(f"TrainingFrame.packet: expected a FramePacket, got {describe(packet)}")
            packet.validate()
        except InvalidFrameError as exc:
            raise RecordError(f"{self._where()}: {exc}") from None
        if packet.size != spec.size:
            raise RecordError(f"{self._where()}: the packet is {packet.width}x{packet.height}, this dataset records "
                              f"{spec.size[0]}x{spec.size[1]}")
        handed = handed_buffers(packet)
        wanted = [name for name in spec.buffers if name != SUN]
        if handed != wanted:
            raise RecordError(f"{self._where()}: the packet carries buffers {handed}, every frame of this dataset "
                              f"carries {wanted}")
        self._store("low", packet.rgb)
        for name in wanted:
            self._store(name, getattr(packet, name))
        self._store_styles("targets", frame.targets, np.uint8, (*spec.size[::-1], 3), style_key)
        if SUN in spec.buffers or frame.suns is not None:
            if SUN not in spec.buffers:
                raise RecordError(f"{self._where()}: the frame hands over sun buffers, this dataset has none (its "
                                  "first frame had none)")
            self._store_styles("suns", frame.suns, np.float32, spec.size[::-1], sun_key)
        self.count += 1

    def _store(self, name: str, value: np.ndarray) -> None:
        self.arrays[name][self.count] = value   # casts the packet's float32 buffers to the stored float16

    def _store_styles(self, what: str, per_style: Any, dtype: type, shape: tuple[int, ...],
                      key: Callable[[int], str]) -> None:
        styles = list(self.spec.styles)
        if not isinstance(per_style, dict) or list(per_style) != styles:
            got = list(per_style) if isinstance(per_style, dict) else describe(per_style)
            raise RecordError(f"{self._where()}: TrainingFrame.{what} has styles {got}, expected {styles} (the "
                              "game's styles, in order)")
        for i, style in enumerate(styles):
            value = per_style[style]
            if not (isinstance(value, np.ndarray) and value.dtype == dtype and value.shape == shape):
                raise RecordError(f"{self._where()}: TrainingFrame.{what}[{style!r}] should be a {np.dtype(dtype)} "
                                  f"array of shape {shape} (the packet's size), got {describe(value)}")
            if dtype is np.float32 and not np.isfinite(value).all():
                raise RecordError(f"{self._where()}: TrainingFrame.{what}[{style!r}] holds NaN or inf")
            self.arrays[key(i)][self.count] = value


class DatasetWriter:
    """A dataset directory opened for recording: resumes what is there, refuses settings that differ from it.

    The spec (size, styles, buffers) is fixed by the existing manifest or, in a new directory, by the first frame
    handed over; every later frame must match it.
    """

    def __init__(self, out: Path | str, frames: int, size: tuple[int, int], pace: float = 1.0):
        self.out = Path(out)
        width, height = size
        if width <= 0 or height <= 0:
            raise RecordError(f"size must be positive; got {width}x{height}")
        if frames <= 0:
            raise RecordError(f"frames must be positive; got {frames}")
        if not 0 < pace <= 4:
            raise RecordError(f"pace must be in (0, 4] (a multiple of the bot's normal speed); got {pace}")
        self.frames, self.pace = frames, pace
        self.out.mkdir(parents=True, exist_ok=True)
        manifest = read_manifest(self.out)
        if manifest is not None and manifest.get("format") not in READABLE_FORMATS:
            raise RecordError(f"{self.out / MANIFEST} has format {manifest.get('format')!r}, this version writes "
                              f"format {FORMAT}; record into a new --out directory")
        self.recorded = None if manifest is None else DatasetSpec.from_manifest(manifest)
        if self.recorded is not None:   # what is known before any frame arrives is checked at once
            self._check(replace(self.recorded, size=tuple(size), frames=frames, pace=pace))
        self.spec: DatasetSpec | None = None
        self.clips: dict[str, dict[str, Any]] = {} if manifest is None else dict(manifest["clips"])
        for stale in self.out.glob("*" + PARTIAL):  # leftovers of an interrupted write; never listed, safe to drop
            stale.unlink()

    def done(self, seed: int) -> bool:
        """Whether `seed`'s clip is listed and intact (a rerun skips it)."""
        entry = self.clips.get(clip_name(seed))
        spec = self.spec or self.recorded
        return entry is not None and spec is not None and shard_ok(self.out / entry["file"], spec)

    def set_spec(self, spec: DatasetSpec) -> None:
        """Fix what every clip holds; raises RecordError when the directory already holds something else."""
        self._check(spec)
        self.spec = spec

    def _check(self, spec: DatasetSpec) -> None:
        recorded = self.recorded
        if recorded is not None and not recorded.prompts:   # a format-2 manifest: the prompts were not listed
            recorded = replace(recorded, prompts=spec.prompts)
        if recorded is not None and recorded != spec:
            diff = recorded.diff(spec)
            was = ", ".join(f"{field} {old}" for field, old, _ in diff)
            asked = ", ".join(f"{field} {new}" for field, _, new in diff)
            raise RecordError(f"{self.out} already holds clips with {was}; this run asks for {asked}. Clips with "
                              "different settings are never mixed: record into a new --out directory, or rerun with "
                              "the original settings to extend it")

    @contextmanager
    def clip(self, seed: int, spec: DatasetSpec | None = None) -> Iterator[ClipBuffer]:
        """Collect one clip's frames; on leaving the block with all of them, write the shard and the manifest. An
        exception inside the block drops this clip only."""
        if spec is not None:
            self.set_spec(spec)
        if self.spec is None:
            raise RecordError("the dataset's spec is not known yet: pass the spec of the game's first frame "
                              "(spec_for) to the first clip")
        buffer = ClipBuffer(self.spec, seed)
        yield buffer
        if buffer.count != self.spec.frames:
            raise RecordError(f"seed {seed}: the clip ended after {buffer.count} of its {self.spec.frames} frames; "
                              "nothing of it was written")
        self._finish(buffer)

    def _finish(self, buffer: ClipBuffer) -> None:
        spec, seed = buffer.spec, buffer.seed
        name = clip_name(seed)
        entry = {"seed": seed, "file": f"{name}.safetensors", "frames": spec.frames}
        _write_shard(self.out / entry["file"], buffer.arrays,
                     {"format": SHARD_FORMAT, "seed": seed, "fps": spec.fps, "styles": list(spec.styles)})
        self.clips[name] = entry
        _write_json(self.out / MANIFEST, spec.manifest(self.clips))

    def manifest(self) -> dict[str, Any]:
        spec = self.spec or self.recorded
        return {} if spec is None else spec.manifest(self.clips)


def check_seeds(seeds: Iterable[int], force_eval_seeds: bool) -> list[int]:
    seeds = list(seeds)
    if not seeds:
        raise RecordError("no seeds to record; pass --seeds A:B with A < B")
    if any(not isinstance(s, (int, np.integer)) or s < 0 for s in seeds):
        raise RecordError(f"seeds must be non-negative integers; got {seeds}")
    held_out = [s for s in seeds if s >= FIRST_EVAL_SEED]
    if held_out and not force_eval_seeds:
        raise RecordError(f"seeds {held_out[0]}..{held_out[-1]} are held-out evaluation worlds (seeds >= "
                          f"{FIRST_EVAL_SEED}); training on them would leak the eval set. Use seeds below "
                          f"{FIRST_EVAL_SEED}, or pass --force-eval-seeds to build an evaluation set on purpose")
    return seeds


def record_dataset(out: Path | str, factory: GameFactory, seeds: Iterable[int], frames: int, size: tuple[int, int],
                   force_eval_seeds: bool = False, progress: bool = True, pace: float = 1.0) -> dict[str, Any]:
    """Record one clip per seed from games `factory` opens into `out` (created if needed); return the manifest.

    Clips already listed whose shard is intact are skipped, so a rerun resumes. Raises RecordError for seeds >= 1000
    without `force_eval_seeds`, for frames the dataset cannot take, and when `out` already holds clips recorded with
    other settings.
    """
    from tqdm import tqdm

    seeds = check_seeds(seeds, force_eval_seeds)
    writer = DatasetWriter(out, frames, size, pace)
    todo = [s for s in seeds if not writer.done(s)]
    bar = tqdm(total=frames * len(seeds), initial=frames * (len(seeds) - len(todo)), unit="frame",
               desc=f"record-data {out}", disable=not progress, dynamic_ncols=True)
    try:
        for seed in todo:
            bar.set_postfix_str(clip_name(seed))
            game = factory(RecordingRequest(seed=seed, size=tuple(size), pace=pace))
            try:
                first = game.training_frame()
                spec = spec_for(first, game, frames, pace)
                if spec.size != tuple(size):
                    raise RecordError(f"seed {seed}: the game drew {spec.size[0]}x{spec.size[1]} frames when asked "
                                      f"for {size[0]}x{size[1]}; a GameFactory must honour RecordingRequest.size")
                with writer.clip(seed, spec) as clip:
                    for i in range(frames):
                        clip.add(first if i == 0 else game.training_frame())
                        bar.update(1)
            finally:
                game.close()
    finally:
        bar.close()
    return writer.manifest()
