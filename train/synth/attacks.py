"""Presentation attacks: a face photo printed on paper or shown on a screen, held up to the camera.

The medium is a real 3D surface (a flat or bent sheet, a flat screen inside its bezel) rasterised like
the head, so its depth is the exact geometry of the paper or glass: nearly flat, which is what the
liveness decision relies on. The shown face's mask and landmarks are carried through the medium's
texture coordinates, so an attack sample is labelled like a bona fide one.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from train.synth.background import value_noise
from train.synth.camera import Camera, rotation_ypr
from train.synth.raster import interpolate, project, rasterize, sample_texture
from train.synth.sample import MASK_FACE, MASK_HEAD
from train.synth.shading import Lighting

GRID = 24  # vertices per side of the medium's mesh; enough for a smooth bend


@dataclass(frozen=True)
class Medium:
    kind: str  # one of sample.ATTACK_TYPES
    width_mm: float
    height_mm: float
    content_box: tuple[float, float, float, float]  # u0, v0, u1, v1 of the photo inside border/bezel
    bend_radius_mm: float  # 0 = flat; signed: > 0 bends the sides towards the camera
    emissive: bool  # screens glow; prints reflect


@dataclass(frozen=True)
class Photo:
    """What the medium shows: an RGB image with its face mask and landmarks (pixel coordinates)."""

    rgb: np.ndarray  # (h, w, 3) uint8
    mask: np.ndarray  # (h, w) uint8 MASK_*
    landmarks_2d: np.ndarray  # (68, 2)
    landmarks_visible: np.ndarray  # (68,)


_SCREENS = {  # kind: (width, height, bezel) mm, portrait orientation
    "replay_phone": (68.0, 145.0, 4.0),
    "replay_tablet": (150.0, 205.0, 10.0),
    "replay_monitor": (300.0, 480.0, 18.0),
}


def sample_medium(kind: str, photo_aspect: float, rng: np.random.Generator) -> Medium:
    """photo_aspect = photo width / height."""
    if kind in _SCREENS:
        w, h, bezel = _SCREENS[kind]
        if kind == "replay_monitor" and rng.random() < 0.7:
            w, h = h, w  # monitors are mostly landscape
        box = _fit_box(w - 2 * bezel, h - 2 * bezel, photo_aspect, bezel / w, bezel / h, fill=True)
        return Medium(kind, w, h, box, 0.0, True)
    w = rng.uniform(90.0, 210.0)
    h = w * rng.uniform(1.2, 1.5)
    margin = rng.uniform(0.0, 0.12)
    box = _fit_box(w * (1 - 2 * margin), h * (1 - 2 * margin), photo_aspect, margin, margin, fill=False)
    radius = 0.0 if kind == "print_flat" else float(rng.choice([-1, 1]) * rng.uniform(120.0, 500.0))
    return Medium(kind, w, h, box, radius, False)


def _fit_box(avail_w, avail_h, aspect, u_margin, v_margin, fill: bool):
    """Content rectangle in medium UV: the photo scaled to fit (letterboxed) inside the margins."""
    if avail_w / avail_h > aspect:
        cw, ch = avail_h * aspect, avail_h
    else:
        cw, ch = avail_w, avail_w / aspect
    full_w, full_h = avail_w / (1 - 2 * u_margin), avail_h / (1 - 2 * v_margin)
    u_pad = (1 - cw / full_w) / 2
    v_pad = (1 - ch / full_h) / 2
    return (u_pad, v_pad, 1 - u_pad, 1 - v_pad)


def medium_points(medium: Medium, uv: np.ndarray) -> np.ndarray:
    """Medium-local 3D points (mm) for texture coordinates uv (N, 2); x right, y down, z away."""
    x = (uv[:, 0] - 0.5) * medium.width_mm
    y = (uv[:, 1] - 0.5) * medium.height_mm
    if medium.bend_radius_mm == 0.0:
        return np.stack([x, y, np.zeros_like(x)], 1)
    r = medium.bend_radius_mm
    theta = x / abs(r)  # arc length along the sheet is preserved
    return np.stack([abs(r) * np.sin(theta), y, -np.sign(r) * abs(r) * (1 - np.cos(theta))], 1)


@dataclass(frozen=True)
class AttackLayer:
    radiance: np.ndarray  # (H, W, 3) float32 linear
    depth: np.ndarray
    mask: np.ndarray
    landmarks_2d: np.ndarray
    landmarks_3d: np.ndarray
    landmarks_visible: np.ndarray
    pose_deg: np.ndarray  # the medium's yaw, pitch, roll


def place_medium(medium: Medium, camera: Camera, rng: np.random.Generator):
    """Rotation and centre so that the medium fills 50-100% of the frame height, near the centre."""
    h, w = camera.hw
    f = camera.K[0, 0]
    frac = rng.uniform(0.5, 1.0)
    dist = f * max(medium.height_mm / (frac * h), medium.width_mm / (0.95 * w))
    dist = float(np.clip(dist, 150.0, 1500.0))
    ypr = np.array([rng.uniform(-25, 25), rng.uniform(-20, 20), rng.uniform(-15, 15)])
    centre_px = np.array([w / 2 + rng.normal(0, 0.08 * w), h / 2 + rng.normal(0, 0.08 * h)])
    centre = np.array(
        [(centre_px[0] - camera.K[0, 2]) / f, (centre_px[1] - camera.K[1, 2]) / camera.K[1, 1], 1.0]
    )
    return rotation_ypr(*ypr), centre * dist, ypr


def render_attack(
    photo: Photo, medium: Medium, camera: Camera, lighting: Lighting, rng: np.random.Generator
) -> AttackLayer:
    rot, centre, ypr = place_medium(medium, camera, rng)
    g = np.linspace(0.0, 1.0, GRID)
    uv = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    pts = medium_points(medium, uv) @ rot.T + centre
    idx = np.arange(GRID * GRID).reshape(GRID, GRID)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    tris = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]).astype(np.int32)
    raster = rasterize(pts, tris, camera.K, camera.hw)
    hit = raster.covered
    pix_uv = interpolate(raster, uv[tris].astype(np.float32))[hit]

    texture, tex_mask = _medium_texture(photo, medium, rng)
    th, tw = tex_mask.shape
    mx, my = (pix_uv[:, 0] * (tw - 1)).astype(np.float32), (pix_uv[:, 1] * (th - 1)).astype(np.float32)
    colour = sample_texture(texture, mx, my, cv2.INTER_LINEAR, cv2.BORDER_REPLICATE)
    shown_mask = sample_texture(tex_mask, mx, my, cv2.INTER_NEAREST, cv2.BORDER_REPLICATE)[:, 0]

    normals = np.cross(pts[tris[:, 1]] - pts[tris[:, 0]], pts[tris[:, 2]] - pts[tris[:, 0]])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    n = normals[raster.tri[hit]]
    n *= -np.sign(np.sum(n * interpolate(raster, pts[tris].astype(np.float32))[hit], axis=1, keepdims=True))
    points = interpolate(raster, pts[tris].astype(np.float32))[hit]
    radiance = np.zeros((*camera.hw, 3), np.float32)
    radiance[hit] = _medium_radiance(colour, n, points, medium, lighting, rng)

    mask = np.zeros(camera.hw, np.uint8)
    mask[hit] = np.where(shown_mask == MASK_FACE, MASK_FACE, MASK_HEAD)
    lm_uv = _photo_to_medium_uv(photo.landmarks_2d, photo.rgb.shape[:2], medium)
    lm3 = medium_points(medium, lm_uv) @ rot.T + centre
    lm2 = project(lm3, camera.K)
    inside = (lm2[:, 0] >= 0) & (lm2[:, 0] < camera.hw[1]) & (lm2[:, 1] >= 0) & (lm2[:, 1] < camera.hw[0])
    return AttackLayer(
        radiance,
        raster.depth,
        mask,
        lm2.astype(np.float32),
        lm3.astype(np.float32),
        photo.landmarks_visible & inside,
        ypr.astype(np.float32),
    )


def _photo_to_medium_uv(xy: np.ndarray, photo_hw, medium: Medium) -> np.ndarray:
    u0, v0, u1, v1 = medium.content_box
    h, w = photo_hw
    return np.stack([u0 + (xy[:, 0] / w) * (u1 - u0), v0 + (xy[:, 1] / h) * (v1 - v0)], 1)


def _medium_texture(photo: Photo, medium: Medium, rng: np.random.Generator):
    """The whole medium as an image: paper border or black bezel around the (printed/displayed) photo."""
    long_side = 640
    scale = long_side / max(medium.width_mm, medium.height_mm)
    tw, th = max(int(medium.width_mm * scale), 8), max(int(medium.height_mm * scale), 8)
    surround = (
        rng.uniform(0.75, 0.95) * np.ones(3) if not medium.emissive else rng.uniform(0.0, 0.04) * np.ones(3)
    )
    tex = np.ones((th, tw, 3), np.float32) * surround.astype(np.float32)
    tmask = np.zeros((th, tw), np.uint8)
    u0, v0, u1, v1 = medium.content_box
    x0, y0, x1, y1 = (
        int(u0 * tw),
        int(v0 * th),
        max(int(u1 * tw), int(u0 * tw) + 1),
        max(int(v1 * th), int(v0 * th) + 1),
    )
    content = (photo.rgb.astype(np.float32) / 255.0) ** 2.2  # back to linear light
    tex[y0:y1, x0:x1] = cv2.resize(content, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    tmask[y0:y1, x0:x1] = cv2.resize(photo.mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    if medium.emissive:
        tex = _screen_artifacts(tex, (x0, y0, x1, y1), rng)
    else:
        tex = _print_artifacts(tex, rng)
    return np.ascontiguousarray(tex, np.float32), tmask


def _print_artifacts(tex: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ink gamut (lower contrast, colour cast), halftone dots and paper grain."""
    h, w = tex.shape[:2]
    tex = 0.06 + tex * rng.uniform(0.75, 0.92) * np.exp(rng.normal(0, 0.05, 3)).astype(np.float32)
    if rng.random() < 0.6:
        pitch = rng.uniform(2.0, 4.0)
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        angle = np.radians(rng.uniform(0, 45))
        xr, yr = xx * np.cos(angle) + yy * np.sin(angle), -xx * np.sin(angle) + yy * np.cos(angle)
        dots = 0.5 + 0.5 * np.cos(2 * np.pi * xr / pitch) * np.cos(2 * np.pi * yr / pitch)
        tex = tex * (1 - rng.uniform(0.1, 0.3) * dots[..., None])
    grain = value_noise(rng, (h, w), int(rng.integers(40, 120)), 2)
    return np.clip(tex * (1 + 0.04 * grain[..., None]), 0, 1)


