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


@numba.njit(cache=True, nogil=True, inline="always")
def _clip_span(slope, offset, lo, hi):
    """Narrow [lo, hi] to where slope * cx + offset >= 0 (hi < lo when empty)."""
    if slope > 0.0:
        return max(lo, -offset / slope), hi
    if slope < 0.0:
        return lo, min(hi, -offset / slope)
    return (lo, hi) if offset >= 0.0 else (hi + 1.0, hi)


@numba.njit(cache=True, nogil=True, inline="always")
def _row_span(xa, ya, xb, yb, xc, yc, cy, inv_area, lo, hi):
    """The cx within [lo, hi] where all three barycentrics of the row at cy are >= 0 (approximately)."""
    k0, c0 = (yb - yc) * inv_area, (xb * (yc - cy) - xc * (yb - cy)) * inv_area  # b0 = k0 cx + c0
    k1, c1 = (yc - ya) * inv_area, (xc * (ya - cy) - xa * (yc - cy)) * inv_area  # b1 = k1 cx + c1
    lo, hi = _clip_span(k0, c0, lo, hi)
    lo, hi = _clip_span(k1, c1, lo, hi)
    return _clip_span(-k0 - k1, 1.0 - c0 - c1, lo, hi)  # b2 = 1 - b0 - b1


@numba.njit(cache=True, nogil=True)
def _rasterize(screen, inv_z, triangles, y0, x0, zbuf_inv, tri_buf, bary_buf):
    """Into buffers that cover the window of rows y0.. and columns x0.. of the frame."""
    height, width = y0 + zbuf_inv.shape[0], x0 + zbuf_inv.shape[1]
    for t in range(triangles.shape[0]):
        i0, i1, i2 = triangles[t, 0], triangles[t, 1], triangles[t, 2]
        w0z, w1z, w2z = inv_z[i0], inv_z[i1], inv_z[i2]
        if w0z <= 0.0 or w1z <= 0.0 or w2z <= 0.0:
            continue  # behind the near plane; our scenes never straddle it
        xa, ya = screen[i0, 0], screen[i0, 1]
        xb, yb = screen[i1, 0], screen[i1, 1]
        xc, yc = screen[i2, 0], screen[i2, 1]
        area = (xb - xa) * (yc - ya) - (xc - xa) * (yb - ya)
        if abs(area) < 1e-12:
            continue
        # The pixels whose centres (px + 0.5) lie within the triangle's bounding box: most triangles
        # of a face are smaller than a pixel, and most of those hold no pixel centre at all.
        xmin = max(int(np.ceil(min(xa, xb, xc) - 0.5)), x0)
        xmax = min(int(np.floor(max(xa, xb, xc) - 0.5)), width - 1)
        ymin = max(int(np.ceil(min(ya, yb, yc) - 0.5)), y0)
        ymax = min(int(np.floor(max(ya, yb, yc) - 0.5)), height - 1)
        if xmax < xmin or ymax < ymin:
            continue
        inv_area = 1.0 / area
        for py in range(ymin, ymax + 1):
            cy = py + 0.5
            first, last = xmin, xmax
            if last - first > 4:
                # Along the row each barycentric is affine in cx: solve for the covered span, widened
                # by a pixel for rounding, so that only (nearly) covered pixels are tested below.
                lo, hi = _row_span(xa, ya, xb, yb, xc, yc, cy, inv_area, xmin + 0.5, xmax + 0.5)
                first, last = max(xmin, int(np.floor(lo - 0.5)) - 1), min(xmax, int(np.ceil(hi - 0.5)) + 1)
            for px in range(first, last + 1):
                cx = px + 0.5
                b0 = ((xb - cx) * (yc - cy) - (xc - cx) * (yb - cy)) * inv_area
                b1 = ((xc - cx) * (ya - cy) - (xa - cx) * (yc - cy)) * inv_area
                b2 = 1.0 - b0 - b1
                if b0 < 0.0 or b1 < 0.0 or b2 < 0.0:
                    continue
                iz = b0 * w0z + b1 * w1z + b2 * w2z
                wy, wx = py - y0, px - x0
                if iz <= zbuf_inv[wy, wx]:
                    continue  # nearer surface already there (larger 1/Z is nearer)
                zbuf_inv[wy, wx] = iz
                tri_buf[wy, wx] = t
                z = 1.0 / iz
                bary_buf[wy, wx, 0] = b0 * w0z * z
                bary_buf[wy, wx, 1] = b1 * w1z * z
                bary_buf[wy, wx, 2] = b2 * w2z * z


