"""The demo game as a data engine: determinism, G-buffer correctness, motion vectors, rich reference styles."""
from __future__ import annotations

import numpy as np
import pytest

from demo_game import LOW_DETAIL_PALETTE, STYLES, GameConfig, Material
from demo_game.mesh import WATER_SURFACE_DROP

SIZE = 96


@pytest.fixture(scope="module")
def run(egl_ctx):
    """40 bot ticks of seed 5 at 96×96, with every reference style on the last tick."""
    from demo_game import GameSession

    with GameSession(GameConfig(seed=5, width=SIZE, height=SIZE), ctx=egl_ctx) as game:
        packets = [game.step() for _ in range(40)]
        styles = game.render_styles()
        camera = game.camera.copy()
        config = game.config
    return packets, styles, camera, config


def test_same_seed_same_frames(egl_ctx, run):
    """Guards against hidden randomness (unseeded RNG, time-based animation) that would make recordings unrepeatable."""
    from demo_game import GameSession

    packets, styles, _, _ = run
    with GameSession(GameConfig(seed=5, width=SIZE, height=SIZE), ctx=egl_ctx) as game:
        again = [game.step() for _ in range(40)]
        styles_again = game.render_styles()
    for a, b in zip(packets, again):
        for field in ("rgb", "depth", "normals", "material", "motion", "uv", "ao"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    for name in STYLES:
        np.testing.assert_array_equal(styles[name], styles_again[name])


def test_other_seed_other_world(egl_ctx, run):
    """Guards against the seed being ignored by world generation."""
    from demo_game import GameSession

    with GameSession(GameConfig(seed=6, width=SIZE, height=SIZE), ctx=egl_ctx) as game:
        other = [game.step() for _ in range(40)]
    assert np.abs(other[-1].depth - run[0][-1].depth).mean() > 0.5


def test_low_detail_is_flat_material_albedo(run):
    """The low-detail pass must be exactly the material palette: no light or texture may leak into the AI's input."""
    palette = np.zeros((256, 3), np.uint8)
    for m, rgb in LOW_DETAIL_PALETTE.items():
        palette[m] = rgb
    for p in run[0][::10]:
        np.testing.assert_array_equal(p.rgb, palette[p.material])


def test_packets_are_valid(run):
    """Guards against G-buffers of the wrong dtype, shape or with NaNs reaching the bridge."""
    for p in run[0]:
        p.validate()
        assert p.rgb.shape == (SIZE, SIZE, 3)


def test_normals_unit_length_on_geometry(run):
    """View-space normals must be unit vectors where there is geometry and zero on the sky."""
    p = run[0][-1]
    geo = p.material != Material.SKY
    assert geo.mean() > 0.3
    lengths = np.linalg.norm(p.normals, axis=-1)
    np.testing.assert_allclose(lengths[geo], 1.0, atol=1e-3)
    assert np.all(lengths[~geo] == 0)


def _world_points(p, camera, config):
    """Back-project every pixel with its linear depth: world positions (H, W, 3)."""
    h, w = p.depth.shape
    f = 1.0 / np.tan(np.radians(config.fov_deg) / 2)
    xs = ((np.arange(w) + 0.5) / w * 2 - 1) * (w / h) / f
    ys = (1 - (np.arange(h) + 0.5) / h * 2) / f
    view_dirs = np.stack(np.broadcast_arrays(xs[None, :], ys[:, None], -np.ones((h, w))), axis=-1)  # z = -1
    view_points = view_dirs * p.depth[..., None]            # linear depth is the distance along -z
    inv = np.linalg.inv(camera.view())
    return view_points @ inv[:3, :3].T + inv[:3, 3]


def _world_normals(p, camera):
    return p.normals @ np.linalg.inv(camera.view())[:3, :3].T


def test_uv_is_the_position_within_the_block_face(run):
    """The uv G-buffer is what the reference textures are laid out by: on upward faces, the fraction of the world
    x and z of the surface seen (back-projected from depth), 0 on the sky; AO lies in [0, 1]."""
    packets, _, camera, config = run
    p = packets[-1]
    sky = p.material == Material.SKY
    assert not p.uv[sky].any() and not p.ao[sky].any()
    assert p.uv.min() >= 0 and p.uv.max() < 1 and p.ao.min() >= 0 and p.ao.max() <= 1
    up = (_world_normals(p, camera)[..., 1] > 0.99) & ~sky & (p.material != Material.WATER)
    assert up.sum() > 100
    expected = np.modf(_world_points(p, camera, config)[..., [0, 2]])[0] % 1.0
    wrapped = np.abs(p.uv[up] - expected[up])
    assert np.median(np.minimum(wrapped, 1 - wrapped)) < 0.02


def test_the_sun_g_buffer_is_the_cosine_term_times_the_shadow(egl_ctx):
    """In [0, 1], 0 on the sky, never above the cosine between the world normal and the style's sun (the shadow only
    darkens), equal to it where nothing shades the surface, and different for styles whose suns differ."""
    from demo_game import GameSession

    with GameSession(GameConfig(seed=5, width=SIZE, height=SIZE), ctx=egl_ctx) as game:
        for _ in range(40):
            game.advance()
        p = game.render_fast(sun="sunny summer")
        autumn = game.render_sun("autumn sunset")
        camera = game.camera.copy()
    p.validate()
    sky = p.material == Material.SKY
    assert p.sun.min() >= 0 and p.sun.max() <= 1 and not p.sun[sky].any()
    cosine = np.clip(_world_normals(p, camera) @ STYLES["sunny summer"].sun_direction, 0, 1)
    assert (p.sun[~sky] <= cosine[~sky] + 0.02).all()
    assert (np.abs(p.sun - cosine)[~sky] < 0.02).mean() > 0.3
    assert np.abs(autumn - p.sun).mean() > 0.05


def test_the_fast_pass_sun_equals_the_sun_pass(egl_ctx):
    """The game hands over the sun from the fast pass's own draw (the runtime's path); the recorder renders every
    style's sun in its own pass (the training data's). They must agree, and asking for the sun must leave every
    other buffer of the fast pass as it was."""
    from dataclasses import fields

    from demo_game import GameSession

    with GameSession(GameConfig(seed=5, width=SIZE, height=SIZE), ctx=egl_ctx) as game:
        for _ in range(40):
            game.advance()
        plain = game.render_fast()
        for name in STYLES:
            with_sun = game.render_fast(sun=name)
            np.testing.assert_allclose(with_sun.sun, game.render_sun(name), atol=1e-5)
            for f in fields(plain):
                if f.name != "sun" and isinstance(getattr(plain, f.name), np.ndarray):
                    np.testing.assert_array_equal(getattr(with_sun, f.name), getattr(plain, f.name), err_msg=f.name)
    assert plain.sun is None


def test_depth_is_linear_distance_along_view_axis(run):
    """Back-projected points on upward faces must land on block tops (integer y, or the water plane): this fails if
    depth were normalised, non-linear, or flipped."""
    packets, _, camera, config = run
    p = packets[-1]
    pts = _world_points(p, camera, config)
    view_up = camera.view()[:3, :3] @ np.array([0.0, 1.0, 0.0])      # world +y in view space
    tops = (p.normals @ view_up > 0.99) & (p.material != Material.WATER) & (p.material != Material.GEM)
    tops &= p.depth < 30
    assert tops.sum() > 50
    y = pts[..., 1][tops]
    assert np.abs(y - np.round(y)).max() < 0.05
    water = (p.material == Material.WATER) & (p.depth < 30)
    if water.any():
        wy = pts[..., 1][water] + WATER_SURFACE_DROP
        assert np.abs(wy - np.round(wy)).max() < 0.05


def test_depth_grows_with_distance(egl_ctx, run):
    """Stepping the camera back along its view axis by one block adds exactly one block of depth on the central ray;
    the sky sits at the far plane."""
    from demo_game import GameSession

    config = run[3]
    p = run[0][-1]
    assert np.all(p.depth[p.material == Material.SKY] == np.float32(config.far))
    with GameSession(GameConfig(seed=5, width=SIZE, height=SIZE), ctx=egl_ctx) as game:
        game.advance()
        game.camera.pitch = -0.5                    # look down at the ground so the central ray hits something
        near = game.render_fast()
        c = SIZE // 2
        ahead = near.depth[c - 1:c + 1, c - 1:c + 1].mean()
        assert ahead < 20
        game.camera.position = game.camera.position - game.camera.forward() * 1.0
        far = game.render_fast()
        assert far.depth[c - 1:c + 1, c - 1:c + 1].mean() == pytest.approx(ahead + 1.0, abs=0.05)


def test_motion_vectors_warp_previous_frame_onto_current(run):
    """Warping frame t−1 by the motion vectors reproduces frame t outside disocclusions; catches a flipped axis,
    a sign error or a scale error (NDC vs pixels) in the motion pass."""
    packets = run[0]
    moving = 0
    for prev, cur in zip(packets[10:30], packets[11:31]):
        h, w = cur.depth.shape
        yy, xx = np.mgrid[0:h, 0:w]
        sx = np.rint(xx - cur.motion[..., 0]).astype(int)
        sy = np.rint(yy - cur.motion[..., 1]).astype(int)
        inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h) & (cur.material != Material.SKY)
        sxc, syc = np.clip(sx, 0, w - 1), np.clip(sy, 0, h - 1)
        # Disocclusion: the surface at the warped spot in t−1 was not this surface (depth test, 10 % tolerance
        # plus the camera's own travel).
        expected_prev_depth = prev.depth[syc, sxc]
        visible = inside & (np.abs(expected_prev_depth - cur.depth) < 0.1 * cur.depth + 0.3)
        same = np.all(prev.rgb[syc, sxc] == cur.rgb, axis=-1)
        assert visible.mean() > 0.5
        assert same[visible].mean() > 0.97
        # Warping must beat doing nothing wherever anything moved.
        if np.abs(cur.motion[visible]).max() > 1.0:
            moving += 1
            unwarped = np.all(prev.rgb == cur.rgb, axis=-1)[visible].mean()
            assert same[visible].mean() >= unwarped
    assert moving > 5


