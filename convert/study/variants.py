"""How each row is trained. Every function returns the exportable model (stock Keras layers) and Trained.

    teacher   plain 3×3 convolutions, wider, over the product budget: the accuracy upper bound
    student   the default budgeted network (train.model.build_model), trained alone; int8 by PTQ
    fire      SqueezeNet fire modules in place of the separable blocks, same widths and budget
    tucker    the teacher's snapshot, Tucker-2 decomposed (tensorly), fine-tuned
    pruneNN   the student's snapshot, magnitude-pruned to NN % of its conv weights, fine-tuned
    kd        the student trained with the teacher's bins (KL at T) and relief (L1)
    kd_ie     kd plus inheritance/exploration on the stage I bottleneck
    binary    the student with BinaryConnect weights, trained from scratch
    qat       the student's snapshot fine-tuned with simulated int8, then the same PTQ conversion
    ptq16x8   the trained student itself, converted 16×8 (int16 activations, int8 weights): no training

Snapshots: teacher and student save `snapshot.keras` after `steps − finetune_steps` steps; derived
variants start there and fine-tune `finetune_steps` (convert/study/config.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import keras
import numpy as np

from convert.study import binary, prune, qat
from convert.study.blocks import fire_block, plain_block
from convert.study.config import StudyConfig, model_config, sparsity_of, train_config
from convert.study.distill import Distiller
from convert.study.fit import Snapshot, fit
from convert.study.measure import Trained
from convert.study.swap import to_plain
from convert.study.tucker import tucker_model
from train.model import build_model

log = logging.getLogger(__name__)
SNAPSHOT = "snapshot.keras"


@dataclass
class Context:
    cfg: StudyConfig
    root: Path
    index: object  # DatasetIndex

    def dir(self, variant: str) -> Path:
        return self.root / variant

    def load(self, variant: str, snapshot: bool = False) -> keras.Model:
        path = self.dir(variant) / (SNAPSHOT if snapshot else "model.keras")
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: delete {self.dir(variant)} to train {variant} again")
        return keras.saving.load_model(path, compile=False)

    @cached_property
    def crops(self) -> np.ndarray:
        """Calibration crops of the validation split, the same for every variant (and for QAT ranges)."""
        from convert.quantize import calibration_crops

        tcfg = train_config(self.cfg, model_config(self.cfg), 1)
        return calibration_crops(tcfg, self.index, self.cfg.n_calib, seed=self.cfg.seed)[0]


def _scratch(ctx: Context, name: str, model: keras.Model, mcfg, snapshot: bool, desc: str,
             train_model: keras.Model | None = None, extra: dict | None = None):
    """Train `train_model` (default `model`) from scratch for the full budget; `model` is exported."""
    cfg = ctx.cfg
    cbs = [Snapshot(ctx.dir(name) / SNAPSHOT, cfg.steps - cfg.finetune_steps, model)] if snapshot else []
    stats = fit(train_model or model, train_config(cfg, mcfg, cfg.steps), ctx.index, name, cbs, cfg.log_every)
    return model, Trained(stats.step_ms, stats.steps, stats.seconds, desc, extra or {})


def _finetune(ctx: Context, name: str, model: keras.Model, mcfg, desc: str, callbacks=(), extra=None):
    cfg = ctx.cfg
    tcfg = train_config(cfg, mcfg, cfg.finetune_steps, lr=cfg.finetune_lr)
    stats = fit(model, tcfg, ctx.index, name, callbacks, cfg.log_every)
    return model, Trained(stats.step_ms, stats.steps, stats.seconds, desc, extra or {})


def teacher(ctx: Context, name: str):
    mcfg = model_config(ctx.cfg, teacher=True)
    model = build_model(mcfg, plain_block)
    return _scratch(ctx, name, model, mcfg, True, "plain 3×3 convs, wider (over budget)")


def student(ctx: Context, name: str):
    mcfg = model_config(ctx.cfg)
    return _scratch(ctx, name, build_model(mcfg), mcfg, True, "separable blocks, budgeted; int8 by PTQ")


def fire(ctx: Context, name: str):
    mcfg = model_config(ctx.cfg)
    ratio = ctx.cfg.fire_squeeze_ratio
    return _scratch(ctx, name, build_model(mcfg, fire_block(ratio)), mcfg, False,
                    f"SqueezeNet fire modules, squeeze {ratio}")


def tucker(ctx: Context, name: str):
    mcfg, ratio = model_config(ctx.cfg, teacher=True), ctx.cfg.tucker_rank_ratio
    model, err = tucker_model(ctx.load("teacher", snapshot=True), mcfg, ratio)
    return _finetune(ctx, name, model, mcfg, f"teacher Tucker-2, ranks {ratio}·C, fine-tuned",
                     extra={"rank_ratio": ratio, "kernel_rel_error": round(err, 4)})


def pruned(ctx: Context, name: str):
    cfg, final = ctx.cfg, sparsity_of(name)
    model = ctx.load("student", snapshot=True)
    cb = prune.MagnitudePruning(final, round(cfg.prune_end_fraction * cfg.finetune_steps), cfg.prune_every)
    desc = f"student pruned to {final:.0%}, fine-tuned"
    model, trained = _finetune(ctx, name, model, model_config(cfg), desc, [cb])
    trained.extra["sparsity"] = round(prune.sparsity(model), 4)
    return model, trained


def _distill(ctx: Context, name: str, ie: bool):
    cfg, mcfg = ctx.cfg, model_config(ctx.cfg)
    net = build_model(mcfg)
    tcfg = train_config(cfg, mcfg, cfg.steps)
    distiller = Distiller(net, ctx.load("teacher"), temperature=cfg.temperature, kd_weight=cfg.kd_weight,
                          w_relief=tcfg.train.w_relief, ie_weight=cfg.ie_weight if ie else 0.0,
                          explore_weight=cfg.explore_weight if ie else 0.0)
    desc = f"student + teacher's bins (KL, T={cfg.temperature:g}) and relief (L1)"
    desc += "; inheritance/exploration on the bottleneck" if ie else ""
    return _scratch(ctx, name, net, mcfg, False, desc, train_model=distiller)


def kd(ctx: Context, name: str):
    return _distill(ctx, name, ie=False)


def kd_ie(ctx: Context, name: str):
    return _distill(ctx, name, ie=True)


def binary_weights(ctx: Context, name: str):
    mcfg = model_config(ctx.cfg)
    net = binary.to_binary(build_model(mcfg))
    n_bin = binary.binary_weight_count(net)
    _, trained = _scratch(ctx, name, net, mcfg, False, "BinaryConnect weights ±α per channel (STE)",
                          extra={"binary_weights": n_bin})
    return to_plain(net), trained


def quant_aware(ctx: Context, name: str):
    model = ctx.load("student", snapshot=True)
    net = qat.to_qat(model, qat.relu_ranges(model, ctx.crops))
    _, trained = _finetune(ctx, name, net, model_config(ctx.cfg), "student snapshot + fake-int8 fine-tuning")
    return to_plain(net), trained


def ptq16x8(ctx: Context, name: str):
    trained = Trained(0.0, 0, 0.0, "the student, 16×8 PTQ (int16 activations, int8 weights)",
                      {"activations": "int16"})
    return ctx.load("student"), trained


def trainer_of(variant: str):
    if sparsity_of(variant) is not None:
        return pruned
    return {"teacher": teacher, "student": student, "fire": fire, "tucker": tucker, "kd": kd, "kd_ie": kd_ie,
            "binary": binary_weights, "qat": quant_aware, "ptq16x8": ptq16x8}[variant]
