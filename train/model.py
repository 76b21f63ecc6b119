"""The two-stage depth network: one functional Keras graph, two named outputs, int8-TFLite friendly.

    rgb 160×160×3, float 0..255 (raw pixels; normalised inside)
      │ stage I: encoder 80→5, Recombinator decoder 5→80
      ▼
    "bins"   80×80×(K+1) softmax: K relief bins of the face + background (face prob = 1 - p_bg)
      │ fixed 1×1 conv with the bin centres (background = 0): soft-argmax expected relief, mm
      ▼        ("stage1_relief"; ×2 bilinear to 160, concatenated with the grey crop: "stage2_input")
      │ stage II: same encoder-decoder shape on 2 channels
      ▼
    "relief" 80×80×1 mm (+ = nearer the camera than the face's median), stage I's relief + correction

Recombinator decoder (Honari et al.): the coarse branch is upsampled and concatenated into the next
finer branch *before* that branch's convolutions, so fine layers condition on coarse context early,
rather than summing per-branch predictions at the end.

Only Conv2D, DepthwiseConv2D, BatchNorm (folded at conversion), ReLU, Concatenate, UpSampling2D
(bilinear), Softmax, Add and Rescaling (Mul/Add) are used: all convert to int8 TFLite builtins.
Intermediate layers have names ("stage1_relief", "grey", "stage2_input", "stage2_delta") so a
sub-model can expose them: `keras.Model(m.input, m.get_layer("stage1_relief").output)`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import NamedTuple

import keras
import numpy as np
from keras import layers

from firmware_app.preprocess import GRID_SIZE, INPUT_SIZE
from train.config import ModelConfig

log = logging.getLogger(__name__)
RELIEF_NORM = 50.0  # mm; relief is divided by this where it meets image features (one int8 scale)
# BN moving averages: Keras' 0.99 still carries 13% of the init statistics after 200 steps, so short CPU
# runs validated on garbage statistics; 0.95 averages over ~20 steps. scale=False everywhere because a
# ReLU follows (the next convolution absorbs the scale), which also cuts optimizer work.
BN_MOMENTUM = 0.95


def bin_edges(cfg: ModelConfig) -> np.ndarray:
    return np.linspace(cfg.relief_min_mm, cfg.relief_max_mm, cfg.n_bins + 1)


def bin_centres(cfg: ModelConfig) -> np.ndarray:
    e = bin_edges(cfg)
    return (e[:-1] + e[1:]) / 2


def relief_to_bins(relief: np.ndarray, face: np.ndarray, cfg: ModelConfig) -> np.ndarray:
    """Stage I labels: bin index where face, cfg.n_bins (background) elsewhere; out-of-range is clipped."""
    width = (cfg.relief_max_mm - cfg.relief_min_mm) / cfg.n_bins
    idx = np.clip(np.floor((relief - cfg.relief_min_mm) / width), 0, cfg.n_bins - 1)
    return np.where(face, idx, cfg.n_bins).astype(np.int32)


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str):
    x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=name)(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, scale=False, name=name + "_bn")(x)
    return layers.ReLU(name=name + "_relu")(x)


def _sep(x, filters: int, stride: int, name: str):
    """Depthwise 3×3 + pointwise 1×1, each with BN + ReLU (MobileNet block)."""
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=name + "_dw")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, scale=False, name=name + "_dw_bn")(x)
    x = layers.ReLU(name=name + "_dw_relu")(x)
    return _conv_bn(x, filters, 1, 1, name + "_pw")


# A block maps (tensor, filters, stride, layer-name prefix) to a tensor. The default is _sep; the
# compression study (convert/study) swaps in plain 3×3, fire and Tucker blocks through build_model(block=).
Block = Callable[..., object]


def _encoder(x, widths: tuple[int, ...], blocks: tuple[int, ...], name: str, block: Block = _sep,
             stem_block: bool = True) -> list:
    """160 input → features at 80, 40, 20, ... (one per width); blocks[i-1] extra blocks at level i, and
    one block after the stem at 80×80 unless `stem_block` is false."""
    x = _conv_bn(x, widths[0], 3, 2, f"{name}_stem")
    if stem_block:
        x = block(x, widths[0], 1, f"{name}_e0")
    feats = [x]
    for i, w in enumerate(widths[1:], start=1):
        x = block(x, w, 2, f"{name}_e{i}")
        for b in range(blocks[min(i - 1, len(blocks) - 1)]):
            x = block(x, w, 1, f"{name}_e{i}_{b}")
        feats.append(x)
    return feats


def _recombinator(feats: list, name: str, block: Block = _sep):
    """Coarse-to-fine: upsample the coarser branch, concatenate into the finer one, then convolve."""
    y = feats[-1]
    for i in range(len(feats) - 2, -1, -1):
        up = layers.UpSampling2D(2, interpolation="bilinear", name=f"{name}_up{i}")(y)
        y = layers.Concatenate(name=f"{name}_cat{i}")([feats[i], up])
        y = block(y, feats[i].shape[-1], 1, f"{name}_d{i}")
    return y


def _fixed_conv(x, kernel: np.ndarray, name: str):
    """A 1×1 conv with constant weights (grey conversion, bin centres): a builtin CONV_2D on device."""
    conv = layers.Conv2D(kernel.shape[-1], 1, use_bias=False, trainable=False, name=name)
    y = conv(x)
    conv.set_weights([kernel.reshape(1, 1, *kernel.shape).astype("float32")])
    return y


def build_model(cfg: ModelConfig | None = None, block: Block | None = None) -> keras.Model:
    """The network of `cfg`; `block` replaces the separable block everywhere but the stems (default _sep)."""
    cfg = cfg or ModelConfig()
    if cfg.arch == "v2":
        from train.model_v2 import build_v2

        return _check_budget(build_v2(cfg), cfg)
    block = block or _sep
    rgb = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="rgb")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="normalise")(rgb)
    # Stage I: relief bins as semantic segmentation.
    s1 = _recombinator(_encoder(x, cfg.s1_widths, cfg.blocks, "s1", block), "s1", block)
    logits = layers.Conv2D(cfg.n_bins + 1, 1, name="s1_logits")(s1)
    bins = layers.Softmax(name="bins")(logits)
    centres = np.append(bin_centres(cfg), 0.0)[:, None]  # background contributes 0 mm
    relief1 = _fixed_conv(bins, centres, "stage1_relief")
    # Stage II: grey crop + stage I's expected relief at 160 → relief regression on the 80 grid.
    grey = _fixed_conv(x, np.array([[0.299], [0.587], [0.114]]), "grey")
    r160 = layers.UpSampling2D(2, interpolation="bilinear", name="stage1_relief_160")(
        layers.Rescaling(1 / RELIEF_NORM, name="stage1_relief_norm")(relief1))
    x2 = layers.Concatenate(name="stage2_input")([grey, r160])
    s2 = _recombinator(_encoder(x2, cfg.s2_widths, cfg.blocks, "s2", block), "s2", block)
    delta = layers.Conv2D(1, 1, name="s2_out")(s2)
    delta = layers.Rescaling(RELIEF_NORM, name="stage2_delta")(delta)
    relief = layers.Add(name="relief")([relief1, delta]) if cfg.residual else \
        layers.Identity(name="relief")(delta)
    return _check_budget(keras.Model(rgb, {"bins": bins, "relief": relief}, name="facedepth"), cfg)


def _check_budget(model: keras.Model, cfg: ModelConfig) -> keras.Model:
    stats = count_macs(model)
    log.info("model %s: %.3f M params, %.1f M MACs", model.name, stats.params / 1e6, stats.macs / 1e6)
    if stats.macs > cfg.max_macs or stats.params > cfg.max_params:
        raise ValueError(f"model over budget: {stats.macs / 1e6:.1f} M MACs (max {cfg.max_macs / 1e6:.0f}), "
                         f"{stats.params / 1e6:.3f} M params (max {cfg.max_params / 1e6:.1f}); "
                         "shrink model.s1_widths/s2_widths/blocks or raise model.max_macs/max_params")
    return model


class ModelStats(NamedTuple):
    params: int  # all weights, including BN statistics (which fold into convs on conversion)
    macs: int  # multiply-accumulates per image, convolutions and dense layers
    per_layer: dict[str, int]


def layer_macs(layer) -> int:
    """MACs of one layer from its output shape: conv = H·W·k·k·C_in·C_out/groups."""
    out_shape = layer.output.shape
    if isinstance(layer, layers.DepthwiseConv2D):
        kh, kw = layer.kernel_size
        return out_shape[1] * out_shape[2] * kh * kw * out_shape[3]
    if isinstance(layer, layers.Conv2D):
        kh, kw = layer.kernel_size
        c_in = layer.input.shape[-1]
        return out_shape[1] * out_shape[2] * kh * kw * c_in * out_shape[3] // layer.groups
    if isinstance(layer, layers.Dense):
        return int(np.prod(out_shape[1:-1], dtype=np.int64)) * layer.input.shape[-1] * out_shape[-1]
    return 0


def count_macs(model: keras.Model) -> ModelStats:
    per_layer = {layer.name: layer_macs(layer) for layer in model.layers}
    return ModelStats(int(model.count_params()), int(sum(per_layer.values())), per_layer)


def output_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    shapes = {"bins": (GRID_SIZE, GRID_SIZE, cfg.n_bins + 1), "relief": (GRID_SIZE, GRID_SIZE, 1)}
    return {**shapes, "live": (1,)} if cfg.has_live else shapes
