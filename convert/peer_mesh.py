"""MediaPipe's face mesh on our depth grid, and the fair alignment used to score both models.

Geometry: MediaPipe's 468 landmarks come in pixels of its 192×192 ROI crop; both that crop and our 80×80
relief grid are similarity transforms of the frame, so the points are mapped frame-wise onto our grid,
Delaunay-triangulated, and their −z interpolated at the cell centres. Alignment: a per-sample scale ≥ 0
and shift fitted by least squares, since MediaPipe's z is in pose-dependent pixels, not mm. Method and
caveats: convert/peer.py.
"""

from __future__ import annotations

import numpy as np
from scipy.interpolate import LinearNDInterpolator
from scipy.spatial import QhullError

from firmware_app.preprocess import GRID_SIZE, CropTransform, crop_transform, frame_to_grid
from train import metrics as M
from train.data import eye_centres
from train.synth.sample import Sample

MP_SIZE = 192  # face_landmark.tflite input side
MP_ROI_SCALE = 1.5  # MediaPipe's ROI side / face box side (its RectTransformation scale)
# MediaPipe mesh index ↔ iBUG-68 index: outer eye corners (image left, right), mouth corners, nose tip, chin
MESH_TO_IBUG = ((33, 36), (263, 45), (61, 48), (291, 54), (1, 30), (152, 8))


def fit_scale_shift(pred: np.ndarray, true: np.ndarray) -> tuple[float, float]:
    """Least-squares a ≥ 0, b with a·pred + b ≈ true (1-D arrays); a = 0, b = mean(true) if a would be < 0."""
    p, t = np.asarray(pred, np.float64), np.asarray(true, np.float64)
    dp = p - p.mean()
    var = float(dp @ dp)
    a = float(dp @ (t - t.mean())) / var if var > 0 else 0.0
    a = max(a, 0.0)
    return a, float(t.mean() - a * p.mean())


def scale_shift_mae(pred: np.ndarray, true: np.ndarray, mask: np.ndarray) -> float:
    """MAE over `mask` after the least-squares scale+shift alignment (NaN if the mask is empty)."""
    if not mask.any():
        return float("nan")
    a, b = fit_scale_shift(pred[mask], true[mask])
    return M.mae(a * pred + b, true, mask)


def shift_mae(pred: np.ndarray, true: np.ndarray, mask: np.ndarray) -> float:
    """MAE over `mask` after removing the median offset (the project's headline alignment)."""
    return M.mae(M.shift_align(pred, true, mask), true, mask)


def rasterise(points: np.ndarray, values: np.ndarray, size: int = GRID_SIZE) -> np.ndarray:
    """(size, size) linear interpolation of `values` at (N, 2) grid x, y `points`, over their Delaunay
    triangulation, sampled at the cell centres (integer coordinates); NaN outside the convex hull."""
    v, u = np.mgrid[0:size, 0:size]
    try:
        interp = LinearNDInterpolator(np.asarray(points, np.float64), np.asarray(values, np.float64))
    except (QhullError, ValueError):  # fewer than 3 points or all collinear: no surface
        return np.full((size, size), np.nan)
    return interp(u, v)


def mesh_to_frame(xy: np.ndarray, crop: CropTransform, size: int = MP_SIZE) -> np.ndarray:
    """(..., 2) continuous pixel coordinates of a size×size crop (0 = the crop's left/top edge, as
    MediaPipe's landmarks) → frame pixels (preprocess's pixel-centre convention)."""
    m = crop.affine_inverse(size)
    return (np.asarray(xy, np.float64) - 0.5) @ m[:, :2].T + m[:, 2]


def landmark_nme(mesh_frame: np.ndarray, ibug: np.ndarray) -> float:
    """Mean distance of 6 mesh points to their iBUG-68 counterparts / outer-eye-corner distance."""
    (m, i) = (list(v) for v in zip(*MESH_TO_IBUG, strict=True))
    iod = float(np.linalg.norm(ibug[i[0]] - ibug[i[1]]))
    return float(np.linalg.norm(mesh_frame[m, :2] - ibug[i], axis=1).mean() / max(iod, 1e-6))


def mesh_relief(landmarks: np.ndarray, mp_crop: CropTransform, grid_crop: CropTransform,
                size: int = GRID_SIZE) -> np.ndarray:
    """MediaPipe's (468, 3) landmarks → relief (−z, its pixel units) on `grid_crop`'s grid, NaN off hull."""
    points = frame_to_grid(mesh_to_frame(landmarks[:, :2], mp_crop), grid_crop, size)
    return rasterise(points, -landmarks[:, 2], size)


def mediapipe_roi(sample: Sample, use_eyes: bool = True) -> CropTransform:
    """MediaPipe's ROI for this face: the depth crop's face box and eye line, MediaPipe's scale."""
    return crop_transform(sample.face_box, eye_centres(sample) if use_eyes else None, scale=MP_ROI_SCALE)
