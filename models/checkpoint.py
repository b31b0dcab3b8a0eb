"""Checkpoint I/O: safetensors for tensors, JSON beside them for the config and metadata; never pickle.

A checkpoint `NAME` in a directory is two files, `NAME.safetensors` and `NAME.json`. Both are written to a temporary
file, flushed and renamed into place (the JSON last), so an interrupted save leaves the previous checkpoint intact and
a reader never sees half a file. Called by training (model weights and the exact-resume training state) and by
everything that loads a model (eval, the runtime).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint that is missing or cannot be read; the message says which file and what to do."""


def paths(directory: Path | str, name: str) -> tuple[Path, Path]:
    directory = Path(directory)
    return directory / f"{name}.safetensors", directory / f"{name}.json"


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(directory: Path | str, name: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any],
                    dtype: torch.dtype | None = None) -> None:
    """Write NAME.safetensors (optionally cast to `dtype`, e.g. float16 for shipping) and NAME.json (`meta`)."""
    weights_path, meta_path = paths(directory, name)
    tensors = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().contiguous().cpu()
               for k, v in tensors.items()}
    _atomic_write(weights_path, lambda tmp: save_file(tensors, tmp))
    body = json.dumps({"format": FORMAT, **meta}, indent=2, sort_keys=True)
    _atomic_write(meta_path, lambda tmp: Path(tmp).write_text(body + "\n"))


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
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{meta_path} is not valid JSON ({exc}){suffix}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path} is not a restyler checkpoint of format {FORMAT}{suffix}")
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights_path} is corrupt or unreadable ({exc}){suffix}") from None
    return tensors, meta


def load_into(module: torch.nn.Module, tensors: dict[str, torch.Tensor], source: str) -> None:
    """Copy `tensors` into `module` (casting to its dtype); any missing or unexpected name is one clear error."""
    own = module.state_dict()
    missing, extra = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    wrong = sorted(k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    if missing or extra or wrong:
        raise CheckpointError(f"{source} does not match this model (missing {missing[:4]}, unexpected {extra[:4]}, "
                              f"wrong shape {wrong[:4]}); was it trained with another size or version?")
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in tensors.items()})
