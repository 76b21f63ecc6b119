"""The held-out real-photo attack slice: prints and screens showing real photographs training never sees.

    python -m train.synth.photo_attacks --out out/photo_attacks --n 400 --seed 0

Every frame is a presentation attack (real photographs have no depth, so there is no bona fide frame
here) whose medium shows a randomly cropped, scaled, rotated and colour-processed (restyle + a JPEG
pass) version of one source photograph (train/synth/photo_sources.py), rendered like
generator.generate_sample's attack branch: sample_medium, render_attack (which places the medium at
50–100 % of the frame height: a phone at ~20 cm fills the frame), a procedural background,
draw_fingers, the sensor and its JPEG pass. Attack types in turn per source; sample i is drawn from
np.random.default_rng([seed, i, STREAM]) alone, so a frame is the same bytes whenever it is made.

The dataset is an ordinary facedepth dataset (shards + index.json) whose shards are all split "test";
each shard holds one source, named in the index's meta["shard_sources"], and meta["sources"] records
each photograph's file, sha256 and licence. Training never reads it: the whole slice is the
leave-one-source-out figure (convert/photo_attack_eval.py reports it per source and per type).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from train.synth.attacks import Photo, draw_fingers, render_attack, sample_medium
from train.synth.background import make_background
from train.synth.camera import sample_camera
from train.synth.dataset_index import DatasetError, DatasetIndex
from train.synth.photo_sources import SOURCES, PhotoSourceError, detector, load_photo, provenance
from train.synth.restyle import restyle
from train.synth.sample import ATTACK_TYPES, Sample
from train.synth.sensor import decode_jpeg, encode_jpeg, sample_sensor, sense
from train.synth.shading import sample_lighting
from train.synth.shards import JPEG_QUALITY

STREAM = 41  # the rng stream of this slice (the generator's streams are 0..3)
IDENTITY_BASE = 9_000_000  # source k is identity IDENTITY_BASE + k: far from the generator's ids


@dataclass(frozen=True)
class PhotoAttackConfig:
    height: int = 480
    width: int = 640
    hfov_deg: tuple[float, float] = (50.0, 90.0)
    face_fill: tuple[float, float] = (0.3, 0.85)  # landmark-extent height / shown photo height
    roll_deg: float = 10.0  # the photo's own rotation in its frame (a tilted print), uniform ±
    jpeg_prob: float = 0.5  # the photo went through a JPEG pass (quality 40-95) before it was shown

    def to_dict(self) -> dict:
        return asdict(self)


def _window(extent: np.ndarray, hw: tuple[int, int], aspect: float, fill: float,
            rng: np.random.Generator) -> tuple[float, float, float, float]:
    """(x0, y0, w, h) of a window of the photo holding the face extent, with the given width/height
    aspect, the face filling about `fill` of its height (less where the photo is too small)."""
    img_h, img_w = hw
    (fx0, fy0), (fx1, fy1) = extent
    h = (fy1 - fy0) / fill
    h = min(h, img_h, img_w / aspect)
    h = max(h, fy1 - fy0, (fx1 - fx0) / aspect)  # never cut the face itself
    w = h * aspect

    def offset(lo: float, hi: float) -> float:  # face inside the window, window inside the photo if it can
        return float(rng.uniform(lo, hi)) if lo <= hi else (lo + hi) / 2

    x0 = offset(max(0.0, fx1 - w), min(fx0, img_w - w))
    y0 = offset(max(0.0, fy1 - h), min(fy0, img_h - h))
    return x0, y0, float(w), float(h)


def shown_photo(source: Photo, cfg: PhotoAttackConfig, rng: np.random.Generator) -> Photo:
    """A random crop / scale / small rotation of the source, restyled, maybe JPEG'd: what is printed."""
    out_h = int(rng.choice([300, 400, 480]))
    aspect = float(rng.choice([0.75, 1.0, 4 / 3]))
    out_w = int(round(out_h * aspect))
    lm = source.landmarks_2d.astype(np.float64)
    x0, y0, w, h = _window(np.array([lm.min(0), lm.max(0)]), source.rgb.shape[:2], aspect,
                           rng.uniform(*cfg.face_fill), rng)
    s = out_h / h
    centre = lm.mean(axis=0)
    roll = float(rng.uniform(-1, 1) * cfg.roll_deg)
    rot = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), roll, 1.0)
    m = np.array([[s, 0, -s * x0], [0, s, -s * y0]]) @ np.vstack([rot, [0, 0, 1]])
    rgb = cv2.warpAffine(source.rgb, m, (out_w, out_h), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)
    mask = cv2.warpAffine(source.mask, m, (out_w, out_h), flags=cv2.INTER_NEAREST)
    lms = (lm @ m[:, :2].T + m[:, 2]).astype(np.float32)
    rgb = restyle(rgb, rng)
    if rng.random() < cfg.jpeg_prob:
        rgb = decode_jpeg(encode_jpeg(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), int(rng.integers(40, 96))))
    inside = (lms[:, 0] >= 0) & (lms[:, 0] < out_w) & (lms[:, 1] >= 0) & (lms[:, 1] < out_h)
    return Photo(rgb, mask, lms, source.landmarks_visible & inside)


