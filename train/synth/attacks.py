"""Presentation attacks: a face photo printed on paper or shown on a screen, held up to the camera.

The medium is a real 3D surface (a flat or bent sheet, a flat screen inside its bezel) rasterised like
the head, so its depth is the exact geometry of the paper or glass: nearly flat, which is what the
liveness decision relies on. The shown face's mask and landmarks are carried through the medium's
texture coordinates, so an attack sample is labelled like a bona fide one.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numba
import numpy as np

from train.synth.background import value_noise
from train.synth.camera import Camera, rotation_ypr
from train.synth.face_pass import phong_lobe
from train.synth.raster import project, rasterize_window
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
    radiance: np.ndarray  # (H, W, 3) float32 linear: the canvas drawn into (else black around the medium)
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
    photo: Photo,
    medium: Medium,
    camera: Camera,
    lighting: Lighting,
    rng: np.random.Generator,
    canvas: np.ndarray | None = None,
) -> AttackLayer:
    """The medium showing the photo, rendered into `canvas` (H, W, 3) float32 linear RGB in place (a
    black frame if None)."""
    rot, centre, ypr = place_medium(medium, camera, rng)
    g = np.linspace(0.0, 1.0, GRID)
    uv = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    pts = medium_points(medium, uv) @ rot.T + centre
    idx = np.arange(GRID * GRID).reshape(GRID, GRID)
    a, b, c, d = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    tris = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)]).astype(np.int32)
    window = rasterize_window(pts, tris, camera.K, camera.hw)

    texture, tex_mask = _medium_texture(photo, medium, rng)
    normals = np.cross(pts[tris[:, 1]] - pts[tris[:, 0]], pts[tris[:, 2]] - pts[tris[:, 0]])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    # Screens glow (and their glass reflects); prints reflect, with a little paper glare.
    emission = rng.uniform(0.6, 1.2) if medium.emissive else 0.0
    gloss = rng.uniform(0.05, 0.4) if medium.emissive else rng.uniform(0.0, 0.25)
    shininess = np.array([rng.uniform(20, 200) for _ in lighting.directions], np.float32)
    radiance = np.zeros((*camera.hw, 3), np.float32) if canvas is None else canvas
    depth = np.zeros(camera.hw, np.float32)
    mask = np.zeros(camera.hw, np.uint8)
    _medium_pass(
        window.y0, window.x0, window.zbuf_inv, window.tri, window.bary,
        tris, pts.astype(np.float32), uv.astype(np.float32), normals.astype(np.float32),
        texture, tex_mask, np.float32(emission), np.float32(gloss), shininess,
        lighting.directions, lighting.colours, lighting.ambient, radiance, depth, mask,
    )  # fmt: skip

    lm_uv = _photo_to_medium_uv(photo.landmarks_2d, photo.rgb.shape[:2], medium)
    lm3 = medium_points(medium, lm_uv) @ rot.T + centre
    lm2 = project(lm3, camera.K)
    inside = (lm2[:, 0] >= 0) & (lm2[:, 0] < camera.hw[1]) & (lm2[:, 1] >= 0) & (lm2[:, 1] < camera.hw[0])
    return AttackLayer(
        radiance,
        depth,
        mask,
        lm2.astype(np.float32),
        lm3.astype(np.float32),
        photo.landmarks_visible & inside,
        ypr.astype(np.float32),
    )


@numba.njit(cache=True, nogil=True, fastmath=True)
def _medium_pass(
    y0, x0, zbuf_inv, tri_win, bary_win, tris, points, uv, normals, texture, tex_mask,
    emission, gloss, shininess, light_dirs, light_colours, ambient, radiance, depth, mask,
):
    """Per covered pixel of the window: the medium's texel (bilinear colour, nearest face label) lit
    (prints: ambient + Lambert; screens: emission) plus a specular glare per light; depth and label."""
    th, tw = tex_mask.shape
    colour = np.empty(3, np.float32)
    for wy in range(tri_win.shape[0]):
        y = wy + y0
        for wx in range(tri_win.shape[1]):
            t = tri_win[wy, wx]
            if t < 0:
                continue
            x = wx + x0
            b0, b1, b2 = bary_win[wy, wx, 0], bary_win[wy, wx, 1], bary_win[wy, wx, 2]
            i0, i1, i2 = tris[t, 0], tris[t, 1], tris[t, 2]
            tx = (b0 * uv[i0, 0] + b1 * uv[i1, 0] + b2 * uv[i2, 0]) * (tw - 1)
            ty = (b0 * uv[i0, 1] + b1 * uv[i1, 1] + b2 * uv[i2, 1]) * (th - 1)
            tx, ty = min(max(tx, 0.0), tw - 1.0), min(max(ty, 0.0), th - 1.0)
            xa, ya = int(tx), int(ty)
            xb, yb = min(xa + 1, tw - 1), min(ya + 1, th - 1)
            ax, ay = tx - xa, ty - ya
            for c in range(3):
                top = texture[ya, xa, c] * (1 - ax) + texture[ya, xb, c] * ax
                colour[c] = top * (1 - ay) + (texture[yb, xa, c] * (1 - ax) + texture[yb, xb, c] * ax) * ay
            shown = tex_mask[min(int(ty + 0.5), th - 1), min(int(tx + 0.5), tw - 1)]
            depth[y, x] = np.float32(1.0 / zbuf_inv[wy, wx])
            mask[y, x] = MASK_FACE if shown == MASK_FACE else MASK_HEAD
            px = b0 * points[i0, 0] + b1 * points[i1, 0] + b2 * points[i2, 0]
            py = b0 * points[i0, 1] + b1 * points[i1, 1] + b2 * points[i2, 1]
            pz = b0 * points[i0, 2] + b1 * points[i1, 2] + b2 * points[i2, 2]
            p_len = np.sqrt(px * px + py * py + pz * pz)
            vx, vy, vz = -px / p_len, -py / p_len, -pz / p_len  # towards the camera
            nx, ny, nz = normals[t, 0], normals[t, 1], normals[t, 2]
            if nx * vx + ny * vy + nz * vz < 0:  # the side that faces the camera
                nx, ny, nz = -nx, -ny, -nz
            lit = 0.0 if emission > 0 else 1.0  # screens glow: no diffuse reflection
            base = emission if emission > 0 else 0.0
            out0 = colour[0] * (base + lit * ambient[0])
            out1 = colour[1] * (base + lit * ambient[1])
            out2 = colour[2] * (base + lit * ambient[2])
            for k in range(light_dirs.shape[0]):
                dx, dy, dz = light_dirs[k, 0], light_dirs[k, 1], light_dirs[k, 2]
                lambert = lit * max(nx * dx + ny * dy + nz * dz, 0.0)
                hx, hy, hz = dx + vx, dy + vy, dz + vz
                h_len = max(np.sqrt(hx * hx + hy * hy + hz * hz), 1e-6)
                cos_h = (nx * hx + ny * hy + nz * hz) / h_len
                spec = gloss * phong_lobe(cos_h, shininess[k]) if cos_h > 0.0 else 0.0
                out0 += (colour[0] * lambert + spec) * light_colours[k, 0]
                out1 += (colour[1] * lambert + spec) * light_colours[k, 1]
                out2 += (colour[2] * lambert + spec) * light_colours[k, 2]
            radiance[y, x, 0] = out0
            radiance[y, x, 1] = out1
            radiance[y, x, 2] = out2


def _photo_to_medium_uv(xy: np.ndarray, photo_hw, medium: Medium) -> np.ndarray:
    u0, v0, u1, v1 = medium.content_box
    h, w = photo_hw
    return np.stack([u0 + (xy[:, 0] / w) * (u1 - u0), v0 + (xy[:, 1] / h) * (v1 - v0)], 1)


_SRGB_TO_LINEAR = ((np.arange(256) / 255.0) ** 2.2).astype(np.float32)


def _medium_texture(photo: Photo, medium: Medium, rng: np.random.Generator):
    """The whole medium as an image: paper border or black bezel around the (printed/displayed) photo."""
    long_side = 640
    scale = long_side / max(medium.width_mm, medium.height_mm)
    tw, th = max(int(medium.width_mm * scale), 8), max(int(medium.height_mm * scale), 8)
    surround = (
        rng.uniform(0.75, 0.95) * np.ones(3) if not medium.emissive else rng.uniform(0.0, 0.04) * np.ones(3)
    )
    tex = np.empty((th, tw, 3), np.float32)
    tex[:] = surround.astype(np.float32)
    tmask = np.zeros((th, tw), np.uint8)
    u0, v0, u1, v1 = medium.content_box
    x0, y0, x1, y1 = (
        int(u0 * tw),
        int(v0 * th),
        max(int(u1 * tw), int(u0 * tw) + 1),
        max(int(v1 * th), int(v0 * th) + 1),
    )
    # Resized as the device would show or print it, then back to linear light through a table.
    shown = cv2.resize(photo.rgb, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA)
    tmask[y0:y1, x0:x1] = cv2.resize(photo.mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    if medium.emissive:
        _screen_artifacts(tex, shown, (x0, y0, x1, y1), rng)
    else:
        tex[y0:y1, x0:x1] = cv2.LUT(shown, _SRGB_TO_LINEAR)
        tex = _print_artifacts(tex, rng)
    return np.ascontiguousarray(tex, np.float32), tmask


def _plane_wave(h: int, w: int, angle: float, period: float) -> np.ndarray:
    """cos(2π (x cos a + y sin a) / period) on an (h, w) grid, from 1-D tables (cos(A + B) expanded)."""
    kx, ky = 2 * np.pi * np.cos(angle) / period, 2 * np.pi * np.sin(angle) / period
    xs, ys = np.arange(w, dtype=np.float32) * kx, np.arange(h, dtype=np.float32)[:, None] * ky
    return np.cos(ys) * np.cos(xs) - np.sin(ys) * np.sin(xs)


def _print_artifacts(tex: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Ink gamut (lower contrast, colour cast), halftone dots and paper grain (in place)."""
    h, w = tex.shape[:2]
    gains = (rng.uniform(0.75, 0.92) * np.exp(rng.normal(0, 0.05, 3))).astype(np.float32)
    waves, strength = np.zeros((2, 4, max(h, w)), np.float32), 0.0
    if rng.random() < 0.6:
        pitch = rng.uniform(2.0, 4.0)
        angle = np.radians(rng.uniform(0, 45))
        waves = np.stack([_wave_tables(h, w, a, pitch) for a in (angle, angle + np.pi / 2)])
        strength = rng.uniform(0.1, 0.3)
    grain = value_noise(rng, (h, w), int(rng.integers(40, 120)), 2)
    _k_print(tex, gains, waves, np.float32(strength), grain)
    return tex


