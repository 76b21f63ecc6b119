"""Evaluate a depth model on a dataset split and write a report.

    python -m train.evaluate RUN_DIR [--dataset DIR] [--split test] [--out DIR]

Library: `evaluate(model_or_predict_fn, dataset, split)` takes a Keras model or any callable mapping
a uint8 (N, 160, 160, 3) batch to (relief (N, 80, 80) mm, face probability (N, 80, 80)) and optionally a
third item, stage I's bin probabilities (N, 80, 80, K+1), for the top-1/top-3 metrics — so the same code
scores the float model and an int8 TFLite interpreter. Crops are the device's crops (exact face box,
eye-aligned); `jitter_level` > 0 perturbs the box like training does (1 = the configured training jitter).

Report folder (default RUN_DIR/eval-<split>/): metrics.json, jitter.md (box error → MAE), breakdown.md
(MAE by head pose and off-axis angle), error_hist.png, learning_curves.png (from log.csv), examples.png
(4 best and 4 worst samples: input | true relief | predicted | |error|), per_sample.csv.
Metric definitions: train/metrics.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from train import metrics as M
from train.breakdown import breakdown, breakdown_markdown
from train.config import DataConfig, ModelConfig
from train.data import Example, make_example
from train.synth.dataset_index import DatasetError, DatasetIndex, write_json_atomic
from train.synth.shards import sha256_of

log = logging.getLogger(__name__)
PredictFn = Callable[[np.ndarray], tuple]
HIST_EDGES = np.linspace(-30, 30, 121)  # 0.5 mm bins of the shift-aligned error


@dataclass(frozen=True)
class SampleScore:
    shard: str
    index: int
    label: str
    mae_mm: float
    rmse_mm: float
    delta_1_25: float
    ordinal_correct: int
    ordinal_pairs: int
    mask_iou: float
    relief_range_mm: float  # p95 - p5 of the predicted relief within the true face mask
    planar_range_mm: float  # the same after removing the best-fit plane (tilted photos → ~0)
    top1: float
    top3: float
    top1_face: float
    top3_face: float
    mae_plane_mm: float  # MAE after removing the best-fit plane of the error: shape error without tilt
    # The inner face (hull of the 68 landmarks within the face mask: brows to chin, no ears or scalp)
    inner_mae_mm: float = float("nan")  # shift-aligned
    inner_mae_plane_mm: float = float("nan")  # plane-aligned
    slope: float = float("nan")  # least-squares slope of predicted on true relief there (1 = true amplitude)
    true_planar_range_mm: float = float("nan")  # planar_range_mm of the true relief (amplitude ratio's base)


@dataclass(frozen=True)
class GroupMetrics:
    n: int
    mae_mm: float  # mean over samples of the shift-aligned MAE over the true face mask
    rmse_mm: float
    delta_1_25: float
    ordinal_accuracy: float  # pooled over all qualifying landmark pairs
    ordinal_pairs: int
    mask_iou: float
    stage1_top1: float  # all 80×80 pixels (background included), as in training
    stage1_top3: float
    stage1_top1_face: float  # face pixels only: the relief bins themselves
    stage1_top3_face: float
    relief_range_p5_mm: float  # over samples: 5th percentile, median, 95th of the predicted relief range
    relief_range_p50_mm: float
    relief_range_p95_mm: float
    planar_range_p5_mm: float  # the same for the plane-removed range
    planar_range_p50_mm: float
    planar_range_p95_mm: float
    mae_plane_mm: float  # plane-aligned MAE: how much of mae_mm is head/medium tilt read wrong
    inner_mae_mm: float = float("nan")  # the same over the inner face (SampleScore)
    inner_mae_plane_mm: float = float("nan")
    slope_p50: float = float("nan")  # median over samples of the inner-face amplitude slope

    @classmethod
    def of(cls, scores: list[SampleScore]) -> GroupMetrics | None:
        if not scores:
            return None

        def values(name):
            v = np.array([getattr(s, name) for s in scores], np.float64)
            return v if np.isfinite(v).any() else None

        def mean(name):
            v = values(name)
            return float("nan") if v is None else float(np.nanmean(v))

        def percentiles(name):
            v = values(name)
            return [float("nan")] * 3 if v is None else [float(p) for p in np.nanpercentile(v, [5, 50, 95])]

        pairs = sum(s.ordinal_pairs for s in scores)
        return cls(len(scores), mean("mae_mm"), mean("rmse_mm"), mean("delta_1_25"),
                   sum(s.ordinal_correct for s in scores) / pairs if pairs else float("nan"), pairs,
                   mean("mask_iou"), mean("top1"), mean("top3"), mean("top1_face"), mean("top3_face"),
                   *percentiles("relief_range_mm"), *percentiles("planar_range_mm"), mean("mae_plane_mm"),
                   mean("inner_mae_mm"), mean("inner_mae_plane_mm"), percentiles("slope")[1])


@dataclass(frozen=True)
class EvalResult:
    split: str
    jitter_level: float
    bona_fide: GroupMetrics | None
    attack: GroupMetrics | None  # relief_range_p95_mm here: how much relief the net invents on a photo
    error_hist: np.ndarray = field(repr=False)  # counts over HIST_EDGES, bona fide face pixels
    scores: list[SampleScore] = field(repr=False, default_factory=list)

    def to_dict(self) -> dict:
        return {"split": self.split, "jitter_level": self.jitter_level,
                "bona_fide": self.bona_fide and dataclasses.asdict(self.bona_fide),
                "attack": self.attack and dataclasses.asdict(self.attack)}


def keras_predict_fn(model, batch_size: int = 32) -> PredictFn:
    """Wrap a model built by train.model.build_model: uint8 batch → (relief, face prob, bin probs, live
    logits or None)."""

    def predict(x: np.ndarray):
        out = model.predict(x.astype(np.float32), batch_size=batch_size, verbose=0)
        bins = np.asarray(out["bins"])
        live = np.asarray(out["live"])[:, 0] if "live" in out else None
        return np.asarray(out["relief"])[..., 0], 1.0 - bins[..., -1], bins, live

    return predict


def _as_predict_fn(model_or_fn) -> PredictFn:
    return keras_predict_fn(model_or_fn) if hasattr(model_or_fn, "predict") else model_or_fn


def _unpack(out) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    relief, prob, *rest = out
    relief, prob = np.asarray(relief, np.float32), np.asarray(prob, np.float32)
    if relief.ndim == 4:
        relief = relief[..., 0]
    if prob.ndim == 4:
        prob = prob[..., 0]
    return relief, prob, (np.asarray(rest[0]) if rest and rest[0] is not None else None)


def score_sample(ex: Example, relief: np.ndarray, prob: np.ndarray, bins: np.ndarray | None,
                 key: tuple[str, int], label: str) -> tuple[SampleScore, np.ndarray]:
    """All per-sample metrics, and the shift-aligned prediction."""
    face = ex.face
    aligned = M.shift_align(relief, ex.relief, face)
    acc, n = M.ordinal_accuracy(aligned, ex.relief, face, ex.landmarks, ex.visible)
    topk = [float("nan")] * 4
    if bins is not None:
        topk = [M.topk_accuracy(bins, ex.bins, k, where) for where in (None, face) for k in (1, 3)]
    t = ex.relief
    inner = M.inner_face(ex.landmarks, face)
    inner_aligned = M.shift_align(relief, t, inner)
    score = SampleScore(key[0], key[1], label, M.mae(aligned, t, face), M.rmse(aligned, t, face),
                        M.delta_accuracy(aligned, t, face), 0 if n == 0 else round(acc * n), n,
                        M.iou(prob, face), M.relief_range(relief, face),
                        M.relief_range(relief, face, detrend=True), *topk,
                        M.mae(M.plane_align(relief, t, face), t, face), M.mae(inner_aligned, t, inner),
                        M.mae(M.plane_align(relief, t, inner), t, inner), M.slope(relief, t, inner),
                        M.relief_range(t, face, detrend=True))
    return score, aligned


def iter_examples(index: DatasetIndex, split: str, data: DataConfig, model: ModelConfig,
                  jitter_level: float = 0.0, seed: int = 0, max_samples: int = 0):
    """(key, label, Example) for the split's samples in index order; the crop is jittered if level > 0."""
    count = 0
    for entry, reader in zip(index.entries(split), index.readers(split), strict=True):
        for i in range(len(reader)):
            if max_samples and count >= max_samples:
                return
            sample = reader.sample(i)
            rng = np.random.default_rng([seed, count]) if jitter_level > 0 else None
            yield (entry.file, i), sample.label, make_example(sample, data, model, rng, jitter_level)
            count += 1


