"""Depth metrics (numpy, one sample at a time) and the training loss/metric (Keras ops).

All depth metrics work on relief in mm over the ground-truth face mask after *shift alignment*:
the prediction is moved by the median of (pred − true) over the mask, because only the face's shape,
not its offset, is observable from one image. A metric with nothing to measure returns NaN.

δ<1.25 on relief. The classic δ = max(p/t, t/p) needs positive depths; relief is signed and near 0
at the reference. We use a = |p| + 10 mm, b = |t| + 10 mm (the offset keeps tiny reliefs from
turning noise into huge ratios) and count a pixel only if max(a/b, b/a) < 1.25 *and* p and t are on
the same side of zero or within 2.5 mm of each other — without that guard a nose predicted at −20 mm
for a true +20 mm would count as correct.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

DELTA_OFFSET_MM = 10.0
ORDINAL_MIN_DIFF_MM = 5.0


def shift_align(pred: np.ndarray, true: np.ndarray, mask: np.ndarray) -> np.ndarray:
    if not mask.any():
        return pred
    return pred - np.median(pred[mask] - true[mask])


def plane(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The least-squares plane a·x + b·y + c through values[mask], evaluated on the whole grid."""
    y, x = np.nonzero(mask)
    design = np.stack([x, y, np.ones_like(x)], axis=1).astype(np.float64)
    coef = np.linalg.lstsq(design, values[mask].astype(np.float64), rcond=None)[0]
    gy, gx = np.indices(values.shape)
    return coef[0] * gx + coef[1] * gy + coef[2]


