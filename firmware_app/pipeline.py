"""The per-frame pipeline, one class per stage with a typed result (the loop around it: daemon.py).

    frame ─► FaceStage ─► CropStage ─► DepthEstimator ─► LivenessStage ─► decision event ─► outbox ─► hooks
             (BlazeFace,   (preprocess   (int8 TFLite)     (frame LLR + motion LLR + medium edges,
              track)        crop)                           sequential test per track)

Detector box → crop box. `preprocess.crop_transform` expects the extent of the 68 iBUG landmarks,
which BlazeFace's box is not exactly. The mapping below was fitted on 40 bona fide 640×480 frames of
`train.synth` (seed 7, 300-700 mm, yaw ≤ 30°, BlazeFace found all 40): in the eye-aligned frame (x
along the detector's eye line, y down the face) and in units of the detector box width w,

    landmark-extent centre = detector box centre + (0.011, 0.049)·w   (std 0.044, 0.046)
    landmark-extent side   = max(w68, h68) = 0.998·w                  (std 0.081)

so the square crop uses the detector box shifted down by 5% of its width, at the same size; the
residual error (≈ 5% shift, 8% size) is inside training's box jitter (8% shift, 10% size). The crop is
rolled by the detector's eye line when the bundle's crop says use_eyes.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

from firmware_app.camera import Frame
from firmware_app.config import Config, DetectorConfig, LivenessConfig
from firmware_app.depth import DepthEstimator, DepthResult
from firmware_app.evidence import EvidenceError, EvidenceModel
from firmware_app.face import Face, FaceDetector, iou
from firmware_app.face_search import make_finder
from firmware_app.liveness import Decision, DecisionParams, FrameScorer, LivenessDecider, Score
from firmware_app.medium import MediumEdges, MediumModel, find_edges
from firmware_app.motion import MotionCue, MotionEstimate, MotionParams
from firmware_app.preprocess import (
    CROP_SCALE,
    CropTransform,
    crop_input,
    crop_transform,
    eye_angle_deg,
    fill_of,
    outside_share,
)
from firmware_app.profiling import Profiler

log = logging.getLogger(__name__)

BOX_OFFSET = (0.011, 0.049)  # landmark-extent centre − detector centre, × detector width, eye-aligned
BOX_SIDE = 0.998  # landmark-extent side / detector width
STAGES = ("capture", "detect", "crop", "depth", "motion", "medium", "liveness", "outbox")


def landmark_box(face: Face) -> np.ndarray:
    """The detector's face → estimated 68-landmark extent (x0, y0, x1, y1), a square, frame pixels."""
    w = face.x1 - face.x0
    a = math.radians(eye_angle_deg([face.keypoint("right_eye"), face.keypoint("left_eye")]))
    dx, dy = BOX_OFFSET[0] * w, BOX_OFFSET[1] * w
    cx = face.center[0] + dx * math.cos(a) - dy * math.sin(a)
    cy = face.center[1] + dx * math.sin(a) + dy * math.cos(a)
    half = 0.5 * BOX_SIDE * w
    return np.array([cx - half, cy - half, cx + half, cy + half], np.float32)


@dataclass(frozen=True)
class FaceResult:
    face: Face
    track_id: int
    box: np.ndarray  # estimated 68-landmark extent, frame pixels
    eyes: np.ndarray  # (2, 2): the subject's right eye (image left), then left eye


class Tracker:
    """One track for the chosen face: continues while boxes overlap, ends after `max_gap` missed frames."""

    def __init__(self, min_iou: float, max_gap: int):
        self.min_iou, self.max_gap = min_iou, max_gap
        self.track_id = 0
        self._box: np.ndarray | None = None
        self._gap = 0

    def update(self, box: np.ndarray | None) -> int | None:
        if box is None:
            self._gap += 1
            if self._gap > self.max_gap:
                self._box = None
            return None
        if self._box is None or iou(self._box, box[None])[0] < self.min_iou:
            self.track_id += 1
        self._box, self._gap = box, 0
        return self.track_id


