"""The UV atlas: what lies under every texel of the hm08 layout, computed once per texture size.

Everything that depends only on the mesh is built here (`_atlas`, lru_cached, ~2 s) so that a texture
costs only arithmetic on small crops: a position map (the neutral head-frame 3D point under every
texel, extended past the UV islands' borders to their nearest texel so bilinear lookups never bleed),
smooth region fields (redness, dark circles, hairline height, beard margins, brow coordinates in mm,
lid-margin distances, eyeball angles) cropped to small boxes, MakeHuman's own lip mask
(`mpfb_lips.jpg`, the same one the landmarks' vermilion border comes from), and banks of value noise
that each texture reads through random windows (`_Noise`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from train.synth import makehuman as mh
from train.synth.albedo.eyes import _eye_coords, _eye_frames, _eye_polar
from train.synth.head import PART_EYE, PART_MOUTH, PART_SKIN, head_mesh
from train.synth.raster import rasterize

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


class _Noise:
    """Random windows of the atlas' noise banks, one random offset per bank per texture."""

    def __init__(self, atlas: _Atlas, rng: np.random.Generator):
        s = atlas.size
        self.banks = atlas.banks
        self.offsets = {k: rng.integers(0, s, 2) for k in sorted(atlas.banks)}

    def __call__(self, name: str, sl: tuple[slice, slice]) -> np.ndarray:
        oy, ox = self.offsets[name]
        return self.banks[name][sl[0].start + oy: sl[0].stop + oy, sl[1].start + ox: sl[1].stop + ox]
