"""The reference styles: named looks of the offline ground-truth renderer, each with prompt paraphrases.

A style is a set of lighting and material parameters read by the reference shader (shaders/reference.frag) plus
the text a user might type to ask for it. `prompts` are used in training; `heldout_prompts` are never trained on, so
evaluation can check that an unseen paraphrase gives the same look as its siblings.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Style:
    name: str
    mode: int                                  # branch of the reference shader: 0 day, 1 snow, 2 neon, 3 autumn
    prompts: tuple[str, ...]
    heldout_prompts: tuple[str, ...]
    sun_elevation_deg: float
    sun_azimuth_deg: float
    sun_color: tuple[float, float, float]      # linear radiance of the sun (or moon)
    sky_zenith: tuple[float, float, float]     # linear sky colour straight up
    sky_horizon: tuple[float, float, float]    # linear sky colour at the horizon; fog fades towards it
    ambient: float                             # strength of the sky's hemispherical light
    fog_density: float                         # per block, exponential-squared
    exposure: float

    @property
    def sun_direction(self) -> np.ndarray:
        """Unit vector pointing from the ground towards the sun."""
        el, az = np.radians(self.sun_elevation_deg), np.radians(self.sun_azimuth_deg)
        return np.array([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)])

    @property
    def all_prompts(self) -> tuple[str, ...]:
        return self.prompts + self.heldout_prompts


STYLES: dict[str, Style] = {
    s.name: s
    for s in (
        Style(
            name="sunny summer",
            mode=0,
            prompts=(
                "sunny summer day",
                "bright summer afternoon with blue sky",
                "warm sunlit meadow in summer",
                "clear sunny day, lush green grass",
                "summertime countryside under a bright sun",
            ),
            heldout_prompts=("a hot cloudless summer noon", "vivid green landscape on a sunny day"),
            sun_elevation_deg=52, sun_azimuth_deg=35, sun_color=(3.2, 2.95, 2.6),
            sky_zenith=(0.16, 0.34, 0.85), sky_horizon=(0.62, 0.78, 0.95), ambient=0.75,
            fog_density=0.012, exposure=1.0,
        ),
        Style(
            name="snowy winter",
            mode=1,
            prompts=(
                "snowy winter village",
                "snow covered landscape on a cold winter day",
                "frozen winter scene with deep snow",
                "cold overcast winter with snow on the ground",
                "wintry world blanketed in fresh snow",
            ),
            heldout_prompts=("icy frozen lake and snowy roofs", "a quiet snowy december morning"),
            sun_elevation_deg=18, sun_azimuth_deg=-60, sun_color=(1.3, 1.35, 1.45),
            sky_zenith=(0.45, 0.52, 0.62), sky_horizon=(0.78, 0.82, 0.88), ambient=1.05,
            fog_density=0.028, exposure=1.0,
        ),
        Style(
            name="neon night",
            mode=2,
            prompts=(
                "neon night city",
                "glowing neon lights at night",
                "cyberpunk night with neon glow",
                "dark night lit by bright neon outlines",
                "synthwave night scene with glowing edges",
            ),
            heldout_prompts=("electric neon nightscape", "a dark world traced in glowing neon"),
            sun_elevation_deg=40, sun_azimuth_deg=150, sun_color=(0.22, 0.26, 0.45),
            sky_zenith=(0.01, 0.005, 0.03), sky_horizon=(0.12, 0.03, 0.18), ambient=0.25,
            fog_density=0.02, exposure=1.2,
        ),
        Style(
            name="autumn sunset",
            mode=3,
            prompts=(
                "autumn sunset",
                "golden hour in autumn with orange leaves",
                "fall foliage at dusk under a low sun",
                "warm autumn evening with red and yellow trees",
                "sunset over an autumn forest",
            ),
            heldout_prompts=("orange october evening light", "late afternoon in fall, long shadows"),
            sun_elevation_deg=9, sun_azimuth_deg=100, sun_color=(3.0, 1.7, 0.8),
            sky_zenith=(0.22, 0.2, 0.45), sky_horizon=(1.0, 0.55, 0.3), ambient=0.7,
            fog_density=0.016, exposure=1.05,
        ),
    )
}


def style_for_prompt(prompt: str) -> Style:
    """Exact lookup by name or by any paraphrase; raises KeyError with the known names."""
    for style in STYLES.values():
        if prompt == style.name or prompt in style.all_prompts:
            return style
    raise KeyError(f"unknown style {prompt!r}; the reference renderer knows {list(STYLES)}")
