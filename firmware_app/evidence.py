"""Per-frame liveness evidence: depth-shape features (and the network's logit) → one calibrated LLR.

Features of one depth map, over the grid cells whose face probability exceeds `face_prob`
(`frame_features`; convert calibrates with this same function, so device and manifest agree):

  plane_range      ln(1 + range of the relief after removing the least-squares plane), range = 99th − 1st
                   percentile in mm. A photo or screen, tilted or not, is close to a plane.
  quadric_range    ln(1 + the same after removing a least-squares quadric z(u, v)). A print bent around a
                   cylinder is curved, but a quadric takes the curve away and leaves nothing; a face keeps
                   its nose, eye sockets and mouth.
  nose_prominence  ln(1 + max(0, 95th percentile of the quadric residual in the window where the nose tip
                   lies in the crop − median residual over the face)), mm. A face's nose stands out.
  live_logit       the network's liveness logit (v2 models; + = bona fide), clipped to ±LOGIT_CLIP.

`EvidenceModel` is a logistic regression over standardised features, fitted by convert/liveness.py on the
validation split with both classes weighted equally, so its log-odds estimate the log-likelihood ratio
ln p(features | bona fide) / p(features | attack) (prior-free; + = bona fide). Its coefficients, feature
names and calibration sizes are the manifest's `liveness.evidence`. A manifest without one (bundles
from before this module) gets `EvidenceModel.fallback(threshold_mm)`: the plane range alone,
FALLBACK_SLOPE · (plane_range − ln(1 + threshold_mm)), i.e. 0 at the old threshold; it is marked
`source: threshold_fallback` in events and is not calibrated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from firmware_app.preprocess import GRID_SIZE

FEATURES = ("plane_range", "quadric_range", "nose_prominence", "live_logit")
SHAPE_FEATURES = FEATURES[:3]
LOW_PCT, HIGH_PCT = 1.0, 99.0
LOGIT_CLIP = 12.0
FALLBACK_SLOPE = 4.0  # LLR per unit of ln(1 + plane range): 1.4 for a face at 1.4× the threshold
# Where the nose tip lies on the grid: the crop is 1.6× the 68-landmark extent, eye-aligned, so the
# extent covers cells 15..65 and the nose tip sits near its centre, a little below (rows 33..52).
NOSE_ROWS, NOSE_COLS = slice(33, 53), slice(30, 50)

_V, _U = (a - 0.5 for a in np.mgrid[0:GRID_SIZE, 0:GRID_SIZE].astype(np.float64) / GRID_SIZE)


class EvidenceError(ValueError):
    """A manifest's liveness evidence model this code cannot use; the message says what is wrong."""


class Features(NamedTuple):
    values: dict[str, float]  # FEATURES → transformed value (live_logit absent for a v1 model)
    plane_range_mm: float  # plane-removed relief range (the v1 score)
    relief_range_mm: float  # raw relief range over the face
    face_cells: int


def _range(z: np.ndarray) -> float:
    lo, hi = np.percentile(z, [LOW_PCT, HIGH_PCT])
    return float(hi - lo)


