"""Motion evidence along a track: a flat medium moves as a plane, a head does not.

Between a key frame and the current frame of one track, a few dozen corners inside the face
(cv2.goodFeaturesToTrack on the inner part of the key frame's face box) are tracked with pyramidal
Lucas–Kanade and kept only when tracking back lands within FB_MAX_PX of where they started; when fewer
than MIN_KEPT of them survive (a dark, low-contrast face gives noise corners) the cue abstains. The
face region is rescaled so the face box is NORM_PX wide: every distance below is in those pixels.

  shift  median displacement of the corners. Below `min_shift_px` nothing can be told: the cue abstains
         and keeps its key frame, so slow motion accumulates (for up to MAX_KEY_AGE_S seconds of the
         frames' own timestamps, not a frame count: a 30 frames/s camera must see the same sway as 10).
  r_hom  median residual after the best homography (RANSAC): every plane's image motion is a homography,
         so a print or screen, tilted, turned or carried, leaves only tracking noise (≈ 0.03–0.1 px on
         the synthetic clips); a head that turns, nods or just moves shows parallax between nose, cheeks
         and ears (0.15–1 px for a 20 mm shift or a few degrees of turn at 400–650 mm).

A residual above MAX_RATIO of the shift is tracking error, not parallax: the cue abstains. Otherwise
LLR = slope · ln(r_hom / r0), clipped to [-max_neg · min(1, shift / full_shift_px), +max_pos]: the
larger the motion, the more a plane-like residual says "plane". The positive side is capped low on
purpose: a screen replaying a video of a moving head shows non-planar motion too, and poor light
raises the tracking noise, so motion alone never opens the door; it can only close it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

NORM_PX = 128.0  # the face box is rescaled to this width
MAX_UPSCALE = 2.0
MIN_POINTS = 12
FB_MAX_PX = 0.5
RANSAC_PX = 0.5
MIN_KEPT = 0.6  # of the corners found, this share must track forward and back consistently
MAX_RATIO = 0.5  # a homography residual above this share of the shift is tracking error, not parallax
MAX_KEY_AGE_S = 1.0  # seconds a key frame may wait for enough motion (10 frames at the door bench's 10/s)
INNER = 0.7  # corners come from the central 70 % of the face box (no background, no hair edge)


@dataclass(frozen=True)
class MotionParams:
    min_shift_px: float = 2.0  # median corner displacement below this: abstain
    full_shift_px: float = 6.0  # from this displacement on, a planar residual counts in full
    r0: float = 0.14  # homography residual (px) where the cue says nothing
    slope: float = 2.0  # LLR per unit of ln(r_hom / r0)
    max_pos: float = 0.5
    max_neg: float = 2.0
    max_corners: int = 40


class MotionEstimate(NamedTuple):
    llr: float | None  # None: abstained (see reason)
    reason: str  # "" when it judged
    points: int = 0
    shift: float = float("nan")  # px at a NORM_PX-wide face
    r_hom: float = float("nan")

    @property
    def moved_px(self) -> float:
        """The corner shift if the corners moved together (homography residual ≤ MAX_RATIO of the shift),
        else 0: a still picture's tracking noise scatters corners by up to a pixel (a phone on a stand
        showing a real photograph: shifts of 0.5-0.7 px with residuals of 0.3-1.1 px), a moving face
        carries them along."""
        shift, r_hom = float(self.shift), float(self.r_hom)
        coherent = np.isfinite(shift) and np.isfinite(r_hom) and r_hom <= MAX_RATIO * shift
        return shift if coherent else 0.0


def _median_residual(p0: np.ndarray, p1: np.ndarray, m: np.ndarray | None) -> float:
    if m is None:
        return float("inf")
    if m.shape == (2, 3):
        pred = p0 @ m[:, :2].T + m[:, 2]
    else:
        h = np.concatenate([p0, np.ones((len(p0), 1))], axis=1) @ m.T
        pred = h[:, :2] / np.where(np.abs(h[:, 2:]) < 1e-9, 1e-9, h[:, 2:])
    return float(np.median(np.linalg.norm(p1 - pred, axis=1)))


def planarity(grey0: np.ndarray, grey1: np.ndarray, mask: np.ndarray, max_corners: int = 40):
    """(points, shift, r_hom) of corners in `mask` tracked from grey0 to grey1 (same size, uint8)."""
    pts = cv2.goodFeaturesToTrack(grey0, max_corners, 0.01, 4, mask=mask, blockSize=5)
    if pts is None or len(pts) < MIN_POINTS:
        return 0, float("nan"), float("nan")
    lk = dict(
        winSize=(11, 11), maxLevel=3,
        criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 10, 0.03),
    )
    p1, st, _ = cv2.calcOpticalFlowPyrLK(grey0, grey1, pts, None, **lk)
    back, st_b, _ = cv2.calcOpticalFlowPyrLK(grey1, grey0, p1, None, **lk)
    fb = np.linalg.norm((back - pts)[:, 0], axis=1)
    ok = (st.ravel() == 1) & (st_b.ravel() == 1) & (fb < FB_MAX_PX)
    p0, p1 = pts[ok, 0].astype(np.float64), p1[ok, 0].astype(np.float64)
    if len(p0) < max(MIN_POINTS, MIN_KEPT * len(pts)):  # mostly noise corners (a dark, flat face): no say
        return int(len(p0)), float("nan"), float("nan")
    hom, _ = cv2.findHomography(p0, p1, cv2.RANSAC, RANSAC_PX)
    return int(len(p0)), float(np.median(np.linalg.norm(p1 - p0, axis=1))), _median_residual(p0, p1, hom)


def motion_llr(shift: float, r_hom: float, p: MotionParams) -> float:
    llr = p.slope * float(np.log(max(r_hom, 1e-3) / p.r0))
    return float(np.clip(llr, -p.max_neg * min(1.0, shift / p.full_shift_px), p.max_pos))


class MotionCue:
    """One track's motion cue; `update` with each frame (RGB), the face box in frame pixels and the frame's
    timestamp in seconds."""

    def __init__(self, params: MotionParams = MotionParams()):
        self.p = params
        self._key: tuple[np.ndarray, np.ndarray, float] | None = None

    def update(self, rgb: np.ndarray, box, t: float) -> MotionEstimate:
        box = np.asarray(box, np.float64)
        if self._key is None:
            self._key = (rgb, box, t)
            return MotionEstimate(None, "first frame")
        key_rgb, key_box, key_t = self._key
        if key_rgb.shape != rgb.shape:
            self._key = (rgb, box, t)
            return MotionEstimate(None, "frame size changed")
        grey0, grey1, mask = self._regions(key_rgb, key_box, rgb, box)
        n, shift, r_hom = planarity(grey0, grey1, mask, self.p.max_corners)
        if not np.isfinite(r_hom):
            self._key = (rgb, box, t)
            return MotionEstimate(None, "too few consistent tracks", n)
        if shift < self.p.min_shift_px:
            if t - key_t >= MAX_KEY_AGE_S - 1e-9:
                self._key = (rgb, box, t)
            return MotionEstimate(None, "motion too small", n, shift, r_hom)
        self._key = (rgb, box, t)
        if r_hom > MAX_RATIO * shift:
            return MotionEstimate(None, "tracking inconsistent", n, shift, r_hom)
        return MotionEstimate(motion_llr(shift, r_hom, self.p), "", n, shift, r_hom)

    @staticmethod
    def _regions(rgb0, box0, rgb1, box1):
        """The same frame rectangle around both boxes, grey, rescaled to a NORM_PX-wide face; mask of
        the inner key face."""
        h, w = rgb0.shape[:2]
        width = max(0.5 * ((box0[2] - box0[0]) + (box1[2] - box1[0])), 8.0)
        pad = 0.1 * width
        x0 = int(max(min(box0[0], box1[0]) - pad, 0))
        y0 = int(max(min(box0[1], box1[1]) - pad, 0))
        x1 = int(min(max(box0[2], box1[2]) + pad, w))
        y1 = int(min(max(box0[3], box1[3]) + pad, h))
        s = min(NORM_PX / width, MAX_UPSCALE)
        size = (max(int(round((x1 - x0) * s)), 16), max(int(round((y1 - y0) * s)), 16))

        def grey(rgb):
            roi = cv2.cvtColor(np.ascontiguousarray(rgb[y0:y1, x0:x1]), cv2.COLOR_RGB2GRAY)
            return cv2.resize(roi, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)

        mask = np.zeros((size[1], size[0]), np.uint8)
        cx, cy = 0.5 * (box0[0] + box0[2]), 0.5 * (box0[1] + box0[3])
        hw, hh = 0.5 * INNER * (box0[2] - box0[0]), 0.5 * INNER * (box0[3] - box0[1])
        mx0, my0 = int((cx - hw - x0) * s), int((cy - hh - y0) * s)
        mx1, my1 = int((cx + hw - x0) * s), int((cy + hh - y0) * s)
        mask[max(my0, 0):max(my1, 0), max(mx0, 0):max(mx1, 0)] = 255
        return grey(rgb0), grey(rgb1), mask
