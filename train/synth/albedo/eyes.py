"""Eyeball albedo, shaded per point rather than stored in the texture.

hm08's eyeball UVs squeeze the whole visible front of an eye into ~4 texels of a 512 texture, so the
texture can only hold a prefiltered blur of the iris (the atlas' "eyeball" crop). A renderer should
colour PART_EYE pixels with `eye_albedo(app, coords)`, coords interpolated from the per-vertex
`eye_coordinates()` (the sheet and face_render do).
"""

from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np

from train.synth.albedo.appearance import Appearance
from train.synth.head import PART_EYE, head_mesh


@lru_cache(maxsize=1)
def _eye_frames() -> dict:
    """Per eye (x sign +1 / -1): eyeball centre and an orthonormal frame whose third axis goes through
    the cornea's apex (the frontmost eyeball vertices), neutral head frame."""
    m = head_mesh()
    v = m.vertices
    eye_v = v[np.unique(m.triangles[m.tri_part == PART_EYE])]
    frames = {}
    for s in (1, -1):
        q = eye_v[eye_v[:, 0] * s > 0]
        centre = (q.min(0) + q.max(0)) / 2
        centre[2] = q[:, 2].min() + (q[:, 0].max() - q[:, 0].min()) / 2  # the cornea bulges out of the globe
        front = q[q[:, 2] > q[:, 2].max() - 1e-3].mean(0)
        axis = (front - centre) / np.linalg.norm(front - centre)
        e1 = np.cross([0.0, 1.0, 0.0], axis)
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(axis, e1)
        frames[s] = (centre.astype(np.float32), np.stack([e1, e2, axis]).astype(np.float32))
    return frames


def _eye_coords(points: np.ndarray, side: np.ndarray) -> np.ndarray:
    """(N, 3) eyeball points → (N, 2) azimuthal-equidistant coordinates: the angle from the eye's axis
    (radians) times the unit direction around it. Linear interpolation of these across a triangle is
    accurate, so a renderer can interpolate them per pixel."""
    out = np.zeros((len(points), 2), np.float32)
    for s, (c, frame) in _eye_frames().items():
        sel = side == s
        d = (points[sel] - c) @ frame.T
        ang = np.arctan2(np.linalg.norm(d[:, :2], axis=1), d[:, 2])
        out[sel] = d[:, :2] / np.maximum(np.linalg.norm(d[:, :2], axis=1, keepdims=True), 1e-9) * ang[:, None]
    return out


@lru_cache(maxsize=1)
def eye_coordinates() -> np.ndarray:
    """(V, 2) float32 per head_mesh() vertex: for eyeball vertices, the angle (radians) from the eye's
    optical axis times the unit direction around it (x towards the subject's left, y up); 0 elsewhere.

    The hm08 eyeball UVs squeeze the whole visible front of the eye into ~4 texels of a 512 texture,
    so the iris cannot be resolved by UV. A renderer can instead interpolate these per pixel on
    PART_EYE triangles and colour them with `eye_albedo(app, coords)`.
    """
    m = head_mesh()
    out = np.zeros((len(m.vertices), 2), np.float32)
    idx = np.unique(m.triangles[m.tri_part == PART_EYE])
    out[idx] = _eye_coords(m.vertices[idx], np.sign(m.vertices[idx, 0]))
    return out


def eye_albedo(app: Appearance, coords: np.ndarray) -> np.ndarray:
    """Linear-RGB albedo (P, 3) of the eyeball at `eye_coordinates()`-style coords (P, 2)."""
    coords = np.asarray(coords, np.float32).reshape(-1, 2)
    r, fibres = _eye_polar(coords)
    return _eye_colour(app, r[:, None], fibres[:, None])


def _eye_polar(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P, 2) eye coords → angle from the axis r (radians) and the iris-fibre modulation."""
    r = np.linalg.norm(coords, axis=1).astype(np.float32)
    phi = np.arctan2(coords[:, 1], coords[:, 0])
    x = r / np.float32(0.47)
    fibres = 1.0 + 0.18 * np.cos(phi * 23.0 + 3.0 * x) * np.cos(phi * 7.0 - 2.0 * x)
    return r, fibres.astype(np.float32)


def _eye_colour(app: Appearance, r: np.ndarray, fibres: np.ndarray) -> np.ndarray:
    """(P, n) angles and fibre modulations → (P, 3) albedo averaged over the n samples."""
    iris_r = float(np.radians(app.iris_deg))
    out = np.empty((r.shape[0], 3), np.float32)
    sclera, iris = np.asarray(app.sclera_rgb, np.float32), np.asarray(app.iris_rgb, np.float32)
    _k_eye(np.ascontiguousarray(r, np.float32), np.ascontiguousarray(fibres, np.float32), iris_r,
           iris_r * app.pupil_ratio, sclera, iris, out)
    return out


@numba.njit(cache=True, nogil=True, fastmath=True)
def eye_polar_at(cx, cy):
    """One point's eye coords → (angle from the axis r (radians), iris-fibre modulation), like _eye_polar."""
    r = np.float32(np.sqrt(cx * cx + cy * cy))
    phi = np.arctan2(cy, cx)
    x = r / np.float32(0.47)
    return r, np.float32(1.0 + 0.18 * np.cos(phi * 23.0 + 3.0 * x) * np.cos(phi * 7.0 - 2.0 * x))


@numba.njit(cache=True, nogil=True, fastmath=True)
def eye_rgb_at(x, fibre, iris_r, pupil_r, sclera, iris, out):
    """Eyeball albedo at angle x (radians) from the eye's axis into out (3,): pupil, iris (with
    fibres), limbus, sclera."""
    a_corner = min(max((x - 0.9) / 0.6, 0.0), 1.0)
    a_iris = min(max((iris_r + 0.03 - x) / 0.06, 0.0), 1.0)
    a_pupil = min(max((pupil_r + 0.02 - x) / 0.04, 0.0), 1.0)
    u = min(x / iris_r, 1.0)
    shade = (1.3 - 0.8 * u * u * u * u) * fibre
    for k in range(3):
        corner = 0.5 if k == 0 else (0.3 if k == 1 else 0.28)
        c = sclera[k] + a_corner * (corner - sclera[k])
        c += a_iris * (iris[k] * shade - c)
        c += a_pupil * (0.008 - c)
        out[k] = c


@numba.njit(cache=True, nogil=True, fastmath=True)
def _k_eye(r, fibres, iris_r, pupil_r, sclera, iris, out):
    """Eyeball albedo, averaged over the n samples of each of P points, at angles r (P, n) (radians) from
    the eye's axis."""
    n = r.shape[1]
    one = np.empty(3, np.float32)
    for p in range(r.shape[0]):
        acc = np.zeros(3, np.float32)
        for q in range(n):
            eye_rgb_at(r[p, q], fibres[p, q], iris_r, pupil_r, sclera, iris, one)
            for k in range(3):
                acc[k] += one[k]
        for k in range(3):
            out[p, k] = acc[k] / n
