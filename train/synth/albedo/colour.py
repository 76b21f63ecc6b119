"""Colour spaces of the albedo: skin tones are chosen in CIELAB, textures are linear sRGB, images sRGB."""

from __future__ import annotations

import numpy as np


def lab_to_linear_rgb(lab) -> np.ndarray:
    """CIELAB (D65) → linear sRGB."""
    L, a, b = (float(c) for c in lab)
    fy = (L + 16.0) / 116.0
    f = np.array([fy + a / 500.0, fy, fy - b / 200.0])
    t = np.where(f > 6 / 29, f**3, 3 * (6 / 29) ** 2 * (f - 4 / 29))
    xyz = t * np.array([0.95047, 1.0, 1.08883])
    m = np.array([[3.2406, -1.5372, -0.4986], [-0.9689, 1.8758, 0.0415], [0.0557, -0.2040, 1.0570]])
    return np.clip(m @ xyz, 0.0, 1.0)


def linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def luminance(rgb: np.ndarray) -> np.ndarray:
    return np.asarray(rgb)[..., :3] @ np.array([0.2126, 0.7152, 0.0722], np.float32)
