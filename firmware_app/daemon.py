"""The daemon loop: camera → pipeline → decision event → outbox (durable first) → hooks, until stopped.

`Daemon` runs `pipeline.Pipeline` on every frame, writes each decision to the outbox before any hook sees
it, keeps the watchdog and status figures, and serves the preview and decision panels.
"""

from __future__ import annotations

import logging
import threading
import time

from firmware_app import env
from firmware_app.camera import EndOfStream, ReconnectingCamera, make_camera
from firmware_app.config import Config
from firmware_app.events import Dispatcher, Outbox, new_event
from firmware_app.liveness import LIVE
from firmware_app.panel_files import PanelFiles
from firmware_app.panels import decision_panel, preview_jpeg
from firmware_app.pipeline import STAGES, FrameResult, Pipeline
from firmware_app.profiling import Profiler

log = logging.getLogger(__name__)


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
        lv = cfg.liveness  # decision panels on disk, the surplus of earlier runs pruned now
        self.panels = PanelFiles(lv.save_depth_dir, lv.save_depth_keep) if lv.save_depth_dir else None

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
        if self.panels is not None:
            event["depth_png"] = self.panels.save(event["id"], decision_panel(result, self.threshold_mm))
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
