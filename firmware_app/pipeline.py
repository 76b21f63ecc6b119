"""The per-frame pipeline, one class per stage with a typed result, and the daemon loop around it.

    frame ─► FaceStage ─► CropStage ─► DepthEstimator ─► LivenessStage ─► decision event ─► outbox ─► hooks
             (BlazeFace,   (preprocess   (int8 TFLite)     (frame LLR + motion LLR,
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
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from firmware_app import env
from firmware_app.camera import EndOfStream, Frame, ReconnectingCamera, make_camera
from firmware_app.config import Config, DetectorConfig
from firmware_app.depth import DepthEstimator, DepthResult
from firmware_app.events import Dispatcher, Outbox, new_event
from firmware_app.evidence import EvidenceError, EvidenceModel
from firmware_app.face import Face, FaceDetector, iou
from firmware_app.face_search import make_finder
from firmware_app.liveness import LIVE, Decision, DecisionParams, FrameScorer, LivenessDecider, Score
from firmware_app.motion import MotionCue, MotionEstimate, MotionParams
from firmware_app.panels import decision_panel, preview_jpeg
from firmware_app.preprocess import CROP_SCALE, CropTransform, crop_input, crop_transform, eye_angle_deg
from firmware_app.profiling import Profiler

log = logging.getLogger(__name__)

BOX_OFFSET = (0.011, 0.049)  # landmark-extent centre − detector centre, × detector width, eye-aligned
BOX_SIDE = 0.998  # landmark-extent side / detector width
STAGES = ("capture", "detect", "crop", "depth", "motion", "liveness", "outbox")


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


class CropStage:
    def __init__(self, crop_scale: float = CROP_SCALE, use_eyes: bool = True):
        self.crop_scale, self.use_eyes = crop_scale, use_eyes

    def process(self, rgb: np.ndarray, face: FaceResult) -> CropResult:
        t = crop_transform(face.box, face.eyes if self.use_eyes else None, self.crop_scale)
        return CropResult(t, crop_input(rgb, t))


@dataclass(frozen=True)
class LivenessResult:
    score: Score | None  # None: too little face in the depth map
    decision: Decision | None  # set on the frame that decided this track (once per track)
    motion: MotionEstimate | None = None  # None: motion cue off
    llr: float = 0.0  # the track's accumulated evidence after this frame
    verdict: str | None = None  # the track's verdict so far (None: not decided yet)


class MotionStage:
    """One MotionCue per track: the face's image motion between frames of the track."""

    def __init__(self, params: MotionParams):
        self.params = params
        self._cues: dict[int, MotionCue] = {}

    def process(self, track_id: int, rgb: np.ndarray, face: FaceResult) -> MotionEstimate:
        if track_id not in self._cues:
            self._cues = {track_id: MotionCue(self.params)}  # one face at a time: older tracks have ended
        return self._cues[track_id].update(rgb, face.face.box)


