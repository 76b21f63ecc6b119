"""Screen-space occluders drawn over a rendered face: glasses frames and hair fringes.

They follow the 68 iBUG landmarks and take their colours from the identity's `Appearance`, scaled by the
light level measured on the face, so they sit in the scene's lighting.
"""

from __future__ import annotations

import cv2
import numpy as np

from train.synth.albedo import Appearance, linear_to_srgb, luminance

# Probability that a frame shows the identity's occluders (glasses can be off, the fringe pushed aside).
OCCLUDER_PROBABILITY = 0.85


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(np.float32)


def draw_occluders(app: Appearance, rgb: np.ndarray, landmarks_2d: np.ndarray, landmarks_visible: np.ndarray,
                   rng: np.random.Generator, in_place: bool = False) -> np.ndarray:
    """Draw the identity's hair fringe and glasses over a rendered frame, from its 68 iBUG landmarks.

    rgb: (H, W, 3) float linear RGB (radiance), or uint8 sRGB. Returns a new array of the same dtype; only
    pixels under the fringe (forehead) or the glasses (around the eyes, bridge, temples to the ears) change.
    in_place draws into a float32 rgb itself (and returns it) instead of a copy.
    Occluder colours are the appearance's albedos times the light level measured on the face's skin.
    """
    lm = np.asarray(landmarks_2d, np.float64) - 0.5  # pixel centres at +0.5 → cv2's integer grid
    vis = np.asarray(landmarks_visible, bool)
    uint8 = rgb.dtype == np.uint8
    in_place = in_place and rgb.dtype == np.float32
    if (not app.fringe and app.glasses == "none") or lm.shape != (68, 2) or not np.isfinite(lm).all():
        return rgb if in_place else rgb.copy()
    lin = srgb_to_linear(rgb / np.float32(255.0)) if uint8 else rgb.astype(np.float32, copy=not in_place)
    before = lin.copy() if uint8 else None
    light = _light_level(app, lin, lm)
    if app.fringe:
        _draw_fringe(app, lin, lm, rng, light)
    if app.glasses != "none":
        _draw_glasses(app, lin, lm, vis, rng, light)
    if not uint8:
        return lin.astype(rgb.dtype, copy=False)
    out = rgb.copy()
    changed = np.any(lin != before, axis=-1)
    out[changed] = np.clip(linear_to_srgb(lin[changed]) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return out


def _light_level(app: Appearance, lin: np.ndarray, lm: np.ndarray) -> float:
    """Radiance / albedo of the skin: median luminance of small patches on the nose and both cheeks."""
    h, w = lin.shape[:2]
    iod = max(float(np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0))), 4.0)
    r = max(int(0.08 * iod), 1)
    values = []
    for p in (lm[29], (lm[2] + lm[31]) / 2, (lm[14] + lm[35]) / 2):
        x, y = int(round(p[0])), int(round(p[1]))
        patch = lin[max(y - r, 0): min(y + r + 1, h), max(x - r, 0): min(x + r + 1, w)]
        if patch.size:
            values.append(luminance(patch.reshape(-1, 3)))
    if not values:
        return 1.0
    level = float(np.median(np.concatenate(values))) / max(float(luminance(np.asarray(app.skin_rgb))), 1e-3)
    return float(np.clip(level, 0.05, 5.0))


def _box_of(points: np.ndarray, hw, pad: int) -> tuple[slice, slice] | None:
    h, w = hw
    x0, y0 = np.floor(points.min(0)).astype(int) - pad
    x1, y1 = np.ceil(points.max(0)).astype(int) + pad + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 <= x0 or y1 <= y0:
        return None
    return slice(y0, y1), slice(x0, x1)


