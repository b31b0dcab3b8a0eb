"""Record training data: the scripted bot plays one clip per seed and every pass is saved as a safetensors shard.

Called by `restyler record-data` (cli/record_data.py) and by tests; read back by models/io/data.py. The on-disk format
is the contract in docs/interfaces.md ("Recorded data"). Recording is resumable and never loses finished work: each
clip is written under a temporary name and renamed, and manifest.json is rewritten atomically after every clip, so an
interrupted run loses at most the clip in progress and a rerun skips every clip already listed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file
from tqdm import tqdm

from models.io.atomic import write_atomic

from .config import at_pace

FORMAT = 2  # 2 added the uv, ao and per-style sun G-buffers
FIRST_EVAL_SEED = 1000  # seeds from here up are held-out evaluation worlds (docs/evaluation.md)
MANIFEST = "manifest.json"
PARTIAL = ".partial"  # suffix of a shard being written; never listed in the manifest

# Per-frame layout of every tensor in a shard: name -> (stored dtype, trailing dims after (H, W)).
# A shard stacks these frame-major: (F, H, W, *trailing). The reference styles follow as style/<i>, uint8 (3,), and
# each style's sun G-buffer as sun/<i>, float16.
FIELDS: dict[str, tuple[np.dtype, tuple[int, ...]]] = {
    "low": (np.dtype(np.uint8), (3,)),       # packet.rgb, the low-detail pass
    "depth": (np.dtype(np.float16), ()),     # linear depth in blocks; float16 keeps ~0.06 at the 120-block far plane
    "normals": (np.dtype(np.float16), (3,)),
    "material": (np.dtype(np.uint8), ()),
    "motion": (np.dtype(np.float16), (2,)),  # pixels; float16 resolves 1/32 px below 64 px of motion
    "uv": (np.dtype(np.float16), (2,)),      # position within the block's face, [0, 1)
    "ao": (np.dtype(np.float16), ()),        # voxel ambient occlusion, [0, 1]
}
STYLE_FIELD = (np.dtype(np.uint8), (3,))
SUN_FIELD = (np.dtype(np.float16), ())  # per style: the sun G-buffer depends on the style's light


class RecordError(ValueError):
    """A recording request that cannot be honoured; the message says what was expected and what to do."""


def clip_name(seed: int) -> str:
    return f"seed_{seed:04d}"


def style_key(index: int) -> str:
    return f"style/{index}"


def sun_key(index: int) -> str:
    return f"sun/{index}"


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

    def layout(self) -> dict[str, tuple[np.dtype, tuple[int, ...]]]:
        """Tensor name -> (dtype, full shape) of one shard."""
        width, height = self.size
        fields = dict(FIELDS)
        fields.update({style_key(i): STYLE_FIELD for i in range(len(self.styles))})
        fields.update({sun_key(i): SUN_FIELD for i in range(len(self.styles))})
        return {name: (dtype, (self.frames, height, width, *trailing)) for name, (dtype, trailing) in fields.items()}

    def manifest(self, clips: dict[str, dict[str, Any]]) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "size": list(self.size),
            "frames": self.frames,
            "fps": self.fps,
            "styles": list(self.styles),
            "pace": self.pace,
            "clips": {name: clips[name] for name in sorted(clips)},
        }

    def diff(self, other: DatasetSpec) -> list[tuple[str, Any, Any]]:
        """(field, self's value, other's value) for every field that differs, as a user would write them."""
        mine, theirs = self.user_facing(), other.user_facing()
        return [(field, mine[field], theirs[field]) for field in mine if mine[field] != theirs[field]]

    def user_facing(self) -> dict[str, Any]:
        return {"size": f"{self.size[0]}x{self.size[1]}", "frames": self.frames, "fps": self.fps,
                "styles": list(self.styles), "pace": self.pace}

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> DatasetSpec:
        width, height = manifest["size"]
        return cls(size=(int(width), int(height)), frames=int(manifest["frames"]), fps=int(manifest["fps"]),
                   styles=tuple(manifest["styles"]), pace=float(manifest.get("pace", 1.0)))


# ---------------------------------------------------------------------------------------------------------------
# Seams the tests replace: the game and its GL context are imported lazily so that `restyler --help` stays fast
# and this module imports on machines without a GL stack.


def _load_game() -> tuple[type, type, dict]:
    from demo_game import STYLES, GameConfig, GameSession

    return GameConfig, GameSession, STYLES


def _open_context() -> Any:
    """One headless EGL context shared by every clip: creating one per clip costs more than a short clip."""
    from demo_game.session import create_headless_context

    try:
        return create_headless_context()
    except RuntimeError as exc:  # no EGL here: one line for the CLI, not a traceback
        raise RecordError(str(exc)) from None


# ---------------------------------------------------------------------------------------------------------------
# Atomic files


def _write_json_atomic(path: Path, obj: Any) -> None:
    text = json.dumps(obj, indent=1) + "\n"
    write_atomic(path, lambda tmp: Path(tmp).write_text(text), tmp=path.with_name(path.name + PARTIAL))


def _write_shard_atomic(path: Path, arrays: dict[str, np.ndarray], metadata: dict[str, Any]) -> None:
    # One metadata key only: safetensors writes metadata in hash order, and several keys would make two recordings
    # of the same seed differ byte-wise.
    write_atomic(path, lambda tmp: save_file(arrays, tmp, metadata={"restyler": json.dumps(metadata, sort_keys=True)}),
                 tmp=path.with_name(path.name + PARTIAL))


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


def _check_compatible(out: Path, manifest: dict[str, Any], spec: DatasetSpec) -> None:
    if manifest.get("format") != FORMAT:
        raise RecordError(f"{out / MANIFEST} has format {manifest.get('format')!r}, this version writes format "
                          f"{FORMAT}; record into a new --out directory")
    existing = DatasetSpec.from_manifest(manifest)
    if existing != spec:
        diff = existing.diff(spec)
        recorded = ", ".join(f"{field} {old}" for field, old, _ in diff)
        asked = ", ".join(f"{field} {new}" for field, _, new in diff)
        raise RecordError(f"{out} already holds clips with {recorded}; this run asks for {asked}. Clips with different "
                          "settings are never mixed: record into a new --out directory, or rerun with the original "
                          "settings to extend it")


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
# Recording


def _store(arrays: dict[str, np.ndarray], name: str, frame: int, value: np.ndarray | None, seed: int) -> None:
    target = arrays[name]
    if value is None or np.shape(value) != target.shape[1:]:
        got = "nothing" if value is None else f"shape {np.shape(value)}"
        raise RecordError(f"seed {seed} frame {frame}: the game gave {got} for {name!r}, expected shape "
                          f"{target.shape[1:]}")
    target[frame] = value  # casts float32 G-buffers to the stored float16


def record_clip(game: Any, spec: DatasetSpec, seed: int, progress: tqdm | None = None) -> dict[str, np.ndarray]:
    """Step an open game session spec.frames times; return the shard's tensors (names and shapes of spec.layout)."""
    arrays = {name: np.empty(shape, dtype) for name, (dtype, shape) in spec.layout().items()}
    for frame in range(spec.frames):
        packet = game.step()
        _store(arrays, "low", frame, packet.rgb, seed)
        for name in ("depth", "normals", "material", "motion", "uv", "ao"):
            _store(arrays, name, frame, getattr(packet, name), seed)
        refs = game.render_styles()
        if list(refs) != list(spec.styles):
            raise RecordError(f"seed {seed}: the game rendered styles {list(refs)}, expected {list(spec.styles)}")
        suns = game.render_suns()
        for i, style in enumerate(spec.styles):
            _store(arrays, style_key(i), frame, refs[style], seed)
            _store(arrays, sun_key(i), frame, suns.get(style), seed)
        if progress is not None:
            progress.update(1)
    return arrays