def _fit(a: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Least squares by the normal equations: a few columns, thousands of rows (SVD lstsq is ~50× slower)."""
    try:
        return np.linalg.solve(a.T @ a, a.T @ z)
    except np.linalg.LinAlgError:  # a degenerate mask (one row of cells): fall back
        return np.linalg.lstsq(a, z, rcond=None)[0]


def frame_features(relief_mm: np.ndarray, face_prob: np.ndarray, live_logit: float | None = None,
                   face_prob_min: float = 0.5, min_face_cells: int = 200) -> Features | None:
    """The features of one (80, 80) relief map; None when fewer than `min_face_cells` face cells."""
    mask = face_prob > face_prob_min
    cells = int(mask.sum())
    if cells < max(min_face_cells, 7):
        return None
    z = relief_mm[mask].astype(np.float64)
    u, v = _U[mask], _V[mask]
    one = np.ones_like(z)
    plane = np.stack([u, v, one], axis=1)
    quad = np.stack([u * u, v * v, u * v, u, v, one], axis=1)
    r_plane, r_quad = z - plane @ _fit(plane, z), z - quad @ _fit(quad, z)
    plane_mm = _range(r_plane)
    nose = np.zeros_like(mask)
    nose[NOSE_ROWS, NOSE_COLS] = True
    in_nose = nose[mask]
    prominence = 0.0
    if in_nose.sum() >= 5:
        prominence = float(np.percentile(r_quad[in_nose], 95)) - float(np.median(r_quad))
    values = {"plane_range": float(np.log1p(plane_mm)), "quadric_range": float(np.log1p(_range(r_quad))),
              "nose_prominence": float(np.log1p(max(prominence, 0.0)))}
    if live_logit is not None and np.isfinite(live_logit):
        values["live_logit"] = float(np.clip(live_logit, -LOGIT_CLIP, LOGIT_CLIP))
    return Features(values, plane_mm, _range(z), cells)


@dataclass(frozen=True)
class EvidenceModel:
    names: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept: float
    source: str = "calibrated"  # or "threshold_fallback"
    calibration: dict | None = None  # split and sample counts, as fitted

    def __post_init__(self):
        n = len(self.names)
        if not n or any(len(x) != n for x in (self.mean, self.scale, self.coef)):
            raise EvidenceError("liveness.evidence: names, mean, scale and coef must be lists of one length")
        unknown = set(self.names) - set(FEATURES)
        if unknown:
            raise EvidenceError(f"liveness.evidence: unknown feature(s) {sorted(unknown)} "
                                f"(this firmware knows {', '.join(FEATURES)}); update the firmware")
        bad = [v for v in (*self.mean, *self.scale, *self.coef, self.intercept) if not np.isfinite(v)]
        if bad or min(self.scale) <= 0:
            raise EvidenceError("liveness.evidence: coefficients must be finite and scales > 0")

    @property
    def uses_logit(self) -> bool:
        return "live_logit" in self.names

    def contributions(self, features: Features) -> dict[str, float]:
        """Each feature's additive share of the LLR (intercept under "bias"); raises on a missing feature."""
        missing = [n for n in self.names if n not in features.values]
        if missing:
            raise EvidenceError(f"frame has no {', '.join(missing)}: the bundle's evidence model needs the "
                                "network's liveness output, the depth model has none")
        out = {n: c * (features.values[n] - m) / s
               for n, m, s, c in zip(self.names, self.mean, self.scale, self.coef, strict=True)}
        out["bias"] = self.intercept
        return out

    def llr(self, features: Features) -> float:
        """ln p(features | bona fide) / p(features | attack), + = bona fide."""
        return float(sum(self.contributions(features).values()))

    def to_manifest(self) -> dict:
        return {"source": self.source, "features": list(self.names),
                "mean": [round(v, 6) for v in self.mean], "scale": [round(v, 6) for v in self.scale],
                "coef": [round(v, 6) for v in self.coef], "intercept": round(self.intercept, 6),
                "llr": "intercept + sum(coef * (x - mean) / scale); + = bona fide",
                "calibration": self.calibration or {}}

    @classmethod
    def from_manifest(cls, liveness: dict, threshold_mm: float) -> EvidenceModel:
        ev = liveness.get("evidence") if isinstance(liveness, dict) else None
        if ev is None:
            return cls.fallback(threshold_mm)
        if not isinstance(ev, dict):
            raise EvidenceError("manifest liveness.evidence is not a mapping; rebuild the bundle")
        try:
            return cls(tuple(str(n) for n in ev["features"]), *(tuple(float(v) for v in ev[k])
                                                               for k in ("mean", "scale", "coef")),
                       float(ev["intercept"]), str(ev.get("source", "calibrated")), ev.get("calibration"))
        except (KeyError, TypeError, ValueError) as e:
            if isinstance(e, EvidenceError):
                raise
            raise EvidenceError(f"manifest liveness.evidence is incomplete or not numeric ({e}); "
                                "rebuild the bundle with make convert") from None

    @classmethod
    def fallback(cls, threshold_mm: float) -> EvidenceModel:
        """The v1 bundle's single threshold as an (uncalibrated) LLR: 0 at the threshold."""
        return cls(("plane_range",), (float(np.log1p(max(threshold_mm, 0.0))),), (1.0,), (FALLBACK_SLOPE,),
                   0.0, "threshold_fallback")
