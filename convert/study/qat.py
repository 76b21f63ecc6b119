"""Quantisation-aware fine-tuning in Keras 3: simulated int8 in the forward pass, straight-through backward.

Why not tfmot's QAT: it refuses Keras 3 models and needs tf_keras in a process of its own (tfmot sets
TF_USE_LEGACY_KERAS=1 on import; ../shared/TOOLCHAIN.md), i.e. a second copy of the model code in
tf_keras and a round trip through files. What the converter will do is simple enough to simulate here:

- weights: symmetric per output channel, 8 bits narrow range (±127 · max|w|/127), as TFLite quantises
  conv kernels. BatchNorm folds into the kernel as a positive per-channel factor (scale=False, so
  1/√(var+ε)), and per-channel symmetric rounding is invariant to that factor: fake-quantising the
  unfolded kernel is exactly the grid the folded kernel will be rounded to.
- activations: every ReLU output (TFLite fuses the ReLU into the conv, whose int8 output has range
  [0, max] with zero point −128) is clipped and rounded to 256 levels over [0, max], max from the same
  calibration crops the converter uses.

Gradients pass straight through the rounding (inside the clipping range for activations). After
fine-tuning, `to_plain` gives stock layers with the float weights, and the usual PTQ conversion
(convert.quantize.convert_int8) produces the .tflite.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from convert.study.binary import ste
from convert.study.swap import Swapped, depthwise_call, swap_layers


def fake_quant_weights(kernel, depthwise: bool = False):
    axes = (0, 1) if depthwise else tuple(range(len(kernel.shape) - 1))
    scale = ops.maximum(ops.max(ops.abs(kernel), axis=axes, keepdims=True), 1e-8) / 127.0
    return ste(kernel, ops.clip(ops.round(kernel / scale), -127, 127) * scale)


def fake_quant_activation(x, hi: float):
    scale = max(hi, 1e-6) / 255.0
    clipped = ops.clip(x, 0.0, hi)
    return ste(clipped, ops.round(clipped / scale) * scale)


class QConv2D(Swapped, layers.Conv2D):
    plain_class = layers.Conv2D

    def convolution_op(self, inputs, kernel):
        return super().convolution_op(inputs, fake_quant_weights(kernel))


class QDepthwiseConv2D(Swapped, layers.DepthwiseConv2D):
    plain_class = layers.DepthwiseConv2D

    def call(self, inputs):
        return depthwise_call(self, inputs, fake_quant_weights(self.kernel, depthwise=True))


class QReLU(Swapped, layers.ReLU):
    plain_class = layers.ReLU
    extra_config = ("hi",)

    def __init__(self, hi: float = 6.0, **kwargs):
        super().__init__(**kwargs)
        self.hi = float(hi)

    def call(self, inputs):
        return fake_quant_activation(super().call(inputs), self.hi)

    def get_config(self):
        return {**super().get_config(), "hi": self.hi}


def relu_ranges(model: keras.Model, crops: np.ndarray, batch: int = 16) -> dict[str, float]:
    """Max of every ReLU output over the calibration crops (what the converter's calibration records)."""
    relus = [lay for lay in model.layers if isinstance(lay, layers.ReLU)]
    probe = keras.Model(model.input, [lay.output for lay in relus])
    hi = np.zeros(len(relus))
    for i in range(0, len(crops), batch):
        outs = probe(crops[i:i + batch].astype(np.float32), training=False)
        hi = np.maximum(hi, [float(ops.max(o)) for o in outs])
    return {lay.name: float(h) for lay, h in zip(relus, hi, strict=True)}


def to_qat(model: keras.Model, ranges: dict[str, float]) -> keras.Model:
    def factory(layer):
        cfg = layer.get_config()
        if type(layer) is layers.Conv2D:
            return QConv2D.from_config(cfg)
        if type(layer) is layers.DepthwiseConv2D:
            return QDepthwiseConv2D.from_config(cfg)
        if type(layer) is layers.ReLU:
            return QReLU.from_config({**cfg, "hi": ranges[layer.name]})
        return None

    return swap_layers(model, factory)