def test_reference_styles_are_distinct_and_richer(run):
    """Every style must look clearly different from the others and carry more detail than the flat input."""
    packets, styles, _, _ = run
    low = packets[-1].rgb.astype(np.float32)

    def detail(img):
        g = img.astype(np.float32).mean(-1)
        return np.abs(np.diff(g, axis=0)).mean() + np.abs(np.diff(g, axis=1)).mean()

    names = list(STYLES)
    assert len(names) >= 3
    for i, a in enumerate(names):
        assert detail(styles[a]) > 1.5 * detail(low), a
        assert np.abs(styles[a].astype(np.float32) - low).mean() > 15, a
        for b in names[i + 1:]:
            assert np.abs(styles[a].astype(np.float32) - styles[b].astype(np.float32)).mean() > 15, (a, b)


def test_styles_have_prompts_and_heldout_paraphrases():
    """The prompt encoder trains on paraphrases and evaluation needs unseen ones."""
    seen = set()
    for style in STYLES.values():
        assert len(style.prompts) >= 5 and len(style.heldout_prompts) >= 1
        assert not set(style.prompts) & set(style.heldout_prompts)
        assert not seen & set(style.all_prompts)
        seen |= set(style.all_prompts)


def test_bot_explores_and_collects(egl_ctx):
    """The bot must move like a player (walks, turns, collects) rather than stand still or spin in place."""
    from demo_game import GameSession

    with GameSession(GameConfig(seed=2, width=32, height=32), ctx=egl_ctx) as game:
        start = game.player.feet.copy()
        yaws = []
        for _ in range(30 * 25):
            game.advance()
            yaws.append(game.player.yaw)
        travelled = np.linalg.norm(game.player.feet[[0, 2]] - start[[0, 2]])
        assert travelled > 8
        assert game.score >= 2
        turn_rates = np.abs(np.diff(np.unwrap(yaws))) * game.config.fps
        assert turn_rates.max() <= game.config.turn_speed + 1e-6


