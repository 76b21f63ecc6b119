"""Medium edges: a print or a screen shows its own border around the face; a head in a room does not.

A presentation attack is a rectangle of paper or glass with a face on it. Unless it fills the frame, the
camera sees that rectangle's straight edges (paper border, photo edge, bezel) close around the face on
every side, at a distance set by the medium, not by the room. The depth network never sees them: its
crop ends at 1.6 × the face. This cue looks around the face in the whole frame for long straight
segments (OpenCV's line segment detector) and counts the sides of the face box that have one:

  a side     a segment at least MIN_LEN face sides long, within TOL_DEG of that side's direction,
             outside the face (beyond INNER half-sides from the centre) and within REACH face sides,
             spanning the face's own extent along that side (it passes beside the face, not off a corner)

The count (0-4) becomes a log-likelihood ratio through the bundle's `liveness.medium` table, fitted by
convert/liveness.py on the validation split with this same function. The table is never positive: a
border is evidence of a medium, but its absence is no evidence of a face (a phone held close fills the
frame; a print cut to the face has no border), so this cue can only lower a track's evidence.

The frame is searched at a fixed scale (the face box resized to FACE_PX), so the cost does not grow
with the face: ~1-2 ms per frame on one x86 core, and the pipeline runs it only until a track is decided.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

SIDES = "LRTB"  # left, right, top, bottom of the face box, in the image
REACH = 2.5  # search out to this many face sides from the face centre
INNER = 0.55  # a side's segment lies beyond this many face sides from the centre (outside the face)
MIN_LEN = 0.6  # a side's segment is at least this many face sides long
TOL_DEG = 25.0  # and within this angle of the side's direction (a tilted medium)
SPAN = 0.3  # and overlaps the central ±SPAN face sides along its direction
FACE_PX = 40  # the face box's longer side, in pixels, at which segments are searched


class MediumEdges(NamedTuple):
    sides: str  # the sides of the face box with a medium-like edge, a subset of SIDES in that order
    segments: int  # line segments found in the searched region

    @property
    def count(self) -> int:
        return len(self.sides)


_LSD = None


def _detector():
    global _LSD
    if _LSD is None:  # one per process: it holds no state between calls
        _LSD = cv2.createLineSegmentDetector()
    return _LSD


def find_edges(image: np.ndarray, box) -> MediumEdges:
    """The medium-like edges around the face box (x0, y0, x1, y1, frame pixels) in a uint8 frame, RGB
    (H, W, 3) or grey (H, W)."""
    x0, y0, x1, y1 = (float(v) for v in box[:4])
    w, h = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    rx0, ry0 = int(max(0.0, cx - REACH * w)), int(max(0.0, cy - REACH * h))
    rx1, ry1 = int(min(image.shape[1], cx + REACH * w)), int(min(image.shape[0], cy + REACH * h))
    if rx1 - rx0 < 8 or ry1 - ry0 < 8:
        return MediumEdges("", 0)
    s = FACE_PX / max(w, h)
    roi = image[ry0:ry1, rx0:rx1]
    if roi.ndim == 3:  # grey only where it is searched
        roi = cv2.cvtColor(roi, cv2.COLOR_RGB2GRAY)
    roi = cv2.resize(roi, None, fx=s, fy=s, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    found = _detector().detect(roi)[0]
    if found is None:
        return MediumEdges("", 0)
    p = found[:, 0].astype(np.float64)
    # segment ends in face units: (0, 0) the face centre, ±0.5 the face box's sides
    ax, bx = (p[:, 0] / s + rx0 - cx) / w, (p[:, 2] / s + rx0 - cx) / w
    ay, by = (p[:, 1] / s + ry0 - cy) / h, (p[:, 3] / s + ry0 - cy) / h
    long_ = np.hypot(bx - ax, by - ay) >= MIN_LEN
    angle = np.degrees(np.arctan2(np.abs(by - ay), np.abs(bx - ax)))  # 0 horizontal, 90 vertical
    u, v = (ax + bx) / 2, (ay + by) / 2
    vertical = (long_ & (angle >= 90 - TOL_DEG) & (np.abs(u) >= INNER) & (np.abs(u) <= REACH)
                & (np.minimum(ay, by) <= SPAN) & (np.maximum(ay, by) >= -SPAN))
    horizontal = (long_ & (angle <= TOL_DEG) & (np.abs(v) >= INNER) & (np.abs(v) <= REACH)
                  & (np.minimum(ax, bx) <= SPAN) & (np.maximum(ax, bx) >= -SPAN))
    has = {"L": (vertical & (u < 0)).any(), "R": (vertical & (u > 0)).any(),
           "T": (horizontal & (v < 0)).any(), "B": (horizontal & (v > 0)).any()}
    return MediumEdges("".join(k for k in SIDES if has[k]), len(p))


class MediumError(ValueError):
    """A manifest's liveness.medium table this code cannot use; the message says what is wrong."""


@dataclass(frozen=True)
class MediumModel:
    llr_by_count: tuple[float, ...]  # LLR for 0..4 sides found: each ≤ 0, never rising with the count
    calibration: dict | None = None  # split, sample counts and per-class side-count histograms, as fitted

    def __post_init__(self):
        v = self.llr_by_count
        if len(v) != len(SIDES) + 1 or not all(np.isfinite(x) for x in v):
            raise MediumError(f"liveness.medium.llr_by_count: needs {len(SIDES) + 1} finite numbers (0 to "
                              f"{len(SIDES)} sides); rebuild the bundle with make convert")
        if max(v) > 0 or any(b > a for a, b in zip(v, v[1:])):
            raise MediumError("liveness.medium.llr_by_count: values must be ≤ 0 and not rise with the number "
                              "of sides (a border may only lower the evidence); rebuild the bundle")

    def llr(self, edges: MediumEdges) -> float:
        return float(self.llr_by_count[edges.count])

    def to_manifest(self) -> dict:
        return {"feature": "sides of the face box with a medium-like straight edge (firmware_app/medium.py)",
                "llr_by_count": [round(float(x), 4) for x in self.llr_by_count],
                "calibration": self.calibration or {}}

    @classmethod
    def from_manifest(cls, liveness: dict) -> MediumModel | None:
        """None when the bundle has no medium table (bundles made before this cue)."""
        m = liveness.get("medium") if isinstance(liveness, dict) else None
        if m is None:
            return None
        try:
            values = tuple(float(x) for x in m["llr_by_count"])
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise MediumError(f"manifest liveness.medium is incomplete or not numeric ({e}); rebuild the "
                              "bundle with make convert") from None
        return cls(values, m.get("calibration"))
