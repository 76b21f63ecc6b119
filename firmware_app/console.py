"""What the live page shows, read from the running Daemon without slowing its camera loop.

The page polls `snapshot()` (GET /live.json, about twice a second). Each snapshot names one frame; its
camera image (`frame_jpeg`) and depth overlay (`depth_png`) are served for exactly that frame id, so
the box and overlay stay registered on the face however late the images are fetched. Everything here
runs in the HTTP worker threads: the camera loop only stores a reference to its last result, and each
image is encoded once per frame id (OpenCV releases the GIL while it encodes).

Track state. Read from what the pipeline's liveness stage exposes, tolerantly, because it evolves:
a per-track sequential decision (`state` collecting / live / spoof / undecided, with its accumulated
`evidence`) when present, else the K-of-N vote's verdict and the frame's relief score. The chart is
the value sampled at each poll, per track, for the last `HISTORY_S` seconds.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from firmware_app.panels import decision_panel, depth_rgba

log = logging.getLogger(__name__)

HISTORY_S = 30.0
DECISIONS_SHOWN = 8
STATES = ("collecting", "live", "spoof", "undecided")


class TrackView(NamedTuple):
    track_id: int
    state: str  # one of STATES
    value: float | None  # what the chart plots: the track's evidence (LLR), else the frame's score (mm)
    unit: str  # "LLR" or "mm"
    lines: tuple[float, ...]  # the value's decision lines (spoof bound, live bound; or the mm threshold)
    cues: dict  # per-cue share of the evidence so far, when the liveness stage exposes it


def _get(obj, *names):
    for name in names:
        value = getattr(obj, name, None) if obj is not None else None
        if value is not None:
            return value
    return None


def _finite(v) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return round(v, 3) if math.isfinite(v) else None


def track_view(daemon, result) -> TrackView | None:
    """The decision state of the track in `result` (None without a face)."""
    face = getattr(result, "face", None)
    if face is None:
        return None
    tid = int(face.track_id)
    lv = getattr(result, "liveness", None)
    stage = getattr(getattr(daemon, "pipeline", None), "liveness", None)
    if lv is not None and hasattr(lv, "llr") and hasattr(lv, "verdict"):  # the sequential test per track
        state = lv.verdict if lv.verdict in STATES else "collecting"
        params = _get(getattr(stage, "decider", None), "params")
        lines = tuple(v for v in (_finite(_get(params, "spoof_bound")), _finite(_get(params, "live_bound")))
                      if v is not None)
        track = getattr(getattr(stage, "decider", None), "_tracks", {}).get(tid)
        cues = {k: round(float(v), 2) for k, v in (getattr(track, "parts", None) or {}).items()}
        if track is not None and hasattr(track, "motion_pos"):
            medium = float(getattr(track, "medium_sum", 0.0))
            cues["motion"] = round(float(track.llr - track.frame_sum - medium), 2)
            cues["medium"] = round(medium, 2)
        return TrackView(tid, state, _finite(lv.llr), "LLR", lines, cues)
    # the K-of-N vote: the track's verdict so far, the frame's relief score against the threshold
    vote = getattr(getattr(stage, "voter", None), "_tracks", {}).get(tid)
    verdict = _get(vote, "verdict")
    state = verdict if verdict in ("live", "spoof") else "collecting"
    threshold = _finite(getattr(daemon, "threshold_mm", None))
    score = _get(_get(lv, "score"), "score_mm")
    return TrackView(tid, state, _finite(score), "mm", (threshold,) if threshold is not None else (), {})


def _encode(ext: str, img: np.ndarray, params=()) -> bytes:
    ok, buf = cv2.imencode(ext, img, list(params))
    if not ok:
        raise ValueError(f"{ext} encoding failed")
    return buf.tobytes()


class LiveView:
    """Snapshots, per-frame images and recent decisions for the page; thread-safe."""

    def __init__(self, daemon, jpeg_quality: int = 80, decisions: int = DECISIONS_SHOWN):
        self.daemon, self.quality, self.n_decisions = daemon, jpeg_quality, decisions
        self._lock = threading.Lock()
        self._shown: OrderedDict[int, object] = OrderedDict()  # frame id → result, the last few shown
        self._images: dict[tuple[str, int], bytes] = {}
        self._history: dict[int, deque] = {}  # track id → (unix time, value, state)
        self._decisions: tuple[object, list[dict]] = (None, [])  # (outbox files' state, events)
        self._sampled = -1
        self._thumbs: OrderedDict[str, bytes] = OrderedDict()  # event id → panel PNG, decisions seen here
        self._views: dict[int, TrackView] = {}  # track id → its latest view (for a track gone from view)
        self._polled = 0.0
        self._sampler: threading.Thread | None = None

    # the page's JSON ---------------------------------------------------------------------------
    def snapshot(self) -> dict:
        self._ensure_sampler()
        result = getattr(self.daemon, "last_result", None)
        out = {"time": round(time.time(), 3), "frame": None, "face": None, "track": None}
        if result is not None:
            fid = int(result.frame.frame_id)
            with self._lock:
                self._shown[fid] = result
                self._shown.move_to_end(fid)
                while len(self._shown) > 4:
                    old, _ = self._shown.popitem(last=False)
                    self._images = {k: v for k, v in self._images.items() if k[1] != old}
            h, w = result.frame.rgb.shape[:2]
            out["frame"] = {"id": fid, "width": w, "height": h}
            out["face"] = self._face(result)
            out["track"] = self._track(result)
        if out["track"] is None:
            out["track"] = self._last_track()
        out["decisions"] = [{**{k: v for k, v in r.items() if not k.startswith("_")},
                             "thumb": r["thumb"] or r.get("id") in self._thumbs} for r in self.decisions()]
        out["health"] = self.health()
        return out

    def _face(self, result) -> dict | None:
        face = result.face
        if face is None:
            return None
        box = [round(float(v), 1) for v in face.face.box]
        crop, depth = result.crop, result.depth
        view = {"box": box, "track_id": int(face.track_id), "overlay": None}
        if crop is not None and depth is not None:
            # CSS matrix(a, b, c, d, e, f) taking the 80×80 depth image (origin top left) onto the frame
            m = np.asarray(crop.transform.affine_inverse(80), np.float64)  # grid pixel centre → frame pixel
            e = m[:, 2] - 0.5 * (m[:, 0] + m[:, 1]) + 0.5  # pixel centres → pixel edges, both sides
            view["overlay"] = [round(float(v), 4) for v in (m[0, 0], m[1, 0], m[0, 1], m[1, 1], e[0], e[1])]
            mask = depth.face_prob > 0.5
            if mask.sum() > 3:
                lo, hi = np.percentile(depth.relief_mm[mask], [5, 95])
                view["relief_mm"] = [round(float(lo), 1), round(float(hi), 1)]
        return view

    def _track(self, result) -> dict | None:
        tv = track_view(self.daemon, result)
        if tv is None:
            return None
        self._sample(result, tv)
        cutoff = time.time() - HISTORY_S
        with self._lock:
            points = [p for p in self._history.get(tv.track_id, ()) if p[0] >= cutoff]
        return {**tv._asdict(), "history": points, "present": True}

    def _last_track(self) -> dict | None:
        """The most recent track, no longer in view, while its chart is still in the window."""
        cutoff = time.time() - HISTORY_S
        with self._lock:
            recent = [(h[-1][0], tid) for tid, h in self._history.items() if h and h[-1][0] >= cutoff]
            if not recent:
                return None
            tid = max(recent)[1]
            tv, points = self._views.get(tid), [p for p in self._history[tid] if p[0] >= cutoff]
        if tv is None:
            return None
        return {**tv._replace(state=points[-1][2], value=points[-1][1])._asdict(), "history": points,
                "present": False}

    def _sample(self, result, tv: TrackView | None = None) -> None:
        """One chart point per frame of a track (the sampler calls this for frames between polls)."""
        fid = int(result.frame.frame_id)
        if fid == self._sampled:
            return
        if getattr(result, "decision", None) is not None:
            self._keep_thumbnail(result, fid)
        tv = tv or track_view(self.daemon, result)
        now = time.time()
        with self._lock:
            if fid == self._sampled or tv is None:
                self._sampled = fid
                return
            self._sampled = fid
            self._views[tv.track_id] = tv
            hist = self._history.setdefault(tv.track_id, deque(maxlen=600))
            hist.append((round(now, 2), tv.value, tv.state))
            for tid in [t for t, h in self._history.items() if h[-1][0] < now - HISTORY_S]:
                del self._history[tid]
                self._views.pop(tid, None)

    def _watch(self) -> None:
        """While a page polls (a snapshot in the last few seconds), sample every frame at up to 20/s."""
        while time.monotonic() - self._polled < 5.0:
            result = getattr(self.daemon, "last_result", None)
            if result is not None:
                try:
                    self._sample(result)
                except Exception as e:  # a liveness field that moved must not end the page
                    log.debug("console sample: %s", e)
            time.sleep(0.05)

    def _ensure_sampler(self) -> None:
        self._polled = time.monotonic()
        if self._sampler is None or not self._sampler.is_alive():
            self._sampler = threading.Thread(target=self._watch, name="console-sampler", daemon=True)
            self._sampler.start()

    # images, one encoding per frame id -----------------------------------------------------------
    def _image(self, kind: str, frame_id: int | None) -> bytes | None:
        with self._lock:
            if frame_id is None and self._shown:
                frame_id = next(reversed(self._shown))
            result = self._shown.get(frame_id)
            cached = self._images.get((kind, frame_id))
        if result is None or cached is not None:
            return cached
        if kind == "frame":
            data = _encode(".jpg", result.frame.rgb[..., ::-1], (cv2.IMWRITE_JPEG_QUALITY, self.quality))
        elif result.depth is None:
            return None
        else:
            data = _encode(".png", cv2.cvtColor(depth_rgba(result.depth), cv2.COLOR_RGBA2BGRA))
        with self._lock:
            if frame_id in self._shown:
                self._images[(kind, frame_id)] = data
        return data

    def frame_jpeg(self, frame_id: int | None) -> bytes | None:
        return self._image("frame", frame_id)

    def depth_png(self, frame_id: int | None) -> bytes | None:
        return self._image("depth", frame_id)

    # decisions from the outbox -------------------------------------------------------------------
    def _outbox_dir(self) -> Path | None:
        cfg = getattr(self.daemon, "cfg", None)
        d = getattr(getattr(cfg, "outbox", None), "dir", None)
        return Path(d) if d else None

    def decisions(self) -> list[dict]:
        """The last decisions in the outbox, newest first (re-read only when its files change)."""
        d = self._outbox_dir()
        if d is None or not d.is_dir():
            return []
        files = sorted(d.glob("events-*.jsonl"))[-2:]
        try:
            state = tuple((f.name, f.stat().st_size) for f in files)
        except OSError:
            return self._decisions[1]
        if state == self._decisions[0]:
            return self._decisions[1]
        events: list[dict] = []
        for f in reversed(files):
            try:
                with open(f, "rb") as fh:
                    start = max(0, fh.seek(0, 2) - 65536)
                    fh.seek(start)
                    lines = fh.read().split(b"\n")
            except OSError:
                continue
            for line in reversed(lines[1:] if start else lines):  # a tail's first line may be cut
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue  # torn or partial line
                if isinstance(ev, dict) and ev.get("type") == "decision":
                    events.append(ev)
            if len(events) >= self.n_decisions:
                break
        shown = [self._decision_row(ev) for ev in events[: self.n_decisions]]
        self._decisions = (state, shown)
        return shown

    @staticmethod
    def _decision_row(ev: dict) -> dict:
        keys = ("id", "time", "unix_time", "decision", "track_id", "frame_id", "score_mm", "evidence")
        row = {k: ev.get(k) for k in keys if k in ev}
        row["thumb"] = bool(ev.get("depth_png"))
        row["_png"] = ev.get("depth_png") or ""
        return row

    def _keep_thumbnail(self, result, frame_id: int) -> None:
        """The deciding frame's panel, kept in memory for the event the daemon wrote for it (no file)."""
        event = getattr(self.daemon, "last_decision", None) or {}
        if event.get("frame_id") != frame_id or event.get("id") in self._thumbs:
            return
        try:
            panel = decision_panel(result, float(getattr(self.daemon, "threshold_mm", 0.0) or 0.0))
            png = _encode(".png", panel[..., ::-1])
        except Exception as e:  # a thumbnail is a nicety: never break the sampler for it
            log.debug("console thumbnail: %s", e)
            return
        with self._lock:
            self._thumbs[event["id"]] = png
            while len(self._thumbs) > 2 * self.n_decisions:
                self._thumbs.popitem(last=False)

    def thumbnail(self, event_id: str) -> bytes | None:
        """The decision panel PNG of a recent decision: kept in memory when the page saw it decided, else
        the file the event names, only under liveness.save_depth_dir."""
        with self._lock:
            kept = self._thumbs.get(event_id)
        if kept is not None:
            return kept
        row = next((r for r in self._decisions[1] if r.get("id") == event_id), None)
        root = getattr(getattr(getattr(self.daemon, "cfg", None), "liveness", None), "save_depth_dir", "")
        if row is None or not row["_png"] or not root:
            return None
        path = Path(row["_png"]).resolve()
        if not path.is_relative_to(Path(root).resolve()) or path.suffix != ".png":
            return None
        try:
            return path.read_bytes()
        except OSError:
            return None

    # health at a glance --------------------------------------------------------------------------
    def health(self) -> dict:
        try:
            st = self.daemon.status()
        except Exception as e:  # the page must not break on a status field that moved
            return {"error": str(e)}
        hooks = st.get("hooks") or {}
        out = {
            "fps": st.get("fps"),
            "frames": st.get("frames"),
            "last_frame_age_s": st.get("last_frame_age_s"),
            "camera": st.get("camera"),
            "stages_p95_ms": {k: v.get("p95_ms") for k, v in (st.get("stages") or {}).items()},
            "hooks": {k: {"pending": v.get("pending"), "failures": v.get("failures"),
                          "last_error": v.get("last_error")} for k, v in hooks.items()},
            "decisions": st.get("decisions"),
            "degraded": st.get("degraded") or (st.get("outbox") or {}).get("degraded"),
            "rss_mb": st.get("rss_mb"),
            "soc_temperature_c": st.get("soc_temperature_c"),
        }
        d = self._outbox_dir()
        if d is not None:
            try:
                usage = shutil.disk_usage(d)
                out["disk"] = {"free_mb": round(usage.free / 2**20),
                               "used_pct": round(100 * usage.used / usage.total)}
            except OSError as e:
                out["disk"] = {"error": e.strerror or str(e)}
        return out
