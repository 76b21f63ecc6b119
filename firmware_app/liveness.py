"""Liveness: a relief score per frame and a K-of-N vote per face track.

Score (`relief_score`): over the grid cells whose face probability exceeds `face_prob`, fit the plane
z = a·x + b·y + c to the predicted relief by least squares, subtract it, and take the spread of what
is left, as the 99th minus the 1st percentile (mm). A real face keeps its nose-to-cheek relief
(tens of mm); a photo or screen, tilted or not, is close to a plane and scores a few mm. This is the
manifest's `liveness.score: plane_removed_relief_range_mm`; calibration code should import this
function so device and threshold agree.

Vote (`TrackVote`): a track's last N scored frames; the track is "live" when at least K of them
reached the threshold and "spoof" when at least K did not. A decision is reported when a track's
verdict changes (first decision included), so one person at the door gives one event.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from firmware_app.depth import DepthResult
from firmware_app.preprocess import GRID_SIZE

LIVE, SPOOF = "live", "spoof"
SCORE_NAME = "plane_removed_relief_range_mm"
LOW_PCT, HIGH_PCT = 1.0, 99.0

_V, _U = np.mgrid[0:GRID_SIZE, 0:GRID_SIZE].astype(np.float32) / GRID_SIZE


@dataclass(frozen=True)
class Score:
    score_mm: float  # plane-removed relief range
    relief_range_mm: float  # raw relief range over the face (before removing the plane)
    face_cells: int
    live: bool


@dataclass(frozen=True)
class Decision:
    track_id: int
    decision: str  # LIVE or SPOOF
    votes_live: int
    votes: int  # scored frames in the window (≤ N)
    score_mm: float  # this frame's score
    mean_score_mm: float  # over the window


def relief_score(relief_mm: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(plane-removed range, raw range) in mm of relief_mm over the boolean mask (≥ 3 cells)."""
    z = relief_mm[mask].astype(np.float64)
    a = np.stack([_U[mask], _V[mask], np.ones_like(z)], axis=1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(a, z, rcond=None)
    lo, hi = np.percentile(z - a @ coef, [LOW_PCT, HIGH_PCT])
    raw_lo, raw_hi = np.percentile(z, [LOW_PCT, HIGH_PCT])
    return float(hi - lo), float(raw_hi - raw_lo)


class LivenessScorer:
    def __init__(self, threshold_mm: float, face_prob: float = 0.5, min_face_cells: int = 200):
        self.threshold_mm, self.face_prob, self.min_face_cells = threshold_mm, face_prob, min_face_cells

    def score(self, depth: DepthResult) -> Score | None:
        """None when the network sees too little face to judge."""
        mask = depth.face_prob > self.face_prob
        cells = int(mask.sum())
        if cells < self.min_face_cells:
            return None
        score, raw = relief_score(depth.relief_mm, mask)
        return Score(score, raw, cells, score >= self.threshold_mm)


class TrackVote:
    """K-of-N vote of one track; `add` returns a Decision when the verdict changes."""

    def __init__(self, track_id: int, k: int, n: int):
        self.track_id, self.k = track_id, k
        self._window: deque[tuple[bool, float]] = deque(maxlen=n)
        self.verdict: str | None = None

    def add(self, score: Score) -> Decision | None:
        self._window.append((score.live, score.score_mm))
        live = sum(v for v, _ in self._window)
        spoof = len(self._window) - live
        verdict = LIVE if live >= self.k else SPOOF if spoof >= self.k else None
        if verdict is None or verdict == self.verdict:
            return None
        self.verdict = verdict
        mean = float(np.mean([s for _, s in self._window]))
        return Decision(self.track_id, verdict, live, len(self._window), score.score_mm, mean)


class LivenessVoter:
    """One TrackVote per live track id; forgets tracks that have ended."""

    def __init__(self, k: int, n: int):
        self.k, self.n = k, n
        self._tracks: dict[int, TrackVote] = {}

    def add(self, track_id: int, score: Score) -> Decision | None:
        vote = self._tracks.get(track_id)
        if vote is None:
            vote = self._tracks[track_id] = TrackVote(track_id, self.k, self.n)
        return vote.add(score)

    def keep_only(self, track_ids) -> None:
        for tid in set(self._tracks) - set(track_ids):
            del self._tracks[tid]
