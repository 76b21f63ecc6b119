"""Magnitude pruning with a polynomial sparsity schedule, as a small Keras 3 callback.

Why not tfmot: tensorflow-model-optimization 0.8 refuses Keras 3 models and, once imported, switches
the whole process to tf_keras (../shared/TOOLCHAIN.md), so it would need its own process and a tf_keras
copy of the model. The part of it this study needs is small: Zhu & Gupta's (2017) schedule

    s(t) = s_f · (1 − (1 − t / t_end)³)      for t ≤ t_end, then s_f

with per-layer masks of the smallest-|w| weights recomputed every `every` steps, and the masks
re-applied after *every* optimiser step (AdamW's moment estimates would otherwise regrow pruned weights).
Pruned: trainable Conv2D kernels (1×1 pointwise and 3×3, stems and heads included), where almost all
weights are; depthwise kernels (9 weights per channel) are left dense.

int8 .tflite files do not shrink from zeros (dense kernels): the size that shrinks is after gzip.
"""

from __future__ import annotations

import gzip
import logging

import keras
import numpy as np
from keras import layers

log = logging.getLogger(__name__)


def _numpy(variable) -> np.ndarray:
    return keras.ops.convert_to_numpy(variable)


def polynomial_sparsity(step: int, final: float, end: int, power: int = 3) -> float:
    """Target sparsity after `step` steps: 0 at step 0, `final` from step `end` on."""
    frac = min(max(step / max(end, 1), 0.0), 1.0)
    return final * (1 - (1 - frac) ** power)


def prunable(model: keras.Model) -> list:
    return [lay for lay in model.layers if type(lay) is layers.Conv2D and lay.trainable]


def magnitude_mask(kernel: np.ndarray, sparsity: float) -> np.ndarray:
    """1 where the weight survives: the round(sparsity·n) smallest |w| of this kernel are 0."""
    k = int(round(sparsity * kernel.size))
    mask = np.ones(kernel.size, np.float32)
    if k > 0:
        mask[np.argsort(np.abs(kernel), axis=None, kind="stable")[:k]] = 0
    return mask.reshape(kernel.shape)


def sparsity(model: keras.Model) -> float:
    """Share of zeros over the prunable kernels."""
    ws = [_numpy(lay.kernel) for lay in prunable(model)]
    return float(sum((w == 0).sum() for w in ws) / max(sum(w.size for w in ws), 1))


class MagnitudePruning(keras.callbacks.Callback):
    """Prune `target` (default: the model being fit) to `final` sparsity by step `end`."""

    def __init__(self, final: float, end: int, every: int = 10, target: keras.Model | None = None):
        super().__init__()
        self.final, self.end, self.every, self.target = final, end, max(1, every), target
        self.step, self.masks, self.current = 0, {}, 0.0

    def _pruned(self) -> keras.Model:
        return self.target or self.model

    def update_masks(self, s: float) -> None:
        self.current = s
        self.masks = {lay.name: magnitude_mask(_numpy(lay.kernel), s) for lay in prunable(self._pruned())}

    def apply_masks(self) -> None:
        for lay in prunable(self._pruned()):
            lay.kernel.assign(_numpy(lay.kernel) * self.masks[lay.name])

    def on_train_begin(self, logs=None):
        self.update_masks(0.0)

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every == 0 or self.step == self.end:
            self.update_masks(polynomial_sparsity(self.step, self.final, self.end))
        self.apply_masks()

    def on_train_end(self, logs=None):
        if self.current < self.final:  # fewer steps than `end`: finish the schedule, so the row is honest
            log.warning("pruning ended at step %d before its schedule (end %d): jumping to %.2f sparsity",
                        self.step, self.end, self.final)
            self.update_masks(self.final)
            self.apply_masks()


def gzip_size(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))
