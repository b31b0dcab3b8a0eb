"""ScreenSource against a real X server: a private Xvfb (320x240x24) with a pygame window of known colours.

Needs the Debian packages xvfb (Xvfb) and, for the window-by-title tests, x11-utils (xwininfo); tests skip with
the reason when they are missing. Each window runs in its own process so that closing it is a real client
disconnect, like a game quitting.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from bridge import BridgeError, SourceClosedError, SourceOpenError

pytestmark = [pytest.mark.xvfb, pytest.mark.slow]

SCREEN_W, SCREEN_H = 320, 240
# Quadrant colours with R != B everywhere, so a BGR/RGB mix-up cannot pass.
TL, TR, BL, BR = (200, 30, 10), (10, 180, 60), (40, 70, 220), (250, 220, 0)

WINDOW_SCRIPT = textwrap.dedent(
    """
    import select, sys
    import pygame
    w, h, title = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    colours = [tuple(int(c) for c in q.split(",")) for q in sys.argv[4:8]]
    animate = sys.argv[8:] == ["animate"]   # the quadrants' colours turn round every frame

    def draw(frame):
        turn = frame if animate else 0
        for i in range(4):  # quadrants: top-left, top-right, bottom-left, bottom-right
            c = colours[(i + turn) % 4]
            screen.fill(c, pygame.Rect((i % 2) * (w // 2), (i // 2) * (h // 2), w // 2, h // 2))
        pygame.display.flip()

    pygame.display.init()
    screen = pygame.display.set_mode((w, h))
    pygame.display.set_caption(title)
    draw(0)
    print("ready", flush=True)
    frame = 0
    while not select.select([sys.stdin], [], [], 0.05)[0]:  # until the test closes our stdin
        pygame.event.pump()
        frame += 1
        draw(frame)
    """
)


@pytest.fixture(scope="module")
def display():
    """A private Xvfb display (":N", picked free by Xvfb itself through -displayfd); skipped when not installed."""
    if not sys.platform.startswith("linux"):
        pytest.skip("Xvfb capture tests run on Linux only")
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb is not installed (Debian/Ubuntu package: xvfb)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [exe, "-displayfd", str(write_fd), "-screen", "0", f"{SCREEN_W}x{SCREEN_H}x24", "-nolisten", "tcp", "-ac",
         # without -noreset Xvfb resets whenever its last client disconnects, and a test connecting during that
         # reset fails with "connection lost" (seen as a flaky failure between two region tests)
         "-noreset"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as f:
            number = f.readline().strip()  # Xvfb writes the display number once it accepts connections
        if not number:
            pytest.skip("Xvfb did not start")
        yield f":{number}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


class Window:
    """A pygame window in its own process, at (x, y) with size (w, h) and four coloured quadrants; `animate` turns
    their colours round every frame, so the restyled stream keeps changing (the still hold keeps a still
    screen's picture still, and a still picture fills an mp4 only slowly)."""

    def __init__(self, display: str, title: str, x: int, y: int, w: int, h: int, animate: bool = False) -> None:
        env = dict(
            os.environ,
            DISPLAY=display,
            SDL_VIDEODRIVER="x11",
            SDL_VIDEO_WINDOW_POS=f"{x},{y}",
            SDL_AUDIODRIVER="dummy",
            PYGAME_HIDE_SUPPORT_PROMPT="1",
        )
        colours = [",".join(map(str, c)) for c in (TL, TR, BL, BR)]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WINDOW_SCRIPT, str(w), str(h), title, *colours, *(["animate"] if animate else [])],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        line = self.proc.stdout.readline().strip()
        if line != b"ready":
            self.close()
            pytest.skip(f"pygame could not open an X11 window: {self.proc.stderr.read().decode()[-500:]}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def window(display):
    """Factory for pattern windows; every window is closed at the end of the test."""
    opened: list[Window] = []

    def make(title: str, x: int = 0, y: int = 0, w: int = SCREEN_W, h: int = SCREEN_H, animate: bool = False
             ) -> Window:
        win = Window(display, title, x, y, w, h, animate)
        opened.append(win)
        return win

    yield make
    for win in opened:
        win.close()


def needs_xwininfo():
    if shutil.which("xwininfo") is None:
        pytest.skip("window capture needs xwininfo (Debian/Ubuntu package: x11-utils)")


def read_settled(src, expect_at: tuple[int, int], colour: tuple[int, int, int], timeout: float = 5.0):
    """Read until pixel (x, y) shows `colour` (the first grabs can precede the window's first paint)."""
    deadline = time.monotonic() + timeout
    while True:
        packet = src.read()
        x, y = expect_at
        if tuple(packet.rgb[y, x]) == colour or time.monotonic() > deadline:
            return packet
        time.sleep(0.02)


def assert_quadrants(rgb: np.ndarray) -> None:
    h, w = rgb.shape[:2]
    for (qx, qy), colour in zip([(0, 0), (1, 0), (0, 1), (1, 1)], [TL, TR, BL, BR]):
        # centre of each quadrant, well away from the borders
        px, py = qx * (w // 2) + w // 4, qy * (h // 2) + h // 4
        assert tuple(int(v) for v in rgb[py, px]) == colour, (
            f"pixel ({px}, {py}) is {tuple(rgb[py, px])}, expected RGB {colour}"
            + (" (channels swapped: BGR?)" if tuple(rgb[py, px]) == colour[::-1] else "")
        )


def test_region_capture_returns_rgb_not_bgr(display, window):
    """Guards against mss's BGRA being passed on as BGR (red and blue swapped) or as 4 channels, and against a
    region offset being ignored."""
    from bridge import ScreenSource

    window("pattern")
    with ScreenSource(region=(0, 0, SCREEN_W, SCREEN_H), display=display) as src:
        assert src.size == (SCREEN_W, SCREEN_H)
        first = read_settled(src, (SCREEN_W // 4, SCREEN_H // 4), TL)
        first.validate()
        assert first.rgb.shape == (SCREEN_H, SCREEN_W, 3) and first.rgb.dtype == np.uint8
        assert_quadrants(first.rgb)
        second = src.read()
        assert second.index == first.index + 1 and second.t >= first.t
        assert not np.shares_memory(first.rgb, second.rgb)  # a held packet is never overwritten

    # A region inside the bottom-right quadrant only sees that colour.
    with ScreenSource(region=(200, 150, 40, 30), display=display) as src:
        rgb = src.read().rgb
        assert rgb.shape == (30, 40, 3)
        assert (rgb == np.array(BR, np.uint8)).all()


@pytest.mark.parametrize(
    "region",
    [(300, 200, 100, 100), (-10, 0, 50, 50), (0, 0, SCREEN_W + 1, SCREEN_H), (0, 0, 0, 10)],
    ids=["past bottom-right", "negative x", "one pixel too wide", "zero width"],
)
def test_region_off_screen_is_refused_at_construction(display, region):
    """Guards against a mistyped --region starting a capture that fails (or returns garbage) on the first frame:
    it must be refused when the source is created, with the screen size in the message."""
    from bridge import ScreenSource

    with pytest.raises(SourceOpenError, match=r"region|width") as info:
        ScreenSource(region=region, display=display)
    if region[2] > 0:
        assert f"{SCREEN_W}x{SCREEN_H}" in str(info.value)


def test_unreachable_display_is_a_clear_error():
    """Guards against a missing X server surfacing as a raw mss/XCB exception instead of a BridgeError."""
    from bridge import ScreenSource

    with pytest.raises(BridgeError, match="cannot open the screen"):
        ScreenSource(region=(0, 0, 10, 10), display=":987")


def test_window_capture_by_title_then_window_closes(display, window):
    """Guards against window capture grabbing the wrong place or size, and against a closed window going unnoticed
    (recording a dead area forever): it must raise SourceClosedError naming the window."""
    from bridge import ScreenSource

    needs_xwininfo()
    win = window("Restyler test game", x=40, y=60, w=200, h=120)
    window("Another window", x=0, y=0, w=20, h=20)  # a distractor that must not be picked
    with ScreenSource(window="test game", display=display, track_interval=0) as src:
        assert src.size == (200, 120)
        assert src.rect == (40, 60, 200, 120)
        packet = read_settled(src, (50, 30), TL)
        assert_quadrants(packet.rgb)

        win.close()
        with pytest.raises(SourceClosedError, match="Restyler test game"):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                src.read()
                time.sleep(0.02)


def test_window_not_found_is_a_clear_error(display):
    """Guards against a mistyped --window title failing obscurely or capturing something else."""
    from bridge import ScreenSource

    needs_xwininfo()
    with pytest.raises(SourceOpenError, match=r"'no such game window' was not found"):
        ScreenSource(window="no such game window", display=display)
    with pytest.raises(SourceOpenError, match="exactly one"):
        ScreenSource(display=display)


# ---------------------------------------------------------------------------------------------------------------
# `restyler capture`: the whole command against the Xvfb screen, with a random tiny model.


def run_capture_cli(display: str, model, *args: str, wait: bool = True) -> subprocess.Popen:
    env = dict(os.environ, DISPLAY=display, SDL_VIDEODRIVER="x11", SDL_AUDIODRIVER="dummy")
    proc = subprocess.Popen([sys.executable, "-m", "restyler", "capture", "--model", str(model), "--worker", "thread",
                             *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=os.path.dirname(os.path.dirname(__file__)))
    if wait:
        proc.wait(timeout=180)
    return proc


def recording_size(out) -> int:
    """Bytes of the video being recorded to `out`: it grows as a hidden file beside `out` until it is moved into
    place when the recording ends (bridge.video.Mp4Writer)."""
    return sum(p.stat().st_size for p in out.parent.glob(f".{out.name}.*"))


def recorded_frames(stdout: str) -> int:
    import re

    match = re.search(r"wrote (\d+) frames to ", stdout)
    assert match, stdout
    return int(match.group(1))


def test_capture_region_records_a_valid_mp4(display, window, random_model, tmp_path):
    """Capture a region of a real X screen (3:2, so the model sees it letterboxed), restyle it, record it: the mp4
    decodes with the frames the command says it wrote, at the region's size; --record-source keeps the game's own
    frames beside it, frame for frame."""
    from bridge.video import read_video

    window("capture me", x=0, y=0, w=96, h=64)
    out, source = tmp_path / "cap.mp4", tmp_path / "game.mp4"
    proc = run_capture_cli(display, random_model, "--region", "0,0,96,64", "--headless", "--seconds", "3",
                           "--record", str(out), "--record-source", str(source), "--style", "neon night city")
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr[-2000:]
    frames, game = read_video(out), read_video(source)
    assert len(frames) == recorded_frames(stdout) > 30 and frames.shape[1:] == (64, 96, 3)
    assert game.shape == frames.shape
    top_left = game[-1, 4:28, 4:44].reshape(-1, 3).mean(0)   # the window's top-left quadrant, through the codec
    assert np.abs(top_left - TL).max() < 12, top_left
    assert "stopped (time)" in stdout


def test_capture_interrupted_with_ctrl_c_leaves_a_valid_mp4(display, window, random_model, tmp_path):
    """Ctrl+C in the middle of a recording must finalise the mp4 with every frame written so far."""
    from bridge.video import read_video

    window("capture me", x=0, y=0, w=64, h=64, animate=True)   # a stream that keeps changing fills the mp4
    out = tmp_path / "interrupted.mp4"
    proc = run_capture_cli(display, random_model, "--region", "0,0,64,64", "--headless", "--seconds", "120",
                           "--record", str(out), wait=False)
    deadline = time.monotonic() + 120
    while recording_size(out) < 2000 and time.monotonic() < deadline:
        time.sleep(0.2)   # the encoder writes once it has a few frames
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-2000:]
    assert "stopped (interrupted)" in stdout
    assert len(read_video(out)) == recorded_frames(stdout) > 10


def test_capture_stops_cleanly_when_the_window_closes(display, window, random_model, tmp_path):
    """The captured game quitting ends the capture with a finalised recording and exit code 0, not a traceback."""
    needs_xwininfo()
    from bridge.video import read_video

    game = window("game to restyle", x=10, y=10, w=64, h=64, animate=True)
    out = tmp_path / "closed.mp4"
    proc = run_capture_cli(display, random_model, "--window", "game to restyle", "--headless", "--seconds", "120",
                           "--record", str(out), wait=False)
    deadline = time.monotonic() + 120
    while recording_size(out) < 2000 and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    game.close()
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr[-2000:]
    assert "stopped (source closed" in stdout
    assert len(read_video(out)) == recorded_frames(stdout) > 10
