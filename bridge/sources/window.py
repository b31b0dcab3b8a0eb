"""Find an X11 window by title and follow its on-screen geometry, for ``ScreenSource(window=...)``.

Uses the ``xwininfo`` tool (Debian/Ubuntu package ``x11-utils``) rather than an X client library: python-xlib is
not a dependency, mss does not expose window queries, and ``xwininfo -id`` costs about 4 ms (measured, subprocess
included), cheap enough to re-ask a few times a second. Only X11 (including XWayland windows) is supported; elsewhere capture a region instead.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass

from bridge.errors import SourceOpenError

# One line of `xwininfo -root -tree`:   0x200008 "Title": ("res" "class")  200x100+30+40  +30+40
# the last pair is the absolute position of the window's top-left corner on the root window.
_TREE_LINE = re.compile(
    r'^\s*(?P<wid>0x[0-9a-fA-F]+) "(?P<title>.*)":.*?\s(?P<w>\d+)x(?P<h>\d+)[+-]-?\d+[+-]-?\d+'
    r"\s+\+?(?P<x>-?\d+)\+?(?P<y>-?\d+)\s*$"
)
_FIELD = re.compile(r"^\s*(Absolute upper-left X|Absolute upper-left Y|Width|Height|Map State):\s*(\S+)", re.M)


@dataclass(frozen=True)
class WindowGeometry:
    """Where a window's client area is on the screen, in root-window pixels."""

    wid: int
    title: str
    x: int
    y: int
    width: int
    height: int
    viewable: bool = True


def _xwininfo(args: list[str], display: str | None) -> subprocess.CompletedProcess[bytes]:
    exe = shutil.which("xwininfo")
    if exe is None or not sys.platform.startswith("linux"):
        raise SourceOpenError(
            "capturing a window by title needs X11 and the xwininfo tool (Debian/Ubuntu package x11-utils); "
            "install it or capture a screen region instead (--region X,Y,W,H)"
        )
    cmd = [exe, *(["-display", display] if display else []), *args]
    return subprocess.run(cmd, capture_output=True, timeout=5, check=False)


def window_geometry(wid: int, title: str = "", display: str | None = None) -> WindowGeometry | None:
    """Current geometry of window ``wid``, or None if the window no longer exists."""
    proc = _xwininfo(["-id", hex(wid)], display)
    if proc.returncode != 0:
        return None
    fields = dict(_FIELD.findall(proc.stdout.decode("utf-8", "replace")))
    try:
        return WindowGeometry(
            wid=wid,
            title=title,
            x=int(fields["Absolute upper-left X"]),
            y=int(fields["Absolute upper-left Y"]),
            width=int(fields["Width"]),
            height=int(fields["Height"]),
            viewable=fields.get("Map State") == "IsViewable",
        )
    except (KeyError, ValueError):
        return None


def find_window(title: str, display: str | None = None) -> WindowGeometry:
    """The visible window whose title is ``title`` (exact match preferred, else case-insensitive substring).

    Several matches: the largest visible one (a game's main window rather than a tooltip or a splash).
    """
    if not title:
        raise SourceOpenError("window capture: expected a non-empty window title")
    proc = _xwininfo(["-root", "-tree"], display)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise SourceOpenError(f"window capture: cannot list windows on display {display or '$DISPLAY'}: {err}")

    exact, partial = [], []
    for line in proc.stdout.decode("utf-8", "replace").splitlines():
        m = _TREE_LINE.match(line)
        if not m:
            continue
        name = m["title"]
        if name == title:
            exact.append(m)
        elif title.lower() in name.lower():
            partial.append(m)

    found = [
        g
        for m in (exact or partial)
        if (g := window_geometry(int(m["wid"], 16), m["title"], display)) is not None and g.width > 0
    ]
    visible = [g for g in found if g.viewable]
    if not visible:
        state = "exists but is not visible (minimised or unmapped)" if found else "was not found"
        raise SourceOpenError(
            f"window capture: a window titled {title!r} {state}; open it, or capture a region (--region X,Y,W,H)"
        )
    return max(visible, key=lambda g: g.width * g.height)
