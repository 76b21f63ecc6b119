"""A tiny dataset of analytic "faces" for tests and development, in the real dataset format.

A face is an ellipsoid head with Gaussian bumps (nose, brows, lips, cheeks) and dents (eye sockets),
ray-cast per pixel, so depth is exact by construction; its colour is skin albedo shaded by the depth
map's own normals plus dark eyes/brows and red lips drawn at the landmarks. Attacks show such a face
on a flat sheet or screen (true depth: the plane). Frames are small (240×320 by default).

    python -m tests.fakes OUT_DIR [--n-train 48 --n-val 8 --n-test 16]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import cv2
import numpy as np

from train.synth.dataset_index import DatasetIndex
from train.synth.sample import BONA_FIDE, MASK_FACE, MASK_HEAD, Sample

HW = (240, 320)
# Face-local landmark template (x right, y down, mm from the head centre), iBUG 68 order.
_JAW = [(-68 * math.cos(a), 10 + 78 * math.sin(a)) for a in np.linspace(0.15, math.pi - 0.15, 17)]
_BROWS = [(x, -38 - 6 * math.sin((x + 60) / 40 * math.pi)) for x in np.linspace(-55, -12, 5)]
_BROWS += [(-x, y) for x, y in reversed(_BROWS)]
_NOSE = [(0, -22 + 8 * i) for i in range(4)] + [(x, 16) for x in (-12, -6, 0, 6, 12)]
_EYE = [(-10, 0), (-5, -4), (5, -4), (10, 0), (5, 3), (-5, 3)]
_EYES = [(x - 32, y - 18) for x, y in _EYE] + [(x + 32, y - 18) for x, y in _EYE]
_MOUTH = [(25 * math.cos(a), 45 + 9 * math.sin(a)) for a in np.linspace(math.pi, -math.pi, 13)[:-1]]
_MOUTH += [(14 * math.cos(a), 45 + 4 * math.sin(a)) for a in np.linspace(math.pi, -math.pi, 9)[:-1]]
TEMPLATE = np.array(_JAW + _BROWS + _NOSE + _EYES + _MOUTH, np.float64)
assert TEMPLATE.shape == (68, 2)
# (x, y, sx, sy, height mm): positive = towards the camera
_BUMPS = [(0, -5, 9, 22, 24.0), (0, 14, 14, 8, 6.0), (-32, -18, 14, 9, -7.0), (32, -18, 14, 9, -7.0),
          (0, 46, 20, 8, 5.0), (-30, -36, 20, 6, 4.0), (30, -36, 20, 6, 4.0), (0, 72, 22, 12, 6.0)]


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, p, r = np.radians([yaw, pitch, roll])
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def _bump_height(x: np.ndarray, y: np.ndarray, scale: float) -> np.ndarray:
    h = np.zeros_like(x)
    for bx, by, sx, sy, amp in _BUMPS:
        h += amp * scale * np.exp(-0.5 * (((x - bx) / sx) ** 2 + ((y - by) / sy) ** 2))
    return h


def _raycast(K, rot, center, axes, bump_scale, hw):
    """Per-pixel camera Z of the bumped ellipsoid (0 = miss) and face-local x, y of the hit."""
    h, w = hw
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1)
    d = rays @ rot / axes  # head-local ray directions, ellipsoid scaled to the unit sphere
    o = (-center @ rot) / axes
    a, b, c = (d * d).sum(-1), 2 * (d @ o), o @ o - 1
    disc = b * b - 4 * a * c
    t = np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), 0.0)
    local = (o + t[..., None] * d) * axes
    facing = local[..., 2] < 0  # front half of the head (local z points away from the camera)
    bump = _bump_height(local[..., 0], local[..., 1], bump_scale) * facing
    z = np.where(disc > 0, t - bump * rot[2, 2], 0.0)
    return z.astype(np.float32), local, facing


def _shade(depth: np.ndarray, albedo: np.ndarray, light: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(depth.astype(np.float64) / 2.0)
    n = np.stack([-gx, -gy, -np.ones_like(gx)], axis=-1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    lambert = np.clip(n @ light, 0, 1)[..., None]
    return albedo * (0.3 + 0.7 * lambert)


def _background(rng: np.random.Generator, hw) -> np.ndarray:
    h, w = hw
    base = rng.uniform(40, 200, 3)
    ramp = np.linspace(-1, 1, w)[None, :, None] * rng.uniform(-40, 40, 3)
    noise = cv2.GaussianBlur(rng.normal(0, 25, (h, w, 3)), (0, 0), 3)
    return np.clip(base + ramp + noise, 0, 255)


def _landmarks(K, rot, center, axes, bump_scale):
    x, y = TEMPLATE[:, 0] * axes[0] / 75, TEMPLATE[:, 1] * axes[1] / 95
    z = -axes[2] * np.sqrt(np.clip(1 - (x / axes[0]) ** 2 - (y / axes[1]) ** 2, 0.01, 1))
    z = z - _bump_height(x, y, bump_scale)
    cam = np.stack([x, y, z], -1) @ rot.T + center
    uv = cam[:, :2] / cam[:, 2:] * [K[0, 0], K[1, 1]] + K[:2, 2]
    return uv.astype(np.float32), cam.astype(np.float32)


def _draw_features(img: np.ndarray, lm2d: np.ndarray, rng: np.random.Generator) -> None:
    dark = tuple(float(v) for v in rng.uniform(20, 60, 3))
    for lo, hi in ((36, 42), (42, 48)):
        cv2.fillPoly(img, [np.round(lm2d[lo:hi] * 4).astype(np.int32)], dark, cv2.LINE_AA, shift=2)
    for lo, hi in ((17, 22), (22, 27)):
        cv2.polylines(img, [np.round(lm2d[lo:hi] * 4).astype(np.int32)], False, dark, 2, cv2.LINE_AA, 2)
    lip = (float(rng.uniform(150, 200)), 60.0, 70.0)
    cv2.fillPoly(img, [np.round(lm2d[48:60] * 4).astype(np.int32)], lip, cv2.LINE_AA, shift=2)


def _face(identity: int, rng: np.random.Generator) -> dict:
    """Identity shape and albedo (fixed per identity)."""
    r = np.random.default_rng(1000 + identity)
    return {
        "axes": np.array([r.uniform(68, 80), r.uniform(90, 104), r.uniform(85, 100)]),
        "bump_scale": r.uniform(0.8, 1.25),
        "albedo": r.uniform([150, 100, 80], [240, 190, 160]),
    }


def render_sample(identity: int, label: str, rng: np.random.Generator, hw=HW) -> Sample:
    h, w = hw
    f = 0.95 * w
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])
    face = _face(identity, rng)
    pose = rng.uniform([-25, -15, -15], [25, 15, 15])
    rot = _rotation(*pose)
    dist = rng.uniform(450, 700)
    center = np.array([rng.uniform(-0.15, 0.15) * dist, rng.uniform(-0.1, 0.1) * dist, dist])
    z, local, facing = _raycast(K, rot, center, face["axes"], face["bump_scale"], hw)
    lm2d, lm3d = _landmarks(K, rot, center, face["axes"], face["bump_scale"])
    head = z > 0
    lx, ly = local[..., 0] / face["axes"][0] * 75, local[..., 1] / face["axes"][1] * 95
    in_face = head & facing & (np.abs(lx) < 66) & (ly > -70) & (ly < 88)
    mask = np.where(in_face, MASK_FACE, np.where(head, MASK_HEAD, 0)).astype(np.uint8)
    light = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.6, 0.1), -1.0])
    skin = _shade(np.where(head, z, z[head].max() + 50 if head.any() else 0), face["albedo"],
                  light / np.linalg.norm(light))
    img = np.where(head[..., None], skin, _background(rng, hw))
    _draw_features(img, lm2d, rng)
    depth = z
    if label != BONA_FIDE:
        depth, mask, img = _as_attack(img, mask, lm2d, K, dist, rng, hw)
    img = np.clip(img + rng.normal(0, 2.0, img.shape), 0, 255).astype(np.uint8)
    box = np.concatenate([lm2d.min(0), lm2d.max(0)]).astype(np.float32)
    visible = (lm2d[:, 0] >= 0) & (lm2d[:, 0] < w) & (lm2d[:, 1] >= 0) & (lm2d[:, 1] < h)
    return Sample(rgb=img, depth_mm=depth.astype(np.float32), mask=mask, landmarks_2d=lm2d,
                  landmarks_3d=lm3d, landmarks_visible=visible, intrinsics=K.astype(np.float32),
                  pose_deg=pose.astype(np.float32), face_box=box, identity=identity, label=label)


def _as_attack(img, mask, lm2d, K, dist, rng, hw):
    """Put the rendered picture on a slightly tilted plane (print or screen) in front of the camera."""
    h, w = hw
    v, u = np.mgrid[0:h, 0:w].astype(np.float64)
    x0, y0 = lm2d.min(0) - (lm2d.max(0) - lm2d.min(0)) * 0.6
    x1, y1 = lm2d.max(0) + (lm2d.max(0) - lm2d.min(0)) * 0.6
    sheet = (u >= x0) & (u <= x1) & (v >= y0) & (v <= y1)
    gx, gy = rng.uniform(-0.3, 0.3, 2)  # plane Z = d + gx·X + gy·Y, solved along each ray
    rx, ry = (u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]
    plane = dist / (1 - gx * rx - gy * ry)
    depth = np.where(sheet, plane, 0).astype(np.float32)
    new_mask = np.where(sheet, np.where(mask == MASK_FACE, MASK_FACE, MASK_HEAD), 0).astype(np.uint8)
    gain = rng.uniform(0.7, 1.1)
    img = np.where(sheet[..., None], img * gain + rng.uniform(0, 30), img)
    return depth, new_mask, img


def write_fake_dataset(root, n_train: int = 24, n_val: int = 6, n_test: int = 8, hw=HW,
                       attack_every: int = 4, per_shard: int = 8, seed: int = 0) -> DatasetIndex:
    """Write a dataset of analytic faces under root; each shard holds its own identities."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    index = DatasetIndex(root=root, image_hw=tuple(hw), meta={"generator": "tests.fakes", "seed": seed})
    attacks = ("print_flat", "replay_phone")
    rng = np.random.default_rng(seed)
    shard_id, identity = 0, 0
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        for start in range(0, n, per_shard):
            samples = []
            for i in range(start, min(n, start + per_shard)):
                label = attacks[i // attack_every % 2] if i % attack_every == attack_every - 1 else BONA_FIDE
                samples.append(render_sample(identity + i % 3, label, rng, hw))
            index.add_shard(shard_id, split, samples)
            shard_id, identity = shard_id + 1, identity + 3
    return index


def tiny_run_config(index: DatasetIndex, model, runs: Path, name: str = "tiny", steps: int = 3):
    """A training config that fits one epoch of `steps` batches of 4 on a fake dataset in seconds."""
    from train.config import Config, DataConfig, TrainConfig

    return Config(data=DataConfig(dataset=str(index.root), batch_size=4, max_val_samples=4), model=model,
                  train=TrainConfig(name=name, out_dir=str(runs), epochs=1, steps_per_epoch=steps,
                                    warmup_steps=1, verbose=0, run_eagerly=True))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--n-train", type=int, default=48)
    p.add_argument("--n-val", type=int, default=8)
    p.add_argument("--n-test", type=int, default=16)
    a = p.parse_args()
    index = write_fake_dataset(a.out, a.n_train, a.n_val, a.n_test)
    print(f"{a.out}: {index.counts()}")


if __name__ == "__main__":
    main()