class LivenessStage:
    def __init__(self, scorer: FrameScorer, decider: LivenessDecider):
        self.scorer, self.decider = scorer, decider

    def decided(self, track_id: int) -> bool:
        """This track's verdict is in: later frames change nothing (the motion cue can rest)."""
        return self.decider.verdict(track_id) is not None

    def process(self, track_id: int, depth: DepthResult, t: float,
                motion: MotionEstimate | None = None) -> LivenessResult:
        self.decider.keep_only([track_id])
        score = self.scorer.score(depth)
        decision = self.decider.add(track_id, t, score, motion)
        track = self.decider.track(track_id, t)
        return LivenessResult(score, decision, motion, track.llr, track.verdict)


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
    ):
        self.face, self.crop, self.depth, self.liveness, self.profiler = face, crop, depth, liveness, profiler
        self.motion = motion

    @classmethod
    def from_bundle(cls, bundle, cfg: Config, profiler: Profiler) -> Pipeline:
        detector = make_finder(bundle, cfg.detector)  # full/short range + region + tiles (face_search.py)
        crop = getattr(bundle, "crop", None)
        lv = cfg.liveness
        threshold = lv.threshold_mm or bundle.liveness_threshold_mm
        model = EvidenceModel.from_manifest(getattr(bundle, "liveness", {}) or {}, threshold)
        depth = DepthEstimator(bundle.depth_model, cfg.depth.num_threads)
        if model.uses_logit and not depth.has_live:
            raise EvidenceError(f"{bundle.depth_model}: the bundle's liveness evidence uses the network's "
                                "liveness logit but the depth model has no 'live' output; rebuild the bundle")
        if not model.uses_logit and depth.has_live:
            log.warning("the depth model has a liveness logit but the bundle's evidence model does not use "
                        "it (%s); rebuild the bundle with make convert", model.source)
        scorer = FrameScorer(model, threshold, lv.face_prob, lv.min_face_cells)
        params = DecisionParams(lv.apcer_target, lv.bpcer_target, lv.frame_llr_max, lv.min_frames,
                                lv.min_mean_llr, lv.timeout_s)
        return cls(
            FaceStage(detector, cfg.detector),
            CropStage(crop.crop_scale if crop else CROP_SCALE, crop.use_eyes if crop else True),
            depth,
            LivenessStage(scorer, LivenessDecider(params)),
            profiler,
            MotionStage(MotionParams()) if lv.motion else None,
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
        motion = None
        if self.motion is not None and not self.liveness.decided(face.track_id):
            with self.profiler.stage("motion"):
                motion = self.motion.process(face.track_id, frame.rgb, face)
        with self.profiler.stage("liveness"):
            liveness = self.liveness.process(face.track_id, depth, frame.timestamp, motion)
        return FrameResult(frame, face, crop, depth, liveness)


class Daemon:
    """Camera → pipeline → outbox → hooks until stopped (SIGTERM) or a non-looping replay ends."""

    def __init__(
        self,
        cfg: Config,
        bundle,
        hooks: list,
        profiler: Profiler | None = None,
        max_frames: int = 0,
        publish: bool = True,
    ):
        self.cfg, self.bundle = cfg, bundle
        self.stop_event = threading.Event()
        self.profiler = profiler or Profiler()
        self.pipeline = Pipeline.from_bundle(bundle, cfg, self.profiler)
        self.threshold_mm = self.pipeline.liveness.scorer.threshold_mm
        self.camera = ReconnectingCamera(
            make_camera(cfg.camera), cfg.camera.backoff_s, cfg.camera.backoff_max_s, self.stop_event
        )
        self.dispatcher = None
        if publish:
            outbox = Outbox(cfg.outbox.dir, cfg.outbox.fsync, cfg.outbox.segment_bytes)
            self.dispatcher = Dispatcher(outbox, hooks, cfg.outbox.retry_s, cfg.outbox.retry_max_s)
        self.max_frames = max_frames
        self.started = time.monotonic()
        self.last_frame_t = 0.0
        self.decisions = {"live": 0, "spoof": 0, "undecided": 0}
        self.last_decision: dict | None = None
        self.last_result: FrameResult | None = None  # for the live preview (a reference, no copy)
        self._watchdog_t = 0.0

    def request_stop(self) -> None:
        self.stop_event.set()

    def run(self) -> int:
        if self.dispatcher:
            self.dispatcher.start()
        env.sd_notify("READY=1\nSTATUS=running")
        log.info(
            "running: camera %s, bundle %s, threshold %.1f mm, %d hook(s)",
            self.camera.camera.name,
            getattr(self.bundle, "version", "?"),
            self.threshold_mm,
            len(self.dispatcher.hooks) if self.dispatcher else 0,
        )
        ended = False
        try:
            ended = self._loop()
        finally:
            self.camera.close()
            env.sd_notify("STOPPING=1")
            self._finish(ended)
        return 0

    def _loop(self) -> bool:
        """True when the replay ended (as opposed to a stop request or the frame limit)."""
        while not self.stop_event.is_set():
            try:
                with self.profiler.stage("capture"):
                    frame = self.camera.read()
            except EndOfStream:
                log.info("replay ended after %d frames", self.profiler.frames)
                return True
            if frame is None:
                return False
            result = self.pipeline.process(frame)
            if result.decision:
                with self.profiler.stage("outbox"):
                    self._publish(result)
            self.last_frame_t = time.monotonic()
            self.last_result = result
            self.profiler.frame_done()
            self._watchdog()
            if self.max_frames and self.profiler.frames >= self.max_frames:
                return False
        return False

    def _finish(self, ended: bool) -> None:
        if self.dispatcher is None:
            return
        if ended and not self.stop_event.is_set():
            if not self.dispatcher.drain(self.cfg.outbox.drain_timeout_s):
                log.warning("hooks still have undelivered events; they stay in the outbox for the next start")
        self.dispatcher.close()

    def _watchdog(self) -> None:
        now = time.monotonic()
        if now - self._watchdog_t >= 1.0:
            self._watchdog_t = now
            env.sd_notify("WATCHDOG=1")

    def _publish(self, result: FrameResult) -> None:
        d, face, score = result.decision, result.face, result.liveness.score
        timing = {s: self.profiler.last_ms(s) for s in STAGES[:-1]}
        model = self.pipeline.liveness.scorer.model
        event = new_event(
            "decision",
            decision=d.decision,
            granted=d.decision == LIVE,
            reason=d.reason,
            track_id=d.track_id,
            frame_id=result.frame.frame_id,
            evidence={
                "llr": round(d.llr, 3),
                "live_bound": round(d.live_bound, 3),
                "spoof_bound": round(d.spoof_bound, 3),
                "contributions": d.contributions,
                "frames": d.frames,
                "unscored_frames": d.unscored,
                "motion_pairs": d.motion_pairs,
                "mean_frame_llr": round(d.mean_frame_llr, 3),
                "model": model.source,
                "features": list(model.names),
            },
            time_to_decision_s=round(d.elapsed_s, 3),
            frame_llr=round(score.llr, 3) if score else None,
            score_mm=round(score.score_mm, 3) if score else None,
            threshold_mm=self.threshold_mm,
            relief_range_mm=round(score.relief_range_mm, 3) if score else None,
            face_cells=score.face_cells if score else 0,
            box=[round(float(v), 1) for v in face.face.box],
            detector_score=round(face.face.score, 4),
            timing_ms=timing,
            model_sha256=getattr(self.bundle, "model_sha256", ""),
            bundle_version=getattr(self.bundle, "version", ""),
        )
        if self.cfg.liveness.save_depth_dir:
            event["depth_png"] = self._save_panel(result, event["id"])
        self.decisions[d.decision] += 1
        self.last_decision = event
        log.info(
            "decision %s: track %d, evidence %.2f (bounds %.2f/%.2f) from %d frames in %.2f s, frame %d, "
            "event %s",
            d.decision,
            d.track_id,
            d.llr,
            d.spoof_bound,
            d.live_bound,
            d.frames,
            d.elapsed_s,
            result.frame.frame_id,
            event["id"],
        )
        if self.dispatcher:
            self.dispatcher.publish(event)

    def _save_panel(self, result: FrameResult, event_id: str) -> str:
        path = Path(self.cfg.liveness.save_depth_dir) / f"{event_id}.png"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), decision_panel(result, self.threshold_mm)[..., ::-1])
        except (OSError, cv2.error) as e:
            log.warning("cannot save %s: %s", path, e)
            return ""
        return str(path)

    def status(self) -> dict:
        now = time.monotonic()
        return {
            "uptime_s": round(now - self.started, 1),
            "frames": self.profiler.frames,
            "fps": round(self.profiler.fps_meter.fps(), 2),
            "last_frame_age_s": round(now - self.last_frame_t, 2) if self.last_frame_t else None,
            "camera": {
                "name": self.camera.camera.name,
                "open": self.camera.is_open,
                "errors": self.camera.errors,
                "last_error": self.camera.last_error,
            },
            "bundle": {
                "version": getattr(self.bundle, "version", ""),
                "model_sha256": getattr(self.bundle, "model_sha256", ""),
            },
            "threshold_mm": self.threshold_mm,
            "decisions": dict(self.decisions),
            "last_decision": self.last_decision,
            "hooks": self.dispatcher.status() if self.dispatcher else {},
            "outbox": self.dispatcher.outbox_status() if self.dispatcher else {},
            "degraded": self.dispatcher.degraded() if self.dispatcher else "",  # '' = all well
            "stages": self.profiler.summary()["stages"],
            "rss_mb": env.rss_mb(),
            "soc_temperature_c": env.soc_temperature_c(),
        }

    def preview_jpeg(self) -> bytes | None:
        """The latest frame | depth colour map | decision as JPEG; None before the first frame."""
        result = self.last_result
        return preview_jpeg(result, self.threshold_mm) if result is not None else None

    def healthy(self, max_frame_age_s: float = 10.0) -> bool:
        if self.dispatcher and self.dispatcher.degraded():  # events cannot be persisted or delivered
            return False
        return bool(self.last_frame_t) and time.monotonic() - self.last_frame_t < max_frame_age_s
