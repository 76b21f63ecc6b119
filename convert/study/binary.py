"""BinaryConnect weights (Courbariaux et al. 2015) with XNOR-Net's per-channel scale (Rastegari et al. 2016).

Forward: each output channel's kernel is sign(w) · mean|w| of that channel, two values per channel.
Backward: straight-through (d ŵ / d w = 1), applied to the float master weights, which the optimiser
keeps updating. Stems and the two output heads stay full precision, as in both papers (the first and
last layers hold few weights and carry most of the accuracy loss).

After training, `to_plain` bakes the binarised kernels into stock layers; int8 per-channel conversion
then stores ±α exactly (±127 at scale α/127), so the .tflite is lossless w.r.t. the binary net, but
still 8 bits per weight: `packed_size` estimates the file with the binarised kernels at 1 bit each.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from convert.study.swap import Swapped, depthwise_call, swap_layers

FULL_PRECISION = ("_stem", "s1_logits", "s2_out")  # layer names (substrings) that are never binarised


def binarise(kernel, depthwise: bool = False):
    """sign(w)·mean|w| per output channel (the last axis; depthwise: the channel × multiplier axes)."""
    axes = (0, 1) if depthwise else tuple(range(len(kernel.shape) - 1))
    alpha = ops.mean(ops.abs(kernel), axis=axes, keepdims=True)
    return ops.where(kernel >= 0, alpha, -alpha)


def ste(kernel, quantised):
    """Forward `quantised`, gradient of the identity w.r.t. `kernel`."""
    return kernel + ops.stop_gradient(quantised - kernel)


class BinaryConv2D(Swapped, layers.Conv2D):
    plain_class = layers.Conv2D

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, ste(kernel, binarise(kernel)))

    def export_weights(self) -> list:
        return [ops.convert_to_numpy(binarise(self.kernel)), *self.get_weights()[1:]]


class BinaryDepthwiseConv2D(Swapped, layers.DepthwiseConv2D):
    plain_class = layers.DepthwiseConv2D

    def call(self, inputs):
        return depthwise_call(self, inputs, ste(self.kernel, binarise(self.kernel, depthwise=True)))

    def export_weights(self) -> list:
        return [ops.convert_to_numpy(binarise(self.kernel, depthwise=True)), *self.get_weights()[1:]]


def _factory(layer):
    if not layer.trainable or any(tag in layer.name for tag in FULL_PRECISION):
        return None
    if type(layer) is layers.DepthwiseConv2D:
        return BinaryDepthwiseConv2D.from_config(layer.get_config())
    if type(layer) is layers.Conv2D:
        return BinaryConv2D.from_config(layer.get_config())
    return None


def to_binary(model: keras.Model) -> keras.Model:
    return swap_layers(model, _factory)


def binary_weight_count(model: keras.Model) -> int:
    return sum(int(np.prod(layer.kernel.shape)) for layer in model.layers
               if isinstance(layer, (BinaryConv2D, BinaryDepthwiseConv2D)))


def packed_size(int8_bytes: int, n_binary_weights: int) -> int:
    """The .tflite size with each binarised int8 weight stored as 1 bit (scales and the rest unchanged)."""
    return int8_bytes - n_binary_weights + -(-n_binary_weights // 8)
