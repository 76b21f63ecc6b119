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
_BANK: np.ndarray | None = None


def _noise(rng: np.random.Generator, size: int) -> np.ndarray:
    """Standard normal noise for a frame: random windows of a fixed per-process bank (drawing ~1 M
    normals per frame would cost more than the whole render). The bank never changes, so a frame
    depends only on its own rng, whatever the process rendered before."""
    global _BANK
    if _BANK is None:
        _BANK = np.random.default_rng(12345).standard_normal(_BANK_SIZE, dtype=np.float32)
    reps = -(-size // (_BANK_SIZE // 2))
    windows = [int(rng.integers(0, _BANK_SIZE // 2)) for _ in range(reps)]
    if reps == 1:  # a frame up to 1.4 Mpixel: a view, no copy
        return _BANK[windows[0] : windows[0] + size]
    return np.concatenate([_BANK[s : s + _BANK_SIZE // 2] for s in windows])[:size]


@numba.njit(cache=True, nogil=True, fastmath=True)
def _expose_noise_gamma(img, gains, noise, read_var, shot_var, lut, out):
    """One pass per pixel: exposure and white balance, Poisson-Gaussian noise, then gamma through a
    12-bit lookup table; img (N, 3) float32 RGB → out (N, 3) uint8 BGR (the order JPEG codecs take)."""
    top = lut.size - 1
    for i in range(img.shape[0]):
        for c in range(3):
            v = img[i, c] * gains[c]
            v += np.sqrt(read_var + shot_var * max(v, np.float32(0.0))) * noise[3 * i + c]
            code = int(v * top + np.float32(0.5))
            out[i, 2 - c] = lut[min(max(code, 0), top)]


def sense(linear: np.ndarray, p: SensorParams, rng: np.random.Generator) -> np.ndarray:
    """Linear RGB float (H, W, 3) → uint8 BGR as the sensor reads it out, before any compression."""
    img = linear
    if p.blur_sigma > 0:  # blur and exposure commute: blur first, expose in the per-pixel pass
        img = cv2.GaussianBlur(img, (0, 0), p.blur_sigma)
    if p.motion_px:
        # A line through the kernel's centre (odd size, point-symmetric): blur without a shift. A lopsided
        # line moved the whole frame by up to 4 px, by a different amount in every frame of a door clip,
        # so a print on a stand "moved". The second draw only keeps the random stream of older recipes.
        k = p.motion_px | 1
        y0 = int(rng.integers(0, p.motion_px))
        rng.integers(0, p.motion_px)
        kernel = np.zeros((k, k), np.float32)
        cv2.line(kernel, (0, y0), (k - 1, k - 1 - y0), 1.0)
        kernel += kernel[::-1, ::-1]  # exactly symmetric (the rasterised line is not quite)
        img = cv2.filter2D(img, -1, kernel / kernel.sum())
    # Noise is added at sensor level: darker scenes (low exposure) get relatively more of it.
    gain = 1.0 / max(p.exposure, 0.25)
    lut = (np.power(np.linspace(0, 1, _LUT_STEPS), 1.0 / p.gamma) * 255 + 0.5).astype(np.uint8)
    bgr = np.empty(img.shape, np.uint8)
    _expose_noise_gamma(
        np.ascontiguousarray(img, np.float32).reshape(-1, 3),
        (p.exposure * p.wb_gains).astype(np.float32),
        _noise(rng, img.size),
        np.float32(p.read_noise**2 * gain),
        np.float32(p.shot_noise**2),
        lut,
        bgr.reshape(-1, 3),
    )
    return bgr


def encode_jpeg(bgr: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG bytes → uint8 RGB."""
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def apply_sensor(linear: np.ndarray, p: SensorParams, rng: np.random.Generator) -> np.ndarray:
    """Linear RGB float (H, W, 3) → uint8 RGB frame (through the camera's JPEG pass, if it has one)."""
    bgr = sense(linear, p, rng)
    if p.jpeg_quality:
        return decode_jpeg(encode_jpeg(bgr, p.jpeg_quality))
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