def test_any_resolution(egl_ctx):
    """Passes render at any size, including non-square, with matching buffers."""
    from demo_game import GameSession

    with GameSession(GameConfig(seed=1, width=64, height=40), ctx=egl_ctx) as game:
        p = game.step()
        assert p.rgb.shape == (40, 64, 3) and p.depth.shape == (40, 64) and p.motion.shape == (40, 64, 2)
        big = game.render_style("snowy winter", size=(160, 96))
        assert big.shape == (96, 160, 3)


_WINDOW_CHECK = """
import numpy as np, pygame
from demo_game import GameConfig
from demo_game.game import WINDOW_SIZE, GameWindow

window = GameWindow(GameConfig(seed=4, width=64, height=64), style="snowy winter")
window.handle(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_0))   # low-detail view: exact colours
window.frame()
w, h = WINDOW_SIZE
shown = np.frombuffer(window.ctx.screen.read(components=3), np.uint8).reshape(h, w, 3)[::-1]   # GL rows bottom-up
src = window.last_frame                        # 64x64, upscaled x12 with linear filtering
# Block centres away from the HUD corner, where linear filtering returns the source pixel itself.
ys, xs = np.mgrid[40:64:4, 8:64:4]
error = np.abs(shown[ys * 12 + 6, xs * 12 + 6].astype(int) - src[ys, xs].astype(int)).mean()
window.handle(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_1))
window.frame()
print("ERROR", error, window.view.value, window.style.name)
window.close()
"""


