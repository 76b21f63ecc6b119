"""Procedural skin albedo textures on the hm08 UV layout, and screen-space occluders (glasses, fringe).

    python -m train.synth.albedo_sheet --sheet out/albedo_sheet.png  # 16 identities on the neutral head
    python -m train.synth.albedo_sheet --bench                       # ms per texture

`sample_appearance(rng)` draws the parameters of one person's look; `make_albedo(app, rng)` turns them
into a (size, size, 3) float32 linear-RGB texture for `head_mesh().tri_uv` (texel (i, j) is the surface
at u = j / size, v = i / size, the convention of `cv2.remap(tex, u * size, v * size)`).

How it stays fast (~7 ms per 512 texture): everything that depends only on the mesh is computed once
per texture size (`_atlas`, lru_cached, ~2 s): a position map (the neutral head-frame 3D point under
every texel, extended past the UV islands' borders to their nearest texel so bilinear lookups never
bleed), smooth region fields (redness, dark circles, hairline height, beard margins, brow coordinates in
mm, lid-margin distances, eyeball angles) cropped to small boxes, MakeHuman's own lip mask
(`mpfb_lips.jpg`, the same one the landmarks' vermilion border comes from), and banks of value noise.
Per identity only arithmetic on those crops remains (numba kernels for the big ones), plus random
windows into the noise banks.

Low-frequency colour (skin mottling, flushed cheeks and nose, dark circles) is a function of the 3D
position evaluated on a 1/4-resolution position map, so it is continuous across UV seams; only
texel-scale detail (pores, hair strands, freckles) is UV noise, whose statistics match across a seam.

Skin tones: the Fitzpatrick type I-VI is mapped to the individual typology angle (ITA = atan((L* - 50) /
b*), Chardon et al. 1991; type ranges as used by Del Bino & Bernerd 2013: I > 55 deg, II 41-55,
III 28-41, IV 10-28, V -30-10, VI < -30) with b* and a* in the ranges measured on human skin; the CIELAB
colour is converted to linear sRGB (D65).

Eyes: hm08's eyeball UVs squeeze the whole visible front of an eye into ~4 texels of a 512 texture, so
the texture can only hold a prefiltered blur of the iris. A renderer should colour PART_EYE pixels with
`eye_albedo(app, coords)`, coords interpolated from the per-vertex `eye_coordinates()` (the sheet does).

Occluders (glasses, fringes) are drawn on the rendered frame by `occluders.py`; the sheet and the
texture benchmark are `python -m train.synth.albedo_sheet`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numba
import numpy as np

from train.synth import makehuman as mh
from train.synth.head import PART_EYE, PART_MOUTH, PART_SKIN, head_mesh
from train.synth.raster import rasterize

FITZPATRICK_ITA = {1: (55.0, 68.0), 2: (41.0, 55.0), 3: (28.0, 41.0), 4: (10.0, 28.0), 5: (-30.0, 10.0),
                   6: (-55.0, -30.0)}
FITZPATRICK_B = {1: (11.0, 16.0), 2: (13.0, 18.0), 3: (15.0, 20.0), 4: (17.0, 22.0), 5: (16.0, 22.0),
                 6: (10.0, 18.0)}
BEARD_STYLES = ("none", "stubble", "full", "goatee", "moustache", "chin_strap")
SCALP_STYLES = ("bald", "buzz", "short")
GLASSES_STYLES = ("none", "rect", "round", "cateye", "half", "rimless")

# Linear-RGB albedos.
HAIR_COLOURS = {
    "black": (0.018, 0.016, 0.015), "dark_brown": (0.045, 0.03, 0.022), "brown": (0.10, 0.062, 0.038),
    "light_brown": (0.2, 0.13, 0.075), "blond": (0.42, 0.31, 0.16), "platinum": (0.58, 0.52, 0.42),
    "auburn": (0.22, 0.075, 0.035), "red": (0.38, 0.12, 0.04),
}
IRIS_COLOURS = {
    "dark_brown": (0.025, 0.012, 0.007), "brown": (0.06, 0.03, 0.013), "hazel": (0.11, 0.075, 0.03),
    "amber": (0.17, 0.09, 0.025), "green": (0.07, 0.11, 0.05), "blue": (0.07, 0.13, 0.24),
    "grey": (0.14, 0.16, 0.18),
}
LIPSTICK_COLOURS = ((0.45, 0.02, 0.04), (0.55, 0.12, 0.2), (0.22, 0.02, 0.06), (0.3, 0.04, 0.03),
                    (0.5, 0.22, 0.18), (0.16, 0.03, 0.1), (0.6, 0.25, 0.3), (0.12, 0.04, 0.03))
EYESHADOW_COLOURS = ((0.12, 0.07, 0.04), (0.3, 0.18, 0.1), (0.03, 0.03, 0.035), (0.35, 0.15, 0.2),
                     (0.08, 0.12, 0.25), (0.1, 0.16, 0.08), (0.45, 0.33, 0.2), (0.2, 0.1, 0.15))
BLUSH_COLOURS = ((0.8, 0.3, 0.3), (0.85, 0.4, 0.3), (0.7, 0.25, 0.35), (0.6, 0.25, 0.15))
FRAME_COLOURS = ((0.015, 0.015, 0.015), (0.08, 0.04, 0.02), (0.25, 0.12, 0.05), (0.55, 0.42, 0.18),
                 (0.5, 0.5, 0.52), (0.35, 0.03, 0.03), (0.03, 0.05, 0.2), (0.2, 0.2, 0.22))


# ---------------------------------------------------------------------------------------------------
# Colour


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


# ---------------------------------------------------------------------------------------------------
# Appearance


@dataclass(frozen=True)
class Appearance:
    fitzpatrick: int  # 1..6
    ita_deg: float
    skin_rgb: tuple[float, float, float]  # linear RGB base skin albedo
    redness: float  # flushed cheeks / nose / ears, 0..1
    dark_circles: float  # periorbital darkening, 0..1
    male: bool
    age: float  # years
    beard_style: str  # BEARD_STYLES
    beard_density: float  # 0..1
    beard_rgb: tuple[float, float, float]
    freckles: float  # 0..1 density
    age_spots: float  # 0..1
    lip_rgb: tuple[float, float, float]  # natural lip colour
    lipstick: float  # 0 (none) .. 1 opaque
    lipstick_rgb: tuple[float, float, float]
    eyeshadow: float
    eyeshadow_rgb: tuple[float, float, float]
    eyeliner: float
    blush: float
    blush_rgb: tuple[float, float, float]
    brow_rgb: tuple[float, float, float]
    brow_thickness: float  # half-height at the inner end, mm
    brow_density: float  # 0..1
    brow_arch: float  # mm
    brow_shift: float  # mm, up (+) or down
    iris_rgb: tuple[float, float, float]
    iris_deg: float  # iris radius as an angle from the eye's axis
    pupil_ratio: float  # pupil radius / iris radius
    sclera_rgb: tuple[float, float, float]
    scalp: str  # SCALP_STYLES
    hair_rgb: tuple[float, float, float]
    hair_recession: float  # mm the front hairline is raised
    temple_recession: float  # mm
    sideburn_mm: float
    glasses: str  # GLASSES_STYLES
    glasses_rgb: tuple[float, float, float]
    glasses_thickness: float  # frame thickness as a fraction of the inter-ocular distance
    lens_tint: float  # 0..1
    fringe: bool
    fringe_rgb: tuple[float, float, float]
    fringe_length: float  # 0 (at the hairline) .. 1 (down to the brows)
    fringe_slant: float  # -1..1 side sweep


def _tup(x) -> tuple[float, float, float]:
    return tuple(float(c) for c in np.clip(x, 0.0, 1.0))


def _skin_colour(fitz: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    ita = rng.uniform(*FITZPATRICK_ITA[fitz])
    b = rng.uniform(*FITZPATRICK_B[fitz])
    L = min(50.0 + b * np.tan(np.radians(ita)), 76.0)
    a = rng.uniform(6.0, 13.0) if fitz <= 4 else rng.uniform(7.0, 12.0)
    undertone = rng.uniform(-1.0, 1.0)  # + pink / cool, - olive / golden
    a += 2.5 * undertone
    b -= 2.0 * undertone
    return lab_to_linear_rgb((L, a, b)), float(ita)


def _pick(rng: np.random.Generator, names, probs):
    p = np.asarray(probs, float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def _hair_colour(fitz: int, age: float, rng: np.random.Generator) -> np.ndarray:
    names = list(HAIR_COLOURS)
    if fitz <= 2:
        probs = [0.1, 0.22, 0.22, 0.16, 0.14, 0.04, 0.07, 0.05]
    elif fitz == 3:
        probs = [0.3, 0.35, 0.2, 0.08, 0.03, 0.01, 0.02, 0.01]
    else:
        probs = [0.65, 0.3, 0.04, 0.01, 0.0, 0.0, 0.0, 0.0]
    rgb = np.array(HAIR_COLOURS[_pick(rng, names, probs)]) * rng.uniform(0.8, 1.2, 3) ** 0.3
    rgb *= rng.uniform(0.8, 1.25)
    grey = np.clip((age - 40.0) / 35.0 + rng.normal(0, 0.15), 0.0, 1.0) ** 1.5
    return (1 - grey) * rgb + grey * rng.uniform(0.3, 0.6) * np.ones(3)


def sample_appearance(rng: np.random.Generator) -> Appearance:
    fitz = int(rng.integers(1, 7))
    skin, ita = _skin_colour(fitz, rng)
    male = bool(rng.random() < 0.5)
    age = float(18.0 + 62.0 * rng.beta(1.3, 2.0))  # adults, more young than old
    skin = skin * (1.0 - 0.002 * max(age - 40.0, 0.0) * np.array([0.0, 0.3, 1.0]))  # a little yellower

    hair = _hair_colour(fitz, age, rng)
    if male:
        beard = _pick(rng, BEARD_STYLES, [0.35, 0.25, 0.14, 0.1, 0.07, 0.09])
        scalp = _pick(rng, SCALP_STYLES, [0.12 + 0.25 * (age > 45), 0.38, 0.5])
        recession = float(np.clip(rng.normal((age - 25) * 0.5, 10), 0, 45))
        temple = float(rng.uniform(0, 20) + 0.3 * recession)
    else:
        beard = "none"
        scalp = _pick(rng, SCALP_STYLES, [0.03, 0.07, 0.9])
        recession = float(np.clip(rng.normal(0, 4), 0, 10))
        temple = float(rng.uniform(0, 6))
    beard_rgb = hair * rng.uniform(0.85, 1.2, 3) ** 0.5
    makeup = (not male and rng.random() < 0.65) or (male and rng.random() < 0.04)

    freckle_p = {1: 0.45, 2: 0.3, 3: 0.12, 4: 0.04, 5: 0.02, 6: 0.02}[fitz]
    freckles = float(rng.uniform(0.2, 1.0)) if rng.random() < freckle_p else 0.0
    age_spots = float(np.clip((age - 45) / 35, 0, 1) * rng.uniform(0.2, 1.0))

    if fitz <= 3:
        lip = skin * np.array([rng.uniform(0.85, 1.05), rng.uniform(0.42, 0.6), rng.uniform(0.48, 0.66)])
    else:
        lip = skin * np.array([rng.uniform(0.7, 0.95), rng.uniform(0.5, 0.72), rng.uniform(0.58, 0.8)])
    lip *= rng.uniform(0.7, 0.95) * (1.0 - 0.003 * max(age - 40.0, 0.0))

    iris_names = list(IRIS_COLOURS)
    if fitz <= 2:
        iris_p = [0.05, 0.2, 0.15, 0.05, 0.12, 0.3, 0.13]
    elif fitz == 3:
        iris_p = [0.2, 0.4, 0.2, 0.06, 0.06, 0.05, 0.03]
    else:
        iris_p = [0.6, 0.33, 0.05, 0.02, 0.0, 0.0, 0.0]
    iris = np.array(IRIS_COLOURS[_pick(rng, iris_names, iris_p)]) * rng.uniform(0.7, 1.15)

    brow_rgb = hair * rng.uniform(0.6, 0.95) if rng.random() < 0.85 else hair * rng.uniform(0.3, 0.6)
    glasses = _pick(rng, GLASSES_STYLES, [0.65, 0.12, 0.08, 0.05, 0.05, 0.05])
    fringe = bool(scalp == "short" and rng.random() < (0.45 if not male else 0.12))

    def colour(options):
        return np.array(options[int(rng.integers(len(options)))]) * rng.uniform(0.8, 1.2, 3)

    return Appearance(
        fitzpatrick=fitz,
        ita_deg=ita,
        skin_rgb=_tup(skin),
        redness=float(rng.uniform(0.0, 1.0) * (1.0 if fitz <= 3 else 0.5)),
        dark_circles=float(rng.uniform(0.1, 1.0) * (0.6 if fitz <= 2 else 1.0)),
        male=male,
        age=age,
        beard_style=beard,
        beard_density=float(rng.uniform(0.4, 1.0)),
        beard_rgb=_tup(beard_rgb),
        freckles=freckles,
        age_spots=age_spots,
        lip_rgb=_tup(lip),
        lipstick=float(rng.uniform(0.35, 0.9)) if makeup and rng.random() < 0.55 else 0.0,
        lipstick_rgb=_tup(colour(LIPSTICK_COLOURS)),
        eyeshadow=float(rng.uniform(0.2, 0.7)) if makeup and rng.random() < 0.5 else 0.0,
        eyeshadow_rgb=_tup(colour(EYESHADOW_COLOURS)),
        eyeliner=float(rng.uniform(0.4, 1.0)) if makeup and rng.random() < 0.5 else 0.0,
        blush=float(rng.uniform(0.1, 0.35)) if makeup and rng.random() < 0.45 else 0.0,
        blush_rgb=_tup(colour(BLUSH_COLOURS)),
        brow_rgb=_tup(brow_rgb),
        brow_thickness=float(rng.uniform(3.5, 6.0) if male else rng.uniform(2.5, 4.5)),
        brow_density=float(rng.uniform(0.55, 1.0)),
        brow_arch=float(rng.uniform(3.0, 9.0)),
        brow_shift=float(rng.uniform(-2.5, 3.0)),
        iris_rgb=_tup(iris),
        iris_deg=float(rng.uniform(24.0, 29.0)),
        pupil_ratio=float(rng.uniform(0.28, 0.45)),
        sclera_rgb=_tup(np.array([0.62, 0.57, 0.52]) * rng.uniform(0.8, 1.05) * rng.uniform(0.95, 1.05, 3)),
        scalp=scalp,
        hair_rgb=_tup(hair),
        hair_recession=recession,
        temple_recession=temple,
        sideburn_mm=float(rng.uniform(5.0, 40.0) if male else rng.uniform(0.0, 15.0)),
        glasses=glasses,
        glasses_rgb=_tup(colour(FRAME_COLOURS)),
        glasses_thickness=float(rng.uniform(0.025, 0.07)),
        lens_tint=float(rng.uniform(0.0, 0.5)) if rng.random() < 0.2 else 0.0,
        fringe=fringe,
        fringe_rgb=_tup(hair),
        fringe_length=float(rng.uniform(0.3, 1.0)),
        fringe_slant=float(rng.uniform(-1.0, 1.0)),
    )


# ---------------------------------------------------------------------------------------------------
# The UV atlas: what lies under every texel, computed once per texture size

# Texel kinds.
K_HEAD, K_NECK, K_EYE_CAVITY, K_MOUTH_CAVITY, K_EYE, K_TEETH, K_TONGUE = range(7)
K_NONE = 255  # beyond every island's margin: never sampled
HAIR_AXIS_Z = -60.0  # vertical axis (x = 0, z = -60 mm) that azimuths around the skull refer to
NECK_AXIS_Z = -95.0  # and the one for the neck and jaw
# Hairline height (mm, head frame) by azimuth around HAIR_AXIS_Z (deg, 0 = the face's midline).
_HAIRLINE = ((0, 70), (25, 68), (45, 58), (60, 44), (70, 30), (78, 18), (84, 18), (90, 22), (112, 22),
             (122, 2), (135, -38), (150, -66), (180, -74))
# Height of the jaw's lower edge by distance from the midline (mm), for chin-strap beards.
_JAWLINE = ((0, -112), (30, -106), (50, -92), (65, -72), (75, -45), (85, -20))
# Lowest beard on the neck by azimuth around NECK_AXIS_Z.
_NECKLINE = ((0, -128), (45, -120), (70, -100), (85, -84), (180, -84))
EYE_SUPERSAMPLE = 4  # eyeball texels are prefiltered over 4 x 4 sub-samples


@dataclass
class _Crop:
    sl: tuple[slice, slice]
    f: dict  # name -> static float32 array over the crop


@dataclass
class _Atlas:
    size: int
    low: int
    kind: np.ndarray  # (S, S) uint8 K_*, extended past the islands by a margin
    low_idx: np.ndarray  # flat indices of the low-resolution texels near an island
    low_pos: np.ndarray  # (n, 3) float32 head-frame mm of those texels
    low_fields: np.ndarray  # (low, low, 3) float32: redness, dark circles, lighter underside
    crops: dict  # region name -> list[_Crop]
    banks: dict  # name -> (2S, 2S) float32 noise, zero mean, unit std


def _table(rows) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(rows, np.float64)
    return t[:, 0], t[:, 1]


def _smooth(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _ramp(x: np.ndarray, e0: float, e1: float) -> np.ndarray:
    """Linear 0 → 1 ramp from e0 to e1 (either order), as a new float32 array."""
    k = 1.0 / (e1 - e0)
    r = x * np.float32(k)
    r += np.float32(-e0 * k)
    return np.clip(r, 0.0, 1.0, out=r)


def _triangle_kinds(m) -> np.ndarray:
    """Per triangle K_*, from its part and where its UV island lies in the hm08 layout."""
    c = m.tri_uv.mean(axis=1)
    u, v = c[:, 0], c[:, 1]
    kind = np.full(len(c), K_HEAD, np.uint8)
    skin = m.tri_part == PART_SKIN
    kind[skin & (u < 0.2)] = K_EYE_CAVITY
    kind[skin & (v > 0.855) & (u > 0.7)] = K_MOUTH_CAVITY
    kind[skin & (v < 0.15) & (u < 0.55)] = K_NECK
    kind[m.tri_part == PART_EYE] = K_EYE
    kind[(m.tri_part == PART_MOUTH) & (u < 0.66)] = K_TONGUE
    kind[(m.tri_part == PART_MOUTH) & (u >= 0.66)] = K_TEETH
    return kind


def _uv_raster(tri_uv: np.ndarray, scale: float, offset=(0.0, 0.0), hw=None):
    """Rasterise UV triangles: pixel (i, j) centre ↔ (u, v) * scale - offset = (j, i)."""
    n = len(tri_uv)
    xy = tri_uv.reshape(-1, 2).astype(np.float64) * scale - np.asarray(offset) + 0.5
    pts = np.concatenate([xy, np.full((n * 3, 1), 2.0)], 1)
    tris = np.arange(n * 3, dtype=np.int32).reshape(-1, 3)
    size = int(round(scale))
    return rasterize(pts, tris, np.diag([2.0, 2.0, 1.0]), hw or (size, size))


def _nearest_index(covered: np.ndarray) -> np.ndarray:
    """Flat index of the nearest covered pixel, for every pixel."""
    _, labels = cv2.distanceTransformWithLabels((~covered).astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    src = np.flatnonzero(covered.ravel())
    return src[labels.ravel() - 1]


def _value_noise(shape, cells: float, rng: np.random.Generator, stretch=(1.0, 1.0)) -> np.ndarray:
    """Smooth noise with features `cells` texels across (times `stretch` along rows, columns)."""
    h, w = shape
    sh = max(int(h / (cells * stretch[0])) + 2, 2)
    sw = max(int(w / (cells * stretch[1])) + 2, 2)
    small = rng.standard_normal((sh, sw)).astype(np.float32)
    big = cv2.resize(small, (int(sw * cells * stretch[1]), int(sh * cells * stretch[0])),
                     interpolation=cv2.INTER_CUBIC)
    return big[:h, :w]


def _bank(shape, octaves, seed: int, stretch=(1.0, 1.0)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, np.float32)
    for cells, weight in octaves:
        out += weight * _value_noise(shape, cells, rng, stretch)
    out -= out.mean()
    return (out / out.std()).astype(np.float32)


def _boxes(support: np.ndarray, pad: int) -> list[tuple[slice, slice]]:
    """Bounding boxes of the connected parts of `support`, padded, overlapping ones merged."""
    n, _, stats, _ = cv2.connectedComponentsWithStats(support.astype(np.uint8), connectivity=8)
    h, w = support.shape
    boxes = [[max(x - pad, 0), max(y - pad, 0), min(x + bw + pad, w), min(y + bh + pad, h)]
             for x, y, bw, bh, area in stats[1:] if area > 0]
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                a, b = boxes[i], boxes[j]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return [(slice(int(y0), int(y1)), slice(int(x0), int(x1))) for x0, y0, x1, y1 in boxes]


def _region(support: np.ndarray, fields: dict, pad: int = 1) -> list[_Crop]:
    return [_Crop(sl, {k: np.ascontiguousarray(v[sl], dtype=np.float32) for k, v in fields.items()})
            for sl in _boxes(support, pad)]


def _lip_mask(size: int) -> np.ndarray:
    """MakeHuman's lip mask (`mpfb_lips.jpg`: same UV layout, image rows = our v), resampled."""
    path = mh.data_dir() / "mpfb2" / "textures" / "mpfb_lips.jpg"
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise mh.AssetsMissingError(f"{path}: lip mask missing: {mh.INSTALL_HINT}")
    n = img.shape[0]
    grid = (np.arange(size, dtype=np.float32) / size) * n - 0.5  # texel i is at v = i / size
    mx, my = np.meshgrid(grid, grid)
    small = cv2.GaussianBlur(img, (0, 0), max(n / size * 0.5, 0.1))
    small = small.astype(np.float32) / 255.0
    return cv2.remap(small, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


@lru_cache(maxsize=1)
def _eye_frames() -> dict:
    """Per eye (x sign +1 / -1): eyeball centre and an orthonormal frame whose third axis goes through
    the cornea's apex (the frontmost eyeball vertices), neutral head frame."""
    m = head_mesh()
    v = m.vertices
    eye_v = v[np.unique(m.triangles[m.tri_part == PART_EYE])]
    frames = {}
    for s in (1, -1):
        q = eye_v[eye_v[:, 0] * s > 0]
        centre = (q.min(0) + q.max(0)) / 2
        centre[2] = q[:, 2].min() + (q[:, 0].max() - q[:, 0].min()) / 2  # the cornea bulges out of the globe
        front = q[q[:, 2] > q[:, 2].max() - 1e-3].mean(0)
        axis = (front - centre) / np.linalg.norm(front - centre)
        e1 = np.cross([0.0, 1.0, 0.0], axis)
        e1 /= np.linalg.norm(e1)
        e2 = np.cross(axis, e1)
        frames[s] = (centre.astype(np.float32), np.stack([e1, e2, axis]).astype(np.float32))
    return frames


def _eye_coords(points: np.ndarray, side: np.ndarray) -> np.ndarray:
    """(N, 3) eyeball points → (N, 2) azimuthal-equidistant coordinates: the angle from the eye's axis
    (radians) times the unit direction around it. Linear interpolation of these across a triangle is
    accurate, so a renderer can interpolate them per pixel."""
    out = np.zeros((len(points), 2), np.float32)
    for s, (c, frame) in _eye_frames().items():
        sel = side == s
        d = (points[sel] - c) @ frame.T
        ang = np.arctan2(np.linalg.norm(d[:, :2], axis=1), d[:, 2])
        out[sel] = d[:, :2] / np.maximum(np.linalg.norm(d[:, :2], axis=1, keepdims=True), 1e-9) * ang[:, None]
    return out


@lru_cache(maxsize=1)
def eye_coordinates() -> np.ndarray:
    """(V, 2) float32 per head_mesh() vertex: for eyeball vertices, the angle (radians) from the eye's
    optical axis times the unit direction around it (x towards the subject's left, y up); 0 elsewhere.

    The hm08 eyeball UVs squeeze the whole visible front of the eye into ~4 texels of a 512 texture,
    so the iris cannot be resolved by UV. A renderer can instead interpolate these per pixel on
    PART_EYE triangles and colour them with `eye_albedo(app, coords)`.
    """
    m = head_mesh()
    out = np.zeros((len(m.vertices), 2), np.float32)
    idx = np.unique(m.triangles[m.tri_part == PART_EYE])
    out[idx] = _eye_coords(m.vertices[idx], np.sign(m.vertices[idx, 0]))
    return out


def eye_albedo(app: Appearance, coords: np.ndarray) -> np.ndarray:
    """Linear-RGB albedo (P, 3) of the eyeball at `eye_coordinates()`-style coords (P, 2)."""
    coords = np.asarray(coords, np.float32).reshape(-1, 2)
    r, fibres = _eye_polar(coords)
    return _eye_colour(app, r[:, None], fibres[:, None])


def _eye_polar(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P, 2) eye coords → angle from the axis r (radians) and the iris-fibre modulation."""
    r = np.linalg.norm(coords, axis=1).astype(np.float32)
    phi = np.arctan2(coords[:, 1], coords[:, 0])
    x = r / np.float32(0.47)
    fibres = 1.0 + 0.18 * np.cos(phi * 23.0 + 3.0 * x) * np.cos(phi * 7.0 - 2.0 * x)
    return r, fibres.astype(np.float32)


def _eye_colour(app: Appearance, r: np.ndarray, fibres: np.ndarray) -> np.ndarray:
    """(P, n) angles and fibre modulations → (P, 3) albedo averaged over the n samples."""
    iris_r = float(np.radians(app.iris_deg))
    out = np.empty((r.shape[0], 3), np.float32)
    sclera, iris = np.asarray(app.sclera_rgb, np.float32), np.asarray(app.iris_rgb, np.float32)
    _k_eye(np.ascontiguousarray(r, np.float32), np.ascontiguousarray(fibres, np.float32), iris_r,
           iris_r * app.pupil_ratio, sclera, iris, out)
    return out


def _eye_subsamples(size: int, m, kinds: np.ndarray):
    """Eyeball coords at EYE_SUPERSAMPLE^2 sub-samples of every texel of the eyeball islands' box."""
    sel = kinds == K_EYE
    uv = m.tri_uv[sel]
    lo = np.floor(uv.reshape(-1, 2).min(0) * size).astype(int) - 2
    hi = np.ceil(uv.reshape(-1, 2).max(0) * size).astype(int) + 3
    n = EYE_SUPERSAMPLE
    # sub-pixel q of the raster is sub-sample q % n of texel lo + q // n (texel j spans u*S in j ± 0.5)
    hw = ((hi[1] - lo[1]) * n, (hi[0] - lo[0]) * n)
    r = _uv_raster(uv, size * n, offset=(lo * n - 0.5 * n + 0.5), hw=hw)
    cov = r.covered
    tri_idx = np.flatnonzero(sel)
    corner = head_mesh().vertices[m.triangles[tri_idx]]  # (F, 3, 3)
    pts = np.einsum("pk,pkc->pc", r.bary[cov], corner[r.tri[cov]])
    coords = np.zeros((*cov.shape, 2), np.float32)
    coords[cov] = _eye_coords(pts, np.sign(pts[:, 0]))
    coords = coords.reshape(-1, 2)[_nearest_index(cov)].reshape(*cov.shape, 2)
    h, w = (hi[1] - lo[1]), (hi[0] - lo[0])
    sub = coords.reshape(h, n, w, n, 2).transpose(0, 2, 1, 3, 4).reshape(h, w, n * n, 2)
    return (slice(int(lo[1]), int(hi[1])), slice(int(lo[0]), int(hi[0]))), sub


def _min_dist(p: np.ndarray, targets: np.ndarray) -> np.ndarray:
    d = np.full(p.shape[:-1], np.inf, np.float32)
    for t in targets:
        d = np.minimum(d, np.linalg.norm(p - t, axis=-1))
    return d


@lru_cache(maxsize=4)
def _atlas(size: int) -> _Atlas:
    m = head_mesh()
    tri_kind = _triangle_kinds(m)
    r = _uv_raster(m.tri_uv, size)
    cov = r.covered
    tri = r.tri
    nearest = _nearest_index(cov)
    pos = np.zeros((size, size, 3), np.float32)
    pos[cov] = np.einsum("pk,pkc->pc", r.bary[cov], m.vertices[m.triangles][tri[cov]])
    pos = pos.reshape(-1, 3)[nearest].reshape(size, size, 3)
    kind = tri_kind[np.where(cov, tri, 0)].ravel()[nearest].reshape(size, size)
    # Texels a bilinear lookup can reach, plus a margin for downsampling: the only ones worth painting.
    margin = max(3, size // 128)
    near = cv2.dilate(cov.astype(np.uint8), np.ones((2 * margin + 1,) * 2, np.uint8)) > 0
    kind = np.where(near, kind, K_NONE).astype(np.uint8)
    x, y, z = pos[..., 0], pos[..., 1], pos[..., 2]
    ax = np.abs(x)
    theta = np.degrees(np.arctan2(ax, z - HAIR_AXIS_Z))
    theta_neck = np.degrees(np.arctan2(ax, z - NECK_AXIS_Z))
    head = kind == K_HEAD
    skin = head | (kind == K_NECK)
    front = _smooth(-45.0, -15.0, z)

    def blob(centre, sigma):
        return np.exp(-np.sum((pos - np.asarray(centre, np.float32)) ** 2, axis=-1) / (2 * sigma**2))

    # Smooth colour fields, used at 1/4 resolution.
    cheeks = np.maximum(blob((44, -30, 18), 17), blob((-44, -30, 18), 17))
    nose = np.maximum(blob((0, -34, 40), 11), 0.6 * blob((0, -18, 30), 10))
    ears = _smooth(74.0, 80.0, ax) * _smooth(25.0, 15.0, y) * _smooth(-60.0, -50.0, y)
    red = np.clip(cheeks + nose + 0.8 * ears + 0.35 * blob((0, -95, 20), 14), 0, 1) * skin
    perio = (np.exp(-(((ax - 30) / 14) ** 2) - ((y + 10) / 6.5) ** 2)
             + 0.8 * np.exp(-(((ax - 17) / 5) ** 2) - ((y + 2) / 5) ** 2)
             + 0.5 * np.exp(-(((ax - 32) / 13) ** 2) - ((y - 7) / 4) ** 2)) * front * skin
    under = _smooth(-95.0, -125.0, y) * (kind == K_NECK) + _smooth(-100.0, -112.0, y) * head
    fields = np.stack([red, np.clip(perio, 0, 1), np.clip(under, 0, 1)], axis=-1).astype(np.float32)
    low = max(size // 4, 16)
    low_fields = cv2.resize(fields, (low, low), interpolation=cv2.INTER_AREA)
    near_low = cv2.dilate(cv2.resize(near.astype(np.uint8), (low, low), interpolation=cv2.INTER_AREA),
                          np.ones((3, 3), np.uint8)) > 0
    low_idx = np.flatnonzero(near_low.ravel())
    low_pos = cv2.resize(pos, (low, low), interpolation=cv2.INTER_NEAREST).reshape(-1, 3)[low_idx]

    mm_per_texel = 2.0 * 512.0 / size  # on the face, roughly
    crops: dict = {}
    # Lips: MakeHuman's mask, on the face and on the inner lips of the mouth cavity.
    lip = _lip_mask(size) * (head | (kind == K_MOUTH_CAVITY))
    lip_dist = cv2.distanceTransform((lip < 0.5).astype(np.uint8), cv2.DIST_L2, 5) * mm_per_texel
    crops["lips"] = _region(lip > 0.01, {"a": np.clip(lip * 1.15, 0, 1)})

    # Cheeks (blush), freckle zone (nose, cheeks, forehead).
    cheeks_face = cheeks * head * front
    freck = np.clip(np.maximum(cheeks, nose * 1.2) + 0.4 * blob((0, 40, 35), 25), 0, 1) * front * head
    crops["face"] = _region((freck > 0.02) | (cheeks_face > 0.02), {"cheek": cheeks_face, "freck": freck})

    # Around the eyes: upper lids (eye shadow), distance to the lid margins (lash line), brow coordinates.
    frames = _eye_frames()
    kinds_v = np.zeros(len(m.vertices), np.uint8)
    for k in (K_HEAD, K_EYE_CAVITY):
        kinds_v[np.unique(m.triangles[tri_kind == k])] |= 1 << k
    margin_v = m.vertices[kinds_v == (1 << K_HEAD) | (1 << K_EYE_CAVITY)]
    upper_m = margin_v[margin_v[:, 1] > frames[1][0][1] + 0.3]
    lower_m = margin_v[margin_v[:, 1] <= frames[1][0][1] + 0.3]
    zone = head & (ax > 6) & (ax < 64) & (y > -24) & (y < 42) & (z > -32)
    d_up = np.full(ax.shape, 99.0, np.float32)
    d_lo = np.full(ax.shape, 99.0, np.float32)
    d_up[zone] = _min_dist(pos[zone], upper_m)
    d_lo[zone] = _min_dist(pos[zone], lower_m)
    lid = np.exp(-(((ax - 31) / 13) ** 4)) * _smooth(1.0, 4.0, y) * _smooth(16.0, 9.0, y) * head * front
    lid = np.maximum(lid, 0.7 * np.exp(-((d_up / 3.5) ** 2)) * head)
    crops["eyes"] = _region(zone, {"lid": lid, "du": d_up, "dl": d_lo, "t": (ax - 13.0) / 40.0, "y": y,
                                   "on": zone * 1.0})
    # The eye cavity's rim (the inner lid) is seen between lid and eyeball: pink, then dark inside.
    cav = kind == K_EYE_CAVITY
    d_cav = np.full(ax.shape, 99.0, np.float32)
    d_cav[cav] = _min_dist(pos[cav], upper_m)
    w_lash = 0.85 * np.exp(-((d_cav / 1.6) ** 2))
    w_deep = _smooth(9.0, 2.0, z) * (1 - w_lash)
    w_rim = 1.0 - w_lash - w_deep
    crops["cavity"] = _region(cav, {"w": np.stack([w_rim, w_deep, w_lash], -1) * cav[..., None],
                                    "a": cav * 1.0})

    # Eyeballs: prefiltered eye coordinates.
    eye_sl, eye_sub = _eye_subsamples(size, m, tri_kind)
    r_sub, fibres_sub = _eye_polar(eye_sub.reshape(-1, 2))
    shape = eye_sub.shape[:3]
    crops["eyeball"] = [_Crop(eye_sl, {"r": r_sub.reshape(shape), "fibres": fibres_sub.reshape(shape),
                                       "a": (kind[eye_sl] == K_EYE).astype(np.float32)})]

    # Teeth, tongue, mouth cavity (lip colour at its front, dark red inside).
    mouth = (kind == K_MOUTH_CAVITY) * 1.0
    w_lip = mouth * _smooth(6.0, 18.0, z)  # the inner lips, then darker inside
    w_dark = mouth - w_lip
    crops["mouth"] = _region((kind == K_MOUTH_CAVITY) | (kind == K_TEETH) | (kind == K_TONGUE),
                             {"w": np.stack([kind == K_TEETH, kind == K_TONGUE, w_lip, w_dark], -1),
                              "keep": 1.0 - ((kind == K_TEETH) | (kind == K_TONGUE)) - mouth})

    # Scalp hair: signed height above the hairline, and the bases its per-person shifts are built on.
    ear = _smooth(75.0, 79.0, ax) * _smooth(-10.0, -20.0, z - HAIR_AXIS_Z) * _smooth(24.0, 16.0, y)
    hair_d = y - np.interp(theta, *_table(_HAIRLINE)) - 60.0 * ear
    g_front = np.exp(-((theta / 32.0) ** 2))
    g_temple = np.exp(-(((theta - 42.0) / 12.0) ** 2))
    g_side = np.exp(-(((theta - 80.0) / 4.5) ** 2)) * _smooth(-45.0, -30.0, y)
    crops["scalp"] = _region(skin & (hair_d + 45.0 * g_side > -10.0),
                             {"d": hair_d, "gf": g_front, "gt": g_temple, "gs": g_side})

    # Beard margins (mm, positive inside).
    cheek_line = np.where(ax < 36, -50.0, -50.0 + 0.62 * (ax - 36.0)) - y
    neck_line = y - np.interp(theta_neck, *_table(_NECKLINE))
    behind = (93.0 - theta) * 0.6
    lips_out = lip_dist - 1.5
    full = np.minimum(np.minimum(cheek_line, neck_line), np.minimum(behind, lips_out))
    must = np.minimum(np.minimum(-48.0 - y, 28.0 - ax), np.minimum(y + 67.0, lips_out - 0.5))
    must = np.minimum(must, 2.0 * (40.0 - z))  # not into the nostrils
    chin = np.minimum(np.minimum(20.0 - 0.7 * ax, -74.0 - y), np.minimum(y + 118.0, z + 20.0))
    chin = np.minimum(chin, lips_out)
    strap = np.minimum(full, np.interp(ax, *_table(_JAWLINE)) + 13.0 - y)
    crops["beard"] = _region(skin & (np.maximum(np.maximum(full, must), chin) > -12),
                             {"full": full, "must": must, "chin": chin, "strap": strap})

    s2 = 2 * size
    banks = {
        "fine": _bank((s2, s2), ((1.0, 0.6), (2.0, 0.5), (4.0, 0.35)), 11),
        "spot": _bank((s2, s2), ((1.0, 1.0), (2.0, 0.3)), 12),
        "streak_u": _bank((s2, s2), ((1.0, 1.0), (2.0, 0.4)), 13, stretch=(1.0, 6.0)),
        "streak_v": _bank((s2, s2), ((1.0, 1.0), (2.0, 0.4)), 14, stretch=(6.0, 1.0)),
        "blotch": _bank((s2, s2), ((4.0, 1.0), (8.0, 0.8)), 15),
    }
    return _Atlas(size=size, low=low, kind=kind, low_idx=low_idx, low_pos=low_pos, low_fields=low_fields,
                  crops=crops, banks=banks)


# ---------------------------------------------------------------------------------------------------
# The texture


class _Noise:
    """Random windows of the atlas' noise banks, one random offset per bank per texture."""

    def __init__(self, atlas: _Atlas, rng: np.random.Generator):
        s = atlas.size
        self.banks = atlas.banks
        self.offsets = {k: rng.integers(0, s, 2) for k in sorted(atlas.banks)}

    def __call__(self, name: str, sl: tuple[slice, slice]) -> np.ndarray:
        oy, ox = self.offsets[name]
        return self.banks[name][sl[0].start + oy: sl[0].stop + oy, sl[1].start + ox: sl[1].stop + ox]


def _blend(dst: np.ndarray, alpha: np.ndarray, colour) -> None:
    """dst += alpha * (colour - dst), in place; colour (3,) or (h, w, 3)."""
    diff = np.asarray(colour, np.float32) - dst
    diff *= alpha[..., None]
    dst += diff


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


def _paint_hair(app: Appearance, atlas: _Atlas, noise: _Noise, tex: np.ndarray) -> None:
    if app.scalp != "bald":
        cover = 0.97 if app.scalp == "short" else 0.6 + 0.25 * (app.hair_rgb[0] < 0.1)
        hair = np.asarray(app.hair_rgb, np.float32)
        for c in atlas.crops["scalp"]:
            f = c.f
            blotch, strands = noise("blotch", c.sl), noise("streak_u", c.sl)
            _k_scalp(tex[c.sl], f["d"], f["gf"], f["gt"], f["gs"], blotch, strands,
                     app.hair_recession, app.temple_recession, app.sideburn_mm, cover, hair)
    if app.beard_style == "none":
        return
    style = BEARD_STYLES.index(app.beard_style)
    beard = np.asarray(app.beard_rgb, np.float32)
    shadow = (beard * 0.6 + 0.2 * np.asarray(app.skin_rgb, np.float32)).astype(np.float32)
    for c in atlas.crops["beard"]:
        f = c.f
        _k_beard(tex[c.sl], f["full"], f["must"], f["chin"], f["strap"], noise("blotch", c.sl),
                 noise("fine", c.sl), noise("spot", c.sl), noise("streak_u", c.sl), style, app.beard_density,
                 beard, shadow)


# Per-texel compositing kernels (numba): one pass over a crop instead of a dozen numpy temporaries.


@numba.njit(cache=True, nogil=True, fastmath=True)
def _k_pores(tex, fine, amp):
    h, w = fine.shape
    for i in range(h):
        for j in range(w):
            g = 1.0 + amp * fine[i, j]
            for k in range(3):
                tex[i, j, k] *= g


@numba.njit(cache=True, nogil=True, fastmath=True)
def _k_scalp(t, d, gf, gt, gs, blotch, strands, recession, temple, sideburn, cover, hair):
    h, w = d.shape
    for i in range(h):
        for j in range(w):
            x = d[i, j] - recession * gf[i, j] - temple * gt[i, j] + sideburn * gs[i, j] + 3.0 * blotch[i, j]
            a = min((x + 2.5) / 6.0, 1.0)
            if a <= 0.0:
                continue
            a *= cover
            s = 1.0 + 0.3 * max(min(strands[i, j], 2.0), -2.0)
            for k in range(3):
                t[i, j, k] += a * (hair[k] * s - t[i, j, k])


@numba.njit(cache=True, nogil=True, fastmath=True)
def _k_beard(t, full, must, chin, strap, blotch, fine, spot, strands, style, density, beard, shadow):
    # style: index into BEARD_STYLES ("none", "stubble", "full", "goatee", "moustache", "chin_strap")
    h, w = full.shape
    stubble = 0.55 if style == 1 else 0.2
    for i in range(h):
        for j in range(w):
            jag = 2.0 * blotch[i, j] + fine[i, j]
            fm = max(full[i, j], must[i, j])
            if style <= 2:
                m = fm
            elif style == 3:
                m = max(must[i, j], chin[i, j])
            elif style == 4:
                m = must[i, j]
            else:
                m = strap[i, j]
            if style == 1 or style == 3 or style == 4:  # stubble, alone or around a shaped beard
                a = min(max((fm + jag + 5.0) / 8.0, 0.0), 1.0)
                a *= min(max(0.3 * spot[i, j] + 0.7, 0.0), 1.0) * stubble * density
                for k in range(3):
                    t[i, j, k] += a * (shadow[k] - t[i, j, k])
            if style != 1:
                a = min(max((m + jag + 1.5) / 4.0, 0.0), 1.0) * (0.65 + 0.35 * density)
                s = 1.0 + 0.3 * max(min(strands[i, j], 2.0), -2.0)
                for k in range(3):
                    t[i, j, k] += a * (beard[k] * s - t[i, j, k])


@numba.njit(cache=True, nogil=True, fastmath=True)
def _k_eye(r, fibres, iris_r, pupil_r, sclera, iris, out):
    """Eyeball albedo, averaged over the n samples of each of P points, at angles r (P, n) (radians) from
    the eye's axis: pupil, iris (with fibres), limbus, sclera."""
    corner = (0.5, 0.3, 0.28)
    n = r.shape[1]
    for p in range(r.shape[0]):
        acc = np.zeros(3, np.float32)
        for q in range(n):
            x = r[p, q]
            a_corner = min(max((x - 0.9) / 0.6, 0.0), 1.0)
            a_iris = min(max((iris_r + 0.03 - x) / 0.06, 0.0), 1.0)
            a_pupil = min(max((pupil_r + 0.02 - x) / 0.04, 0.0), 1.0)
            u = min(x / iris_r, 1.0)
            shade = (1.3 - 0.8 * u * u * u * u) * fibres[p, q]
            for k in range(3):
                c = sclera[k] + a_corner * (corner[k] - sclera[k])
                c += a_iris * (iris[k] * shade - c)
                c += a_pupil * (0.008 - c)
                acc[k] += c
        for k in range(3):
            out[p, k] = acc[k] / n


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
