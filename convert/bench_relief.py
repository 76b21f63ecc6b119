"""Relief read from the image, or recalled: the shipped model on test faces whose relief is stretched.

    python -m convert.bench_relief [--bundle bundle/default] [--scales 0.8 1.0 1.25 1.4] [--n 640]
    (make bench-relief)

The same test identities (the shards of seed 0 that every dataset of that seed tests on; bona fide only)
are rendered with their head-frame depth stretched by a fixed factor (`train.synth --relief-scale`), so the
true relief changes while hm08's average profile, which a network can learn by heart, does not. A model
that reads relief from shading and silhouette keeps its slope near 1 and its amplitude ratio (predicted
over true plane-removed relief range, median over faces) near the scale's own; one that recalls the
average face predicts the same amplitude at every scale: its slope falls as 1 / scale. That is the
failure the field reported (relief at about half its size on faces of another face model).

Sets are written once to out/bench/relief/scale-<s>/ (a rerun reuses them: same seed, same bytes). The
int8 bundle is scored through the evaluation crops (train.evaluate, as `make convert` scores the test
split). Figures go to out/bench/relief/relief.json.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from firmware_app.bundle import BundleError, load_bundle
from train.breakdown import breakdown
from train.config import config_from_dict
from train.evaluate import evaluate
from train.synth.dataset import DatasetPlan, write_dataset
from train.synth.dataset_index import DatasetError, DatasetIndex, write_json_atomic
from train.synth.generator import GeneratorConfig

SEED = 0
SHARD_SIZE = 64


@dataclass(frozen=True)
class ScaleRow:
    scale: float
    n: int
    inner_mae_mm: float  # shift-aligned, inner face (hull of the 68 landmarks)
    inner_mae_plane_mm: float
    slope: float  # median over faces of the least-squares slope of predicted on true relief, inner face
    predicted_range_mm: float  # median over faces of the predicted plane-removed relief range (face mask)
    true_range_mm: float  # the same of the true relief
    amplitude_ratio: float  # median over faces of predicted / true plane-removed range
    # the slope's median per band (train.breakdown): where in a single frame amplitude can be read at all
    slope_by_pose: dict[str, float] = field(default_factory=dict)  # max(|yaw|, |pitch|)
    slope_by_distance: dict[str, float] = field(default_factory=dict)


def scaled_test_set(out: Path, scale: float, n: int) -> DatasetIndex:
    """The test identities with their relief stretched by `scale`, written (or reused) under `out`."""
    cfg = GeneratorConfig(attack_share=0.0, relief_scale=(scale, scale))
    write_dataset(DatasetPlan(out, n, SEED, SHARD_SIZE, cfg, "test"), workers=2, progress=False)
    return DatasetIndex.load(out)


def score_scale(predict, index: DatasetIndex, scale: float, data, model) -> ScaleRow:
    result = evaluate(predict, index, "test", data=data, model=model)
    g = result.bona_fide
    true_range = np.array([s.true_planar_range_mm for s in result.scores])
    pred_range = np.array([s.planar_range_mm for s in result.scores])
    bands = breakdown(result.scores, index)
    return ScaleRow(scale, g.n, g.inner_mae_mm, g.inner_mae_plane_mm, g.slope_p50,
                    float(np.median(pred_range)), float(np.median(true_range)),
                    float(np.median(pred_range / np.maximum(true_range, 1e-3))),
                    _slopes(bands["head_pose"], "°"), _slopes(bands["distance"], " mm"))


def _slopes(rows: list[dict], unit: str) -> dict[str, float]:
    """{band name: median slope} of a train.breakdown table, bands with faces only."""
    out = {}
    for r in rows:
        if r["n"]:
            top = "∞" if r["to"] >= 1e8 else f"{r['to']:.0f}"
            out[f"{r['from']:.0f}–{top}{unit}"] = r["slope"]
    return out


TABLE_HEAD = ("| relief × | faces | inner MAE shift / plane (mm) | slope | predicted / true range p50 (mm) | "
              "amplitude ratio |\n|---|---|---|---|---|---|")


def row_line(r: ScaleRow) -> str:
    return (f"| {r.scale:.2f} | {r.n} | {r.inner_mae_mm:.2f} / {r.inner_mae_plane_mm:.2f} | {r.slope:.3f} | "
            f"{r.predicted_range_mm:.1f} / {r.true_range_mm:.1f} | {r.amplitude_ratio:.3f} |")


def table(rows: list[ScaleRow]) -> str:
    return "\n".join([TABLE_HEAD, *map(row_line, rows)])


def band_table(rows: list[ScaleRow], attr: str, title: str) -> str:
    """Slope per band (columns) and relief scale (rows)."""
    bands = list(dict.fromkeys(b for r in rows for b in getattr(r, attr)))
    lines = [f"| slope by {title} | " + " | ".join(bands) + " |", "|---" * (len(bands) + 1) + "|"]
    for r in rows:
        cells = " | ".join(f"{getattr(r, attr).get(b, float('nan')):.3f}" for b in bands)
        lines.append(f"| × {r.scale:.2f} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from convert.verify import device_predict

    p = argparse.ArgumentParser(prog="python -m convert.bench_relief", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, default=Path("bundle/default"))
    p.add_argument("--scales", type=float, nargs="+", default=[0.8, 1.0, 1.25, 1.4])
    p.add_argument("--n", type=int, default=640, help="faces per scale")
    p.add_argument("--out", type=Path, default=Path("out/bench/relief"))
    a = p.parse_args(argv)
    bad = [s for s in a.scales if not 0.5 <= s <= 2.0]
    if bad or a.n < 1:
        print(f"error: scales must lie in [0.5, 2] and --n be ≥ 1 (got {a.scales}, {a.n})", file=sys.stderr)
        return 2
    try:
        bundle = load_bundle(a.bundle)
    except BundleError as e:
        print(f"error: {e} (`make convert BUNDLE={a.bundle}` builds one)", file=sys.stderr)
        return 2
    cfg = config_from_dict(bundle.manifest["training_config"])
    predict = device_predict(bundle)
    rows = []
    for scale in a.scales:
        try:
            index = scaled_test_set(a.out / f"scale-{scale:g}", scale, a.n)
        except DatasetError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        rows.append(score_scale(predict, index, scale, cfg.data, cfg.model))
        print(row_line(rows[-1]), flush=True)
    print(table(rows))
    print(band_table(rows, "slope_by_pose", "head pose"))
    print(band_table(rows, "slope_by_distance", "distance"))
    report = {"bundle": str(a.bundle), "weights_sha256": bundle.manifest.get("weights_sha256"),
              "seed": SEED, "rows": [asdict(r) for r in rows]}
    write_json_atomic(a.out / "relief.json", report)
    print(f"figures: {a.out / 'relief.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
