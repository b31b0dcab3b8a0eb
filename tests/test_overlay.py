"""The AI overlay: what the game window really shows (framebuffer read back), and motion-vector reprojection."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from renderer.reproject import Reprojector

_WINDOW_CHECK = """
import sys, time
import numpy as np, pygame, torch
import torch.nn.functional as F
from demo_game import GameConfig
from demo_game.game import GameWindow
from renderer import StreamingRestyler
from renderer.overlay import DisplayMode

restyler = StreamingRestyler(sys.argv[1], "cpu", worker="thread")
suns = []   # whether each frame the game hands the restyler carries the sun G-buffer the model reads
submit = restyler.submit
restyler.submit = lambda packet: (suns.append(packet.sun is not None), submit(packet))[1]
window = GameWindow(GameConfig(seed=4, width=64, height=64, fps=60), "sunny summer day", restyler, (256, 256))
deadline = time.monotonic() + 60
while restyler.latest_frame() is None and time.monotonic() < deadline:
    window.frame()
    time.sleep(0.01)

def shown_and_sources():
    window.frame()
    shot = window.screenshot().astype(float)                       # what the window shows, row 0 at the top
    ai = window.last_frame                                         # the AI frame this frame() drew
    up = lambda a: F.interpolate(torch.from_numpy(a).permute(2, 0, 1)[None].float(), size=(256, 256),
                                 mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()
    return shot, up(ai), up(window.game.render_fast(restyler.resolution).rgb)

below_hud = slice(120, 256)
shot, ai, _ = shown_and_sources()
print("AI", np.abs(shot[below_hud] - ai[below_hud]).mean(), np.abs(shot[:60, :200] - ai[:60, :200]).mean())
window.overlay.mode = DisplayMode.SPLIT
shot, ai, original = shown_and_sources()
print("SPLIT", np.abs(shot[below_hud, 136:] - ai[below_hud, 136:]).mean(),
      np.abs(shot[below_hud, :120] - original[below_hud, :120]).mean())
print("HUD", " | ".join(window.hud_lines()))
print("SUN", int(all(suns)), len(suns))
window.close()
restyler.close()
"""


@pytest.mark.slow
def test_game_window_shows_the_stylized_stream(random_model):
    """With AI on, the window must really display the restyler's frames (read back from the screen): the whole
    picture in AI mode, the original on the left and the AI on the right in split mode, and the HUD on top with
    AI fps, game fps, latency and the style; every frame handed to the restyler carries the style's sun G-buffer.
    Guards against a texture that is never written, a flipped frame, a HUD hidden under the picture or a game
    that leaves out a buffer the model reads. Own process: a window's GL context and the suite's EGL context do
    not mix."""
    env = dict(os.environ, SDL_VIDEODRIVER="offscreen", SDL_AUDIODRIVER="dummy")
    out = subprocess.run([sys.executable, "-c", _WINDOW_CHECK, str(random_model)], capture_output=True, text=True,
                         env=env, timeout=180, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr[-3000:]
    lines = {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in out.stdout.splitlines() if " " in line}
    ai_error, hud_difference = map(float, lines["AI"].split())
    assert ai_error < 4 and hud_difference > 20   # the picture is the AI frame; the HUD panel covers its corner
    right, left = map(float, lines["SPLIT"].split())
    assert right < 4 and left < 4
    for text in ("AI", "fps", "latency", "style: sunny summer day"):
        assert text in lines["HUD"]
    every_frame_has_sun, frames = map(int, lines["SUN"].split())
    assert frames > 0 and every_frame_has_sun   # without it the shipped model takes the G-buffers as absent


def test_reprojection_follows_a_panning_camera():
    """A camera panning 2 px a frame to the right moves the picture 2 px left: three frames after the AI frame,
    each pixel must sample the AI frame 6 px to its right (and nothing moves without motion)."""
    r = Reprojector()
    h, w = 16, 32
    pan = np.zeros((h, w, 2), np.float32)
    pan[..., 0] = -2.0   # content moved 2 px left since the previous frame: previous position = x + 2
    for index in range(10, 14):
        r.add(index, pan)
    pos = r.positions(10, 13, (h, w))
    xx = np.arange(w, dtype=np.float32)[None].repeat(h, 0)
    np.testing.assert_allclose(pos[..., 0], xx + 6)
    offsets = r.offsets(10, 13, (h, w))
    np.testing.assert_allclose(offsets[..., 0], 6 / w, rtol=1e-6)
    np.testing.assert_allclose(offsets[..., 1], 0)
    assert not r.offsets(13, 13, (h, w)).any()


def test_reprojection_scales_motion_of_another_size():
    """Motion recorded at the game's size must scale to the AI frame's size (pixels are not uv)."""
    r = Reprojector()
    r.add(1, np.full((8, 8, 2), 4.0, np.float32))   # 4 px at 8x8 = half a frame
    pos = r.positions(0, 1, (16, 16))
    np.testing.assert_allclose(pos[0, 0], [-8.0, -8.0])