@dataclass(frozen=True, eq=False)
class Window:
    """Rasterisation restricted to the frame rows y0:y1, columns x0:x1 that the mesh can cover:
    per-pixel work and memory scale with the face, not the frame."""

    y0: int
    y1: int
    x0: int
    x1: int
    zbuf_inv: np.ndarray  # (y1 - y0, x1 - x0) float64 1/Z, 0 where no triangle
    tri: np.ndarray  # (y1 - y0, x1 - x0) int32, -1 where no triangle
    bary: np.ndarray  # (y1 - y0, x1 - x0, 3) float32 perspective-correct barycentrics

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.y0, self.y1), slice(self.x0, self.x1)


def rasterize_window(points: np.ndarray, triangles: np.ndarray, K: np.ndarray, hw: tuple[int, int]) -> Window:
    """Rasterise camera-frame vertices (mm, Z forward) through K into the window of an (H, W) frame
    that holds their projection (empty, 0 x 0, when nothing in front of the camera is in the frame).
    No back-face culling: ears, nostrils and the neck's opening show back faces."""
    h, w = hw
    points = np.asarray(points, np.float64)
    safe_z = np.where(points[:, 2] > NEAR_MM, points[:, 2], np.inf)
    screen = np.ascontiguousarray(project(points, K))
    inv_z = np.where(np.isfinite(safe_z), 1.0 / safe_z, -1.0)
    front = screen[inv_z > 0]
    if len(front):
        x0, y0 = np.clip(np.floor(front.min(axis=0) - 0.5), 0, [w, h]).astype(int)
        x1, y1 = np.clip(np.ceil(front.max(axis=0) - 0.5) + 1, 0, [w, h]).astype(int)
    else:
        x0 = y0 = x1 = y1 = 0
    x1, y1 = max(x1, x0), max(y1, y0)
    zbuf_inv = np.zeros((y1 - y0, x1 - x0), np.float64)
    tri = np.full((y1 - y0, x1 - x0), -1, np.int32)
    bary = np.zeros((y1 - y0, x1 - x0, 3), np.float32)
    _rasterize(screen, inv_z, np.ascontiguousarray(triangles, np.int32), y0, x0, zbuf_inv, tri, bary)
    return Window(int(y0), int(y1), int(x0), int(x1), zbuf_inv, tri, bary)


def rasterize(points: np.ndarray, triangles: np.ndarray, K: np.ndarray, hw: tuple[int, int]) -> Raster:
    """Rasterise camera-frame vertices (mm, Z forward) through intrinsics K into an (H, W) frame."""
    win = rasterize_window(points, triangles, K, hw)
    depth = np.zeros(hw, np.float32)
    tri = np.full(hw, -1, np.int32)
    bary = np.zeros((*hw, 3), np.float32)
    rows, cols = win.slices
    hit = win.tri >= 0
    depth[rows, cols][hit] = (1.0 / win.zbuf_inv[hit]).astype(np.float32)
    tri[rows, cols] = win.tri
    bary[rows, cols] = win.bary
    return Raster(depth=depth, tri=tri, bary=bary)


def interpolate(raster: Raster, corner_values: np.ndarray) -> np.ndarray:
    """Interpolate per-triangle-corner values (F, 3, C) at covered pixels → (H, W, C), 0 elsewhere."""
    h, w = raster.tri.shape
    out = np.zeros((h * w, corner_values.shape[-1]), np.float32)
    out[raster.hit_index] = raster.at_hits(corner_values)
    return out.reshape(h, w, -1)
