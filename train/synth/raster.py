"""Z-buffered triangle rasterisation with exact depth, compiled with numba.

For every pixel centre (x + 0.5, y + 0.5) covered by a triangle, the z-buffer keeps the camera Z of
the triangle's plane along that pixel's ray: 1/Z is affine in screen space for a planar triangle, so
interpolating 1/Z with screen-space barycentrics is exact, not an approximation. The same
perspective-correct barycentrics are returned so that any vertex attribute (normal, UV) can be
interpolated afterwards in numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numba
import numpy as np

NEAR_MM = 1.0


@dataclass(frozen=True, eq=False)
class Raster:
    depth: np.ndarray  # (H, W) float32 camera Z in mm, 0 where no triangle
    tri: np.ndarray  # (H, W) int32 triangle index, -1 where no triangle
    bary: np.ndarray  # (H, W, 3) float32 perspective-correct barycentrics

    @property
    def covered(self) -> np.ndarray:
        return self.tri >= 0

    @cached_property
    def hit_index(self) -> np.ndarray:
        """Flat indices of covered pixels: per-pixel work is done on these only."""
        return np.flatnonzero(self.tri.ravel() >= 0)

    def at_hits(self, corner_values: np.ndarray) -> np.ndarray:
        """Interpolate per-triangle-corner values (F, 3, C) at the covered pixels → (P, C)."""
        corners = np.ascontiguousarray(corner_values, np.float32).reshape(len(corner_values), 3, -1)
        return _interpolate_hits(self.hit_index, self.tri.ravel(), self.bary.reshape(-1, 3), corners)


def project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera-frame points (N, 3) → pixel coordinates (N, 2), pixel centres at +0.5."""
    z = points[:, 2:3]
    return (points[:, :2] / z) * np.array([K[0, 0], K[1, 1]]) + np.array([K[0, 2], K[1, 2]])


@numba.njit(cache=True, nogil=True)
def _interpolate_hits(hit_index, tri_flat, bary_flat, corners):
    out = np.empty((hit_index.size, corners.shape[2]), np.float32)
    for p in range(hit_index.size):
        i = hit_index[p]
        t = tri_flat[i]
        b0, b1, b2 = bary_flat[i, 0], bary_flat[i, 1], bary_flat[i, 2]
        for c in range(corners.shape[2]):
            out[p, c] = b0 * corners[t, 0, c] + b1 * corners[t, 1, c] + b2 * corners[t, 2, c]
    return out


@numba.njit(cache=True, nogil=True)
def _rasterize(screen, inv_z, triangles, height, width, zbuf_inv, tri_buf, bary_buf):
    for t in range(triangles.shape[0]):
        i0, i1, i2 = triangles[t, 0], triangles[t, 1], triangles[t, 2]
        w0z, w1z, w2z = inv_z[i0], inv_z[i1], inv_z[i2]
        if w0z <= 0.0 or w1z <= 0.0 or w2z <= 0.0:
            continue  # behind the near plane; our scenes never straddle it
        x0, y0 = screen[i0, 0], screen[i0, 1]
        x1, y1 = screen[i1, 0], screen[i1, 1]
        x2, y2 = screen[i2, 0], screen[i2, 1]
        area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if abs(area) < 1e-12:
            continue
        xmin = max(int(np.floor(min(x0, x1, x2) - 0.5)), 0)
        xmax = min(int(np.ceil(max(x0, x1, x2) - 0.5)), width - 1)
        ymin = max(int(np.floor(min(y0, y1, y2) - 0.5)), 0)
        ymax = min(int(np.ceil(max(y0, y1, y2) - 0.5)), height - 1)
        inv_area = 1.0 / area
        for py in range(ymin, ymax + 1):
            cy = py + 0.5
            for px in range(xmin, xmax + 1):
                cx = px + 0.5
                b0 = ((x1 - cx) * (y2 - cy) - (x2 - cx) * (y1 - cy)) * inv_area
                b1 = ((x2 - cx) * (y0 - cy) - (x0 - cx) * (y2 - cy)) * inv_area
                b2 = 1.0 - b0 - b1
                if b0 < 0.0 or b1 < 0.0 or b2 < 0.0:
                    continue
                iz = b0 * w0z + b1 * w1z + b2 * w2z
                if iz <= zbuf_inv[py, px]:
                    continue  # nearer surface already there (larger 1/Z is nearer)
                zbuf_inv[py, px] = iz
                tri_buf[py, px] = t
                bary_buf[py, px, 0] = b0 * w0z / iz
                bary_buf[py, px, 1] = b1 * w1z / iz
                bary_buf[py, px, 2] = b2 * w2z / iz


def rasterize(points: np.ndarray, triangles: np.ndarray, K: np.ndarray, hw: tuple[int, int]) -> Raster:
    """Rasterise camera-frame vertices (mm, Z forward) through intrinsics K into an (H, W) frame."""
    h, w = hw
    points = np.asarray(points, np.float64)
    safe_z = np.where(points[:, 2] > NEAR_MM, points[:, 2], np.inf)
    screen = np.ascontiguousarray(project(points, K))
    inv_z = np.where(np.isfinite(safe_z), 1.0 / safe_z, -1.0)
    zbuf_inv = np.zeros((h, w), np.float64)
    tri = np.full((h, w), -1, np.int32)
    bary = np.zeros((h, w, 3), np.float32)
    _rasterize(screen, inv_z, np.ascontiguousarray(triangles, np.int32), h, w, zbuf_inv, tri, bary)
    depth = np.zeros((h, w), np.float32)
    hit = tri >= 0
    depth[hit] = (1.0 / zbuf_inv[hit]).astype(np.float32)
    return Raster(depth=depth, tri=tri, bary=bary)


def interpolate(raster: Raster, corner_values: np.ndarray) -> np.ndarray:
    """Interpolate per-triangle-corner values (F, 3, C) at covered pixels → (H, W, C), 0 elsewhere."""
    h, w = raster.tri.shape
    out = np.zeros((h * w, corner_values.shape[-1]), np.float32)
    out[raster.hit_index] = raster.at_hits(corner_values)
    return out.reshape(h, w, -1)


def sample_texture(
    texture: np.ndarray, x: np.ndarray, y: np.ndarray, interpolation: int, border: int
) -> np.ndarray:
    """Sample a texture at P pixel positions (x, y) → (P, C).

    cv2.remap limits map sides to 32767, so the P positions are laid out as rows of 1024.
    """
    import cv2

    p = len(x)
    rows = max(-(-p // 1024), 1)
    mx = np.zeros(rows * 1024, np.float32)
    my = np.zeros(rows * 1024, np.float32)
    mx[:p], my[:p] = x, y
    out = cv2.remap(texture, mx.reshape(rows, 1024), my.reshape(rows, 1024), interpolation, borderMode=border)
    return out.reshape(rows * 1024, -1)[:p]