def test_window_shows_the_chosen_view(tmp_path):
    """The game window must really display the rendered frame (read back from the screen), not a blank buffer;
    guards against a y-flip or a texture that is never written. Runs in its own process, as the game does: a
    window's GL context and the suite's standalone EGL context do not mix in one process."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, SDL_VIDEODRIVER="offscreen", SDL_AUDIODRIVER="dummy")
    out = subprocess.run([sys.executable, "-c", _WINDOW_CHECK], capture_output=True, text=True, env=env,
                         timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0, out.stderr[-2000:]
    line = next(l for l in out.stdout.splitlines() if l.startswith("ERROR"))
    _, error, view, style = line.split(" ", 3)
    assert float(error) < 6
    assert view == "style" and style == "sunny summer"


def test_third_person_camera_shows_the_avatar(egl_ctx):
    """The follow camera must sit behind the player with the avatar in view (and no avatar in first person)."""
    from demo_game import GameSession

    with GameSession(GameConfig(seed=3, width=64, height=64), ctx=egl_ctx) as game:
        game.advance()
        assert not (game.render_fast().material == Material.PLAYER).any()
        game.player.third_person = True
        game.advance()
        assert (game.render_fast().material == Material.PLAYER).mean() > 0.005


def test_controls_move_the_view_the_way_the_player_expects(egl_ctx):
    """Strafing right or turning right must slide the scene left on screen; guards against mirrored controls."""
    from demo_game import Actions, GameSession

    with GameSession(GameConfig(seed=3, width=64, height=64), ctx=egl_ctx) as game:
        game.advance()
        for actions in (Actions(strafe=1.0), Actions(turn=0.05)):
            p = game.step(actions)
            geo = p.material != Material.SKY
            assert p.motion[..., 0][geo].mean() < -0.2, actions
        p = game.step(Actions(forward=1.0))
        geo = p.material != Material.SKY
        # Walking forward: the bottom half (ground) streams down the screen.
        assert p.motion[32:, :, 1][geo[32:]].mean() > 0.1


def test_avatar_motion_follows_the_avatar(egl_ctx):
    """In third person the avatar moves with the camera, so its pixels must carry (almost) no motion."""
    from demo_game import Actions, GameSession

    with GameSession(GameConfig(seed=3, width=64, height=64), ctx=egl_ctx) as game:
        game.set_third_person(True)
        for _ in range(3):
            p = game.step(Actions(forward=1.0))
        avatar = p.material == Material.PLAYER
        assert avatar.sum() > 10
        assert np.abs(p.motion[avatar]).max() < 0.3


def test_walls_stop_the_eye_before_the_near_plane(egl_ctx):
    """Walking straight into a house wall must never put the camera inside or through it."""
    from demo_game import Actions, GameSession

    with GameSession(GameConfig(seed=3, width=32, height=32), ctx=egl_ctx) as game:
        x0, z0, x1, z1 = game.world.buildings[0]
        # Stand in front of the wall at z0 and face it (yaw 0 looks along +z).
        game.player.feet[:] = (x0 + 1.5, game.world.ground_height(x0 + 1.5, z0 - 3.5), z0 - 3.5)
        game.player.yaw, game.player.pitch = 0.0, 0.0
        for _ in range(60):
            p = game.step(Actions(forward=1.0))
        eye = game.camera.position
        assert z0 - eye[2] > 2 * game.config.near   # a margin, not a lucky last step
        assert p.depth.min() > game.config.near
