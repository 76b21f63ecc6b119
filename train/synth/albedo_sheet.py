"""Look at the albedo: a sheet of random identities on the neutral head, and a texture benchmark.

    python -m train.synth.albedo_sheet --sheet out/albedo_sheet.png
    python -m train.synth.albedo_sheet --bench
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np

from train.synth.albedo import (
    Appearance,
    _atlas,
    eye_albedo,
    eye_coordinates,
    linear_to_srgb,
    make_albedo,
    sample_appearance,
)
from train.synth.head import PART_EYE, head_mesh
from train.synth.occluders import draw_occluders, srgb_to_linear
from train.synth.raster import rasterize


def _render(tex: np.ndarray, yaw_deg: float, hw=(320, 256), vertices=None, app: Appearance | None = None):
    """Simple Lambert render of the neutral head with a texture → (sRGB uint8 RGB image, raster, K, camera
    points). With `app`, eyeball pixels are coloured by `eye_albedo` (what a renderer should do)."""
    from train.synth.head import vertex_normals
    from train.synth.raster import interpolate

    m = head_mesh()
    v = m.vertices if vertices is None else vertices
    h, w = hw
    a = np.radians(yaw_deg)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    p = v @ rot.T
    cam = np.stack([p[:, 0], -(p[:, 1] + 5.0), -p[:, 2] + 700.0], 1)
    K = np.array([[3.0 * w, 0, w / 2], [0, 3.0 * w, h / 2], [0, 0, 1.0]])
    r = rasterize(cam, m.triangles, K, hw)
    n = vertex_normals(cam, m.triangles)
    N = interpolate(r, n[m.triangles])
    N /= np.maximum(np.linalg.norm(N, axis=2, keepdims=True), 1e-6)
    L = np.array([0.35, -0.45, -1.0])
    L /= np.linalg.norm(L)
    shade = 0.25 + 0.85 * np.clip(-(N @ -L), 0, 1)
    uv = interpolate(r, m.tri_uv)
    s = tex.shape[0]
    alb = cv2.remap(tex, uv[..., 0] * s, uv[..., 1] * s, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    if app is not None:
        eye = r.covered & (m.tri_part[np.maximum(r.tri, 0)] == PART_EYE)
        coords = interpolate(r, eye_coordinates()[m.triangles])
        alb[eye] = eye_albedo(app, coords[eye])
    img = alb * shade[..., None]
    img[~r.covered] = 0.18
    return (linear_to_srgb(img) * 255 + 0.5).astype(np.uint8), r, K, cam


def _neutral_landmarks(cam: np.ndarray, K: np.ndarray, r) -> tuple[np.ndarray, np.ndarray]:
    """Rough iBUG-68 points on the neutral head (for the sheet only), projected."""
    from train.synth.raster import project

    t = np.pi - np.arange(17) * np.pi / 16  # jaw from the subject's right ear (x < 0) round the chin
    xy = np.array([
        *np.stack([70 * np.cos(t), -5 - 95 * np.sin(t)], 1),
        (-52, 14), (-44, 20), (-34, 23), (-24, 22), (-14, 18),
        (14, 18), (24, 22), (34, 23), (44, 20), (52, 14),
        (0, 5), (0, -10), (0, -24), (0, -38), (-13, -45), (-7, -47), (0, -48), (7, -47), (13, -45),
        (-43, 0), (-37, 3), (-27, 3), (-20, 0), (-27, -2.5), (-37, -2.5),
        (20, 0), (27, 3), (37, 3), (43, 0), (37, -2.5), (27, -2.5),
        (-25, -67), (-14, -61), (-5, -60), (0, -61), (5, -60), (14, -61), (25, -67), (14, -75), (5, -78),
        (0, -78), (-5, -78), (-14, -75), (-21, -67), (-6, -65), (0, -65), (6, -65), (21, -67), (6, -69),
        (0, -69), (-6, -69),
    ], np.float64)
    m = head_mesh()
    v = m.vertices
    idx = []
    for p in xy:  # the frontmost vertex near (x, y): a frontal ray cast
        d2 = np.sum((v[:, :2] - p) ** 2, 1)
        near = np.flatnonzero(d2 < max(np.sort(d2)[8], 9.0))
        idx.append(int(near[np.argmax(v[near, 2])]))
    lm = project(cam[idx], K)
    return lm, np.ones(68, bool)


def sheet(path: Path, n: int = 16, seed: int = 0) -> None:
    """Random identities (cycling through the six skin types) on the neutral head, frontal and at 30 deg
    yaw, with their occluders drawn from rough landmarks; eyeballs coloured by `eye_albedo`."""
    rng = np.random.default_rng(seed)
    occluder_rng = np.random.default_rng(seed + 1)
    tiles = []
    for i in range(n):
        app = sample_appearance(rng)
        while app.fitzpatrick != 1 + i % 6:  # show every skin type
            app = sample_appearance(rng)
        tex = make_albedo(app, rng)
        pair = []
        for yaw in (0.0, 30.0):
            img, r, K, cam = _render(tex, yaw, app=app)
            if app.glasses != "none" or app.fringe:
                lm, vis = _neutral_landmarks(cam, K, r)
                lin = draw_occluders(app, srgb_to_linear(img / 255.0), lm, vis, occluder_rng)
                img = (linear_to_srgb(lin) * 255 + 0.5).astype(np.uint8)
            pair.append(img)
        tile = np.hstack(pair)
        sex = "M" if app.male else "F"
        label = f"{i} type {app.fitzpatrick} {sex}{int(app.age)} {app.beard_style} {app.scalp} {app.glasses}"
        cv2.putText(tile, label, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        tiles.append(tile)
    per_row = 4
    rows = [np.hstack(tiles[i:i + per_row]) for i in range(0, n, per_row)]
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(np.vstack(rows), cv2.COLOR_RGB2BGR))


def bench(n: int = 20, repeats: int = 5, size: int = 512) -> tuple[float, float]:
    """(best wall-clock ms, best CPU ms) per texture over `repeats` batches of `n` (the CPUs are shared)."""
    rng = np.random.default_rng(0)
    apps = [sample_appearance(rng) for _ in range(n)]
    make_albedo(apps[0], rng, size)  # build the atlas
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        for app in apps:
            make_albedo(app, rng, size)
        wall.append((time.perf_counter() - t) / n * 1000.0)
        cpu.append((time.process_time() - c) / n * 1000.0)
    return min(wall), min(cpu)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sheet", type=Path, help="write a sheet of random identities to this PNG")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bench", action="store_true", help="time make_albedo")
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args(argv)
    if args.sheet:
        sheet(args.sheet, seed=args.seed)
        print(f"wrote {args.sheet}")
    if args.bench or not args.sheet:
        _atlas.cache_clear()
        t0 = time.perf_counter()
        _atlas(args.size)
        print(f"atlas (once per size): {(time.perf_counter() - t0) * 1000:.0f} ms")
        wall, cpu = bench(size=args.size)
        print(f"make_albedo size {args.size}: {wall:.2f} ms per texture (wall, best batch), {cpu:.2f} ms CPU")


if __name__ == "__main__":
    main()
