"""The evaluation report's pictures (train.evaluate.write_report): error histogram, learning curves, and
the best and worst examples (input | true relief | predicted | |error|). matplotlib is imported on use."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from train import metrics as M
from train.config import DataConfig, ModelConfig
from train.data import make_example
from train.evaluate import HIST_EDGES, EvalResult, PredictFn, SampleScore, _unpack
from train.synth.dataset_index import DatasetIndex
from train.synth.shards import ShardReader


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_error_hist(result: EvalResult, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    centres = (HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2
    total = max(result.error_hist.sum(), 1)
    ax.bar(centres, result.error_hist / total, width=HIST_EDGES[1] - HIST_EDGES[0])
    ax.set(xlabel="predicted − true relief, shift-aligned (mm; ends clipped)", ylabel="share of face pixels",
           title=f"{result.split}: bona fide error histogram")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_learning_curves(csv_rows: list[dict], path: Path) -> bool:
    if not csv_rows:
        return False
    plt = _plt()
    epochs = [int(r["epoch"]) + 1 for r in csv_rows]
    panels = [("loss", "loss"), ("relief_mae_mm", "relief MAE (mm)"), ("bins_top1", "stage I top-1"),
              ("bins_top3", "stage I top-3")]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.2))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for prefix, style in (("", "-"), ("val_", "--")):
            if prefix + key in csv_rows[0]:
                ax.plot(epochs, [float(r[prefix + key]) for r in csv_rows], style,
                        label="val" if prefix else "train")
        ax.set(title=title, xlabel="epoch")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def plot_examples(predict: PredictFn, index: DatasetIndex, scores: list[SampleScore], data: DataConfig,
                  model: ModelConfig, path: Path, k: int = 4) -> None:
    """Rows: the k best and k worst samples by MAE; columns: input | true | predicted | |error|."""
    plt = _plt()
    ranked = sorted((s for s in scores if np.isfinite(s.mae_mm)), key=lambda s: s.mae_mm)
    chosen = [("best", s) for s in ranked[:k]] + [("worst", s) for s in ranked[::-1][:k]]
    if not chosen:
        return
    fig, axes = plt.subplots(len(chosen), 4, figsize=(9, 2.3 * len(chosen)), squeeze=False)
    readers: dict[str, ShardReader] = {}  # best and worst often share shards: load each once
    for r, (row, (tag, s)) in enumerate(zip(axes, chosen, strict=True)):
        if s.shard not in readers:
            readers[s.shard] = ShardReader(index.root / s.shard)
        ex = make_example(readers[s.shard].sample(s.index), data, model)
        relief, prob, _ = _unpack(predict(ex.rgb[None]))
        aligned = M.shift_align(relief[0], ex.relief, ex.face)
        shown = [ex.rgb, np.where(ex.face, ex.relief, np.nan), np.where(prob[0] > 0.5, aligned, np.nan),
                 np.where(ex.face, np.abs(aligned - ex.relief), np.nan)]
        for j, (ax, img) in enumerate(zip(row, shown, strict=True)):
            relief_kw = {"cmap": "turbo", "vmin": model.relief_min_mm, "vmax": model.relief_max_mm}
            kw = {} if j == 0 else ({"cmap": "magma", "vmin": 0, "vmax": 15} if j == 3 else relief_kw)
            im = ax.imshow(img, **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"{tag}\n{s.label}\nMAE {s.mae_mm:.1f}", fontsize=8)
            if r == 0 and j > 0:
                fig.colorbar(im, ax=ax, fraction=0.046)
        if r == 0:
            for ax, title in zip(row, ("input", "true relief mm", "predicted (aligned)", "|error| mm"),
                                 strict=True):
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