def _face_frame(lm: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Inter-ocular distance (px), unit image vectors along the eyes' line (subject's right → left eye)
    and up the face."""
    iod = float(np.linalg.norm(lm[36:42].mean(0) - lm[42:48].mean(0)))
    right = (lm[45] - lm[36]) / max(np.linalg.norm(lm[45] - lm[36]), 1e-6)
    up = np.array([right[1], -right[0]])
    if np.dot(up, lm[17:27].mean(0) - lm[36:48].mean(0)) < 0:
        up = -up
    return iod, right, up


def _draw_fringe(app: Appearance, out: np.ndarray, lm: np.ndarray, rng: np.random.Generator,
                 light: float) -> None:
    """Hair hanging over the forehead: strands from the skull's outline down to a ragged edge above the
    brows, fading out upwards into the rendered scalp."""
    iod, right, up = _face_frame(lm)
    if not np.isfinite(iod) or iod < 4:
        return
    origin = lm[17:27].mean(0)
    # Vertical lengths: the head's pitch from how short the nose (27 → 30) looks against brows → chin
    # (nose ~ (dy, dz) = (-43, 23) mm, brows → chin ~ (-130, -10) mm), then forehead heights in mm
    # projected with it: the forehead leans back, so it shrinks fast when the face tilts up.
    nose, face = (lm[27] - lm[30]) @ up, (origin - lm[8]) @ up
    r = nose / max(face, 1e-6)
    pitch = float(np.clip(np.arctan2(43.0 - 130.0 * r, 23.0 + 10.0 * r), -0.8, 0.8))
    c, s = np.cos(pitch), np.sin(pitch)
    px_mm = max(face / (130.0 * c + 10.0 * s), 0.2 * iod / 62.0)
    fore = px_mm * max(c - 0.3 * s, 0.2)  # px per mm of height on the forehead
    bx, by = (lm[17:27] - origin) @ right, (lm[17:27] - origin) @ up
    jaw = np.sort([(lm[0] - origin) @ right, (lm[16] - origin) @ right])
    x0, x1 = max(bx.min() - 0.3 * iod, jaw[0]), min(bx.max() + 0.3 * iod, jaw[1])
    if x1 - x0 < 0.5 * iod:
        return
    n = 64
    xs = np.linspace(x0, x1, n)
    side = np.linspace(-1, 1, n)
    crown = px_mm * max(80.0 * c - 50.0 * s, 15.0)  # a point between hairline and crown
    top = crown * np.sqrt(np.clip(1.0 - 0.85 * side**2, 0, 1))  # roughly the skull's outline
    order = np.argsort(bx)
    base = np.interp(xs, bx[order], by[order]) + fore * (5.0 + (1.0 - app.fringe_length) * 45.0)
    clump = (x1 - x0) / rng.uniform(4, 9)
    tips = fore * 7.0 * np.abs(np.sin(np.pi * (xs - x0) / clump + rng.uniform(0, np.pi))) ** 0.6
    jag = np.cumsum(rng.normal(0, fore * 2.0, n))
    edge = base + tips + jag - jag.mean() + fore * (18.0 * app.fringe_slant * side + 22.0 * side**4)
    edge = np.minimum(edge, top)

    def to_img(x, y):
        return origin + np.outer(x, right) + np.outer(y, up)

    outline = np.concatenate([to_img(xs, edge), to_img(xs[::-1], top[::-1])])
    box = _box_of(outline, out.shape[:2], 2)
    if box is None:
        return
    corner = np.array([box[1].start, box[0].start], np.float64)
    hb, wb = box[0].stop - box[0].start, box[1].stop - box[1].start

    def fixed(pts):
        return np.round((pts - corner) * 16).astype(np.int32)

    mask = np.zeros((hb, wb), np.uint8)
    cv2.fillPoly(mask, [fixed(outline)], 255, cv2.LINE_AA, shift=4)
    # Strands: thin lines of varied shade, swept to one side.
    shade = np.ones((hb, wb), np.float32)
    thick = max(1, int(round(0.02 * iod)))
    k = int(np.clip((x1 - x0) / max(0.02 * iod, 0.5), 20, 160))
    xa = rng.uniform(x0, x1, k)  # all strands' draws at once: only the drawing is per strand
    xb = xa + app.fringe_slant * 0.5 * iod + rng.normal(0, 0.05 * iod, k)
    grey = rng.uniform(0.55, 1.6, k)
    ya, yb = np.interp(xa, xs, top), np.interp(xb, xs, edge) + 0.02 * iod
    sx = np.stack([xa, (xa + xb) / 2 + 0.05 * iod * app.fringe_slant, xb], 1)
    sy = np.stack([ya, (ya + yb) / 2, yb], 1)
    strands = fixed(origin + sx[..., None] * right + sy[..., None] * up)  # (k, 3, 2)
    for pts, g in zip(strands, grey.tolist()):
        cv2.polylines(shade, [pts], False, g, thick, cv2.LINE_AA, shift=4)
    layer = shade[..., None] * (np.asarray(app.fringe_rgb, np.float32) * np.float32(light))
    alpha = mask.astype(np.float32) / 255.0
    # Fade out towards the top, where the fringe merges into the rendered scalp.
    yy, xx = np.mgrid[0:hb, 0:wb].astype(np.float32)
    rel = np.stack([xx + corner[0] - origin[0], yy + corner[1] - origin[1]], -1)
    height = rel @ up.astype(np.float32)
    across = rel @ right.astype(np.float32)
    alpha *= np.clip((np.interp(across, xs, top) - height) / (fore * 18.0), 0, 1)
    region = out[box]
    region += alpha[..., None] * (layer - region)


def _lens_outline(style: str, a: float, b: float, n: int = 48) -> np.ndarray:
    """Lens rim in lens coordinates (x outwards from the nose, y up), (n, 2)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    if style == "round":
        x, y = a * c, b * s
    else:
        p = 4.0 if style in ("rect", "half", "rimless") else 3.0
        x = a * np.sign(c) * np.abs(c) ** (2 / p)
        y = b * np.sign(s) * np.abs(s) ** (2 / p)
        if style == "cateye":
            y = y + 0.35 * b * np.clip(x / a, 0, 1) ** 2 * (y > 0)
    return np.stack([x, y], 1)