def plane_align(pred: np.ndarray, true: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """pred minus the best-fit plane of (pred − true): what is left is shape error, not head tilt."""
    if mask.sum() < 3:
        return pred
    return pred - plane(pred - true, mask).astype(pred.dtype)


def mae(pred, true, mask) -> float:
    return float(np.abs(pred[mask] - true[mask]).mean()) if mask.any() else float("nan")


def rmse(pred, true, mask) -> float:
    return float(np.sqrt(((pred[mask] - true[mask]) ** 2).mean())) if mask.any() else float("nan")


def delta_accuracy(pred, true, mask, threshold: float = 1.25, offset: float = DELTA_OFFSET_MM) -> float:
    if not mask.any():
        return float("nan")
    p, t = pred[mask], true[mask]
    a, b = np.abs(p) + offset, np.abs(t) + offset
    same_side = (p * t >= 0) | (np.abs(p - t) <= offset * (threshold - 1))
    return float(((np.maximum(a / b, b / a) < threshold) & same_side).mean())


def landmark_values(grid: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of an 80×80 grid at landmark positions (nearest cell) and whether each is inside the grid."""
    ij = np.round(landmarks).astype(np.int64)
    inside = (ij[:, 0] >= 0) & (ij[:, 0] < grid.shape[1]) & (ij[:, 1] >= 0) & (ij[:, 1] < grid.shape[0])
    ij = np.clip(ij, 0, np.array(grid.shape[::-1]) - 1)
    return grid[ij[:, 1], ij[:, 0]], inside


def ordinal_accuracy(pred, true, face, landmarks, visible, min_diff: float = ORDINAL_MIN_DIFF_MM):
    """Over landmark pairs (visible, on a face cell) whose true relief differs by > min_diff: the share
    whose predicted order agrees. Returns (accuracy or NaN, number of pairs)."""
    on_face, inside = landmark_values(face, landmarks)
    keep = visible & inside & on_face.astype(bool)
    tv, pv = landmark_values(true, landmarks)[0][keep], landmark_values(pred, landmarks)[0][keep]
    dt, dp = tv[:, None] - tv[None, :], pv[:, None] - pv[None, :]
    pairs = np.triu(np.abs(dt) > min_diff, k=1)
    n = int(pairs.sum())
    return (float((np.sign(dp[pairs]) == np.sign(dt[pairs])).mean()) if n else float("nan")), n


def inner_face(landmarks: np.ndarray, face: np.ndarray) -> np.ndarray:
    """The inner face on the grid: the convex hull of the 68 landmarks (brows to chin, no ears, neck or
    scalp) within the true face mask. The landmarks are grid coordinates (Example.landmarks)."""
    import cv2

    hull = cv2.convexHull(np.round(landmarks).astype(np.int32))
    region = np.zeros(face.shape, np.uint8)
    cv2.fillConvexPoly(region, hull, 1)
    return region.astype(bool) & face


def slope(pred: np.ndarray, true: np.ndarray, mask: np.ndarray) -> float:
    """Least-squares slope of predicted on true relief over the mask (offset-free): 1 = true amplitude,
    < 1 = the face comes out shallower than it is."""
    if mask.sum() < 3:
        return float("nan")
    t, p = true[mask].astype(np.float64), pred[mask].astype(np.float64)
    t, p = t - t.mean(), p - p.mean()
    var = float((t * t).sum())
    return float((t * p).sum() / var) if var > 1e-6 else float("nan")


def iou(prob: np.ndarray, face: np.ndarray, threshold: float = 0.5) -> float:
    pred = prob > threshold
    union = (pred | face).sum()
    return float((pred & face).sum() / union) if union else float("nan")


def relief_range(pred: np.ndarray, mask: np.ndarray, lo: float = 5, hi: float = 95,
                 detrend: bool = False) -> float:
    """p95 − p5 of the predicted relief within the mask: ~0 for a frontal flat photo, 50+ mm for a face.

    A tilted photo has a range too (a plane); detrend=True subtracts the least-squares plane over the
    mask first, so only non-planar relief counts.
    """
    if mask.sum() < 3:
        return float("nan")
    values = pred[mask].astype(np.float64)
    if detrend:
        values = values - plane(pred, mask)[mask]
    p_lo, p_hi = np.percentile(values, [lo, hi])
    return float(p_hi - p_lo)


def topk_accuracy(probs: np.ndarray, labels: np.ndarray, k: int, where: np.ndarray | None = None) -> float:
    """Share of pixels whose label is among the k most probable classes (probs (..., C), labels (...))."""
    if where is not None and not where.any():
        return float("nan")
    top = np.argpartition(-probs, k - 1, axis=-1)[..., :k] if k > 1 else probs.argmax(-1)[..., None]
    hit = (top == labels[..., None]).any(-1)
    return float(hit[where].mean() if where is not None else hit.mean())


# ---- training (Keras ops, any backend) ----

@keras.saving.register_keras_serializable("facedepth")
class ReliefLoss(keras.losses.Loss):
    """Per-sample masked L1 (mm) + w_grad × masked L1 of the residual's x/y differences (gradient
    matching: penalises wrong local shape even where the offset is right) + w_scale × |std(pred) −
    std(true)| over the mask (amplitude: L1 alone pulls uncertain relief towards the median, and a face
    comes out shallower than it is)."""

    def __init__(self, w_grad: float = 0.5, w_scale: float = 0.0, name: str = "relief_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.w_grad, self.w_scale = w_grad, w_scale

    def call(self, y_true, y_pred):
        t, m = y_true[..., 0], y_true[..., 1]
        r = (y_pred[..., 0] - t) * m
        n = ops.maximum(ops.sum(m, axis=(1, 2)), 1.0)
        loss = ops.sum(ops.abs(r), axis=(1, 2)) / n
        if self.w_grad:
            gx = ops.abs(r[:, :, 1:] - r[:, :, :-1]) * m[:, :, 1:] * m[:, :, :-1]
            gy = ops.abs(r[:, 1:, :] - r[:, :-1, :]) * m[:, 1:, :] * m[:, :-1, :]
            loss = loss + self.w_grad * (ops.sum(gx, axis=(1, 2)) + ops.sum(gy, axis=(1, 2))) / n
        if self.w_scale:
            loss = loss + self.w_scale * ops.abs(_masked_std(y_pred[..., 0], m, n) - _masked_std(t, m, n))
        return loss

    def get_config(self):
        return {**super().get_config(), "w_grad": self.w_grad, "w_scale": self.w_scale}


def _masked_std(x, m, n):
    mean = ops.sum(x * m, axis=(1, 2)) / n
    var = ops.sum(ops.square(x - mean[:, None, None]) * m, axis=(1, 2)) / n
    return ops.sqrt(var + 1e-3)


@keras.saving.register_keras_serializable("facedepth")
def relief_mae(y_true, y_pred):
    """Per-sample masked MAE in mm (not shift-aligned: the training-time view of the headline metric)."""
    t, m = y_true[..., 0], y_true[..., 1]
    n = ops.maximum(ops.sum(m, axis=(1, 2)), 1.0)
    return ops.sum(ops.abs(y_pred[..., 0] - t) * m, axis=(1, 2)) / n
