"""Tucker-2 decomposition (tensorly) of a trained network's 3×3 convolutions.

A (3, 3, C_in, C_out) kernel W is factored along its two channel modes only (Kim et al. 2016):

    W[a, b, i, o] ≈ Σ_rs core[a, b, r, s] · U_in[i, r] · U_out[o, s]

which is three convolutions with no nonlinearity between them: 1×1 by U_in (C_in → R_in), the 3×3 core
(R_in → R_out, with the original stride) and 1×1 by U_outᵀ (R_out → C_out). MACs drop from 9·C_in·C_out
to C_in·R_in + 9·R_in·R_out + R_out·C_out per pixel. The decomposed network is built by build_model
with blocks.tucker_block, so it is an ordinary Keras graph; stems (3 or 2 input channels) are kept.
"""

from __future__ import annotations

import dataclasses
import logging

import keras
import numpy as np

from convert.study.blocks import tucker_block
from train.config import ModelConfig
from train.model import build_model

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TuckerFactors:
    first: np.ndarray  # (1, 1, C_in, R_in)
    core: np.ndarray  # (kh, kw, R_in, R_out)
    last: np.ndarray  # (1, 1, R_out, C_out)


def decompose_kernel(kernel: np.ndarray, ranks: tuple[int, int], iters: int = 50) -> TuckerFactors:
    """Tucker-2 of a Conv2D kernel over its channel modes (HOOI from the SVD initialisation)."""
    import tensorly as tl
    from tensorly.decomposition import partial_tucker

    tl.set_backend("numpy")
    w = np.asarray(kernel, np.float64)
    (core, (u_in, u_out)), _ = partial_tucker(w, rank=list(ranks), modes=[2, 3], n_iter_max=iters, init="svd")
    return TuckerFactors(u_in[None, None].astype(np.float32), np.asarray(core, np.float32),
                         u_out.T[None, None].astype(np.float32))


def reconstruct(f: TuckerFactors) -> np.ndarray:
    """The kernel the three convolutions compute together."""
    return np.einsum("abrs,ir,so->abio", f.core, f.first[0, 0], f.last[0, 0], optimize=True)


def tucker_model(teacher: keras.Model, cfg: ModelConfig, ratio: float) -> tuple[keras.Model, float]:
    """The teacher's architecture with every block conv Tucker-2 decomposed, weights from the teacher;
    and the mean relative kernel error ‖W − Ŵ‖/‖W‖ before fine-tuning."""
    model = build_model(cfg, tucker_block(ratio))
    names = {layer.name for layer in model.layers}
    filled, errors = set(), []
    for layer in teacher.layers:
        if not layer.weights:
            continue
        if layer.name + "_tcore" in names:
            target = model.get_layer(layer.name + "_tcore")
            ranks = (target.input.shape[-1], target.filters)
            (kernel,) = layer.get_weights()
            f = decompose_kernel(kernel, ranks)
            errors.append(np.linalg.norm(reconstruct(f) - kernel) / max(np.linalg.norm(kernel), 1e-12))
            model.get_layer(layer.name + "_tin").set_weights([f.first])
            target.set_weights([f.core])
            model.get_layer(layer.name).set_weights([f.last])
            filled |= {layer.name + "_tin", layer.name + "_tcore"}
        else:
            model.get_layer(layer.name).set_weights(layer.get_weights())
        filled.add(layer.name)
    missing = [layer.name for layer in model.layers if layer.weights and layer.name not in filled]
    if missing:
        raise ValueError(f"Tucker model layers without teacher weights: {missing[:5]}")
    mean_err = float(np.mean(errors)) if errors else 0.0
    log.info("Tucker-2 at rank ratio %.2f: %d convs, kernel relative error mean %.3f, max %.3f", ratio,
             len(errors), mean_err, float(np.max(errors)) if errors else 0.0)
    return model, mean_err
