"""Voxel grid → triangle geometry for the GPU passes.

Only faces between an opaque block and air (or water) are emitted, vectorised in numpy, each with per-vertex
ambient occlusion from its three neighbours (the classic voxel-AO trick: cheap, and it makes the reference styles read
as lit volumes). Water is one surface slightly below the top of its block. Dynamic objects (the spinning gems, the
avatar) are small boxes rebuilt every tick on the CPU, carrying their previous-tick position for motion vectors.

Vertex layout (float32 ×11): position xyz, previous position xyz, normal xyz, material id, ambient occlusion (0..1).
"""
from __future__ import annotations

import numpy as np

from .world import Material, World

VERTEX_FLOATS = 11
WATER_SURFACE_DROP = 0.12   # the water plane sits this far below the top of its block, like real shores

# For each face direction: normal, tangent u, tangent v (u × v = normal keeps winding consistent).
_FACES = [
    ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    ((-1, 0, 0), (0, 0, 1), (0, 1, 0)),
    ((0, 1, 0), (0, 0, 1), (1, 0, 0)),
    ((0, -1, 0), (1, 0, 0), (0, 0, 1)),
    ((0, 0, 1), (1, 0, 0), (0, 1, 0)),
    ((0, 0, -1), (0, 1, 0), (1, 0, 0)),
]
_CORNERS = np.array([(0, 0), (1, 0), (1, 1), (0, 1)])


def build_static_mesh(world: World) -> tuple[np.ndarray, np.ndarray]:
    """Returns (vertices (V, 11) float32, indices (T*3,) uint32) for the whole world."""
    vox = world.voxels
    opaque = (vox != Material.SKY) & (vox != Material.WATER)
    pad = np.pad(opaque, 1)                                   # (X+2, Y+2, Z+2); outside the world is air
    water = np.pad(vox == Material.WATER, 1)
    verts, idx = [], []
    base = 0
    for normal, u, v in _FACES:
        n, u, v = np.array(normal), np.array(u), np.array(v)
        neighbour = np.roll(pad, shift=tuple(-n), axis=(0, 1, 2))[1:-1, 1:-1, 1:-1]
        visible = opaque & ~neighbour
        if normal == (0, -1, 0):
            visible[:, 0, :] = False                          # the world's underside is never seen
        xs, ys, zs = np.nonzero(visible)
        if len(xs) == 0:
            continue
        cells = np.stack([xs, ys, zs], axis=1)                # (N, 3)
        mats = vox[xs, ys, zs].astype(np.float32)
        # The face plane: the far side of the cell for positive normals, the near side for negative ones.
        origin = cells + np.clip(n, 0, 1)                     # (N, 3)
        ao = np.empty((len(xs), 4), dtype=np.float32)
        padded = cells + 1 + n                                # neighbour layer across the face, in padded coords
        for k, (cu, cv) in enumerate(_CORNERS):
            su, sv = u * (2 * cu - 1), v * (2 * cv - 1)
            s1 = pad[tuple((padded + su).T)]
            s2 = pad[tuple((padded + sv).T)]
            c = pad[tuple((padded + su + sv).T)]
            occl = np.where(s1 & s2, 3, s1.astype(int) + s2 + c)
            ao[:, k] = 1.0 - occl / 4.0
        corners = origin[:, None, :] + _CORNERS[None, :, 0:1] * u + _CORNERS[None, :, 1:2] * v   # (N, 4, 3)
        verts.append(_pack(corners.reshape(-1, 3), np.repeat(n[None], len(xs) * 4, 0), np.repeat(mats, 4), ao.ravel()))
        idx.append(_quad_indices(len(xs), base, ao))
        base += len(xs) * 4
    # Water: one upward face per water column top.
    above = np.roll(water | pad, shift=-1, axis=1)[1:-1, 1:-1, 1:-1]
    xs, ys, zs = np.nonzero((vox == Material.WATER) & ~above)
    if len(xs):
        y = ys + 1 - WATER_SURFACE_DROP
        u, v = np.array((0, 0, 1)), np.array((1, 0, 0))
        origin = np.stack([xs, y, zs], axis=1).astype(np.float32)
        corners = origin[:, None, :] + _CORNERS[None, :, 0:1] * u + _CORNERS[None, :, 1:2] * v
        ones = np.ones((len(xs), 4), dtype=np.float32)
        verts.append(_pack(corners.reshape(-1, 3), np.tile([0, 1, 0], (len(xs) * 4, 1)),
                           np.full(len(xs) * 4, Material.WATER, np.float32), ones.ravel()))
        idx.append(_quad_indices(len(xs), base, ones))
    return np.concatenate(verts).astype(np.float32), np.concatenate(idx).astype(np.uint32)


def _pack(pos, normal, mat, ao) -> np.ndarray:
    out = np.empty((len(pos), VERTEX_FLOATS), dtype=np.float32)
    out[:, 0:3] = pos
    out[:, 3:6] = pos          # static geometry: previous position = position
    out[:, 6:9] = normal
    out[:, 9] = mat
    out[:, 10] = ao
    return out


def _quad_indices(count: int, base: int, ao: np.ndarray) -> np.ndarray:
    """Two triangles per quad; the split runs along the brighter diagonal so AO interpolates without creases."""
    q = base + 4 * np.arange(count)[:, None]
    flip = (ao[:, 0] + ao[:, 2]) < (ao[:, 1] + ao[:, 3])
    normal = np.array([0, 1, 2, 0, 2, 3])
    flipped = np.array([1, 2, 3, 1, 3, 0])
    return (q + np.where(flip[:, None], flipped, normal)).ravel()


# --- dynamic boxes --------------------------------------------------------------------------------------------------

_BOX_CORNERS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)], dtype=np.float32)
_BOX_QUADS = [  # (corner indices CCW from outside, normal)
    ((4, 6, 7, 5), (1, 0, 0)), ((0, 1, 3, 2), (-1, 0, 0)),
    ((2, 3, 7, 6), (0, 1, 0)), ((0, 4, 5, 1), (0, -1, 0)),
    ((1, 5, 7, 3), (0, 0, 1)), ((0, 2, 6, 4), (0, 0, -1)),
]


def _yaw_matrix(yaw: float) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float32)


def box_triangles(center, half, yaw, prev_center, prev_yaw, material: Material) -> np.ndarray:
    """A box as 12 triangles (36, 11), rotated about y; the previous pose gives each vertex its motion."""
    rot, prev_rot = _yaw_matrix(yaw), _yaw_matrix(prev_yaw)
    corners = _BOX_CORNERS * np.asarray(half, dtype=np.float32)
    cur = corners @ rot.T + np.asarray(center, dtype=np.float32)
    prev = corners @ prev_rot.T + np.asarray(prev_center, dtype=np.float32)
    out = np.empty((36, VERTEX_FLOATS), dtype=np.float32)
    k = 0
    for quad, normal in _BOX_QUADS:
        nrm = rot @ np.asarray(normal, dtype=np.float32)
        for corner in (quad[0], quad[1], quad[2], quad[0], quad[2], quad[3]):
            out[k, 0:3], out[k, 3:6], out[k, 6:9] = cur[corner], prev[corner], nrm
            out[k, 9], out[k, 10] = float(material), 1.0
            k += 1
    return out
