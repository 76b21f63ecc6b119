"""Liveness: per-frame evidence and motion evidence, accumulated per face track into one decision.

Frame (`FrameScorer`): the depth map's features (firmware_app/evidence.py) → the bundle's calibrated
log-likelihood ratio (+ = bona fide). Also kept for people and panels: the plane-removed relief range
(`relief_score`, the v1 score) and whether this frame alone leans live (LLR > 0).

Track (`TrackEvidence`): a sequential probability ratio test (Wald). Each frame adds its LLR clipped to
±frame_llr_max; the motion cue (firmware_app/motion.py) adds its own, itself capped, and the medium-edge
cue (firmware_app/medium.py) its own, never positive, outside the clip: a print's border costs the same
whatever the depth network made of the face inside it. The track is

  live       when the sum reaches ln(1 / apcer_target) (Wald's bound for that attack acceptance), after
             at least min_frames scored frames, and the frames' mean clipped LLR (medium included) is
             at least min_mean_llr: consecutive frames of one scene are not independent, so an attack
             that only leans a little live on every frame must not get in by patience alone. The mean
             is the whole track's or, with mean_window_s > 0 (off by default), that of the frames of its
             last mean_window_s if higher (at least min_frames of them): a person walking up from 2 m
             starts with small, weakly scored faces; but a hand-held screen's frames vary too, and
             with the medium-edge cue off the window let 2 more of 240 door-clip attacks in while
             sparing 1 of 72 bona fide clips (0.5 s), so the door keeps the whole track's; and, while
             the motion cue runs, only once the face has moved (a motion estimate's corner shift ≥
             min_moved_px, 0.7 by default, with the corners moving together: MotionEstimate.moved_px):
             a print or screen on a stand shows a still picture (corner shifts of 0.01–0.08 px on
             rendered content, up to 0.7 px of scattered tracking noise on real photographs), while
             of 288 bona fide door clips (four seeds), all but one of those not decided spoof first
             moved 0.7 px within 1.3 s, standing still or not (that one, very still, not in 3 s). A still
             picture's frames can look live to the depth network; it then waits into
             undecided. Nor once the motion cue has judged any frame pair planar beyond planar_veto_llr
             (a hand-held print or screen: 70 of 120 hand-held door-clip attacks had such a pair, and 18
             of 998 judged bona fide pairs, nearly all after their clip was decided), and not before
             min_track_s has passed since the track's first frame, so that the motion cue has seen a few
             frame pairs;
  spoof      when the sum falls to ln(bpcer_target);
  undecided  when neither happened within timeout_s of the track's first frame (the door stays shut;
             the event says why).

Config validation keeps frame_llr_max + the motion cap below the live bound, so one frame can never
decide live. Once decided, a track keeps its verdict until it ends; each decision is reported once.
Frames with too little face count as unscored and add nothing (fail closed: they never help), and so do
frames whose face is narrower than min_face_px (60 px by default): too few pixels for the depth network or
the motion cue to tell a small picture from a head, and a person walking up from afar is then judged on
their nearer frames without their weak far ones dragging the mean (door clips: README).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from firmware_app.depth import DepthResult
from firmware_app.evidence import EvidenceModel, Features, frame_features
from firmware_app.motion import MotionEstimate
from firmware_app.preprocess import GRID_SIZE

LIVE, SPOOF, UNDECIDED = "live", "spoof", "undecided"
SCORE_NAME = "plane_removed_relief_range_mm"
LOW_PCT, HIGH_PCT = 1.0, 99.0
MOTION_TOTAL_MAX = 1.0  # the motion cue's positive sum over a track: it can close the door, not open it

_V, _U = np.mgrid[0:GRID_SIZE, 0:GRID_SIZE].astype(np.float32) / GRID_SIZE


def relief_score(relief_mm: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(plane-removed range, raw range) in mm of relief_mm over the boolean mask (≥ 3 cells)."""
    z = relief_mm[mask].astype(np.float64)
    a = np.stack([_U[mask], _V[mask], np.ones_like(z)], axis=1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(a, z, rcond=None)
    lo, hi = np.percentile(z - a @ coef, [LOW_PCT, HIGH_PCT])
    raw_lo, raw_hi = np.percentile(z, [LOW_PCT, HIGH_PCT])
    return float(hi - lo), float(raw_hi - raw_lo)


@dataclass(frozen=True)
class Score:
    score_mm: float  # plane-removed relief range
    relief_range_mm: float  # raw relief range over the face (before removing the plane)
    face_cells: int
    live: bool  # this frame alone leans live (llr > 0); never a decision
    llr: float = 0.0  # calibrated frame LLR, before clipping
    contributions: dict = field(default_factory=dict)  # per feature (+ "bias"), summing to llr


class FrameScorer:
    def __init__(self, model: EvidenceModel, threshold_mm: float, face_prob: float = 0.5,
                 min_face_cells: int = 200):
        self.model, self.threshold_mm = model, threshold_mm  # threshold_mm: the v1 score's, for display
        self.face_prob, self.min_face_cells = face_prob, min_face_cells

    def features(self, depth: DepthResult) -> Features | None:
        return frame_features(depth.relief_mm, depth.face_prob, depth.live_logit, self.face_prob,
                              self.min_face_cells)

    def score(self, depth: DepthResult) -> Score | None:
        """None when the network sees too little face to judge."""
        f = self.features(depth)
        if f is None:
            return None
        parts = self.model.contributions(f)
        llr = float(sum(parts.values()))
        return Score(f.plane_range_mm, f.relief_range_mm, f.face_cells, llr > 0, llr, parts)


@dataclass(frozen=True)
class DecisionParams:
    apcer_target: float = 0.01
    bpcer_target: float = 0.01
    frame_llr_max: float = 1.5
    min_frames: int = 3
    min_mean_llr: float = 1.0
    timeout_s: float = 3.0
    min_moved_px: float = 0.0  # > 0: live needs a motion estimate with at least this corner shift
    planar_veto_llr: float | None = None  # a motion LLR at or below this: the track is never live
    min_track_s: float = 0.0  # no live before this long after the track's first frame
    mean_window_s: float = 0.0  # > 0: the mean frame evidence may also be that of this last stretch
    min_face_px: float = 0.0  # frames with a narrower face (landmark box, frame px) add no frame evidence
    max_outside: float = 1.0  # nor frames whose crop runs past the frame edge over more than this share

    @property
    def live_bound(self) -> float:
        return math.log(1.0 / self.apcer_target)

    @property
    def spoof_bound(self) -> float:
        return math.log(self.bpcer_target)


@dataclass(frozen=True)
class Decision:
    track_id: int
    decision: str  # LIVE, SPOOF or UNDECIDED
    reason: str
    llr: float  # the track's accumulated evidence at the decision
    live_bound: float
    spoof_bound: float
    frames: int  # scored frames used
    unscored: int  # frames with too little face, a face under min_face_px, or cut by the frame edge
    motion_pairs: int  # frame pairs the motion cue judged
    elapsed_s: float  # from the track's first frame
    contributions: dict  # cue → summed (clipped) LLR: each frame feature, "bias", "motion", "medium"
    score_mm: float  # this frame's plane-removed relief range (NaN if unscored)
    mean_frame_llr: float


class TrackEvidence:
    """One track's sequential test; `add` returns a Decision the first time the track is decided."""

    def __init__(self, track_id: int, params: DecisionParams, t0: float):
        self.track_id, self.p, self.t0 = track_id, params, t0
        self.frame_sum = self.motion_pos = self.motion_neg = self.medium_sum = 0.0
        self.frames = self.unscored = self.motion_pairs = 0
        self.no_say: dict[str, int] = {}  # why frames with a score were given no say → how many
        self.moved = params.min_moved_px <= 0  # no motion gate: counts as moved
        self.planar_seen = False
        self.recent: list[tuple[float, float]] = []  # (t, clipped frame LLR + medium) of scored frames
        self.parts: dict[str, float] = {}
        self.verdict: str | None = None

    @property
    def llr(self) -> float:
        return self.frame_sum + min(self.motion_pos, MOTION_TOTAL_MAX) + self.motion_neg + self.medium_sum

    def add(self, t: float, score: Score | None, motion: MotionEstimate | None = None,
            medium_llr: float = 0.0, face_px: float = math.inf, outside: float = 0.0) -> Decision | None:
        if self.verdict is not None:
            return None  # decided: no frame flips a track
        medium_llr = min(medium_llr, 0.0)  # a border lowers; its absence proves nothing
        self.medium_sum += medium_llr
        why = self._no_say(face_px, outside) if score is not None else None
        if why:
            self.no_say[why] = self.no_say.get(why, 0) + 1
            score = None
        if score is None:
            self.unscored += 1
        else:
            clipped = float(np.clip(score.llr, -self.p.frame_llr_max, self.p.frame_llr_max))
            k = clipped / score.llr if score.llr else 0.0
            for name, v in score.contributions.items():
                self.parts[name] = self.parts.get(name, 0.0) + k * v
            self.frame_sum += clipped
            self.frames += 1
            if self.p.mean_window_s > 0:
                self.recent = [(u, v) for u, v in self.recent if u > t - self.p.mean_window_s]
                self.recent.append((t, clipped + medium_llr))
        if motion is not None and motion.moved_px >= self.p.min_moved_px:
            self.moved = True
        if motion is not None and motion.llr is not None:
            self.motion_pairs += 1
            if self.p.planar_veto_llr is not None and motion.llr <= self.p.planar_veto_llr:
                self.planar_seen = True
            if motion.llr >= 0:
                self.motion_pos += motion.llr
            else:
                self.motion_neg += motion.llr
        return self._decide(t, score)

    def _no_say(self, face_px: float, outside: float) -> str | None:
        """Why this frame's score may not count, if so."""
        if face_px < self.p.min_face_px:  # too few pixels to tell a picture from a head
            return f"the face under {self.p.min_face_px:g} px: come closer"
        if outside > self.p.max_outside:  # the crop's fill, not the face, would decide
            return "the face cut by the frame edge: step into view"
        return None

    def _decide(self, t: float, score: Score | None) -> Decision | None:
        p, llr, elapsed = self.p, self.llr, t - self.t0
        # the frames' own evidence, the medium's included: a border on every frame cancels a face-like picture
        mean = (self.frame_sum + self.medium_sum) / self.frames if self.frames else 0.0
        if len(self.recent) >= p.min_frames:  # or that of the last mean_window_s, if higher
            mean = max(mean, sum(v for _, v in self.recent) / len(self.recent))
        may_live = self.moved and not self.planar_seen and elapsed >= p.min_track_s - 1e-9
        if llr >= p.live_bound and self.frames >= p.min_frames and mean >= p.min_mean_llr and may_live:
            verdict, reason = LIVE, f"evidence {llr:.2f} reached the live bound {p.live_bound:.2f}"
        elif llr <= p.spoof_bound:
            verdict, reason = SPOOF, f"evidence {llr:.2f} reached the spoof bound {p.spoof_bound:.2f}"
        elif elapsed >= p.timeout_s:
            verdict = UNDECIDED
            if llr < p.live_bound:
                where = f"evidence {llr:.2f} between the bounds {p.spoof_bound:.2f} and {p.live_bound:.2f}"
            elif self.planar_seen:
                where = (f"evidence {llr:.2f} past the live bound but the face moved as a plane (motion LLR "
                         f"≤ {p.planar_veto_llr:g}): a hand-held print or screen")
            elif not self.moved:
                where = (f"evidence {llr:.2f} past the live bound but the face never moved (corner shift "
                         f"< {p.min_moved_px:g} px): a still picture")
            else:
                where = (f"evidence {llr:.2f} past the live bound {p.live_bound:.2f} but the mean frame LLR "
                         f"{mean:.2f} < {p.min_mean_llr:g}")
            reason = f"no decision within {p.timeout_s:g} s: {where} after {self.frames} scored frame(s)"
            reason += "".join(f" ({n} more with {why})" for why, n in self.no_say.items())
        else:
            return None
        self.verdict = verdict
        parts = {k: round(v, 3) for k, v in self.parts.items()}
        parts["motion"] = round(min(self.motion_pos, MOTION_TOTAL_MAX) + self.motion_neg, 3)
        parts["medium"] = round(self.medium_sum, 3)
        return Decision(self.track_id, verdict, reason, llr, p.live_bound, p.spoof_bound, self.frames,
                        self.unscored, self.motion_pairs, elapsed, parts,
                        score.score_mm if score else float("nan"), mean)


class LivenessDecider:
    """One TrackEvidence per live track id; forgets tracks that have ended."""

    def __init__(self, params: DecisionParams):
        self.params = params
        self._tracks: dict[int, TrackEvidence] = {}

    def track(self, track_id: int, t: float) -> TrackEvidence:
        ev = self._tracks.get(track_id)
        if ev is None:
            ev = self._tracks[track_id] = TrackEvidence(track_id, self.params, t)
        return ev

    def add(self, track_id: int, t: float, score: Score | None, motion: MotionEstimate | None = None,
            medium_llr: float = 0.0, face_px: float = math.inf, outside: float = 0.0) -> Decision | None:
        return self.track(track_id, t).add(t, score, motion, medium_llr, face_px, outside)

    def verdict(self, track_id: int) -> str | None:
        ev = self._tracks.get(track_id)
        return ev.verdict if ev is not None else None

    def keep_only(self, track_ids) -> None:
        for tid in set(self._tracks) - set(track_ids):
            del self._tracks[tid]
