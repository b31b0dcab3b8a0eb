"""Checkpoint I/O: safetensors for tensors, JSON beside them for the config and metadata; never pickle.

A checkpoint `NAME` in a directory is two files, `NAME.safetensors` and `NAME.json`. Each is written to a temporary
file, flushed and renamed into place (the JSON last), so a reader never sees half a file. Both carry the same random
save id: a save interrupted between the two renames leaves a pair whose ids differ, which load refuses instead of
pairing new weights with an old config. Called by training (model weights and the exact-resume training state) and by
everything that loads a model (eval, the runtime).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from models.io import config
from models.io.atomic import write_atomic

FORMAT = 1
T = TypeVar("T")


class CheckpointError(RuntimeError):
    """A checkpoint that is missing or cannot be read; the message says which file and what to do."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint file that is there but damaged (truncated, not JSON, not safetensors): `path` and `reason` let a
    caller say how to get that very file back (a shipped model is restored, not retrained)."""

    def __init__(self, message: str, path: Path, reason: str):
        super().__init__(message)
        self.path, self.reason = path, reason


def paths(directory: Path | str, name: str) -> tuple[Path, Path]:
    directory = Path(directory)
    return directory / f"{name}.safetensors", directory / f"{name}.json"


def config_from_json(cls: type[T], data: Any, source: str = "") -> T:
    """A config dataclass back from its JSON form (dataclasses.asdict), every field checked (models.io.config);
    a field of the wrong type or out of range is a CheckpointError naming `source` (the file and key), the field,
    its value and what was expected."""
    try:
        return config.config_from_json(cls, data)
    except config.ConfigError as exc:
        raise CheckpointError(f"{source}: {exc}" if source else str(exc)) from None


def save_checkpoint(directory: Path | str, name: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                    dtype: torch.dtype | None = None) -> None:
    """Write NAME.safetensors (optionally cast to `dtype`, e.g. float16 for shipping) and NAME.json (`meta`)."""
    weights_path, meta_path = paths(directory, name)
    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().contiguous().cpu()
               for k, v in tensors.items()}
    save_id = uuid.uuid4().hex
    write_atomic(weights_path, lambda tmp: save_file(tensors, tmp, metadata={"save_id": save_id}))
    body = json.dumps({"format": FORMAT, **meta, "save_id": save_id}, indent=2, sort_keys=True)
    write_atomic(meta_path, lambda tmp: Path(tmp).write_text(body + "\n"))


def exists(directory: Path | str, name: str) -> bool:
    return all(p.is_file() for p in paths(directory, name))


def load_checkpoint(directory: Path | str, name: str, hint: str = "") -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """(tensors, meta) of NAME in `directory`, tensors as stored (call .float() to compute on CPU).

    `hint` is appended to errors to say how to get the file (e.g. "train it with `restyler train teacher`")."""
    weights_path, meta_path = paths(directory, name)
    suffix = f"; {hint}" if hint else ""
    for path in (weights_path, meta_path):
        if not path.is_file():
            raise CheckpointError(f"missing checkpoint file {path}{suffix}")

    def damaged(path: Path, reason: str) -> DamagedCheckpointError:
        return DamagedCheckpointError(f"{path} is damaged ({reason}){suffix}", path, reason)

    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise damaged(meta_path, f"not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise damaged(meta_path, f"not a restyler checkpoint of format {FORMAT}")
    try:
        with safe_open(str(weights_path), framework="pt") as f:
            save_id = (f.metadata() or {}).get("save_id")
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise damaged(weights_path, f"truncated or not a safetensors file: {exc}") from None
    if save_id != meta.get("save_id"):
        raise CheckpointError(f"{weights_path} and {meta_path} come from different saves (a save was interrupted); "
                              f"resume or retrain to write a matching pair{suffix}")
    return tensors, meta


def load_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str,
              may_miss: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Copy `tensors` into `module` (casting to its dtype); any missing or unexpected name is one clear error, but
    for the names in `may_miss`, which keep the module's own values (weights that start as the identity). Returns
    the names of `may_miss` that `tensors` lacked: the ones that start fresh."""
    own = module.state_dict()
    fresh = tuple(k for k in may_miss if k in own and k not in tensors)
    tensors = {**tensors, **{k: own[k] for k in fresh}}
    missing, extra = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    wrong = sorted(k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    if missing or extra or wrong:
        raise CheckpointError(f"{source} does not match this model (missing {missing[:4]}, unexpected {extra[:4]}, "
                              f"wrong shape {wrong[:4]}); was it trained with another size or version?")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()})
    return fresh
