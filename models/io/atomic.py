"""Atomic file writes: a file appears under its name complete or not at all, durable once the call returns.

Used by checkpoints (models.io.checkpoint), whose files must survive an interrupted run, and by the PNGs and JSON
the models' tools write. bridge.outputs does the same for the user's outputs (bridge imports nothing of models).
Standard library only, so importing it costs nothing.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def file_mode() -> int:
    """The mode open() would give a new file (0o666 less the umask). Temporary files and safetensors are created
    owner-only; outputs are shared like any other file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def fsync_dir(directory: Path) -> None:
    """Make a rename inside `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, write: Callable[[str], None], tmp: Path | None = None) -> None:
    """Call write(temporary path), flush it to disk, then rename it to `path`.

    `tmp` names the temporary file when the caller must recognise leftovers (the recorder's ".partial" shards);
    by default it is a fresh hidden name beside `path`. On failure the temporary file is removed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    if tmp is None:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        tmp = Path(name)
    try:
        write(str(tmp))
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data must be on disk before the rename makes it visible
        finally:
            os.close(fd)
        os.chmod(tmp, file_mode())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
