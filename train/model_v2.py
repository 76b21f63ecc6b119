"""Network v2: one shared encoder, three outputs (bins, relief, live), int8-TFLite friendly.

    rgb 160×160×3 ─ normalise ─ stem (3×3/2) ─► f80 ─► encoder 40, 20, 10, 5 (separable blocks)
                                                         │ Recombinator decoder 5→10→20 (concat early)
                                                         ▼
      stage I   "bins": (K+1) logits at 20×20 → softmax → ONE ×4 bilinear upsampling → 80×80×(K+1)
                expected relief = fixed 1×1 conv with the bin centres at 20×20, upsampled with the bins
      stage II  light refinement at 80 / 2**refine_level on [the encoder's features there (refine_level 0:
                and the grey crop, 3×3/2 conv), stage I relief, decoder features projected to 16 channels and
                upsampled once] → two separable blocks → correction (mm); "relief" = stage I relief +
                correction (refine_level 1: refined at 40×40, then one ×2 bilinear upsampling to 80×80)
      liveness  "live": global average pools of the deepest encoder and the decoder features → one logit
                (+ = bona fide), trained with binary cross-entropy on the attack label

Why this shape (the study in docs/compression_study.md): on this CPU depthwise convolutions, resizes and
concatenations at 80×80 dominate time, not MACs; v1 paid for two encoder-decoders and nine resize + concat
pairs at high resolution. v2 has two resizes to 80×80 and one concat there. refine_level 1 (tried in
session 4, not promoted: its liveness loss was higher) moves the refinement to 40×40 and drops the grey
branch (a 1-channel 1×1 conv over 160×160 that alone took about 1 ms); stem_block false drops the separable
block at 80×80 after the stem (0.3 ms). int8 time 3.6 → 1.9 ms on this CPU against MediaPipe's face mesh at
2.2 ms in the same run (random-weight variants; `make bench-peer` measures a trained model). Bilinear
upsampling commutes with the 1×1 bin-centre conv, so computing stage I's relief at 20×20 gives the same map
as at 80×80.

The device runs `deploy_graph(model, cfg)`: the same function with the fixed grey 1×1 conv folded into
s2_grey's 3×3/2 kernel (both linear, and the zero padding of the normalised crop is zero grey, so the fold is
exact: outputs agree to float rounding). That drops the one op at 160×160 with a single output channel
(int8 0.818 → 0.766 ms on an AMD EPYC, session 7's weights) for +0.9 M MACs at 80×80; training keeps the
grey layer so committed weights load as they are.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers

from firmware_app.preprocess import INPUT_SIZE
from train.config import ModelConfig

GREY_RGB = (0.299, 0.587, 0.114)  # the grey branch's luma weights


def build_v2(cfg: ModelConfig, fold_grey: bool = False) -> keras.Model:
    """The training graph, or with `fold_grey` the deploy graph's shape (weights from `deploy_graph`)."""
    from train.model import RELIEF_NORM, _conv_bn, _encoder, _fixed_conv, _recombinator, _sep, bin_centres

    rgb = keras.Input((INPUT_SIZE, INPUT_SIZE, 3), name="rgb")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="normalise")(rgb)
    feats = _encoder(x, cfg.trunk_widths, cfg.blocks, "t", stem_block=cfg.stem_block)
    up = 2 ** cfg.head_level  # 20×20 → 80×80 for head_level 2
    dec = _recombinator(feats[cfg.head_level:], "t")  # decoder down to the head's resolution
    logits = layers.Conv2D(cfg.n_bins + 1, 1, name="s1_logits")(dec)
    probs = layers.Softmax(name="bins_low")(logits)
    bins = layers.UpSampling2D(up, interpolation="bilinear", name="bins")(probs)
    centres = np.append(bin_centres(cfg), 0.0)[:, None]  # background contributes 0 mm
    relief1_low = _fixed_conv(probs, centres, "stage1_relief_low")
    # Stage II: what stage I knows + image detail at the refinement's grid, one concat.
    r = cfg.refine_level  # 0: refine at 80×80; 1: at 40×40, then one ×2 upsampling
    to_ref = 2 ** (cfg.head_level - r)
    detail = [feats[r]]
    if r == 0:  # the grey crop's 3×3/2 conv; at 40×40 the encoder's features carry the detail: the grey
        # branch (a 1-channel conv at 160×160) alone cost about 1 ms of int8 time, as much as MediaPipe's mesh
        grey = x if fold_grey else _fixed_conv(x, np.array(GREY_RGB)[:, None], "grey")
        detail.insert(0, _conv_bn(grey, 8, 3, 2, "s2_grey"))
    ctx = _conv_bn(dec, 16, 1, 1, "s2_ctx")
    ctx = layers.UpSampling2D(to_ref, interpolation="bilinear", name="s2_ctx_up")(ctx)
    relief1 = layers.UpSampling2D(to_ref, interpolation="bilinear", name="stage1_relief")(relief1_low)
    r_norm = layers.Rescaling(1 / RELIEF_NORM, name="stage1_relief_norm")(relief1)
    y = layers.Concatenate(name="stage2_input")([*detail, r_norm, ctx])
    for i in range(2):
        y = _sep(y, cfg.refine_width, 1, f"s2_r{i}")
    delta = layers.Rescaling(RELIEF_NORM, name="stage2_delta")(layers.Conv2D(1, 1, name="s2_out")(y))
    if r:
        refined = layers.Add(name="relief_refined")([relief1, delta])
        relief = layers.UpSampling2D(2 ** r, interpolation="bilinear", name="relief")(refined)
    else:
        relief = layers.Add(name="relief")([relief1, delta])
    pooled = layers.Concatenate(name="live_features")([
        layers.GlobalAveragePooling2D(name="live_pool_deep")(feats[-1]),
        layers.GlobalAveragePooling2D(name="live_pool_dec")(dec)])
    live = layers.Dense(1, name="live")(layers.Dropout(0.2, name="live_dropout")(pooled))
    return keras.Model(rgb, {"bins": bins, "relief": relief, "live": live}, name="facedepth_v2")


def deploy_graph(model: keras.Model, cfg: ModelConfig) -> keras.Model:
    """`model` (a v2 training graph) with the grey conv folded into s2_grey; other models unchanged."""
    if cfg.arch != "v2" or cfg.refine_level != 0:
        return model  # refine_level 1 has no grey branch
    folded = build_v2(cfg, fold_grey=True)
    for layer in folded.layers:
        if not layer.weights:
            continue
        weights = model.get_layer(layer.name).get_weights()
        if layer.name == "s2_grey":  # (3, 3, 1, 8) on grey → (3, 3, 3, 8) on the normalised RGB
            weights = [weights[0] * np.asarray(GREY_RGB, np.float32)[None, None, :, None]]
        layer.set_weights(weights)
    return folded
