"""Where to look for faces in a frame: the whole frame, a region around the last face, and tiles.

A 640×480 door camera sees a face 2 m away ~30 px tall. Letterboxed whole into BlazeFace's square input
that face shrinks to 6–10 px, below what either BlazeFace model finds reliably, yet in a region 4× its
size the short-range model finds it well. MediaPipe's own pipelines detect once and then follow the face
in a region around its last position; `FaceFinder` does the same with two detectors:

- the finder (full range when the bundle ships it) on the whole frame, every frame;
- while nothing scores `min_score`: the finder on `tiles_per_frame` tiles of a `tiles` × `tiles` grid
  (25% overlap), taken in turn, so a far face that walks in is seen within tiles² / tiles_per_frame
  frames;
- while a face was reported in the last `track_frames` frames, or a box scored `propose_score` (too weak
  to report): the follower (short range) on a square `roi_scale` × that box around it.

Detections from all regions are merged (the best score of each overlapping cluster wins) and, unless
turned off, boxes whose keypoints are not face-like (`face.face_like`) are dropped before anything else.
`detect(rgb)` has the FaceDetector's signature, so the pipeline takes either.

Full-range boxes sit lower and are larger than short-range ones around the same face;
`BOX_TO_SHORT_RANGE` maps them onto the short-range box that `pipeline.landmark_box`'s crop mapping was
fitted on (fitted and checked by `python -m train.bench_detect`, "box → 68-landmark extent"), so the crop
contract holds whichever model found the face.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from firmware_app.face import Face, FaceDetector, face_like, iou

log = logging.getLogger(__name__)

MERGE_IOU = 0.3
TILE_OVERLAP = 0.25
# A full-range follower misses a far face that fills a third of its input (a region 3× a 30 px face)
# but finds it in a region the size of a 2×2 tile: it was trained on faces small in the picture.
ROI_MIN_SIDE = 0.5
# full-range box → short-range box around the same face: (centre shift x, y) × width, side scale
BOX_TO_SHORT_RANGE = {"short_range": ((0.0, 0.0), 1.0), "full_range": ((0.004, 0.026), 1.018)}


@dataclass(frozen=True)
class SearchConfig:
    tiles: int = 2  # grid side; 0 or 1 = no tiles
    tiles_per_frame: int = 1
    roi_scale: float = 4.0  # region side / face box side; 0 = no region around the last face
    track_frames: int = 5  # frames the region is kept after the face was last seen
    face_like: bool = True
    min_score: float = 0.5  # faces reported
    propose_score: float = 0.3  # boxes whose region is looked at on the next frame


def shift(face: Face, dx: float, dy: float) -> Face:
    return Face(
        face.x0 + dx, face.y0 + dy, face.x1 + dx, face.y1 + dy, face.score,
        tuple((x + dx, y + dy) for x, y in face.keypoints),
    )  # fmt: skip


def to_short_range_box(face: Face, model: str) -> Face:
    """The box the short-range model would give for this face (keypoints unchanged)."""
    (ox, oy), side = BOX_TO_SHORT_RANGE[model]
    w, h = face.x1 - face.x0, face.y1 - face.y0
    cx, cy = face.center[0] + ox * w, face.center[1] + oy * w
    hw, hh = 0.5 * side * w, 0.5 * side * h
    return replace(face, x0=cx - hw, y0=cy - hh, x1=cx + hw, y1=cy + hh)


def merge(faces: list[Face], iou_threshold: float = MERGE_IOU) -> list[Face]:
    """One face per overlapping cluster (its best-scored box), best score first."""
    out: list[Face] = []
    for face in sorted(faces, key=lambda f: -f.score):
        if not out or iou(face.box, np.array([f.box for f in out])).max() <= iou_threshold:
            out.append(face)
    return out


def tile_regions(height: int, width: int, n: int, overlap: float = TILE_OVERLAP) -> list[tuple[int, ...]]:
    """n × n (x0, y0, x1, y1) tiles covering the frame, neighbours overlapping by `overlap` of a tile."""
    if n <= 1:
        return []
    tw = int(np.ceil(width / (n - (n - 1) * overlap)))
    th = int(np.ceil(height / (n - (n - 1) * overlap)))
    xs = np.linspace(0, width - tw, n).round().astype(int)
    ys = np.linspace(0, height - th, n).round().astype(int)
    return [(int(x), int(y), int(x) + tw, int(y) + th) for y in ys for x in xs]


def roi_region(box: np.ndarray, scale: float, height: int, width: int, min_side: float = 0.0):
    """(x0, y0, x1, y1): a square of `scale` × the box's larger side (at least min_side × the frame's
    larger side) around its centre, clipped to the frame; None when that leaves too little."""
    x0, y0, x1, y1 = (float(v) for v in box)
    half = 0.5 * max(scale * max(x1 - x0, y1 - y0), min_side * max(height, width))
    cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    x0, y0 = max(0, int(cx - half)), max(0, int(cy - half))
    x1, y1 = min(width, int(cx + half)), min(height, int(cy + half))
    return (x0, y0, x1, y1) if x1 - x0 >= 8 and y1 - y0 >= 8 else None


class FaceFinder:
    """Finds faces with `detector` (whole frame, tiles) and follows them with `follower` (the region around
    the last one; default: the same detector); one per camera.

    Both detectors must be built with min_score ≤ cfg.propose_score: a box scoring between propose_score
    and min_score is not reported, but the next frame looks at its region, where a real far face is
    large enough to score well.
    """

    def __init__(self, detector: FaceDetector, cfg: SearchConfig = SearchConfig(),
                 follower: FaceDetector | None = None):  # fmt: skip
        self.detector, self.cfg = detector, cfg
        self.follower = follower or detector
        self.model = detector.model.name
        self._last: np.ndarray | None = None  # box of the face (or proposal) last seen
        self._since = 0  # frames since a face was last reported
        self._tile = 0  # next tile to scan
        self.calls = 0  # detector invocations so far (the per-frame cost is calls / frames)

    def reset(self) -> None:
        self._last, self._since, self._tile = None, 0, 0

    def _run(self, detector: FaceDetector, rgb: np.ndarray, region=None) -> list[Face]:
        self.calls += 1
        if region is None:
            faces = detector.detect(rgb)
        else:
            x0, y0, x1, y1 = region
            faces = [shift(f, x0, y0) for f in detector.detect(np.ascontiguousarray(rgb[y0:y1, x0:x1]))]
        if self.cfg.face_like:
            faces = [f for f in faces if face_like(f)]
        return [to_short_range_box(f, detector.model.name) for f in faces]

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Faces scoring ≥ cfg.min_score in an (H, W, 3) uint8 RGB frame, best first, in frame pixels."""
        h, w = rgb.shape[:2]
        found = self._run(self.detector, rgb)
        if self._last is not None and self._since <= self.cfg.track_frames and self.cfg.roi_scale > 0:
            min_side = ROI_MIN_SIDE if self.follower.model.name == "full_range" else 0.0
            roi = roi_region(self._last, self.cfg.roi_scale, h, w, min_side)
            if roi is not None:
                found += self._run(self.follower, rgb, roi)
        if not any(f.score >= self.cfg.min_score for f in found):
            found += self._scan_tiles(rgb)
        faces = merge([f for f in found if f.score >= self.cfg.min_score])
        proposals = merge(found)
        if faces:
            self._last, self._since = max(faces, key=lambda f: (f.x1 - f.x0) * (f.y1 - f.y0)).box, 0
        else:
            self._since += 1
            if proposals:  # look closer next frame
                self._last = proposals[0].box
        return faces

    def _scan_tiles(self, rgb: np.ndarray) -> list[Face]:
        tiles = tile_regions(*rgb.shape[:2], self.cfg.tiles)
        faces: list[Face] = []
        for _ in range(min(self.cfg.tiles_per_frame, len(tiles))):
            faces += self._run(self.detector, rgb, tiles[self._tile % len(tiles)])
            self._tile = (self._tile + 1) % len(tiles)
        return faces


