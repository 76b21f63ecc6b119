"""Procedural indoor backgrounds (no downloaded images): walls, doors, frames, windows, clutter; and, as an
option, plates cut from the CC0 / public-domain photographs that scikit-image ships (`real_plate`)."""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np


def value_noise(rng: np.random.Generator, hw: tuple[int, int], cells: int, octaves: int = 3) -> np.ndarray:
    """Smooth multi-octave noise in [-1, 1] made by upsampling small random grids (fast)."""
    h, w = hw
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        n = cells * 2**o
        grid = rng.uniform(-1, 1, (max(2, n * h // max(h, w)), max(2, n * w // max(h, w)))).astype(np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    return out / total


def make_background(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) float32 linear RGB in [0, 1]."""
    return plate_to_frame(make_plate(rng, hw), hw)


def make_plate(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    """A room's wall at half the frame's resolution, (H/2, W/2, 3) float32 linear RGB in [0, 1]: walls
    are smooth, so the frame is this upsampled (plate_to_frame), and one plate can serve several frames."""
    h, w = hw
    small = (max(h // 4, 8), max(w // 4, 8))
    half = (max(h // 2, 8), max(w // 2, 8))
    # Walls are mostly muted: a grey level with a mild tint, sometimes a stronger colour.
    saturation = rng.choice([0.15, 0.5], p=[0.8, 0.2])
    base = rng.uniform(0.05, 0.75) * (1 + saturation * rng.uniform(-1, 1, 3))
    tint = rng.uniform(-0.1, 0.1, 3)
    ys = np.linspace(-1, 1, small[0])[:, None, None]
    xs = np.linspace(-1, 1, small[1])[None, :, None]
    img = base + tint * ys + rng.uniform(-0.1, 0.1) * xs + 0.0 * ys * xs
    img = img + 0.06 * value_noise(rng, small, 4)[..., None]
    img = np.ascontiguousarray(np.broadcast_to(img, (*small, 3)), np.float32)
    for _ in range(int(rng.integers(0, 7))):
        _draw_shape(rng, img)
    img = cv2.resize(img, (half[1], half[0]), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.5:  # fine texture (plaster, wood grain, fabric)
        img *= 1 + 0.05 * value_noise(rng, half, int(rng.integers(8, 40)), 2)[..., None]
    return np.clip(img, 0, 1, out=img)


def plate_to_frame(plate: np.ndarray, hw: tuple[int, int], mirror: bool = False) -> np.ndarray:
    """The plate upsampled to an (H, W, 3) frame, optionally mirrored (another view of the room)."""
    h, w = hw
    return cv2.resize(cv2.flip(plate, 1) if mirror else plate, (w, h), interpolation=cv2.INTER_LINEAR)


def _draw_shape(rng: np.random.Generator, img: np.ndarray) -> None:
    h, w = img.shape[:2]
    grey = rng.uniform(0.0, 0.9)
    colour = tuple(float(c) for c in np.clip(grey * (1 + rng.uniform(-0.6, 0.6, 3)), 0, 1))
    kind = rng.integers(0, 4)
    x0, y0 = int(rng.integers(-w // 4, w)), int(rng.integers(-h // 4, h))
    x1, y1 = x0 + int(rng.integers(1 + w // 10, 2 + w // 2)), y0 + int(rng.integers(1 + h // 10, 2 + h))
    if kind == 0:  # door, cupboard, poster
        cv2.rectangle(img, (x0, y0), (x1, y1), colour, -1)
    elif kind == 1:  # frame edge, shelf, cable
        cv2.line(img, (x0, y0), (x1, y1), colour, int(rng.integers(1, 4)))
    elif kind == 2:  # lamp, plant, clock
        cv2.ellipse(
            img,
            (x0, y0),
            (int(rng.integers(1, max(w // 6, 2))), int(rng.integers(1, max(h // 6, 2)))),
            float(rng.uniform(0, 180)),
            0,
            360,
            colour,
            -1,
        )
    else:  # window: bright, slightly blue
        bright = tuple(float(c) for c in np.clip(rng.uniform(0.8, 1.0) * np.array([0.9, 0.95, 1.0]), 0, 1))
        cv2.rectangle(img, (x0, y0), (x1, y1), bright, -1)


# Real photographs without faces, all CC0 or public domain, shipped inside scikit-image (skimage.data;
# licences in each loader's docstring). `real_plate` crops them into room plates, so that the texture
# around a face, the room's and the one inside an attack's picture alike, is not always procedural.
REAL_PLATE_SOURCES = (
    ("chelsea", "CC0, Stefan van der Walt"),
    ("coffee", "CC0, Rachel Michetti"),
    ("rocket", "public domain, SpaceX"),
    ("brick", "CC0, CC0Textures"),
    ("grass", "CC0, linolafett"),
    ("gravel", "CC0, CC0Textures"),
)


@cache
def _real_photo(name: str) -> np.ndarray:
    """The named skimage photograph as linear RGB float32 in [0, 1]."""
    import skimage.data

    img = np.asarray(getattr(skimage.data, name)(), np.float32) / 255.0
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3] ** 2.2)


def real_plate(rng: np.random.Generator, hw: tuple[int, int]) -> np.ndarray:
    """A plate (as make_plate returns) cut from one of REAL_PLATE_SOURCES: a random crop of 30–100 % of the
    photograph's short side at the plate's aspect, mirrored or not, with a random exposure and tint."""
    h, w = hw
    half = (max(h // 2, 8), max(w // 2, 8))
    photo = _real_photo(REAL_PLATE_SOURCES[int(rng.integers(len(REAL_PLATE_SOURCES)))][0])
    ph, pw = photo.shape[:2]
    side = rng.uniform(0.3, 1.0) * min(ph, pw * half[0] / half[1])
    ch, cw = int(side), int(side * half[1] / half[0])
    y0, x0 = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
    img = cv2.resize(photo[y0:y0 + ch, x0:x0 + cw], (half[1], half[0]), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        img = cv2.flip(img, 1)
    img = img * (rng.uniform(0.3, 1.2) * (1 + 0.15 * rng.uniform(-1, 1, 3))).astype(np.float32)
    return np.clip(img, 0, 1, out=img)
