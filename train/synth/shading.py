"""A few random coloured lights and ambient light (face_pass.py and attacks.py shade with them: Lambert
+ Blinn-Phong specular + ambient)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Lighting:
    directions: np.ndarray  # (L, 3) unit vectors towards the lights, camera frame
    colours: np.ndarray  # (L, 3) linear RGB intensities
    ambient: np.ndarray  # (3,)


def sample_lighting(rng: np.random.Generator) -> Lighting:
    n = int(rng.integers(1, 4))
    # Lights come from the camera's side of the face (Z < 0), mostly from above (Y < 0).
    d = np.stack([rng.normal(0, 0.7, n), rng.normal(-0.4, 0.5, n), -np.abs(rng.normal(1.0, 0.4, n))], 1)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    temperature = rng.uniform(-0.15, 0.15, n)[:, None] * np.array([1.0, 0.0, -1.0])
    colours = (1.0 + temperature) * rng.uniform(0.3, 1.0, (n, 1))
    colours[0] *= 1.3  # a key light
    ambient = rng.uniform(0.08, 0.35) * (1 + rng.uniform(-0.1, 0.1, 3))
    return Lighting(d.astype(np.float32), colours.astype(np.float32), ambient.astype(np.float32))