def evaluate(model_or_predict_fn, dataset, split: str = "test", *, data: DataConfig | None = None,
             model: ModelConfig | None = None, jitter_level: float = 0.0, seed: int = 0,
             max_samples: int = 0, batch_size: int = 32) -> EvalResult:
    """Score a model or predict function on a split; `model` gives the stage I bins (for top-1/top-3)."""
    data, model = data or DataConfig(), model or ModelConfig()
    index = dataset if isinstance(dataset, DatasetIndex) else DatasetIndex.load(dataset)
    if index.n_samples(split) == 0:
        raise DatasetError(f"{index.root}: split {split!r} is empty ({index.counts()})")
    predict = _as_predict_fn(model_or_predict_fn)
    scores: list[SampleScore] = []
    hist = np.zeros(len(HIST_EDGES) - 1, np.int64)
    batch: list = []

    def flush():
        relief, prob, bins = _unpack(predict(np.stack([ex.rgb for _, _, ex in batch])))
        if bins is not None and bins.shape[-1] != model.n_bins + 1:
            log.warning("bins output has %d classes, config says %d: skipping top-k", bins.shape[-1],
                        model.n_bins + 1)
            bins = None
        for j, (key, label, ex) in enumerate(batch):
            b = None if bins is None else bins[j]
            score, aligned = score_sample(ex, relief[j], prob[j], b, key, label)
            scores.append(score)
            if label == "bona_fide":
                hist[:] += np.histogram(np.clip((aligned - ex.relief)[ex.face], -29.99, 29.99), HIST_EDGES)[0]
        batch.clear()

    for item in iter_examples(index, split, data, model, jitter_level, seed, max_samples):
        batch.append(item)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    return EvalResult(split, jitter_level, GroupMetrics.of([s for s in scores if s.label == "bona_fide"]),
                      GroupMetrics.of([s for s in scores if s.label != "bona_fide"]), hist, scores)


