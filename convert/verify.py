"""Verification gate: the shipped int8 .tflite against the float Keras model, through the same evaluation.

    verify(run_dir, tflite_path) -> VerifyResult      (result.check() raises GateError if refused)

Both models are scored by `train.evaluate.evaluate` on the test split (device crops). The int8 model runs
in ai_edge_litert exactly as on the device: uint8 crop → int8 (scale 1, zero point -128) → invoke →
dequantised outputs. The gate refuses the model unless

    int8 MAE ≤ 1.05 × float MAE + 0.05 mm        (bona fide, shift-aligned, over the true face mask)
    int8 attack relief ≤ 1.05 × float + 1 step    (attack planar_range_p95_mm: the plane-removed relief
                                                   the net invents on a photo/screen, which liveness reads)

The absolute slacks keep a tiny or barely trained model (float MAE of a few mm, attack relief near 0)
from failing on rounding alone: 0.05 mm is far below any real accuracy change, and one step of the relief
output's int8 quantisation (its scale, ~0.4 mm) is the smallest change an int8 percentile can make.
A test split without attacks cannot check the second rule: that is recorded in `notes`, not passed.

The same run also calibrates the liveness threshold on the validation split with the int8 model
(convert/liveness.py) and times the int8 model (median of 50 invokes, 1 thread, this machine).
With `mirror_average` both models are scored as the device will run them: each crop and its mirror,
averaged (`mirror_averaged`, through firmware_app.depth.mirror_mean), and the evidence is fitted on that.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from convert.liveness import LivenessCalibration, calibrate, liveness_score, medium_counts
from convert.quantize import ConvertError, dataset_of, load_checked_run, named_outputs
from firmware_app.depth import DepthResult, mirror_mean
from firmware_app.tflite import make_interpreter
from train.evaluate import EvalResult, evaluate, keras_predict_fn

log = logging.getLogger(__name__)
MAE_RATIO, MAE_SLACK_MM = 1.05, 0.05
ATTACK_RATIO = 1.05
ATTACK_METRIC = "planar_range_p95_mm"


class GateError(ConvertError):
    """The int8 model lost too much accuracy to ship."""


class TFLitePredict:
    """uint8 (N, 160, 160, 3) → (relief mm, face prob, bin probs, live logits or None) with a LiteRT
    interpreter built once (an int8 model, or the study's 16×8 one: the input dtype says which)."""

    def __init__(self, path, num_threads: int = 2):
        self.interpreter = make_interpreter(path, num_threads)
        (self.inp,) = self.interpreter.get_input_details()
        self.out = named_outputs(self.interpreter)
        self.scale, self.zero_point = self.inp["quantization"]
        self.dtype = np.dtype(self.inp["dtype"])  # int8 (the device), int16 (the study's 16×8 row)

    def quantise(self, rgb: np.ndarray) -> np.ndarray:
        q = np.round(rgb.astype(np.float32) / self.scale) + self.zero_point
        info = np.iinfo(self.dtype)
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantise(self, name: str) -> np.ndarray:
        d = self.out[name]
        scale, zp = d["quantization"]
        return (self.interpreter.get_tensor(d["index"]).astype(np.float32) - zp) * np.float32(scale)

    def invoke_one(self, rgb: np.ndarray) -> None:
        self.interpreter.set_tensor(self.inp["index"], self.quantise(rgb)[None])
        self.interpreter.invoke()

    def __call__(self, batch: np.ndarray):
        relief, bins, live = [], [], []
        for rgb in batch:
            self.invoke_one(rgb)
            relief.append(self.dequantise("relief")[0, ..., 0])
            bins.append(self.dequantise("bins")[0])
            if "live" in self.out:
                live.append(float(self.dequantise("live").ravel()[0]))
        bins = np.stack(bins)
        return np.stack(relief), 1.0 - bins[..., -1], bins, (np.array(live, np.float32) if live else None)


def mirror_averaged(fn):
    """A batch predict function (uint8 (N, 160, 160, 3) → relief, face prob, bins, live or None) that runs
    `fn` on the crops and on their mirrors and averages, as the device's DepthEstimator does."""

    def predict(batch: np.ndarray):
        direct, mirrored = fn(batch), fn(np.ascontiguousarray(batch[:, :, ::-1]))
        maps = [mirror_mean(a, b, x_axis=2) for a, b in zip(direct[:3], mirrored[:3], strict=True)]
        live = None if direct[3] is None else 0.5 * (direct[3] + mirrored[3])
        return (*maps, live)

    return predict


def device_predict(bundle, num_threads: int = 1):
    """The bundle's int8 model as a batch predict function, run as the device runs it (mirror-averaged
    where the manifest's crop.mirror_average says so)."""
    predict = TFLitePredict(bundle.depth_model, num_threads)
    return mirror_averaged(predict) if bundle.crop.mirror_average else predict


class Recorder:
    """Wraps a predict function and keeps each sample's liveness score and its DepthResult (relief, face
    probability, live logit: what the device's evidence is computed from), in evaluation order."""

    def __init__(self, fn):
        self.fn, self.scores = fn, []  # (not named `predict`: evaluate() would take this for a Keras model)
        self.results: list[DepthResult] = []

    def __call__(self, batch):
        out = self.fn(batch)
        logits = out[3] if len(out) > 3 and out[3] is not None else [None] * len(out[0])
        self.scores += [liveness_score(r, p) for r, p in zip(out[0], out[1], strict=True)]
        self.results += [DepthResult(r, p, None if g is None else float(g))
                         for r, p, g in zip(out[0], out[1], logits, strict=True)]
        return out


def benchmark_ms(path, num_threads: int = 1, runs: int = 50) -> float:
    """Median invoke time of the int8 model in ms (after 5 warm-up runs)."""
    pred = TFLitePredict(path, num_threads)
    x = np.full((160, 160, 3), 128, np.uint8)
    times = []
    for k in range(runs + 5):
        t0 = time.perf_counter()
        pred.invoke_one(x)
        if k >= 5:
            times.append(time.perf_counter() - t0)
    return 1000 * float(np.median(times))


def gate(float_r: EvalResult, int8_r: EvalResult, relief_step_mm: float) -> tuple[list[str], list[str]]:
    """(failures, notes) of the rules in this module's docstring."""
    failures, notes = [], []
    if float_r.bona_fide is None or int8_r.bona_fide is None:
        return [f"{float_r.split} split has no bona fide samples: MAE cannot be checked"], notes
    f, q = float_r.bona_fide.mae_mm, int8_r.bona_fide.mae_mm
    limit = MAE_RATIO * f + MAE_SLACK_MM
    if not (q <= limit):
        failures.append(f"int8 MAE {q:.3f} mm > {MAE_RATIO} × float MAE {f:.3f} mm + {MAE_SLACK_MM} = "
                        f"{limit:.3f} mm")
    if float_r.attack is None or int8_r.attack is None:
        notes.append(f"{float_r.split} split has no attack samples: attack relief not checked")
        return failures, notes
    fa, qa = getattr(float_r.attack, ATTACK_METRIC), getattr(int8_r.attack, ATTACK_METRIC)
    limit_a = ATTACK_RATIO * fa + relief_step_mm
    if not (qa <= limit_a):
        failures.append(f"int8 attack {ATTACK_METRIC} {qa:.2f} mm > {ATTACK_RATIO} × float {fa:.2f} mm + "
                        f"{relief_step_mm:.2f} mm (one relief step) = {limit_a:.2f} mm")
    return failures, notes


@dataclass(frozen=True)
class VerifyResult:
    split: str
    float_metrics: dict  # EvalResult.to_dict() of the float Keras model
    int8_metrics: dict
    int8_val_metrics: dict
    liveness: LivenessCalibration
    int8_latency_ms: float  # 1 thread, median, the machine that converted (not the device)
    failures: tuple[str, ...]
    notes: tuple[str, ...]
    float_result: EvalResult = field(repr=False)
    int8_result: EvalResult = field(repr=False)

    @property
    def passed(self) -> bool:
        return not self.failures

    def check(self) -> None:
        if self.failures:
            raise GateError("the int8 model is refused: " + "; ".join(self.failures) +
                            ". Calibrate on more data (--n-calib), train longer, or use quantisation-aware "
                            "training")


def verify(run_dir, tflite_path, *, split: str = "test", dataset=None, max_samples: int = 0,
           num_threads: int = 2, run=None, mirror_average: bool = False) -> VerifyResult:
    """Score float and int8 side by side on `split`, calibrate liveness on val, apply the gate."""
    cfg, model, info = run or load_checked_run(run_dir)
    index = dataset_of(info, dataset)
    kw = {"data": cfg.data, "model": cfg.model, "max_samples": max_samples}
    as_run = mirror_averaged if mirror_average else (lambda fn: fn)
    t0 = time.perf_counter()
    float_r = evaluate(as_run(keras_predict_fn(model)), index, split, **kw)
    int8_tflite = TFLitePredict(tflite_path, num_threads)
    int8_fn = as_run(int8_tflite)
    rec_test = Recorder(int8_fn)
    int8_r = evaluate(rec_test, index, split, **kw)
    rec_val = Recorder(int8_fn)
    int8_val = evaluate(rec_val, index, "val", **kw)
    try:
        val_medium = medium_counts(index, "val", max_samples=max_samples)
        test_medium = medium_counts(index, split, max_samples=max_samples)
        live = calibrate(rec_val.results, [s.label for s in int8_val.scores],
                         rec_test.results, [s.label for s in int8_r.scores],
                         val_medium=val_medium, test_medium=test_medium)
    except ValueError as e:
        raise GateError(f"{tflite_path}: the liveness threshold cannot be calibrated: {e}") from e
    step = float(int8_tflite.out["relief"]["quantization"][0])
    failures, notes = gate(float_r, int8_r, step)
    latency = benchmark_ms(tflite_path, 1)
    log.info("verified %s on %d %s samples in %.0f s", Path(tflite_path).name, len(int8_r.scores), split,
             time.perf_counter() - t0)
    return VerifyResult(split, float_r.to_dict(), int8_r.to_dict(), int8_val.to_dict(), live, latency,
                        tuple(failures), tuple(notes), float_r, int8_r)


def comparison_text(v: VerifyResult) -> str:
    """A small float-vs-int8 table for the console."""
    rows = [("bona fide MAE mm", "bona_fide", "mae_mm"), ("bona fide RMSE mm", "bona_fide", "rmse_mm"),
            ("bona fide δ<1.25", "bona_fide", "delta_1_25"),
            ("ordinal accuracy", "bona_fide", "ordinal_accuracy"),
            ("mask IoU", "bona_fide", "mask_iou"), ("stage I top-1", "bona_fide", "stage1_top1"),
            ("attack plane-removed relief p95 mm", "attack", ATTACK_METRIC)]
    lines = [f"| {v.split} split | float | int8 |", "|---|---|---|"]
    for label, group, key in rows:
        f, q = (v.float_metrics.get(group) or {}).get(key), (v.int8_metrics.get(group) or {}).get(key)
        if f is not None and q is not None:
            lines.append(f"| {label} | {f:.3f} | {q:.3f} |")
    return "\n".join(lines)
