"""Liveness calibration: the device's per-frame evidence, fitted on the validation split into one LLR.

Each validation crop's int8 outputs (relief, face probability and, for v2 models, the liveness logit:
a `DepthResult`) give the device's features (`firmware_app.evidence.frame_features`, imported so device
and calibration cannot disagree; face mask at 0.5, ≥ MIN_FACE_CELLS cells, else "unscored"). A logistic
regression over the standardised features (L2 = RIDGE, both classes weighted equally, so its log-odds
are a prior-free log-likelihood ratio) is fitted with scipy; the device evaluates it with
`EvidenceModel.llr`. The live logit is a feature only when every scored sample has one (a v2 model).

Refused (ValueError, a clear line) with fewer than MIN_ATTACKS scored attacks or MIN_BONA_FIDE scored
bona fide samples in validation: a logistic fit on fewer says little, and the bound the device uses
(APCER ≤ 1 %) would rest on nothing.

The medium-edge cue (firmware_app/medium.py: straight edges of a print or screen around the face, in the
whole frame) is fitted on the same validation frames into a table of LLRs by side count (`fit_medium`),
never positive; its samples' boxes are the landmark extent with a detector-sized error (`medium_box`).

Reported (ISO/IEC 30107-3 style, per frame): the frame-LLR threshold at `bpcer_target` (1 %) of the
scored bona fide validation samples, and BPCER / APCER at it on validation and test, per attack type
on test with Wilson 95 % intervals. An unscored bona fide sample counts as rejected, an unscored attack as not
accepted. The door's decision is per track (firmware_app/liveness.py); these are frame figures.
The manifest also keeps the low tail of the bona fide validation frames' LLRs (`bona_fide_tail`: the
lowest TAIL_SHARE, at least TAIL_MIN, by each frame's rank among the bona fide frames): enough to resample
the 1 % threshold, which rests on ~34 frames, so `convert.heldout` can say how sure a comparison is.
Also kept: the v1 score (`liveness_score`, the plane-removed relief range) and its threshold at
`bpcer_target`, `threshold_mm`, which the device shows beside each frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from firmware_app.depth import DepthResult
from firmware_app.evidence import SHAPE_FEATURES, EvidenceModel, Features, frame_features
from firmware_app.liveness import HIGH_PCT, LOW_PCT, SCORE_NAME, relief_score
from firmware_app.medium import SIDES, MediumModel, find_edges

MASK_PROB = 0.5  # the device's default liveness.face_prob
MIN_FACE_CELLS = 200  # the device's default liveness.min_face_cells
BPCER_TARGET = 0.01
BONA_FIDE = "bona_fide"
MIN_ATTACKS = 50
MIN_BONA_FIDE = 50
RIDGE = 1e-3
TAIL_SHARE = 0.05  # a bootstrap's 1 % quantile of 3,375 frames lies in the lowest 2 % but for ~1e-9 of draws
TAIL_MIN = 50  # small splits keep this many (all of them, when fewer)
MEDIUM_FLOOR = -4.5  # one frame's border costs at most this much (4 sides: −5.1 fitted on val, 2 bona fide)
MEDIUM_JITTER = (0.08, 0.10)  # the box's centre (× side) and size error: the device's detector box is not
                              # the landmark extent (training's crop jitter, train/configs/default.yaml)


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """Wilson score interval (95 %) of k successes in n trials."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * float(np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def liveness_score(relief: np.ndarray, face_prob: np.ndarray) -> float:
    """The v1 score (plane-removed relief range, mm) of one (80, 80) relief map; NaN if unscored."""
    mask = face_prob > MASK_PROB
    if int(mask.sum()) < MIN_FACE_CELLS:
        return float("nan")
    return relief_score(relief, mask)[0]


def features_of(results: Sequence[DepthResult]) -> list[Features | None]:
    return [frame_features(r.relief_mm, r.face_prob, r.live_logit, MASK_PROB, MIN_FACE_CELLS)
            for r in results]


