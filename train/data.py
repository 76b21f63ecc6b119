"""Training examples from dataset shards: jittered crop (firmware_app.preprocess), targets, augmentation.

Per sample: decode → crop box from the face box and eye landmarks, jittered in scale, shift and
roll (as a face detector errs) → 160×160 input with `crop_input`, depth and mask onto the 80×80 grid
with `crop_to_grid` → relief = median face depth − depth (mm, + = nearer) where the grid mask is
face → stage I bin labels → random flip and photometric augmentation (brightness, contrast, hue,
noise, blur; out-of-frame pixels stay black as on the device), a door camera's pipeline (`isp_prob`: the
attack content's restyles, on both classes), grey or IR-like crops (`grey_prob`).

The tf.data pipeline streams (epoch, shard, index) keys from a Python generator, shuffled in blocks
of `shuffle_shards` shards so only those shards are held in memory, and makes examples with a
parallel `numpy_function` map (cv2 and zlib release the GIL). Each sample's randomness is seeded by
(seed, epoch, shard, index), so augmentation does not depend on thread timing.

    python -m train.data --bench DATASET [--batch 16 --steps 40]   # pipeline throughput alone
"""

from __future__ import annotations

import argparse
import itertools
import logging
import threading
import time
from collections import OrderedDict
from typing import NamedTuple

import cv2
import numpy as np

from firmware_app.preprocess import (
    GRID_SIZE,
    INPUT_SIZE,
    CropTransform,
    crop_input,
    crop_to_grid,
    eye_angle_deg,
    fill_of,
    frame_to_grid,
    grid_frame_coords,
    inside_frame,
)
from train.config import Config, DataConfig, ModelConfig
from train.model import relief_to_bins
from train.synth.dataset_index import DatasetIndex
from train.synth.restyle import restyle
from train.synth.sample import MASK_FACE, Sample
from train.synth.shards import ShardReader

log = logging.getLogger(__name__)


class Example(NamedTuple):
    rgb: np.ndarray  # (160, 160, 3) uint8 network input
    relief: np.ndarray  # (80, 80) float32 mm, 0 outside the face
    face: np.ndarray  # (80, 80) bool, grid mask == face (and depth known)
    bins: np.ndarray  # (80, 80) int32 stage I labels, n_bins = background
    landmarks: np.ndarray  # (68, 2) float32 landmark positions on the 80 grid
    visible: np.ndarray  # (68,) bool
    is_attack: bool


def eye_centres(sample: Sample) -> np.ndarray:
    """iBUG eyes: 36-41 appears on the image's left (subject's right), 42-47 on the right."""
    return np.stack([sample.landmarks_2d[36:42].mean(0), sample.landmarks_2d[42:48].mean(0)])


def jittered_transform(sample: Sample, cfg: DataConfig, rng: np.random.Generator | None,
                       level: float = 1.0) -> CropTransform:
    """The device's crop of this face, with the box randomly off by up to `level` × the configured jitter."""
    x0, y0, x1, y1 = (float(v) for v in sample.face_box)
    size = max(x1 - x0, y1 - y0, 1.0)
    center = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    side, angle = cfg.crop_scale * size, eye_angle_deg(eye_centres(sample)) if cfg.use_eyes else 0.0
    if rng is not None and level > 0:
        side *= 1 + level * rng.uniform(-cfg.jitter_scale, cfg.jitter_scale)
        center = center + level * cfg.jitter_shift * size * rng.uniform(-1, 1, 2)
        angle += level * rng.uniform(-cfg.jitter_roll_deg, cfg.jitter_roll_deg)
    return CropTransform.from_square(center, side, angle)


