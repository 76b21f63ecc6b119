"""Pinhole cameras and rigid poses. Camera frame: X right, Y down, Z forward (away from the lens)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Head frame (x subject's left, y up, z out of the face) → camera frame for a face looking into the
# lens: x stays image-right, y flips to image-down, z flips to point away from the camera.
HEAD_TO_CAMERA = np.diag([1.0, -1.0, -1.0])


@dataclass(frozen=True)
class Camera:
    K: np.ndarray  # (3, 3)
    hw: tuple[int, int]

    @property
    def hfov_deg(self) -> float:
        return float(np.degrees(2 * np.arctan(self.hw[1] / (2 * self.K[0, 0]))))


def sample_camera(rng: np.random.Generator, hw: tuple[int, int], hfov_deg=(50.0, 90.0)) -> Camera:
    h, w = hw
    fov = np.radians(rng.uniform(*hfov_deg))
    f = w / (2 * np.tan(fov / 2))
    cx = w / 2 + rng.normal(0, 0.01 * w)
    cy = h / 2 + rng.normal(0, 0.01 * h)
    K = np.array([[f, 0, cx], [0, f * rng.uniform(0.995, 1.005), cy], [0, 0, 1]], np.float64)
    return Camera(K=K, hw=(h, w))


def rotation_ypr(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """Rotation in the camera frame: yaw about Y (down), pitch about X, roll about Z, applied yaw first.

    Positive yaw turns the face towards image-left... by the right-hand rule about +Y (down);
    the sign only has to be consistent, since poses are sampled symmetrically and stored as given.
    """
    y, p, r = np.radians([yaw_deg, pitch_deg, roll_deg])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def ray_through(camera: Camera, pixel_xy: np.ndarray) -> np.ndarray:
    """Unit-Z ray direction (x, y, 1) through a pixel position."""
    K = camera.K
    return np.array([(pixel_xy[0] - K[0, 2]) / K[0, 0], (pixel_xy[1] - K[1, 2]) / K[1, 1], 1.0])


def backproject(depth_mm: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Depth image → (H, W, 3) camera-frame points at pixel centres (0 where depth is 0)."""
    h, w = depth_mm.shape
    xs, ys = np.meshgrid(np.arange(w) + 0.5, np.arange(h) + 0.5)
    x = (xs - K[0, 2]) / K[0, 0] * depth_mm
    y = (ys - K[1, 2]) / K[1, 1] * depth_mm
    return np.stack([x, y, depth_mm], axis=-1).astype(np.float32)