def photo_attack_sample(cfg: PhotoAttackConfig, source: Photo, identity: int, label: str,
                        rng: np.random.Generator) -> Sample:
    """One attack frame showing `source`, as generator.generate_sample renders an attack."""
    camera = sample_camera(rng, (cfg.height, cfg.width), cfg.hfov_deg)
    photo = shown_photo(source, cfg, rng)
    medium = sample_medium(label, photo.rgb.shape[1] / photo.rgb.shape[0], rng)
    img = make_background(rng, camera.hw)
    layer = render_attack(photo, medium, camera, sample_lighting(rng), rng)
    covered = layer.mask > 0  # the medium; composited here so either render_attack signature works
    img[covered] = layer.radiance[covered]
    depth, mask = layer.depth, layer.mask
    draw_fingers(img, depth, mask, rng)
    sensor = sample_sensor(rng)
    bgr = sense(img, sensor, rng)
    quality = getattr(sensor, "jpeg_quality", None)  # the camera's own JPEG pass, when it has one
    jpeg = encode_jpeg(bgr, quality or JPEG_QUALITY)
    extra = {"rgb_jpeg": jpeg} if "rgb_jpeg" in Sample.__dataclass_fields__ else {}
    lm2 = layer.landmarks_2d
    return Sample(
        rgb=decode_jpeg(jpeg) if quality else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
        depth_mm=depth.astype(np.float32), mask=mask.astype(np.uint8), landmarks_2d=lm2,
        landmarks_3d=layer.landmarks_3d, landmarks_visible=layer.landmarks_visible,
        intrinsics=camera.K.astype(np.float32), pose_deg=layer.pose_deg.astype(np.float32),
        face_box=np.array([*lm2.min(axis=0), *lm2.max(axis=0)], np.float32), identity=identity,
        label=label, **extra,
    )


def plan(n: int, n_sources: int) -> list[tuple[int, int, str]]:
    """(sample index, source index, attack type) for i < n: sources alternate, types in turn per source."""
    return [(i, i % n_sources, ATTACK_TYPES[(i // n_sources) % len(ATTACK_TYPES)]) for i in range(n)]


def generate(out: Path, n: int, seed: int = 0, shard_size: int = 50, cfg: PhotoAttackConfig | None = None,
             sources=SOURCES, log=print, detector_model: str | None = None) -> DatasetIndex:
    """Write (or resume) the slice: one shard per `shard_size` frames of one source, all split test."""
    cfg = cfg or PhotoAttackConfig()
    out = Path(out)
    meta = {"kind": "photo_attacks", "n": n, "seed": seed, "shard_size": shard_size, "config": cfg.to_dict(),
            "command": " ".join(["python -m train.synth.photo_attacks", *sys.argv[1:]]),
            "held_out": "every shard is split test; training never sees these photographs",
            "sources": {s.name: provenance(s) for s in sources}, "shard_sources": {}}
    if (out / "index.json").is_file():
        index = DatasetIndex.load(out)
        old = {k: index.meta.get(k) for k in ("kind", "seed", "shard_size", "config")}
        if old != {k: meta[k] for k in old}:
            raise DatasetError(f"{out}: holds a different slice ({old}); delete it or choose another --out")
        meta["shard_sources"] = index.meta.get("shard_sources", {})
        index.meta = meta
    else:
        out.mkdir(parents=True, exist_ok=True)
        index = DatasetIndex(root=out, image_hw=(cfg.height, cfg.width), meta=meta)
    det = detector(detector_model)  # None: the MediaPipe short-range model (convert.mediapipe_assets)
    t0, done = time.perf_counter(), 0
    chunks = {}  # shard id → (source index, its plan rows): a larger --n keeps the full shards made before
    for k in range(len(sources)):
        rows = [r for r in plan(n, len(sources)) if r[1] == k]
        chunks.update({k * 1000 + c // shard_size: (k, rows[c:c + shard_size])
                       for c in range(0, len(rows), shard_size)})
    for stale in set(index.shards) - set(chunks):
        del index.shards[stale]
        index.meta["shard_sources"].pop(f"shard-{stale:05d}.npz", None)
    photos: dict[int, Photo] = {}
    for shard_id, (k, rows) in sorted(chunks.items()):
        if index.is_complete(shard_id) and index.shards[shard_id].n == len(rows):
            continue
        if k not in photos:
            photos[k] = load_photo(sources[k].name, det)
        samples = [photo_attack_sample(cfg, photos[k], IDENTITY_BASE + k, label,
                                       np.random.default_rng([seed, i, STREAM])) for i, _, label in rows]
        index.meta["shard_sources"][f"shard-{shard_id:05d}.npz"] = sources[k].name
        index.add_shard(shard_id, "test", samples)
        done += len(samples)
        log(f"{sources[k].name}: shard {shard_id:05d} ({len(samples)} frames), "
            f"{done / (time.perf_counter() - t0):.1f} frames/s")
    index.save()
    return index


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.synth.photo_attacks",
                                description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("out/photo_attacks"))
    p.add_argument("--n", type=int, default=400, help="frames in all (sources alternate)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard-size", type=int, default=50)
    args = p.parse_args(argv)
    if args.n < 1 or args.shard_size < 1:
        print("error: --n and --shard-size must be ≥ 1", file=sys.stderr)
        return 2
    try:
        index = generate(args.out, args.n, args.seed, args.shard_size)
    except (DatasetError, PhotoSourceError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.out}: {index.n_samples('test')} attack frames, test split: {index.counts()['test']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
