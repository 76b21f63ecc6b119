"""`make_albedo`: one identity's texture, painted over the atlas in a fixed order (the order of the
rng draws is part of the dataset: keep it).

Low-frequency colour (skin mottling, flushed cheeks and nose, dark circles) is a function of the 3D
position evaluated on a 1/4-resolution position map, so it is continuous across UV seams; only
texel-scale detail (pores, hair strands, freckles) is UV noise, whose statistics match across a seam.
"""

from __future__ import annotations

import cv2
import numba
import numpy as np

from train.synth.albedo.appearance import Appearance
from train.synth.albedo.atlas import _Atlas, _atlas, _Noise
from train.synth.albedo.eyes import _eye_colour
from train.synth.albedo.hair import _paint_hair


def make_albedo(app: Appearance, rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """The (size, size, 3) float32 linear-RGB albedo texture of `app` on the hm08 UV layout."""
    atlas = _atlas(size)
    noise = _Noise(atlas, rng)
    tex = cv2.resize(np.exp(_low_frequency(app, atlas, rng)), (size, size), interpolation=cv2.INTER_LINEAR)
    _k_pores(tex, noise("fine", (slice(0, size), slice(0, size))), np.float32(rng.uniform(0.02, 0.05)))
    _paint_face(app, atlas, noise, tex)
    _paint_eye_region(app, atlas, noise, tex)
    _paint_hair(app, atlas, noise, tex)
    _paint_inside(app, atlas, rng, tex)
    return np.clip(tex, 0.0, 1.0, out=tex)


def _low_frequency(app: Appearance, atlas: _Atlas, rng: np.random.Generator) -> np.ndarray:
    """Log-albedo at 1/4 resolution: 3D-coherent mottling (a sum of random plane waves of the head-frame
    position, so it is continuous across UV seams) plus the region fields."""
    k = 12
    dirs = rng.standard_normal((3, k)).astype(np.float32)
    dirs /= np.linalg.norm(dirs, axis=0, keepdims=True)
    wavelength = np.exp(rng.uniform(np.log(18.0), np.log(140.0), k)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, k).astype(np.float32)
    waves = np.cos(atlas.low_pos @ (dirs * (2 * np.pi / wavelength)) + phase)
    amp = np.sqrt(wavelength / 140.0) * (2.0 / np.sqrt(k))
    colour = rng.uniform(0.025, 0.06) * np.ones((k, 3))  # lightness, and blotchy redness / pigment:
    colour += rng.normal(0, 0.018, (k, 3)) * np.array([1.0, 0.6, 0.4])
    dark = 0.8 if app.fitzpatrick <= 3 else 1.3
    w = np.array([
        app.redness * np.array([0.1, -0.16, -0.1]) + np.array([0.03, -0.05, -0.03]),
        app.dark_circles * dark * np.array([-0.22, -0.3, -0.24]),
        np.array([0.05, 0.06, 0.07]),
    ], np.float32)
    mod = atlas.low_fields @ w
    mod += np.log(np.maximum(np.asarray(app.skin_rgb, np.float32), 1e-4))
    flat = mod.reshape(-1, 3)
    flat[atlas.low_idx] += waves @ (amp[:, None] * colour).astype(np.float32)
    return mod


def _paint_face(app: Appearance, atlas: _Atlas, noise: _Noise, tex: np.ndarray) -> None:
    skin = np.asarray(app.skin_rgb, np.float32)
    for c in atlas.crops["face"]:
        t = tex[c.sl]
        if app.freckles > 0:
            spots = _ramp(noise("spot", c.sl), 2.3 - 1.1 * app.freckles, 3.0 - 1.1 * app.freckles)
            spots *= c.f["freck"] * np.float32(0.5 * app.freckles + 0.2)
            _blend(t, spots, skin * np.array([0.6, 0.45, 0.35], np.float32))
        if app.age_spots > 0:
            spots = _ramp(noise("blotch", c.sl), 2.6 - 0.8 * app.age_spots, 3.2 - 0.8 * app.age_spots)
            spots *= c.f["freck"] * np.float32(0.35)
            _blend(t, spots, skin * np.array([0.62, 0.5, 0.4], np.float32))
        if app.blush > 0:
            blush = np.asarray(app.blush_rgb, np.float32) * skin.mean() * 1.3
            _blend(t, c.f["cheek"] * np.float32(app.blush), blush)
    for c in atlas.crops["lips"]:
        t = tex[c.sl]
        lines = np.clip(noise("streak_u", c.sl), -1.5, 1.5) * np.float32(0.12) + np.float32(1.0)
        _blend(t, c.f["a"], np.asarray(app.lip_rgb, np.float32) * lines[..., None])
        if app.lipstick > 0:
            _blend(t, _ramp(c.f["a"], 0.2, 0.6) * np.float32(app.lipstick), app.lipstick_rgb)


def _paint_eye_region(app: Appearance, atlas: _Atlas, noise: _Noise, tex: np.ndarray) -> None:
    brow = np.asarray(app.brow_rgb, np.float32)
    lash_rgb = np.minimum(brow, 0.04) * 0.6
    for c in atlas.crops["eyes"]:
        t = tex[c.sl]
        f = c.f
        if app.eyeshadow > 0:
            _blend(t, f["lid"] * np.float32(app.eyeshadow), app.eyeshadow_rgb)
        lash = _ramp(f["du"], 2.6 + 2.0 * app.eyeliner, 0.8) * np.float32(0.9)
        lash += _ramp(f["dl"], 2.0, 0.5) * np.float32(0.35)
        _blend(t, np.minimum(lash, 0.92), lash_rgb)
        # Brow: a band around an arched centreline, thinning towards the tail, made of streaky strands.
        tb = np.clip(f["t"], 0, 1)
        centre = 15.0 + app.brow_shift + app.brow_arch * np.sin(np.pi * tb**0.85)
        half = app.brow_thickness * (1.0 - 0.5 * tb)
        dist = np.abs(f["y"] - centre + 0.5 * noise("blotch", c.sl)) - half
        ends = _ramp(f["t"], -0.04, 0.1) * _ramp(f["t"], 1.05, 0.85)
        strands = np.clip(noise("streak_v", c.sl) * 0.35 + 0.7, 0, 1)
        alpha = _ramp(dist, 1.0, -1.0) * ends * strands * np.float32(app.brow_density) * f["on"]
        _blend(t, alpha, brow)


def _paint_inside(app: Appearance, atlas: _Atlas, rng: np.random.Generator, tex: np.ndarray) -> None:
    """Eyeballs, the eye cavities' rims, teeth, tongue and the inside of the mouth."""
    for c in atlas.crops["eyeball"]:
        h, w, n = c.f["r"].shape
        col = _eye_colour(app, c.f["r"].reshape(-1, n), c.f["fibres"].reshape(-1, n)).reshape(h, w, 3)
        _blend(tex[c.sl], c.f["a"], col)
    skin = np.asarray(app.skin_rgb, np.float32)
    cav = np.stack([skin * np.array([0.95, 0.55, 0.55]), skin * np.array([0.3, 0.1, 0.1]),
                    np.minimum(np.asarray(app.brow_rgb), 0.04) * 0.6]).astype(np.float32)
    for c in atlas.crops["cavity"]:
        t = tex[c.sl]
        t *= (1.0 - c.f["a"])[..., None]
        t += (c.f["w"].reshape(-1, 3) @ cav).reshape(t.shape)
    # Darker than in daylight: the renderer has no ambient occlusion inside the mouth.
    teeth = np.array([0.5, 0.45, 0.35]) * rng.uniform(0.75, 1.0) * (1 - 0.003 * max(app.age - 20, 0))
    tongue = np.array([0.24, 0.06, 0.06]) * rng.uniform(0.7, 1.1)
    deep = np.array([0.06, 0.012, 0.012])
    cols = np.stack([teeth, tongue, np.asarray(app.lip_rgb), deep]).astype(np.float32)
    for c in atlas.crops["mouth"]:
        t = tex[c.sl]
        t *= c.f["keep"][..., None]
        t += (c.f["w"].reshape(-1, 4) @ cols).reshape(t.shape)


def _ramp(x: np.ndarray, e0: float, e1: float) -> np.ndarray:
    """Linear 0 → 1 ramp from e0 to e1 (either order), as a new float32 array."""
    k = 1.0 / (e1 - e0)
    r = x * np.float32(k)
    r += np.float32(-e0 * k)
    return np.clip(r, 0.0, 1.0, out=r)


def _blend(dst: np.ndarray, alpha: np.ndarray, colour) -> None:
    """dst += alpha * (colour - dst), in place; colour (3,) or (h, w, 3)."""
    diff = np.asarray(colour, np.float32) - dst
    diff *= alpha[..., None]
    dst += diff


# Per-texel compositing kernel (numba): one pass instead of a dozen numpy temporaries.


@numba.njit(cache=True, nogil=True, fastmath=True)
def _k_pores(tex, fine, amp):
    h, w = fine.shape
    for i in range(h):
        for j in range(w):
            g = 1.0 + amp * fine[i, j]
            for k in range(3):
                tex[i, j, k] *= g