def _wave_tables(h: int, w: int, angle: float, period: float) -> np.ndarray:
    """(4, max(h, w)) float32: cos and sin of 2π t cos(a) / period, then of 2π t sin(a) / period, so
    that the plane wave cos(2π (x cos a + y sin a) / period) = cos_y cos_x - sin_y sin_x."""
    kx, ky = 2 * np.pi * np.cos(angle) / period, 2 * np.pi * np.sin(angle) / period
    t = np.arange(max(h, w), dtype=np.float64)
    return np.stack([np.cos(t * kx), np.sin(t * kx), np.cos(t * ky), np.sin(t * ky)]).astype(np.float32)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _k_print(tex, gains, waves, strength, grain):
    """Per texel: ink gamut (gains, 0.06 floor), halftone dots (the product of two crossed plane waves,
    from their 1-D tables), paper grain; clipped to [0, 1]."""
    for y in range(tex.shape[0]):
        for x in range(tex.shape[1]):
            dots = np.float32(1.0)
            for k in range(2):
                dots *= waves[k, 2, y] * waves[k, 0, x] - waves[k, 3, y] * waves[k, 1, x]
            f = (1 - strength * (0.5 + 0.5 * dots)) * (1 + np.float32(0.04) * grain[y, x])
            for c in range(3):
                tex[y, x, c] = min(max((tex[y, x, c] * gains[c] + np.float32(0.06)) * f, 0.0), 1.0)


