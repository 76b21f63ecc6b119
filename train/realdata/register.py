"""Depth-to-colour registration: move a depth camera's image into the colour camera's pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Registered:
    depth_mm: np.ndarray  # (H, W) float32 colour-camera Z in mm, 0 where no depth pixel landed
    points: np.ndarray  # (H, W, 3) float32 colour-camera X, Y, Z in mm of that pixel's point; 0 if none


def back_project(depth_mm: np.ndarray, k: np.ndarray) -> np.ndarray:
    """(3, N) camera-frame points of the nonzero pixels, row-major order."""
    v, u = np.nonzero(depth_mm > 0)
    rays = np.linalg.inv(k) @ np.stack([u, v, np.ones_like(u)]).astype(np.float64)
    return rays / rays[2] * depth_mm[v, u].astype(np.float64)


def register_depth(
    depth_mm: np.ndarray,
    k_depth: np.ndarray,
    k_rgb: np.ndarray,
    rot: np.ndarray,
    trans: np.ndarray,
    hw: tuple[int, int],
    max_z: float = np.inf,
) -> Registered:
    """Back-project, transform by X_rgb = rot X + trans, project to the nearest pixel, keep the nearest.

    Pixel centres are at integer coordinates (the K convention used throughout). Holes where the colour
    camera samples more finely than the depth camera are left at 0: no data is better than invented data.
    Points beyond `max_z` are dropped first (a caller that only keeps nearer points saves the sort).
    """
    h, w = hw
    pts = rot @ back_project(depth_mm, k_depth) + np.asarray(trans, np.float64)[:, None]
    pts = pts[:, (pts[2] > 0) & (pts[2] <= max_z)]
    proj = k_rgb @ pts
    x, y = np.rint(proj[0] / proj[2]), np.rint(proj[1] / proj[2])
    keep = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    pixel = (y[keep] * w + x[keep]).astype(np.int64)
    pts = pts[:, keep]
    # z-buffer: sort by pixel, then depth; the first entry of each pixel is its nearest point
    order = np.lexsort((pts[2], pixel))
    pixel, first = np.unique(pixel[order], return_index=True)
    nearest = pts[:, order[first]]
    depth_out = np.zeros(h * w, np.float32)
    points_out = np.zeros((h * w, 3), np.float32)
    depth_out[pixel] = nearest[2]
    points_out[pixel] = nearest.T
    return Registered(depth_mm=depth_out.reshape(h, w), points=points_out.reshape(h, w, 3))