def medium_box(face_box: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The device's face box for a sample: a square on the 68-landmark extent (pipeline.landmark_box
    estimates that square from the detector), moved and resized by a detector-sized error."""
    x0, y0, x1, y1 = (float(v) for v in face_box)
    side = max(x1 - x0, y1 - y0) * (1 + rng.uniform(-1, 1) * MEDIUM_JITTER[1])
    cx, cy = (x0 + x1) / 2 + rng.uniform(-1, 1) * MEDIUM_JITTER[0] * side, \
        (y0 + y1) / 2 + rng.uniform(-1, 1) * MEDIUM_JITTER[0] * side
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


def medium_counts(index, split: str, seed: int = 0, max_samples: int = 0) -> list[int]:
    """The device's medium-edge side count (firmware_app.medium.find_edges) of each sample of a split, in
    the order train.evaluate scores them."""
    counts = []
    rng = np.random.default_rng([seed, 7])
    for reader in index.readers(split):
        for i in range(len(reader)):
            if max_samples and len(counts) >= max_samples:
                return counts
            counts.append(find_edges(reader.rgb(i), medium_box(reader.face_box[i], rng)).count)
    return counts


def fit_medium(counts: Sequence[int], labels: Sequence[str], split: str = "val") -> MediumModel:
    """LLR per side count: ln p(count | bona fide) / p(count | attack) with add-one smoothing, then kept
    ≤ 0 (the cue only lowers), non-rising with the count, and ≥ MEDIUM_FLOOR."""
    counts, bona = np.asarray(counts, int), np.array([lab == BONA_FIDE for lab in labels])
    n_bona, n_attack = int(bona.sum()), int((~bona).sum())
    if n_attack < MIN_ATTACKS or n_bona < MIN_BONA_FIDE:
        raise ValueError(f"too few validation samples to calibrate the medium-edge cue: {n_attack} attacks "
                         f"and {n_bona} bona fide (need ≥ {MIN_ATTACKS} and ≥ {MIN_BONA_FIDE}); generate a "
                         "larger dataset")
    k = len(SIDES) + 1
    hist_b = np.bincount(counts[bona], minlength=k)
    hist_a = np.bincount(counts[~bona], minlength=k)
    llr = np.log((hist_b + 1) / (n_bona + k)) - np.log((hist_a + 1) / (n_attack + k))
    llr = np.maximum(np.minimum.accumulate(np.minimum(llr, 0.0)), MEDIUM_FLOOR)
    return MediumModel(tuple(float(x) + 0.0 for x in llr),  # + 0.0: no −0.0 in the manifest
                       {"split": split, "bona_fide": n_bona, "attack": n_attack,
                        "bona_fide_by_count": hist_b.tolist(), "attack_by_count": hist_a.tolist(),
                        "method": "add-one smoothed histogram ratio, clipped to [floor, 0], non-rising",
                        "floor": MEDIUM_FLOOR, "box_jitter": list(MEDIUM_JITTER)})


@dataclass(frozen=True)
class SplitRates:
    bpcer: float
    apcer: float  # NaN without attacks
    apcer_by_type: dict  # attack type → (accepted, attacks)
    counts: tuple[int, int, int]  # (bona fide, attack, unscored)


@dataclass(frozen=True)
class LivenessCalibration:
    model: EvidenceModel
    llr_threshold: float  # frame LLR at bpcer_target of the scored bona fide validation samples
    threshold_mm: float  # the v1 score's threshold at bpcer_target (display; v1 fallback)
    bpcer_target: float
    val: SplitRates
    test: SplitRates
    notes: tuple[str, ...] = field(default=())
    medium: MediumModel | None = None  # the medium-edge table (firmware_app/medium.py), when fitted
    bona_fide_tail: dict | None = None  # bona_fide_tail() of the val frame LLRs the threshold was set on

    # the names the convert CLI and older callers read
    val_bpcer = property(lambda self: self.val.bpcer)
    val_apcer = property(lambda self: self.val.apcer)
    test_bpcer = property(lambda self: self.test.bpcer)
    test_apcer = property(lambda self: self.test.apcer)
    n_val = property(lambda self: self.val.counts)
    n_test = property(lambda self: self.test.counts)

    def to_manifest(self) -> dict:
        def num(v):
            return None if not np.isfinite(v) else round(float(v), 5)

        def counts(n):
            return {"bona_fide": n[0], "attack": n[1], "unscored": n[2]}

        return {"score": SCORE_NAME, "face_prob": MASK_PROB, "min_face_cells": MIN_FACE_CELLS,
                "percentiles": [LOW_PCT, HIGH_PCT],
                "decision": "per track: sequential test over clipped frame LLRs + motion + medium edges "
                            "(firmware_app/liveness.py)",
                "evidence": self.model.to_manifest(),
                "threshold_mm": round(self.threshold_mm, 4),
                "frame_llr_threshold": round(self.llr_threshold, 4),
                "bpcer_target": self.bpcer_target,
                "val_bpcer": num(self.val.bpcer), "val_apcer": num(self.val.apcer),
                "test_bpcer": num(self.test.bpcer), "test_apcer": num(self.test.apcer),
                "test_apcer_by_type": {t: {"apcer": num(k / n), "attacks": n,
                                           "wilson95": [num(v) for v in wilson(k, n)]}
                                       for t, (k, n) in self.test.apcer_by_type.items()},
                "n_val": counts(self.val.counts), "n_test": counts(self.test.counts),
                "notes": list(self.notes),
                **({"medium": self.medium.to_manifest()} if self.medium else {}),
                **({"val_bona_fide_tail": self.bona_fide_tail} if self.bona_fide_tail else {})}


def _matrix(feats: Sequence[Features | None], names: Sequence[str]) -> np.ndarray:
    """(n, len(names)); NaN rows for unscored samples."""
    x = np.full((len(feats), len(names)), np.nan)
    for i, f in enumerate(feats):
        if f is not None:
            x[i] = [f.values.get(n, np.nan) for n in names]
    return x


def fit_logistic(x: np.ndarray, bona: np.ndarray, ridge: float = RIDGE) -> tuple[np.ndarray, float]:
    """Class-balanced L2 logistic regression on standardised x: (coef, intercept), log-odds + = bona fide."""
    y = np.where(bona, 1.0, -1.0)
    w = np.where(bona, 0.5 / bona.sum(), 0.5 / (~bona).sum())
    xb = np.concatenate([x, np.ones((len(x), 1))], axis=1)

    def loss(theta):
        m = y * (xb @ theta)
        p = np.exp(-np.logaddexp(0.0, m))  # sigmoid(-m)
        reg = 0.5 * ridge * float(theta[:-1] @ theta[:-1])
        grad = -(xb.T @ (w * y * p))
        grad[:-1] += ridge * theta[:-1]
        return float(w @ np.logaddexp(0.0, -m)) + reg, grad

    r = minimize(loss, np.zeros(xb.shape[1]), jac=True, method="L-BFGS-B")
    if not np.all(np.isfinite(r.x)):
        raise ValueError(f"the liveness logistic fit did not converge ({r.message})")
    return r.x[:-1], float(r.x[-1])


def fit_evidence(feats: Sequence[Features | None], labels: Sequence[str]) -> EvidenceModel:
    scored = np.array([f is not None for f in feats])
    bona = np.array([lab == BONA_FIDE for lab in labels])
    n_bona, n_attack = int((scored & bona).sum()), int((scored & ~bona).sum())
    if n_attack < max(MIN_ATTACKS, 1) or n_bona < max(MIN_BONA_FIDE, 1):
        raise ValueError(
            f"too few scored validation samples to calibrate liveness: {n_attack} attacks and {n_bona} bona "
            f"fide (need ≥ {MIN_ATTACKS} and ≥ {MIN_BONA_FIDE}, each with ≥ {MIN_FACE_CELLS} predicted face "
            "cells); generate a larger dataset (more attacks in its val split)")
    has_logit = all("live_logit" in f.values for f in feats if f is not None)
    names = (*SHAPE_FEATURES, "live_logit") if has_logit else SHAPE_FEATURES
    x = _matrix(feats, names)[scored]
    mean, std = x.mean(axis=0), x.std(axis=0)
    std = np.where(std > 1e-6, std, 1.0)
    coef, intercept = fit_logistic((x - mean) / std, bona[scored])
    return EvidenceModel(tuple(names), tuple(map(float, mean)), tuple(map(float, std)),
                         tuple(map(float, coef)), intercept, "calibrated",
                         {"split": "val", "bona_fide": n_bona, "attack": n_attack,
                          "unscored": int((~scored).sum()), "method": "logistic regression, classes balanced",
                          "ridge": RIDGE})


def _rates(llr: np.ndarray, labels: Sequence[str], threshold: float) -> SplitRates:
    labels = np.asarray(labels)
    bona = labels == BONA_FIDE
    live = np.nan_to_num(llr, nan=-np.inf) >= threshold  # unscored: never live
    bpcer = float((~live[bona]).mean()) if bona.any() else float("nan")
    apcer = float(live[~bona].mean()) if (~bona).any() else float("nan")
    by_type = {t: (int(live[labels == t].sum()), int((labels == t).sum()))
               for t in sorted(set(labels[~bona]))}
    return SplitRates(bpcer, apcer, by_type, (int(bona.sum()), int((~bona).sum()), int(np.isnan(llr).sum())))


def _llrs(model: EvidenceModel, feats: Sequence[Features | None]) -> np.ndarray:
    return np.array([model.llr(f) if f is not None else np.nan for f in feats], np.float64)


def bona_fide_tail(llr: np.ndarray, labels: Sequence[str], share: float = TAIL_SHARE,
                   least: int = TAIL_MIN) -> dict:
    """The lowest frame LLRs of the bona fide frames, each by its rank among them in split order (`index`),
    with their count `n` and the unscored ones' ranks: what a resampled threshold needs, and the same
    ranks in every bundle calibrated on that split (convert.heldout pairs them)."""
    bona = np.asarray(llr, np.float64)[np.asarray(labels) == BONA_FIDE]
    scored = np.flatnonzero(np.isfinite(bona))
    keep = min(scored.size, max(least, int(np.ceil(share * scored.size))))
    low = scored[np.argsort(bona[scored], kind="stable")[:keep]]
    return {"n": int(bona.size), "unscored": np.flatnonzero(~np.isfinite(bona)).tolist(),
            "index": low.tolist(), "llr": [round(float(v), 4) for v in bona[low]]}


def _quantile(scores: np.ndarray, labels: Sequence[str], q: float, what: str) -> float:
    bona = scores[[lab == BONA_FIDE for lab in labels]]
    bona = bona[np.isfinite(bona)]
    if bona.size == 0:
        raise ValueError(f"no scored bona fide validation sample to set the {what} on "
                         f"(each needs ≥ {MIN_FACE_CELLS} predicted face cells)")
    # "lower": an observed score, so at most q of the scored bona fide scores lie below it
    return float(np.quantile(bona, q, method="lower"))


def calibrate(val: Sequence[DepthResult], val_labels: Sequence[str], test: Sequence[DepthResult],
              test_labels: Sequence[str], bpcer_target: float = BPCER_TARGET,
              val_medium: Sequence[int] | None = None,
              test_medium: Sequence[int] | None = None) -> LivenessCalibration:
    """Fit the evidence model on `val` (the int8 model's outputs per sample) and report val and test.
    With each sample's medium-edge side count (medium_counts, same order), the medium table is fitted
    on val too, and the frame figures are for the frame LLR plus the medium LLR."""
    val_f, test_f = features_of(val), features_of(test)
    model = fit_evidence(val_f, val_labels)
    val_llr, test_llr = _llrs(model, val_f), _llrs(model, test_f)
    medium = None
    if val_medium is not None and test_medium is not None:
        if (len(val_medium), len(test_medium)) != (len(val), len(test)):
            raise ValueError(f"medium-edge counts for {len(val_medium)} val / {len(test_medium)} test "
                             f"samples, depth results for {len(val)} / {len(test)}: must be the same samples")
        medium = fit_medium(val_medium, val_labels)
        table = np.asarray(medium.llr_by_count)
        val_llr, test_llr = val_llr + table[np.asarray(val_medium)], test_llr + table[np.asarray(test_medium)]
    threshold = _quantile(val_llr, val_labels, bpcer_target, "frame LLR threshold")
    v1 = np.array([f.plane_range_mm if f is not None else np.nan for f in val_f])
    threshold_mm = _quantile(v1, val_labels, bpcer_target, "relief threshold")
    notes = []
    n_attack = model.calibration["attack"]
    if n_attack < 1 / bpcer_target * 30:
        notes.append(f"{n_attack} validation attacks: a frame APCER near {bpcer_target:.0%} is not resolved "
                     f"(≥ {int(30 / bpcer_target)} needed); the per-track bound carries the door's guarantee")
    return LivenessCalibration(model, threshold, threshold_mm, bpcer_target,
                               _rates(val_llr, val_labels, threshold),
                               _rates(test_llr, test_labels, threshold), tuple(notes), medium,
                               bona_fide_tail(val_llr, val_labels))
