"""Restyle a photo the way an attacker's source picture differs from a live camera frame.

A printed or displayed face comes from some other camera and pipeline: graded colours, a beauty filter,
sharpening, vignetting, black-and-white. Drawing these per attack keeps any one render appearance from
marking "attack", so what the liveness cues can learn is the medium (paper, screen) and the geometry.
"""

from __future__ import annotations

import cv2
import numpy as np

STYLES = ("none", "grade", "retouch", "sharpen", "vignette", "mono")


def restyle(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(h, w, 3) uint8 → a restyled copy; one to three styles in random order (possibly none)."""
    out = rgb.astype(np.float32) / 255.0
    for style in rng.choice(STYLES, size=int(rng.integers(1, 4)), replace=False):
        out = _APPLY[str(style)](out, rng)
    return np.clip(out * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _grade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per-channel gamma and gain, a saturation change and a lifted or crushed black level."""
    img = np.clip(img, 0, 1) ** np.exp(rng.normal(0, 0.15, 3)).astype(np.float32)
    img = img * np.exp(rng.normal(0, 0.1, 3)).astype(np.float32)
    grey = img.mean(axis=2, keepdims=True)
    img = grey + (img - grey) * rng.uniform(0.4, 1.6)
    black = rng.uniform(-0.05, 0.1)
    return black + img * (1 - black)


def _retouch(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Beauty filter: edge-preserving smoothing blended over the original."""
    smooth = cv2.bilateralFilter(img, 9, float(rng.uniform(0.05, 0.15)), float(rng.uniform(3, 9)))
    a = rng.uniform(0.4, 1.0)
    return a * smooth + (1 - a) * img


def _sharpen(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    blur = cv2.GaussianBlur(img, (0, 0), rng.uniform(1.0, 3.0))
    return img + rng.uniform(0.3, 1.2) * (img - blur)


def _vignette(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    return img * (1 - rng.uniform(0.1, 0.5) * np.clip(r2 / 2, 0, 1))[..., None]


def _mono(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    grey = img @ np.array([0.299, 0.587, 0.114], np.float32)
    tint = 1 + rng.normal(0, 0.04, 3).astype(np.float32)  # sepia-ish or neutral
    return grey[..., None] * tint


_APPLY = {"none": lambda img, rng: img, "grade": _grade, "retouch": _retouch, "sharpen": _sharpen,
          "vignette": _vignette, "mono": _mono}
