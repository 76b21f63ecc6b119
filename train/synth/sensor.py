"""A camera between the scene and the frame: exposure, white balance, blur, noise, gamma, JPEG."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numba
import numpy as np


@dataclass(frozen=True)
class SensorParams:
    exposure: float  # multiplies scene radiance; < 0.4 is low light, > 1.6 over-exposed
    wb_gains: np.ndarray  # (3,) residual white-balance error per channel
    blur_sigma: float  # optics / focus, pixels
    motion_px: int  # motion blur length, 0 = none
    read_noise: float  # Gaussian noise std (linear units) before gain
    shot_noise: float  # Poisson-like noise scale
    gamma: float  # display gamma the camera applies
    jpeg_quality: int  # 0 = no extra compression pass


def sample_sensor(rng: np.random.Generator) -> SensorParams:
    exposure = float(np.exp(rng.normal(0.0, 0.45)))
    return SensorParams(
        exposure=exposure,
        wb_gains=np.exp(rng.normal(0, 0.08, 3)).astype(np.float32),
        blur_sigma=float(rng.choice([0.0, rng.uniform(0.3, 1.5)], p=[0.5, 0.5])),
        motion_px=int(rng.choice([0, rng.integers(3, 9)], p=[0.85, 0.15])),
        read_noise=float(rng.uniform(0.002, 0.02)),
        shot_noise=float(rng.uniform(0.0, 0.02)),
        gamma=float(rng.uniform(2.0, 2.4)),
        jpeg_quality=int(rng.choice([0, rng.integers(35, 95)], p=[0.5, 0.5])),
    )


_LUT_STEPS = 4096


_BANK_SIZE = 1 << 22


def _noise_bank(rng: np.random.Generator, size: int) -> np.ndarray:
    """Standard normal noise for a frame: a random window of a fixed per-process bank (drawing ~1 M
    normals per frame would cost more than the whole render). The bank never changes, so a frame
    depends only on its own rng, whatever the process rendered before."""
    global _BANK
    if _BANK is None:
        _BANK = np.random.default_rng(12345).standard_normal(_BANK_SIZE, dtype=np.float32)
    reps = -(-size // (_BANK_SIZE // 2))
    windows = [int(rng.integers(0, _BANK_SIZE // 2)) for _ in range(reps)]
    return np.concatenate([_BANK[s : s + _BANK_SIZE // 2] for s in windows])[:size]


_BANK: np.ndarray | None = None


@numba.njit(cache=True, nogil=True)
def _noise_and_gamma(img, noise, read_var, shot_var, lut, out):
    """One pass per pixel: Poisson-Gaussian noise, then gamma through a 12-bit lookup table."""
    top = lut.size - 1
    for i in range(img.size):
        v = img[i]
        v += np.sqrt(read_var + shot_var * max(v, 0.0)) * noise[i]
        code = int(v * top + 0.5)
        out[i] = lut[min(max(code, 0), top)]


def apply_sensor(linear: np.ndarray, p: SensorParams, rng: np.random.Generator) -> np.ndarray:
    """Linear RGB float (H, W, 3) → uint8 RGB frame."""
    img = linear * (p.exposure * p.wb_gains).astype(np.float32)
    if p.blur_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), p.blur_sigma)
    if p.motion_px:
        kernel = np.zeros((p.motion_px, p.motion_px), np.float32)
        cv2.line(
            kernel,
            (0, int(rng.integers(0, p.motion_px))),
            (p.motion_px - 1, int(rng.integers(0, p.motion_px))),
            1.0,
        )
        img = cv2.filter2D(img, -1, kernel / kernel.sum())
    # Noise is added at sensor level: darker scenes (low exposure) get relatively more of it.
    gain = 1.0 / max(p.exposure, 0.25)
    lut = (np.power(np.linspace(0, 1, _LUT_STEPS), 1.0 / p.gamma) * 255 + 0.5).astype(np.uint8)
    frame = np.empty(img.shape, np.uint8)
    _noise_and_gamma(
        np.ascontiguousarray(img).ravel(),
        _noise_bank(rng, img.size),
        np.float32(p.read_noise**2 * gain),
        np.float32(p.shot_noise**2),
        lut,
        frame.ravel(),
    )
    if p.jpeg_quality:
        ok, buf = cv2.imencode(".jpg", frame[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, p.jpeg_quality])
        frame = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
    return np.ascontiguousarray(frame)