def _screen_artifacts(tex: np.ndarray, shown: np.ndarray, box, rng: np.random.Generator) -> None:
    """Display gamma and brightness, sub-pixel grid, and a moire beat pattern over the image area of tex
    (in place); shown is the uint8 sRGB picture."""
    x0, y0, x1, y1 = box
    gamma, gain = rng.uniform(0.8, 1.25), rng.uniform(0.8, 1.5)
    area = cv2.LUT(shown, (_SRGB_TO_LINEAR**gamma * gain).astype(np.float32))
    h, w = area.shape[:2]
    period = rng.uniform(3.0, 12.0)
    angle = rng.uniform(0, np.pi)
    grid = np.where(np.arange(w) % 3 == 0, 0.92, 1.0).astype(np.float32)  # sub-pixel columns
    area *= ((1 + rng.uniform(0.03, 0.12) * _plane_wave(h, w, angle, period)) * grid)[..., None]
    tex[y0:y1, x0:x1] = np.minimum(area, 2.0)
    np.clip(tex, 0, 2.0, out=tex)


def draw_fingers(radiance: np.ndarray, depth: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> None:
    """Thumbs and fingers over the medium's edge (unlabelled: they are not part of the medium)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return
    y0, y1, x0, x1 = rows[0], rows[-1], cols[0], cols[-1]
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
    bx, by, bw, bh = cv2.boundingRect(canvas)  # touch only the fingers' box of the frame
    box = slice(by, by + bh), slice(bx, bx + bw)
    finger = canvas[box].view(bool)
    radiance[box][finger] = skin * rng.uniform(0.3, 1.0)
    depth[box][finger] = 0
    mask[box][finger] = 0