def jitter_table(model_or_predict_fn, dataset, split: str = "test", *, data: DataConfig | None = None,
                 model: ModelConfig | None = None, levels=(0.0, 0.5, 1.0, 2.0), max_samples: int = 256,
                 seed: int = 0) -> list[dict]:
    """Bona fide MAE vs. face box error; level 1 = the training jitter (±scale, ±shift, ±roll)."""
    data = data or DataConfig()
    rows = []
    for level in levels:
        r = evaluate(model_or_predict_fn, dataset, split, data=data, model=model, jitter_level=level,
                     seed=seed, max_samples=max_samples)
        g = r.bona_fide
        rows.append({"level": level, "scale_pct": 100 * level * data.jitter_scale,
                     "shift_pct": 100 * level * data.jitter_shift, "roll_deg": level * data.jitter_roll_deg,
                     "mae_mm": g.mae_mm if g else float("nan"), "n": g.n if g else 0,
                     "mask_iou": g.mask_iou if g else float("nan")})
    return rows


def jitter_markdown(rows: list[dict]) -> str:
    lines = ["| box error (±scale, ±shift, ±roll) | bona fide MAE mm | mask IoU | n |", "|---|---|---|---|"]
    for r in rows:
        lines.append(f"| ±{r['scale_pct']:.0f}%, ±{r['shift_pct']:.0f}%, ±{r['roll_deg']:.0f}° "
                     f"| {r['mae_mm']:.2f} | {r['mask_iou']:.3f} | {r['n']} |")
    return "\n".join(lines) + "\n"


