"""Camera pose and the matrices every pass shares (row-major numpy; transpose when uploading to GL)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Camera:
    position: np.ndarray   # (3,) eye position in world units
    yaw: float             # radians; 0 looks along +z, positive turns towards +x
    pitch: float           # radians; positive looks up

    def copy(self) -> "Camera":
        return Camera(self.position.copy(), self.yaw, self.pitch)

    def forward(self) -> np.ndarray:
        cp = np.cos(self.pitch)
        return np.array([np.sin(self.yaw) * cp, np.sin(self.pitch), np.cos(self.yaw) * cp], dtype=np.float64)

    def view(self) -> np.ndarray:
        return look_at(self.position, self.position + self.forward(), np.array([0.0, 1.0, 0.0]))


def look_at(eye, target, up) -> np.ndarray:
    f = np.asarray(target, float) - eye
    f /= np.linalg.norm(f)
    s = np.cross(f, up)
    s /= np.linalg.norm(s)
    u = np.cross(s, f)
    m = np.eye(4)
    m[0, :3], m[1, :3], m[2, :3] = s, u, -f
    m[:3, 3] = -m[:3, :3] @ eye
    return m


def perspective(fov_deg: float, aspect: float, near: float, far: float) -> np.ndarray:
    f = 1.0 / np.tan(np.radians(fov_deg) / 2)
    m = np.zeros((4, 4))
    m[0, 0], m[1, 1] = f / aspect, f
    m[2, 2] = (far + near) / (near - far)
    m[2, 3] = 2 * far * near / (near - far)
    m[3, 2] = -1.0
    return m


def orthographic(left, right, bottom, top, near, far) -> np.ndarray:
    m = np.eye(4)
    m[0, 0], m[1, 1], m[2, 2] = 2 / (right - left), 2 / (top - bottom), -2 / (far - near)
    m[0, 3] = -(right + left) / (right - left)
    m[1, 3] = -(top + bottom) / (top - bottom)
    m[2, 3] = -(far + near) / (far - near)
    return m


def gl_bytes(m: np.ndarray) -> bytes:
    """GLSL mat4 uniforms are column-major."""
    return np.ascontiguousarray(m.T, dtype=np.float32).tobytes()
