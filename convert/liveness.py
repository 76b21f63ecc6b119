"""Liveness threshold: the device's plane-removed relief score, thresholded at a target BPCER on validation.

Score of one crop: exactly what the device computes (`firmware_app.liveness.relief_score`, imported so
device and threshold cannot disagree): over the grid cells whose face probability exceeds 0.5, subtract
the least-squares plane from the predicted relief and take the spread of the rest (the device's
percentiles, 1st to 99th), in mm. A flat or tilted photo/screen scores a few mm, a real face tens of mm.
With fewer than `MIN_FACE_CELLS` (the device's default) face cells the device gives no score: such a
sample is "unscored" (NaN here).

Decision: live iff score >= threshold_mm. The threshold is the `bpcer_target` quantile (1%) of the scored
bona fide validation samples. Reported rates (ISO/IEC 30107-3 style) count an unscored bona fide sample
as rejected (it does not get in) and an unscored attack as not accepted:
BPCER = bona fide rejected / bona fide, APCER = attacks accepted / attacks, on validation and test.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware_app.liveness import HIGH_PCT, LOW_PCT, SCORE_NAME, relief_score

MASK_PROB = 0.5  # the device's default liveness.face_prob
MIN_FACE_CELLS = 200  # the device's default liveness.min_face_cells
BPCER_TARGET = 0.01
BONA_FIDE = "bona_fide"


def liveness_score(relief: np.ndarray, face_prob: np.ndarray) -> float:
    """The device's score for one (80, 80) relief map and face probability map; NaN if unscored."""
    mask = face_prob > MASK_PROB
    if int(mask.sum()) < MIN_FACE_CELLS:
        return float("nan")
    return relief_score(relief, mask)[0]


@dataclass(frozen=True)
class LivenessCalibration:
    threshold_mm: float
    bpcer_target: float
    val_bpcer: float
    val_apcer: float  # NaN if the split has no attacks
    test_bpcer: float
    test_apcer: float
    n_val: tuple[int, int, int]  # (bona fide, attack, unscored)
    n_test: tuple[int, int, int]

    def to_manifest(self) -> dict:
        def num(v):
            return None if not np.isfinite(v) else round(float(v), 5)

        def counts(n):
            return {"bona_fide": n[0], "attack": n[1], "unscored": n[2]}

        return {"score": SCORE_NAME, "face_prob": MASK_PROB, "min_face_cells": MIN_FACE_CELLS,
                "percentiles": [LOW_PCT, HIGH_PCT], "decision": "live if score >= threshold_mm",
                "threshold_mm": round(self.threshold_mm, 4), "bpcer_target": self.bpcer_target,
                "val_bpcer": num(self.val_bpcer), "val_apcer": num(self.val_apcer),
                "test_bpcer": num(self.test_bpcer), "test_apcer": num(self.test_apcer),
                "n_val": counts(self.n_val), "n_test": counts(self.n_test)}


def _rates(scores: np.ndarray, labels: list[str], threshold: float):
    bona = np.array([lab == BONA_FIDE for lab in labels], bool)
    live = np.nan_to_num(scores, nan=-np.inf) >= threshold  # unscored: never live
    bpcer = float((~live[bona]).mean()) if bona.any() else float("nan")
    apcer = float(live[~bona].mean()) if (~bona).any() else float("nan")
    return bpcer, apcer, (int(bona.sum()), int((~bona).sum()), int(np.isnan(scores).sum()))


def calibrate(val_scores, val_labels: list[str], test_scores, test_labels: list[str],
              bpcer_target: float = BPCER_TARGET) -> LivenessCalibration:
    val_scores, test_scores = np.asarray(val_scores, np.float64), np.asarray(test_scores, np.float64)
    bona = val_scores[[lab == BONA_FIDE for lab in val_labels]]
    bona = bona[np.isfinite(bona)]
    if bona.size == 0:
        raise ValueError("no scored bona fide validation sample to calibrate the liveness threshold on "
                         f"(each needs ≥ {MIN_FACE_CELLS} predicted face cells)")
    # "lower": an observed score, so at most bpcer_target of the scored bona fide scores lie below it
    threshold = float(np.quantile(bona, bpcer_target, method="lower"))
    vb, va, nv = _rates(val_scores, val_labels, threshold)
    tb, ta, nt = _rates(test_scores, test_labels, threshold)
    return LivenessCalibration(threshold, bpcer_target, vb, va, tb, ta, nv, nt)