def _draw_glasses(app: Appearance, out: np.ndarray, lm: np.ndarray, vis: np.ndarray, rng: np.random.Generator,
                  light: float) -> None:
    iod, right, up = _face_frame(lm)
    if not np.isfinite(iod) or iod < 4:
        return
    eye_r, eye_l = lm[36:42].mean(0), lm[42:48].mean(0)  # image-left (subject's right), image-right
    width_r = np.linalg.norm(lm[39] - lm[36])
    width_l = np.linalg.norm(lm[45] - lm[42])
    full = max(width_r, width_l, 1e-3)
    thick = max(1, int(round(app.glasses_thickness * iod * (0.4 if app.glasses == "rimless" else 1.0))))
    b = 0.55 * full * (0.85 if app.glasses == "round" else 1.0)
    a_full = b * 1.12 if app.glasses == "round" else 0.84 * full
    lines = []  # (points, closed)
    rims = []
    for centre, width, outward, jaw_i in ((eye_r, width_r, -right, 0), (eye_l, width_l, right, 16)):
        a = a_full * np.clip(width / full, 0.3, 1.0)  # foreshortened with the eye under yaw
        ctr = centre - 0.1 * b * up + outward * 0.05 * a
        pts = _lens_outline(app.glasses, a, b)
        rim = ctr + pts[:, :1] * outward + pts[:, 1:] * up
        rims.append(rim)
        if app.glasses == "half":
            lines.append((rim[pts[:, 1] > -0.2 * b], False))
        elif app.glasses != "rimless":
            lines.append((rim, True))
        # Temple arm towards the ear on that side, unless that side of the face is turned away.
        if vis[jaw_i]:
            start = rim[np.argmax(rim @ outward + 0.3 * (rim @ up))]
            end = lm[jaw_i] + ((start - lm[jaw_i]) @ up) * up * 0.8
            if (end - start) @ outward > 0:
                lines.append((np.array([start, end]), False))
    # Bridge over the nose, near landmark 27.
    inner_r = rims[0][np.argmax(rims[0] @ right)]
    inner_l = rims[1][np.argmin(rims[1] @ right)]
    bridge = np.array([inner_r + 0.2 * b * up, lm[27] - 0.05 * iod * up, inner_l + 0.2 * b * up])
    lines.append((bridge, False))

    box = _box_of(np.concatenate([p for p, _ in lines]), out.shape[:2], thick + 2)
    if box is None:
        return
    corner = np.array([box[1].start, box[0].start], np.float64)
    mask = np.zeros((box[0].stop - box[0].start, box[1].stop - box[1].start), np.uint8)
    for pts, closed in lines:
        t = thick + 1 if app.glasses == "half" and len(pts) > 2 else thick
        pts16 = np.round((pts - corner) * 16).astype(np.int32)
        cv2.polylines(mask, [pts16], closed, 255, t, cv2.LINE_AA, shift=4)
    region = out[box]
    if app.lens_tint > 0:
        lens = np.zeros(mask.shape, np.uint8)
        lens_pts = [np.round((r - corner) * 16).astype(np.int32) for r in rims]
        cv2.fillPoly(lens, lens_pts, 255, cv2.LINE_AA, shift=4)
        region *= (1.0 - lens.astype(np.float32) / 255.0 * np.float32(app.lens_tint))[..., None]
    alpha = mask.astype(np.float32) / 255.0
    colour = np.asarray(app.glasses_rgb, np.float32) * np.float32(light)
    region += alpha[..., None] * (colour - region)
