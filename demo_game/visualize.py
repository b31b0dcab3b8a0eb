"""False-colour views of the G-buffers, for the contact sheet and the in-game debug views."""
from __future__ import annotations

import numpy as np

from .world import Material

_MATERIAL_COLOURS = np.zeros((256, 3), dtype=np.uint8)
for _m in Material:
    # Distinct hues per id (not the albedo palette): the material view must separate ids that share a colour.
    _MATERIAL_COLOURS[_m] = (np.array([(_m * 97) % 256, (_m * 57 + 80) % 256, (_m * 151 + 40) % 256])
                             if _m != Material.SKY else 0)

def depth_image(depth: np.ndarray, far: float) -> np.ndarray:
    """Near = bright, far = dark, on a log scale so both the nearby ground and the horizon keep detail."""
    d = np.clip(np.log1p(depth) / np.log1p(far), 0.0, 1.0)
    v = ((1.0 - d) * 255).astype(np.uint8)
    return np.repeat(v[..., None], 3, axis=2)

def normals_image(normals: np.ndarray) -> np.ndarray:
    return ((normals * 0.5 + 0.5) * 255).clip(0, 255).astype(np.uint8)

def material_image(material: np.ndarray) -> np.ndarray:
    return _MATERIAL_COLOURS[material]

def motion_image(motion: np.ndarray, scale: float = 4.0) -> np.ndarray:
    """Direction as red/green around grey, magnitude as distance from grey."""
    v = 128 + np.clip(motion * scale, -127, 127)
    return np.concatenate([v, np.full(motion.shape[:2] + (1,), 128.0)], axis=2).astype(np.uint8)