class FaceStage:
    def __init__(self, detector: FaceDetector, cfg: DetectorConfig):
        self.detector, self.min_face_px = detector, cfg.min_face_px
        self.tracker = Tracker(cfg.track_iou, cfg.track_max_gap)

    def process(self, rgb: np.ndarray) -> FaceResult | None:
        """The largest face wide enough, with its track id; None when there is none."""
        faces = [f for f in self.detector.detect(rgb) if f.x1 - f.x0 >= self.min_face_px]
        if not faces:
            self.tracker.update(None)
            return None
        face = max(faces, key=lambda f: (f.x1 - f.x0) * (f.y1 - f.y0))
        track = self.tracker.update(face.box)
        eyes = np.array([face.keypoint("right_eye"), face.keypoint("left_eye")], np.float32)
        return FaceResult(face, track, landmark_box(face), eyes)


@dataclass(frozen=True, eq=False)
class CropResult:
    transform: CropTransform
    input: np.ndarray  # (160, 160, 3) uint8
    outside: float = 0.0  # share of the crop past the frame edge (filled, not seen)


class CropStage:
    def __init__(self, crop_scale: float = CROP_SCALE, use_eyes: bool = True, border: str = "constant0"):
        self.crop_scale, self.use_eyes, self.fill = crop_scale, use_eyes, fill_of(border)

    def process(self, rgb: np.ndarray, face: FaceResult) -> CropResult:
        t = crop_transform(face.box, face.eyes if self.use_eyes else None, self.crop_scale)
        return CropResult(t, crop_input(rgb, t, self.fill), outside_share(t, rgb.shape[:2]))


@dataclass(frozen=True)
class LivenessResult:
    score: Score | None  # None: too little face in the depth map
    decision: Decision | None  # set on the frame that decided this track (once per track)
    motion: MotionEstimate | None = None  # None: motion cue off
    llr: float = 0.0  # the track's accumulated evidence after this frame
    verdict: str | None = None  # the track's verdict so far (None: not decided yet)
    medium: MediumResult | None = None  # None: medium-edge cue off, or the track was already decided


class MotionStage:
    """One MotionCue per track: the face's image motion between frames of the track."""

    def __init__(self, params: MotionParams):
        self.params = params
        self._cues: dict[int, MotionCue] = {}

    def process(self, track_id: int, rgb: np.ndarray, face: FaceResult, t: float) -> MotionEstimate:
        if track_id not in self._cues:
            self._cues = {track_id: MotionCue(self.params)}  # one face at a time: older tracks have ended
        return self._cues[track_id].update(rgb, face.face.box, t)


@dataclass(frozen=True)
class MediumResult:
    edges: MediumEdges
    llr: float  # ≤ 0


class MediumStage:
    """The medium-edge cue of one frame: straight edges of a print or screen around the face."""

    def __init__(self, model: MediumModel):
        self.model = model

    def process(self, rgb: np.ndarray, face: FaceResult) -> MediumResult:
        edges = find_edges(rgb, face.box)
        return MediumResult(edges, self.model.llr(edges))


class LivenessStage:
    def __init__(self, scorer: FrameScorer, decider: LivenessDecider):
        self.scorer, self.decider = scorer, decider

    def decided(self, track_id: int) -> bool:
        """This track's verdict is in: later frames change nothing (the motion cue can rest)."""
        return self.decider.verdict(track_id) is not None

    def process(self, track_id: int, depth: DepthResult, t: float,
                motion: MotionEstimate | None = None, medium: MediumResult | None = None,
                face_px: float = math.inf, outside: float = 0.0) -> LivenessResult:
        self.decider.keep_only([track_id])
        score = self.scorer.score(depth)
        medium_llr = medium.llr if medium else 0.0
        decision = self.decider.add(track_id, t, score, motion, medium_llr, face_px, outside)
        track = self.decider.track(track_id, t)
        return LivenessResult(score, decision, motion, track.llr, track.verdict, medium)


@dataclass(frozen=True, eq=False)
class FrameResult:
    frame: Frame
    face: FaceResult | None = None
    crop: CropResult | None = None
    depth: DepthResult | None = None
    liveness: LivenessResult | None = None

    @property
    def decision(self) -> Decision | None:
        return self.liveness.decision if self.liveness else None


