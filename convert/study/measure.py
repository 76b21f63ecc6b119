"""Convert one trained variant to int8 and measure it the same way as every other row.

- int8: convert.quantize.convert_int8 (full-integer PTQ on the study's calibration crops), then
  inspect_tflite: refused unless int8 end to end, input pixel − 128. The ptq16x8 row (extra
  activations: int16) is converted by convert_16x8 instead, and its "int8" columns are its 16×8 figures.
- int8 ms: convert.verify.benchmark_ms, median of `bench_runs` invokes, 1 thread, this machine.
- MAE: train.evaluate.evaluate on the test split (device crops, bona fide, shift-aligned over the true
  face mask), int8 through LiteRT and float through Keras, on the same first `eval_samples` samples.
- size: .tflite bytes, and after gzip -9 (zeros from pruning only show there). MACs/params: count_macs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from convert.quantize import convert_16x8, convert_int8, graph_ops, inspect_tflite
from convert.study.prune import gzip_size
from convert.verify import TFLitePredict, benchmark_ms
from train.config import Config
from train.evaluate import evaluate, keras_predict_fn
from train.model import count_macs
from train.synth.dataset_index import write_json_atomic

log = logging.getLogger(__name__)
EVAL_THREADS = 2  # scoring only: the int8 outputs do not depend on the thread count, the timing does


@dataclass(frozen=True)
class Trained:
    """What a variant's training hands to measurement (also stored as train.json)."""

    step_ms: float  # median ms per optimiser step of this variant's own training (fine-tuning if derived)
    steps: int  # optimiser steps run by this variant itself
    seconds: float
    description: str
    extra: dict = field(default_factory=dict)  # variant-specific facts (sparsity, ranks, 1-bit size ...)


@dataclass(frozen=True)
class VariantResult:
    variant: str
    description: str
    train_ms_per_step: float
    train_steps: int
    int8_ms: float  # median, 1 thread
    size_kb: float  # .tflite
    gzip_kb: float
    macs: int
    params: int
    mae_int8_mm: float
    mae_float_mm: float
    n_eval: int  # bona fide test samples scored
    ops: dict
    extra: dict

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def load(cls, path: Path) -> VariantResult:
        return cls(**json.loads(Path(path).read_text()))


def is_16x8(extra: dict) -> bool:
    """A row converted 16×8 (Trained.extra / VariantResult.extra say so) rather than int8."""
    return extra.get("activations") == "int16"


def _mae(result) -> tuple[float, int]:
    g = result.bona_fide
    return (g.mae_mm, g.n) if g else (float("nan"), 0)


def measure(variant: str, model: keras.Model, trained: Trained, tcfg: Config, index, crops: np.ndarray,
            out_dir: Path, eval_samples: int, bench_runs: int) -> VariantResult:
    t0 = time.perf_counter()
    path = out_dir / "model_int8.tflite"
    int16 = is_16x8(trained.extra)
    data = (convert_16x8 if int16 else convert_int8)(model, crops, tcfg.model.relief_range_mm)
    path.write_bytes(data)
    ops = graph_ops(path) if int16 else inspect_tflite(path)[0]  # (int16 tensors are 16×8's point)
    int8_ms = benchmark_ms(path, num_threads=1, runs=bench_runs)
    kw = {"data": tcfg.data, "model": tcfg.model, "max_samples": eval_samples}
    mae_q, n = _mae(evaluate(TFLitePredict(path, EVAL_THREADS), index, "test", **kw))
    mae_f, _ = _mae(evaluate(keras_predict_fn(model), index, "test", **kw))
    stats = count_macs(model)
    extra = dict(trained.extra)
    if "binary_weights" in extra:  # what the file could be with 1-bit storage of the binarised kernels
        from convert.study.binary import packed_size

        extra["packed_1bit_kb"] = round(packed_size(len(data), extra["binary_weights"]) / 1024, 1)
    op_counts: dict[str, int] = {}
    for o in ops:
        op_counts[o.op] = op_counts.get(o.op, 0) + 1
    result = VariantResult(variant, trained.description, trained.step_ms, trained.steps, int8_ms,
                           len(data) / 1024, gzip_size(data) / 1024, stats.macs, stats.params, mae_q, mae_f,
                           n, op_counts, extra)
    write_json_atomic(out_dir / "result.json", result.to_json())
    log.info("%s: int8 %.2f ms, %.1f KB (gzip %.1f), %.1f M MACs, MAE int8 %.2f / float %.2f mm (n=%d), "
             "measured in %.0f s", variant, int8_ms, result.size_kb, result.gzip_kb, stats.macs / 1e6, mae_q,
             mae_f, n, time.perf_counter() - t0)
    return result