def _screen_artifacts(tex: np.ndarray, box, rng: np.random.Generator) -> np.ndarray:
    """Display gamma and brightness, sub-pixel grid, and a moire beat pattern over the image area."""
    x0, y0, x1, y1 = box
    area = tex[y0:y1, x0:x1]
    area = area ** rng.uniform(0.8, 1.25) * rng.uniform(0.8, 1.5)
    h, w = area.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    period = rng.uniform(3.0, 12.0)
    angle = rng.uniform(0, np.pi)
    moire = np.cos(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    area = area * (1 + rng.uniform(0.03, 0.12) * moire[..., None])
    grid = 1 - 0.08 * ((xx.astype(int) % 3) == 0)[..., None]
    tex[y0:y1, x0:x1] = area * grid
    return np.clip(tex, 0, 2.0)


def _medium_radiance(colour, normals, points, medium: Medium, lighting: Lighting, rng) -> np.ndarray:
    view = -points / np.linalg.norm(points, axis=1, keepdims=True)
    out = colour * lighting.ambient if not medium.emissive else colour * rng.uniform(0.6, 1.2)
    gloss = rng.uniform(0.05, 0.4) if medium.emissive else rng.uniform(0.0, 0.25)  # glass vs. paper glare
    for d, c in zip(lighting.directions, lighting.colours):
        lambert = np.clip(normals @ d, 0, None)
        if not medium.emissive:
            out = out + colour * lambert[:, None] * c
        half = (d + view) / np.linalg.norm(d + view, axis=1, keepdims=True)
        spec = np.clip(np.sum(normals * half, axis=1), 0, None) ** rng.uniform(20, 200)
        out = out + gloss * spec[:, None] * c
    return out.astype(np.float32)


def draw_fingers(radiance: np.ndarray, depth: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> None:
    """Thumbs and fingers over the medium's edge (unlabelled: they are not part of the medium)."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    skin = (np.array([0.6, 0.4, 0.3]) * rng.uniform(0.2, 1.0)).astype(np.float32)
    size = max(int(0.06 * (x1 - x0)), 3)
    canvas = np.zeros(mask.shape, np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        side = rng.integers(0, 4)
        t = rng.uniform(0.2, 0.8)
        cx = int(x0 + t * (x1 - x0)) if side < 2 else (x0 if side == 2 else x1)
        cy = (y0 if side == 0 else y1) if side < 2 else int(y0 + t * (y1 - y0))
        axes = (
            (size, int(size * rng.uniform(1.5, 2.5)))
            if side < 2
            else (int(size * rng.uniform(1.5, 2.5)), size)
        )
        cv2.ellipse(canvas, (int(cx), int(cy)), axes, float(rng.uniform(-20, 20)), 0, 360, 1, -1)
    finger = canvas.astype(bool)
    radiance[finger] = skin * rng.uniform(0.3, 1.0)
    depth[finger] = 0
    mask[finger] = 0