def relief_targets(depth: np.ndarray, mask: np.ndarray, t: CropTransform,
                   intrinsics: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Relief on the 80 grid = median grid face depth − depth, where the grid mask is face.

    With `intrinsics` (data.relief_frame: crop_ray) depth is first taken along the ray through the crop
    centre instead of the optical axis: z' = z · (r · ĉ), r = K⁻¹(u, v, 1) of each grid cell, ĉ the unit
    ray through t.center. That is the depth the crop's own (rotated) virtual camera would see.
    """
    d, m = crop_to_grid(depth, t), crop_to_grid(mask, t)
    face = (m == MASK_FACE) & (d > 0)
    if not face.any():
        return np.zeros_like(d), face
    if intrinsics is not None:
        d = d * ray_factor(intrinsics, t)
    return np.where(face, np.median(d[face]) - d, 0).astype(np.float32), face


def ray_factor(intrinsics: np.ndarray, t: CropTransform) -> np.ndarray:
    """(80, 80) r · ĉ per grid cell (see relief_targets): 1 at the crop centre when it is on the axis."""
    (fx, _, cx), (_, fy, cy) = intrinsics[0], intrinsics[1]
    uv = grid_frame_coords(t)
    rays = np.stack([(uv[..., 0] - cx) / fx, (uv[..., 1] - cy) / fy, np.ones(uv.shape[:2])], -1)
    c = np.array([(t.center[0] - cx) / fx, (t.center[1] - cy) / fy, 1.0])
    return (rays @ (c / np.linalg.norm(c))).astype(np.float32)


def photometric(rgb: np.ndarray, cfg: DataConfig, rng: np.random.Generator) -> np.ndarray:
    img = rgb.astype(np.float32)
    mean = img.mean()
    img = (img - mean) * (1 + rng.uniform(-cfg.contrast, cfg.contrast)) + mean
    img *= 1 + rng.uniform(-cfg.brightness, cfg.brightness)
    if cfg.hue_deg > 0:
        hsv = cv2.cvtColor(np.clip(img, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
        hsv[..., 0] = (hsv[..., 0].astype(np.int32) + round(rng.uniform(-cfg.hue_deg, cfg.hue_deg) / 2)) % 180
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32)
    if rng.random() < cfg.blur_prob:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.5))
    img += rng.standard_normal(img.shape, dtype=np.float32) * rng.uniform(0, cfg.noise_std)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def grey3(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A mono or IR-like camera's view: luma (or the red channel, as skin looks under near-IR) with a
    random gamma, as three equal channels (the device's `camera.colour: grey` feeds the same)."""
    lum = rgb[..., 0].astype(np.float32) if rng.random() < 0.3 else \
        rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    lum = 255.0 * (lum / 255.0) ** rng.uniform(0.7, 1.4)
    return np.repeat(np.clip(lum + 0.5, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def make_example(sample: Sample, data: DataConfig, model: ModelConfig, rng: np.random.Generator | None = None,
                 level: float = 1.0, augment: bool = False) -> Example:
    """One network input and its targets; rng=None → the exact (unjittered) device crop."""
    t = jittered_transform(sample, data, rng, level)
    # training shows every fill a bundle may use past the frame, so none decides the verdict
    replicate = augment and rng is not None and rng.random() < data.edge_replicate_prob
    edge = ("replicate", "replicate_blur")[int(rng.random() < 0.5)] if replicate else \
        ("black" if augment else fill_of(data.border))
    rgb = crop_input(sample.rgb, t, edge=edge)
    ray = sample.intrinsics if data.relief_frame == "crop_ray" else None
    relief, face = relief_targets(sample.depth_mm, sample.mask, t, ray)
    lms = frame_to_grid(sample.landmarks_2d, t).astype(np.float32)
    if augment and rng is not None:
        inside = inside_frame(t, sample.rgb.shape[:2])
        if data.flip and rng.random() < 0.5:  # landmarks are left unflipped: training does not use them
            rgb, relief, face, inside = (a[:, ::-1].copy() for a in (rgb, relief, face, inside))
        rgb = photometric(rgb, data, rng)
        if rng.random() < data.isp_prob:  # the camera's own look, whatever it films: not a class cue
            rgb = restyle(rgb, rng)
        if not replicate:
            rgb = rgb * inside[..., None]
        if rng.random() < data.grey_prob:
            rgb = grey3(rgb, rng)
    return Example(rgb, relief, face, relief_to_bins(relief, face, model), lms,
                   sample.landmarks_visible.copy(), sample.is_attack)


class Source:
    """Thread-safe random access to one split, holding at most `cache` shards in memory."""

    def __init__(self, index: DatasetIndex, split: str, cache: int = 8, max_samples: int = 0):
        self.index, self.entries, self.cache = index, index.entries(split), max(cache, 1)
        self.keys = [(s, i) for s, e in enumerate(self.entries) for i in range(e.n)]
        if 0 < max_samples < len(self.keys):  # evenly spaced, so a subset still spans all shards/identities
            self.keys = [self.keys[int(i)] for i in np.linspace(0, len(self.keys) - 1, max_samples)]
        if not self.keys:
            raise ValueError(f"{index.root}: split {split!r} has no samples ({index.counts()})")
        self._open: OrderedDict[int, ShardReader] = OrderedDict()
        self._verified: set[int] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.keys)

    def reader(self, shard: int) -> ShardReader:
        with self._lock:
            if shard in self._open:
                self._open.move_to_end(shard)
                return self._open[shard]
            e = self.entries[shard]  # hash checked on first open only: re-hashing costs ~30 ms/shard
            r = ShardReader(self.index.root / e.file, None if shard in self._verified else e.sha256)
            self._verified.add(shard)
            self._open[shard] = r
            while len(self._open) > self.cache:
                self._open.popitem(last=False)
            return r

    def sample(self, shard: int, i: int) -> Sample:
        return self.reader(shard).sample(i)

    def epoch_order(self, seed: int, epoch: int, worker: tuple[int, int] = (0, 1)):
        """Keys in shuffled blocks of `cache` shards: random enough, and each shard loads once."""
        rng = np.random.default_rng([seed, epoch])
        by_shard: dict[int, list[int]] = {}
        for s, i in self.keys[worker[0]::worker[1]]:
            by_shard.setdefault(s, []).append(i)
        shards = rng.permutation(sorted(by_shard))
        for b in range(0, len(shards), self.cache):
            block = [(int(s), i) for s in shards[b : b + self.cache] for i in by_shard[int(s)]]
            yield from (block[j] for j in rng.permutation(len(block)))


def make_dataset(cfg: Config, split: str, training: bool, index: DatasetIndex | None = None,
                 batch_size: int | None = None, worker: tuple[int, int] = (0, 1)):
    """tf.data of (rgb float32 0..255, {"bins": int32 (80,80), "relief": float32 (80,80,2) relief+face,
    and for v2 models "live": float32 (1,), 1 = bona fide})."""
    import tensorflow as tf  # here, so evaluation/preprocessing users need not import TF

    index = index or DatasetIndex.load(cfg.data.dataset)
    limit = cfg.data.max_train_samples if training else cfg.data.max_val_samples
    src = Source(index, split, cfg.data.shuffle_shards, limit)
    seed = cfg.train.seed

    def keys():
        epochs = itertools.count() if training else [0]
        for epoch in epochs:
            if training:
                yield from ((epoch, s, i) for s, i in src.epoch_order(seed, epoch, worker))
            else:
                yield from ((0, s, i) for s, i in src.keys[worker[0]::worker[1]])

    def load(key):
        epoch, s, i = (int(v) for v in key)
        rng = np.random.default_rng([seed, epoch, s, i]) if training else None
        ex = make_example(src.sample(s, i), cfg.data, cfg.model, rng, augment=training)
        live = np.array([0.0 if ex.is_attack else 1.0], np.float32)
        return ex.rgb, ex.bins, np.stack([ex.relief, ex.face.astype(np.float32)], -1), live

    def tf_load(key):
        rgb, bins, relief, live = tf.numpy_function(load, [key], [tf.uint8, tf.int32, tf.float32, tf.float32])
        rgb = tf.ensure_shape(tf.cast(rgb, tf.float32), (INPUT_SIZE, INPUT_SIZE, 3))
        bins = tf.ensure_shape(bins, (GRID_SIZE, GRID_SIZE))
        targets = {"bins": bins, "relief": tf.ensure_shape(relief, (GRID_SIZE, GRID_SIZE, 2))}
        if cfg.model.has_live:
            targets["live"] = tf.ensure_shape(live, (1,))
        return rgb, targets

    ds = tf.data.Dataset.from_generator(keys, output_signature=tf.TensorSpec((3,), tf.int64))
    workers = cfg.data.workers or tf.data.AUTOTUNE
    ds = ds.map(tf_load, num_parallel_calls=workers, deterministic=not training)
    if not training and len(src) <= cfg.data.max_val_samples:
        ds = ds.cache()
    batch = batch_size or cfg.data.batch_size
    ds = ds.batch(batch, drop_remainder=training)
    # Known cardinality: Keras then neither warns that validation "ran out of data" nor counts steps.
    n_batches = tf.data.INFINITE_CARDINALITY if training else -(-len(src.keys[worker[0]::worker[1]]) // batch)
    ds = ds.apply(tf.data.experimental.assert_cardinality(n_batches))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return ds.prefetch(tf.data.AUTOTUNE).with_options(options), len(src)


def bench(dataset: str, batch: int, steps: int, workers: int) -> float:
    cfg = Config(data=DataConfig(dataset=dataset, batch_size=batch, workers=workers))
    ds, n = make_dataset(cfg, "train", training=True)
    it = iter(ds)
    for _ in range(3):  # warm-up: shard loading, thread pool start
        next(it)
    t0 = time.perf_counter()
    for _ in range(steps):
        next(it)
    rate = steps / (time.perf_counter() - t0)
    print(f"pipeline: {rate:.2f} steps/s, {rate * batch:.1f} images/s (batch {batch}, {n} train samples, "
          f"workers {'AUTOTUNE' if not workers else workers})")
    return rate


def main() -> None:
    p = argparse.ArgumentParser(description="Benchmark the training input pipeline alone.")
    p.add_argument("--bench", metavar="DATASET", required=True, help="dataset directory")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--workers", type=int, default=0, help="0 = AUTOTUNE")
    a = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bench(a.bench, a.batch, a.steps, a.workers)


if __name__ == "__main__":
    main()