def decision_params(lv: LivenessConfig) -> DecisionParams:
    """The per-track decision's parameters from the config's liveness section (motion gates only with the
    motion cue on)."""
    return DecisionParams(lv.apcer_target, lv.bpcer_target, lv.frame_llr_max, lv.min_frames,
                          lv.min_mean_llr, lv.timeout_s, lv.min_moved_px if lv.motion else 0.0,
                          lv.planar_veto_llr if lv.motion else None, lv.min_track_s,
                          lv.mean_window_s, lv.min_face_px, lv.max_outside)


class Pipeline:
    """Face → crop → depth → liveness for one frame, each stage timed by the profiler."""

    def __init__(
        self,
        face: FaceStage,
        crop: CropStage,
        depth: DepthEstimator,
        liveness: LivenessStage,
        profiler: Profiler,
        motion: MotionStage | None = None,
        medium: MediumStage | None = None,
    ):
        self.face, self.crop, self.depth, self.liveness, self.profiler = face, crop, depth, liveness, profiler
        self.motion, self.medium = motion, medium

    @classmethod
    def from_bundle(cls, bundle, cfg: Config, profiler: Profiler) -> Pipeline:
        detector = make_finder(bundle, cfg.detector)  # full/short range + region + tiles (face_search.py)
        crop = getattr(bundle, "crop", None)
        lv = cfg.liveness
        threshold = lv.threshold_mm or bundle.liveness_threshold_mm
        model = EvidenceModel.from_manifest(getattr(bundle, "liveness", {}) or {}, threshold)
        medium = MediumModel.from_manifest(getattr(bundle, "liveness", {}) or {}) if lv.medium else None
        depth = DepthEstimator.of_bundle(bundle, cfg.depth.num_threads)
        if model.uses_logit and not depth.has_live:
            raise EvidenceError(f"{bundle.depth_model}: the bundle's liveness evidence uses the network's "
                                "liveness logit but the depth model has no 'live' output; rebuild the bundle")
        if not model.uses_logit and depth.has_live:
            log.warning("the depth model has a liveness logit but the bundle's evidence model does not use "
                        "it (%s); rebuild the bundle with make convert", model.source)
        scorer = FrameScorer(model, threshold, lv.face_prob, lv.min_face_cells)
        params = decision_params(lv)
        return cls(
            FaceStage(detector, cfg.detector),
            CropStage(crop.crop_scale if crop else CROP_SCALE, crop.use_eyes if crop else True,
                      crop.border if crop else "constant0"),
            depth,
            LivenessStage(scorer, LivenessDecider(params)),
            profiler,
            MotionStage(MotionParams()) if lv.motion else None,
            MediumStage(medium) if medium else None,
        )

    def process(self, frame: Frame) -> FrameResult:
        with self.profiler.stage("detect"):
            face = self.face.process(frame.rgb)
        if face is None:
            return FrameResult(frame)
        with self.profiler.stage("crop"):
            crop = self.crop.process(frame.rgb, face)
        with self.profiler.stage("depth"):
            depth = self.depth.predict(crop.input)
        motion = medium = None
        open_track = not self.liveness.decided(face.track_id)  # a decided track's cues can rest
        if self.motion is not None and open_track:
            with self.profiler.stage("motion"):
                motion = self.motion.process(face.track_id, frame.rgb, face, frame.timestamp)
        if self.medium is not None and open_track:
            with self.profiler.stage("medium"):
                medium = self.medium.process(frame.rgb, face)
        with self.profiler.stage("liveness"):
            liveness = self.liveness.process(face.track_id, depth, frame.timestamp, motion, medium,
                                             float(face.box[2] - face.box[0]), crop.outside)
        return FrameResult(frame, face, crop, depth, liveness)


def __getattr__(name: str):
    """`pipeline.Daemon` still resolves (it moved to firmware_app/daemon.py, which imports this module)."""
    if name == "Daemon":
        from firmware_app.daemon import Daemon

        return Daemon
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