def summary_text(result: EvalResult) -> str:
    out = []
    for name, g in (("bona fide", result.bona_fide), ("attack", result.attack)):
        if g is None:
            continue
        out.append(f"{name} (n={g.n}): MAE {g.mae_mm:.2f} mm (plane-aligned {g.mae_plane_mm:.2f}), "
                   f"inner face MAE {g.inner_mae_mm:.2f} mm (plane-aligned {g.inner_mae_plane_mm:.2f}), "
                   f"slope {g.slope_p50:.3f}, "
                   f"RMSE {g.rmse_mm:.2f} mm, "
                   f"δ<1.25 {g.delta_1_25:.3f}, "
                   f"ordinal {g.ordinal_accuracy:.3f} ({g.ordinal_pairs} pairs), mask IoU {g.mask_iou:.3f}, "
                   f"stage I top-1 {g.stage1_top1:.3f} top-3 {g.stage1_top3:.3f} "
                   f"(face px {g.stage1_top1_face:.3f}/{g.stage1_top3_face:.3f}), relief range p5/p50/p95 "
                   f"{g.relief_range_p5_mm:.1f}/{g.relief_range_p50_mm:.1f}/{g.relief_range_p95_mm:.1f} mm "
                   f"(plane removed {g.planar_range_p5_mm:.1f}/{g.planar_range_p50_mm:.1f}/"
                   f"{g.planar_range_p95_mm:.1f})")
    return "\n".join(out)


def write_report(run_dir: Path, dataset: str | None, split: str, out: Path | None = None,
                 max_samples: int = 0, jitter_samples: int = 256) -> dict:
    from train.report_plots import plot_error_hist, plot_examples, plot_learning_curves
    from train.train import load_run, read_csv

    cfg, keras_model, info = load_run(run_dir)
    dataset = dataset or info["dataset"]["path"]
    index = DatasetIndex.load(dataset)
    sha = sha256_of(Path(dataset) / "index.json")
    if sha != info["dataset"].get("index_sha256"):
        log.warning("%s is not the dataset this run was trained on (index sha256 differs)", dataset)
    committed = not (Path(run_dir) / "model.keras").is_file()  # models/default: keep reports out of git
    default = Path("out/eval") / f"{info['name']}-{split}" if committed else Path(run_dir) / f"eval-{split}"
    out = Path(out or default)
    out.mkdir(parents=True, exist_ok=True)
    predict = keras_predict_fn(keras_model)
    kw = {"data": cfg.data, "model": cfg.model}
    result = evaluate(predict, index, split, max_samples=max_samples, **kw)
    jitter = jitter_table(predict, index, split, max_samples=jitter_samples, **kw)
    report = {"run": info.get("name"), "run_dir": str(run_dir), "dataset": str(dataset), "index_sha256": sha,
              "trained_on_this_dataset": sha == info["dataset"].get("index_sha256"),
              **result.to_dict(), "jitter": jitter, "model": info.get("model")}
    write_json_atomic(out / "metrics.json", report)
    (out / "jitter.md").write_text(jitter_markdown(jitter))
    tables = breakdown(result.scores, index)
    (out / "breakdown.md").write_text(breakdown_markdown(tables))
    _write_scores(result.scores, out / "per_sample.csv")
    plot_error_hist(result, out / "error_hist.png")
    plot_learning_curves(read_csv(Path(run_dir) / "log.csv"), out / "learning_curves.png")
    plot_examples(predict, index, result.scores, cfg.data, cfg.model, out / "examples.png")
    log.info("report written to %s", out)
    return {"result": result, "jitter": jitter, "breakdown": tables, "out": out}


def _write_scores(scores: list[SampleScore], path: Path) -> None:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[f.name for f in dataclasses.fields(SampleScore)])
        w.writeheader()
        w.writerows(dataclasses.asdict(s) for s in scores)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", help="run directory (run.json + model.keras)")
    p.add_argument("--dataset", help="dataset directory (default: the one the run was trained on)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"))
    p.add_argument("--out", help="report directory (default RUN_DIR/eval-SPLIT; out/eval/NAME-SPLIT for the "
                   "committed models/default)")
    p.add_argument("--max-samples", type=int, default=0, help="0 = the whole split")
    p.add_argument("--jitter-samples", type=int, default=256, help="samples per box-jitter level")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        rep = write_report(Path(a.run_dir), a.dataset, a.split, a.out and Path(a.out), a.max_samples,
                           a.jitter_samples)
    except (DatasetError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary_text(rep["result"]))
    print(jitter_markdown(rep["jitter"]), end="")
    print(breakdown_markdown(rep["breakdown"]), end="")
    print(f"report: {rep['out']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
