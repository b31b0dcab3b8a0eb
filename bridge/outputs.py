"""Outputs that never cost the user a file: written beside their final name and moved into place, and never the
same file as an input.

Every file Restyler writes for a user (videos, JSON, PNG, recorded data) appears under its name complete or not at
all: an interrupted or refused run leaves an existing file as it was, never half overwritten. And an output that
names one of the command's inputs (`restyler restyle X.mp4 X.mp4`, through a link or `./X.mp4` too) is refused before
anything is opened. Standard library only. models.io.atomic does the same for checkpoints (models imports nothing of
bridge).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from bridge.errors import BridgeError


class OutputError(BridgeError):
    """An output that would overwrite one of the inputs (or another output of the same command)."""


def file_mode() -> int:
    """The mode open() gives a new file (0o666 less the umask): temporary files are created owner-only, and an
    output is shared like any other file."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def same_file(a: os.PathLike[str] | str, b: os.PathLike[str] | str) -> bool:
    """Whether two paths name one file: the same place after links and `.`/`..` are resolved, or two hard links."""
    a, b = Path(a), Path(b)
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:   # one of them does not exist (yet): it can still be the same place by name
        pass
    return a.resolve() == b.resolve()


def check_outputs(outputs: Mapping[str, os.PathLike[str] | str | None],
                  inputs: Mapping[str, os.PathLike[str] | str | None]) -> None:
    """Raise OutputError when an output is one of the inputs or another output. Keys say what each path is
    ("IN.mp4", "--record"); None entries are options not given."""
    given_in = [(k, Path(v)) for k, v in inputs.items() if v is not None]
    given_out = [(k, Path(v)) for k, v in outputs.items() if v is not None]
    for i, (name, path) in enumerate(given_out):
        for other, source in given_in:
            if same_file(path, source):
                raise OutputError(f"{name} {path} is the input {other} {source}: writing it would destroy the "
                                  f"input; give the output another name")
        for other, earlier in given_out[:i]:
            if same_file(path, earlier):
                raise OutputError(f"{name} {path} is also {other}: give each output its own name")


def temporary_beside(path: os.PathLike[str] | str, suffix: str = ".tmp") -> Path:
    """A fresh hidden file in `path`'s folder to write `path` into before moving it into place (the same file
    system, so the move is one rename). `suffix` keeps the extension a writer may go by."""
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    return Path(name)


def move_into_place(tmp: Path, path: os.PathLike[str] | str) -> None:
    """Flush `tmp` to disk, give it an ordinary file's mode and rename it to `path` (atomic on one file system)."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)   # the data must be on disk before the rename makes it visible
    finally:
        os.close(fd)
    os.chmod(tmp, file_mode())
    os.replace(tmp, path)


def write_atomic(path: os.PathLike[str] | str, write: Callable[[Path], None], tmp: Path | None = None,
                 suffix: str = ".tmp") -> None:
    """Call write(temporary path), then move it into place as `path`; on any failure the temporary file is removed
    and `path` is left as it was. `tmp` names the temporary file when the caller must recognise leftovers of a
    hard kill (the recorder's ".partial" shards); by default it is a fresh hidden name beside `path`, ending in
    `suffix` (".png" where the writer picks the format from the name)."""
    path = Path(path)
    tmp = temporary_beside(path, suffix) if tmp is None else tmp
    try:
        write(tmp)
        move_into_place(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: os.PathLike[str] | str, text: str) -> None:
    write_atomic(path, lambda tmp: tmp.write_text(text))