class DetectorChoiceError(ValueError):
    """The configured detector model is not in the bundle; the message says what to do."""


def full_range_path(bundle):
    """The bundle's full-range model (manifest detector.full_range_file, hash-checked with `files` when the
    bundle was loaded), or None when the bundle does not ship one."""
    manifest = getattr(bundle, "manifest", None) or {}
    det = manifest.get("detector") if isinstance(manifest, dict) else None
    name = det.get("full_range_file") if isinstance(det, dict) else None
    files = manifest.get("files") or {}
    if not isinstance(name, str) or name not in files:
        return None
    return Path(bundle.root) / name


def make_finder(bundle, cfg) -> FaceFinder:
    """The FaceFinder the device config (a DetectorConfig) asks for, with the bundle's model files."""
    full = full_range_path(bundle)
    if cfg.model == "full_range" and full is None:
        raise DetectorChoiceError(
            f"detector.model is full_range but the bundle {getattr(bundle, 'root', '')} ships no full-range "
            "detector (manifest detector.full_range_file); rebuild it with `make convert`, or set "
            "detector.model: short_range or auto"
        )
    use_full = full is not None and cfg.model in ("auto", "full_range")
    short = getattr(bundle, "detector_model", None) or bundle.detector
    search = SearchConfig(tiles=cfg.tiles, roi_scale=cfg.roi_scale, track_frames=cfg.track_max_gap,
                          face_like=cfg.face_like, min_score=cfg.min_score,
                          propose_score=min(cfg.min_score, SearchConfig.propose_score))  # fmt: skip
    # detector.min_score (0.5) for both models: full range's far faces score 0.5-0.6 (MediaPipe cuts at
    # 0.6); the keypoint check is what keeps false boxes out (train.bench_detect counts them)
    follower = FaceDetector(short, cfg.num_threads, search.propose_score)
    finder = FaceDetector(full, cfg.num_threads, search.propose_score) if use_full else follower
    log.info("face detector: %s finds (whole frame, %dx%d tiles), short_range follows (region %.1fx)",
             finder.model.name, cfg.tiles, cfg.tiles, cfg.roi_scale)  # fmt: skip
    return FaceFinder(finder, search, follower)
