"""Block functions for train.model.build_model(block=...): the study's architectures differ only here.

Every block maps (tensor, filters, stride, name) to a tensor and ends in BN + ReLU, as the default
separable block does, so stems, Recombinator concatenations and heads stay identical across variants.
Only Conv2D, BatchNormalization, ReLU, Concatenate and MaxPooling2D are used: all int8 TFLite builtins.
"""

from __future__ import annotations

import math

from keras import layers

from train.model import BN_MOMENTUM


def _bn_relu(x, name: str):
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, scale=False, name=name + "_bn")(x)
    return layers.ReLU(name=name + "_relu")(x)


def _conv(x, filters: int, kernel: int, stride: int, name: str):
    return layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=name)(x)


def plain_block(x, filters: int, stride: int, name: str):
    """One full 3×3 convolution (the teacher: VGG-style, ~9× the MACs of a separable block)."""
    return _bn_relu(_conv(x, filters, 3, stride, name), name)


def fire_block(squeeze_ratio: float = 0.25):
    """SqueezeNet fire module: squeeze 1×1 to `squeeze_ratio`·filters, then expand 1×1 ∥ 3×3 (half each).

    A stride-2 fire is a 2×2 max-pool and a fire, as SqueezeNet downsamples between fires. (A strided
    1×1 expand would be the alternative; its gradient corrupts the heap in TF 2.21's oneDNN kernels on
    80×80 inputs: "double free or corruption", reproducible with one Conv2D(k=1, strides=2).)
    """

    def block(x, filters: int, stride: int, name: str):
        if stride > 1:
            x = layers.MaxPooling2D(stride, name=name + "_pool")(x)
        s = _bn_relu(_conv(x, max(4, round(squeeze_ratio * filters)), 1, 1, name + "_sq"), name + "_sq")
        e1 = _bn_relu(_conv(s, filters // 2, 1, 1, name + "_e1"), name + "_e1")
        e3 = _bn_relu(_conv(s, filters - filters // 2, 3, 1, name + "_e3"), name + "_e3")
        return layers.Concatenate(name=name + "_cat")([e1, e3])

    return block


def tucker_ranks(c_in: int, c_out: int, ratio: float) -> tuple[int, int]:
    """Tucker-2 ranks of a (3, 3, c_in, c_out) kernel: `ratio` of each channel count, at least 1."""
    return max(1, min(c_in, math.ceil(ratio * c_in))), max(1, min(c_out, math.ceil(ratio * c_out)))


def tucker_block(ratio: float):
    """plain_block's 3×3 conv as 1×1 (c_in → r_in) → 3×3 core (r_in → r_out, strided) → 1×1 (r_out → c_out).

    No nonlinearity inside: at full rank the three convolutions compute exactly the original one. The
    last 1×1 keeps the plain conv's name so its BatchNorm (`name_bn`) is matched by name when weights
    are copied from the teacher (convert/study/tucker.py).
    """

    def block(x, filters: int, stride: int, name: str):
        r_in, r_out = tucker_ranks(x.shape[-1], filters, ratio)
        x = _conv(x, r_in, 1, 1, name + "_tin")
        x = _conv(x, r_out, 3, stride, name + "_tcore")
        return _bn_relu(_conv(x, filters, 1, 1, name), name)

    return block
