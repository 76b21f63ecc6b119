"""The shipped model under a second TFLite runtime, scored by the same evaluation as the first.

    python -m convert.runtime_check --bundle bundle/default --dataset out/synth --python out/tflrt/bin/python
    make verify-runtimes          (makes out/tflrt: tflite-runtime 2.14 + numpy 1.26, then runs the above)

tflite-runtime's last release (2.14) is built against numpy 1.x, so it cannot share the workstation venv
(numpy 2): it gets a venv of its own and runs the `invoke` step of this module there, through the
device's own depth code (firmware_app.depth.DepthEstimator, whose loader firmware_app.tflite falls back
to tflite_runtime when ai_edge_litert is absent). That step imports only numpy, cv2 and firmware_app.
The flow:

  1. here: the test split's device crops (train.evaluate.iter_examples) → crops.npz
  2. each runtime: `invoke` → its raw int8 outputs (relief, bins), the liveness logit and their
     quantisation → <runtime>.npz
  3. here: the raw outputs compared element by element (int8 steps), and each runtime's dequantised
     outputs scored by train.evaluate.evaluate (the same call the gate makes), side by side; and each
     crop's frame verdict compared as the device reaches it (the manifest's evidence model at its
     frame_llr_threshold), beside the old relief-range threshold's.
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
OUTPUTS = ("relief", "bins")


def invoke(model: Path, crops_npz: Path, out_npz: Path, threads: int = 1) -> str:
    """Run every crop through `model` as the device does, with whatever runtime it finds; returns its name."""
    from firmware_app.depth import DepthEstimator
    from firmware_app.tflite import runtime_name

    depth = DepthEstimator(model, threads)
    crops = np.load(crops_npz)["crops"]
    bins, relief, live = [], [], []
    for rgb in crops:
        b, r = depth.invoke(rgb)
        logit = depth.live_logit()
        bins.append(b)
        relief.append(r)
        live.append(np.nan if logit is None else logit)
    quant = {f"{k}_quant": np.array(v, np.float64) for k, v in depth.output_quant.items()}
    np.savez(out_npz, runtime=np.array(runtime_name()), bins=np.stack(bins),
             relief=np.stack(relief)[..., None], live=np.array(live, np.float64), **quant)
    return runtime_name()


@dataclass(frozen=True)
class RuntimeScore:
    runtime: str
    python: str
    mae_mm: float  # bona fide, shift-aligned over the true face mask
    attack_planar_p95_mm: float
    n: int


@dataclass(frozen=True)
class Comparison:
    scores: tuple[RuntimeScore, ...]
    crops: int
    elements: int  # output values compared (relief + bins, every crop)
    differing: int  # values whose int8 code differs between the runtimes
    max_steps: int  # the largest difference, in int8 steps
    threshold_mm: float  # the bundle's liveness threshold
    verdicts_flipped: int  # crops whose live/spoof verdict differs from the first runtime's
    frame_llr_threshold: float | None = None  # the manifest's per-frame evidence threshold (None: v1 bundle)
    evidence_flipped: int = 0  # crops whose frame evidence verdict (LLR ≥ it) differs, as the device decides

    def table(self) -> str:
        rows = ["| runtime | python | bona fide MAE mm | attack relief p95 mm | n |", "|---|---|---|---|---|"]
        rows += [f"| {s.runtime} | {s.python} | {s.mae_mm:.3f} | {s.attack_planar_p95_mm:.2f} | {s.n} |"
                 for s in self.scores]
        rows.append(f"\nraw int8 outputs: {self.differing} of {self.elements} values differ between the "
                    f"runtimes (largest difference {self.max_steps} steps); live/spoof verdict at "
                    f"{self.threshold_mm:.2f} mm differs on {self.verdicts_flipped} of {self.crops} "
                    "crops" + ("" if self.frame_llr_threshold is None else
                               f"; the device's frame evidence (LLR ≥ {self.frame_llr_threshold:.3f}) "
                               f"differs on {self.evidence_flipped} of {self.crops}"))
        return "\n".join(rows)


class Replay:
    """A predict function for train.evaluate that hands back one runtime's stored outputs, in order,
    after checking each batch is the very crops that runtime was given."""

    def __init__(self, crops: np.ndarray, outputs):
        self.crops, self.offset = crops, 0
        r, b = outputs["relief"], outputs["bins"]
        self.relief = (r.astype(np.float32)[..., 0] - outputs["relief_quant"][1]) * outputs["relief_quant"][0]
        self.bins = (b.astype(np.float32) - outputs["bins_quant"][1]) * outputs["bins_quant"][0]
        self.face_prob = 1.0 - self.bins[..., -1]
        self.live = outputs.get("live", np.full(len(crops), np.nan))  # NaN: no liveness output (v1)

    def __call__(self, batch: np.ndarray):
        k = slice(self.offset, self.offset + len(batch))
        if not np.array_equal(batch, self.crops[k]):
            raise RuntimeError(f"evaluation asked for other crops than were stored at {k}: rerun the check")
        self.offset += len(batch)
        return self.relief[k], self.face_prob[k], self.bins[k]


def check(bundle: Path, dataset, pythons: list[str], work: Path, max_samples: int = 0) -> Comparison:
    from firmware_app.bundle import load_bundle
    from train.config import parse_config
    from train.evaluate import evaluate, iter_examples
    from train.synth.dataset_index import DatasetIndex

    b = load_bundle(bundle)
    cfg = parse_config(json.dumps(b.manifest["training_config"]), str(Path(bundle) / "manifest.json"))
    index = dataset if isinstance(dataset, DatasetIndex) else DatasetIndex.load(dataset)
    work.mkdir(parents=True, exist_ok=True)
    crops = np.stack([ex.rgb for _, _, ex in iter_examples(index, "test", cfg.data, cfg.model,
                                                             max_samples=max_samples)])
    np.savez(work / "crops.npz", crops=crops)
    runs = []
    for k, python in enumerate(pythons):
        out = work / f"outputs{k}.npz"
        cmd = [python, "-m", "convert.runtime_check", "invoke", str(b.depth_model), str(work / "crops.npz"),
               str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
        if proc.returncode != 0:
            raise RuntimeError(f"{python}: the invoke step failed (exit {proc.returncode}):\n"
                               f"{proc.stderr[-2000:]}")
        runs.append((python, dict(np.load(out))))
    scores, replays = [], [Replay(crops, outputs) for _, outputs in runs]
    for (python, outputs), replay in zip(runs, replays, strict=True):
        r = evaluate(replay, index, "test", data=cfg.data, model=cfg.model, max_samples=max_samples)
        p95 = r.attack.planar_range_p95_mm if r.attack else float("nan")
        scores.append(RuntimeScore(str(outputs["runtime"]), python, r.bona_fide.mae_mm, p95, r.bona_fide.n))
    first = runs[0][1]
    diffs = [np.abs(o[k].astype(np.int32) - first[k].astype(np.int32)) for _, o in runs[1:] for k in OUTPUTS]
    live = [_verdicts(replay, b.liveness_threshold_mm) for replay in replays]
    thr = (b.liveness or {}).get("frame_llr_threshold")
    frame = []
    if thr is not None:
        from firmware_app.evidence import EvidenceModel
        from firmware_app.liveness import FrameScorer

        scorer = FrameScorer(EvidenceModel.from_manifest(b.liveness, b.liveness_threshold_mm),
                             b.liveness_threshold_mm)
        frame = [_evidence_verdicts(replay, scorer, thr) for replay in replays]
    return Comparison(tuple(scores), len(crops), sum(first[k].size for k in OUTPUTS) * max(len(runs) - 1, 1),
                      int(sum((d > 0).sum() for d in diffs)), int(max((d.max() for d in diffs), default=0)),
                      b.liveness_threshold_mm, int(sum((v != live[0]).sum() for v in live[1:])),
                      thr, int(sum((v != frame[0]).sum() for v in frame[1:])))


def _evidence_verdicts(replay: Replay, scorer, threshold: float) -> np.ndarray:
    """Each crop's frame verdict as the device reaches it (its FrameScorer): LLR ≥ the manifest's threshold,
    unscored = not live."""
    from firmware_app.depth import DepthResult

    scores = (scorer.score(DepthResult(r, p, None if np.isnan(logit) else float(logit)))
              for r, p, logit in zip(replay.relief, replay.face_prob, replay.live, strict=True))
    return np.array([s is not None and s.llr >= threshold for s in scores])


def _verdicts(replay: Replay, threshold_mm: float) -> np.ndarray:
    """Each crop's live verdict as the device scores it (unscored = not live)."""
    from convert.liveness import liveness_score

    return np.array([liveness_score(r, p) >= threshold_mm
                     for r, p in zip(replay.relief, replay.face_prob, strict=True)])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["invoke"]:  # the step each runtime's python runs: numpy + firmware_app.tflite only
        model, crops, out = argv[1:4]
        print(invoke(Path(model), Path(crops), Path(out)))
        return 0
    p = argparse.ArgumentParser(prog="python -m convert.runtime_check", description=__doc__.split("\n")[0])
    p.add_argument("--bundle", default="bundle/default")
    p.add_argument("--dataset", default="out/synth")
    p.add_argument("--python", action="append", default=[],
                   help="a runtime's python (repeatable); this one (ai_edge_litert) always runs first")
    p.add_argument("--max-samples", type=int, default=0, help="test samples (0 = the whole split)")
    p.add_argument("--out", type=Path, default=Path("out/runtime_check"))
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    result = check(Path(a.bundle), a.dataset, [sys.executable, *a.python], a.out, a.max_samples)
    print(result.table())
    (a.out / "runtime_check.json").write_text(json.dumps(asdict(result), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
