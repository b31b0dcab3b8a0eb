"""Shared pytest setup: headless SDL for every test, and one EGL context for the tests that render.

Tests run without a display, a GPU or network. SDL must be told before pygame initialises, hence at import time.
"""

import os

os.environ["SDL_VIDEODRIVER"] = "offscreen"  # never open a real window, even under a desktop session
os.environ["SDL_AUDIODRIVER"] = "dummy"

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def egl_ctx():
    """One headless moderngl context (EGL) for the whole session; creating one per test would dominate run time."""
    try:
        import moderngl

        ctx = moderngl.create_standalone_context(backend="egl")
    except Exception as exc:  # no libEGL, no Mesa driver, no device: all mean "cannot render here"
        if os.environ.get("CI"):
            # CI installs Mesa (.ci/run): a context that fails there is a broken machine, not a reason to skip
            # every rendering test and go green.
            pytest.fail(f"headless EGL context unavailable on CI ({type(exc).__name__}: {exc})")
        pytest.skip(f"headless EGL context unavailable ({type(exc).__name__}: {exc}); "
                    "install libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri (see .ci/run)")
    yield ctx
    ctx.release()