def _check_seeds(seeds: Iterable[int], force_eval_seeds: bool) -> list[int]:
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


def record_dataset(out: Path, seeds: Iterable[int], frames: int, size: tuple[int, int],
                   force_eval_seeds: bool = False, progress: bool = True, ctx: Any = None,
                   pace: float = 1.0) -> dict[str, Any]:
    """Record one clip per seed into `out` (created if needed); return the final manifest.

    Clips already listed in the manifest whose shard is intact are skipped, so a rerun resumes. `ctx` is a
    moderngl context to render with; by default one EGL context is opened and shared by all clips.
    Raises RecordError for seeds >= 1000 without `force_eval_seeds`, and when `out` already holds clips recorded
    with a different size, frame count, fps or style list.
    """
    out = Path(out)
    seeds = _check_seeds(seeds, force_eval_seeds)
    if frames <= 0:
        raise RecordError(f"frames must be positive; got {frames}")
    width, height = size
    if width <= 0 or height <= 0:
        raise RecordError(f"size must be positive; got {width}x{height}")
    if not 0 < pace <= 4:
        raise RecordError(f"pace must be in (0, 4] (a multiple of the bot's normal speed); got {pace}")

    GameConfig, GameSession, styles = _load_game()
    base = GameConfig(width=width, height=height)
    spec = DatasetSpec(size=(width, height), frames=frames, fps=base.fps, styles=tuple(styles), pace=pace)

    def game_config(seed: int) -> Any:
        return at_pace(replace(base, seed=seed), pace)

    out.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(out)
    if manifest is not None:
        _check_compatible(out, manifest, spec)
    clips: dict[str, dict[str, Any]] = dict(manifest["clips"]) if manifest is not None else {}
    for stale in out.glob("*" + PARTIAL):  # leftovers of an interrupted write; never listed, safe to drop
        stale.unlink()

    def done(seed: int) -> bool:
        entry = clips.get(clip_name(seed))
        return entry is not None and shard_ok(out / entry["file"], spec)

    todo = [s for s in seeds if not done(s)]
    bar = tqdm(total=frames * len(seeds), initial=frames * (len(seeds) - len(todo)), unit="frame",
               desc=f"record-data {out}", disable=not progress, dynamic_ncols=True)
    own_ctx = None
    try:
        if todo and ctx is None:
            ctx = own_ctx = _open_context()
        for seed in todo:
            name = clip_name(seed)
            bar.set_postfix_str(name)
            with GameSession(game_config(seed), ctx=ctx) as game:
                arrays = record_clip(game, spec, seed, bar)
            entry = {"seed": seed, "file": f"{name}.safetensors", "frames": frames}
            _write_shard_atomic(out / entry["file"], arrays,
                                {"format": FORMAT, "seed": seed, "fps": spec.fps, "styles": list(spec.styles)})
            clips[name] = entry
            _write_json_atomic(out / MANIFEST, spec.manifest(clips))
    finally:
        bar.close()
        if own_ctx is not None:
            own_ctx.release()
    return spec.manifest(clips)
