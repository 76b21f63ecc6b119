"""APCER on the held-out real-photo attack slice, per source, per attack type and per face size.

    python -m convert.photo_attack_eval [--bundle bundle/default] [--dataset out/photo_attacks]
                                        [--out out/bench/photo_attacks.json] [--max-samples N]

Every frame of the slice (train/synth/photo_attacks.py) is an attack whose content is a real photograph
no training frame comes from, so the acceptance rate here is the leave-one-source-out figure of
issue 12. Each frame is cropped twice and run through the bundle's int8 depth.tflite
(convert.verify.TFLitePredict, as convert scores the test split):

  landmarks  the evaluation crop (train.evaluate.iter_examples / make_example: the shown face's
             68-landmark extent and eye centres), as the manifest's test figures are made;
  detector   the device's crop: BlazeFace short range on the frame, pipeline.landmark_box and the
             detector's eyes; a frame where it finds no face is "not detected" (not accepted).

and decided per frame as the bundle's manifest says:

  evidence   a manifest with `liveness.evidence` and `frame_llr_threshold` (liveness v2): the frame's LLR
             (firmware_app.evidence: frame_features → EvidenceModel.llr) ≥ frame_llr_threshold, the
             threshold at the manifest's BPCER target (1 %) on validation bona fide frames;
  v1         otherwise: the plane-removed relief range (firmware_app.liveness.relief_score over face
             probability > face_prob) ≥ liveness.threshold_mm.

With the manifest's medium-edge table (`liveness.medium`, firmware_app/medium.py), the detector crop is
also scored as "detector+medium": the frame LLR plus the medium LLR of the edges around the detector's
box, as the device's track adds it (the manifest's frame_llr_threshold was set on that same sum).

A frame with fewer than min_face_cells predicted face cells is unscored and counts as not accepted, as
in convert/liveness.py. APCER = accepted / attacks, with a Wilson 95 % interval. These are frame figures:
the door decides per track (firmware_app/liveness.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convert.liveness import wilson
from convert.verify import device_predict
from firmware_app.bundle import BundleError, load_bundle
from firmware_app.evidence import EvidenceError, EvidenceModel, frame_features
from firmware_app.medium import MediumModel, find_edges
from firmware_app.pipeline import landmark_box
from firmware_app.preprocess import crop_input, crop_transform, fill_of
from train.config import DataConfig, ModelConfig
from train.evaluate import iter_examples
from train.synth.dataset_index import DatasetError, DatasetIndex, write_json_atomic

SIZE_BINS = ((0, 80, "<80 px"), (80, 150, "80-150 px"), (150, 10_000, ">150 px"))  # face box height
BATCH = 32


@dataclass(frozen=True)
class Rule:
    """The bundle's per-frame liveness decision: accepted (judged live) iff score ≥ threshold."""

    name: str  # "evidence" or "v1"
    threshold: float
    face_prob: float
    min_face_cells: int
    model: EvidenceModel | None  # None: v1
    medium: MediumModel | None = None  # the medium-edge table, when the manifest has one

    @classmethod
    def of_manifest(cls, liveness: dict, threshold_mm: float) -> Rule:
        face_prob = float(liveness.get("face_prob", 0.5))
        cells = int(liveness.get("min_face_cells", 200))
        if isinstance(liveness.get("evidence"), dict) and "frame_llr_threshold" in liveness:
            model = EvidenceModel.from_manifest(liveness, threshold_mm)
            return cls("evidence", float(liveness["frame_llr_threshold"]), face_prob, cells, model,
                       MediumModel.from_manifest(liveness))
        return cls("v1", threshold_mm, face_prob, cells, None)

    def describe(self) -> str:
        if self.model is not None:
            return (f"evidence LLR ({', '.join(self.model.names)}) ≥ frame_llr_threshold "
                    f"{self.threshold:.3f} (manifest, BPCER target on val)")
        return (f"v1: plane-removed relief range ≥ threshold_mm {self.threshold:.2f} mm (the manifest has no "
                "evidence model)")

    def score(self, relief: np.ndarray, prob: np.ndarray, logit: float | None) -> float:
        """The frame's score (LLR or mm); NaN when unscored (too few face cells)."""
        f = frame_features(relief, prob, logit, self.face_prob, self.min_face_cells)
        if f is None:
            return float("nan")
        return self.model.llr(f) if self.model is not None else f.plane_range_mm


@dataclass(frozen=True)
class Frame:
    source: str
    label: str
    face_px: float  # height of the shown face's landmark extent in the frame
    scores: dict  # crop mode → score (NaN: unscored or, for "detector", no face found)
    detected: bool
    medium_sides: str = ""  # medium-edge sides around the detector's box


def size_bin(px: float) -> str:
    return next(name for lo, hi, name in SIZE_BINS if lo <= px < hi)


def _landmark_crops(index: DatasetIndex, data: DataConfig, max_samples: int):
    """(source, label, face height px, reader, i, evaluation crop) per frame, in index order."""
    sources = index.meta.get("shard_sources", {})
    readers = {e.file: r for e, r in zip(index.entries("test"), index.readers("test"), strict=True)}
    for (file, i), label, ex in iter_examples(index, "test", data, ModelConfig(), max_samples=max_samples):
        box = readers[file].face_box[i]
        yield sources.get(file, "unknown"), label, float(box[3] - box[1]), readers[file], i, ex.rgb


def score_frames(index: DatasetIndex, bundle, rule: Rule, detector, max_samples: int = 0,
                 progress=None) -> list[Frame]:
    """Every frame's score under both crops."""
    predict = device_predict(bundle)
    data = DataConfig(crop_scale=bundle.crop.crop_scale, use_eyes=bundle.crop.use_eyes,
                      border=bundle.crop.border)
    frames: list[Frame] = []
    for source, label, face_px, reader, i, crop in _landmark_crops(index, data, max_samples):
        rgb = reader.rgb(i)
        crops = {"landmarks": crop}
        faces = detector.detect(rgb)
        edges = None
        if faces:
            face = max(faces, key=lambda f: (f.x1 - f.x0) * (f.y1 - f.y0))
            eyes = np.array([face.keypoint("right_eye"), face.keypoint("left_eye")], np.float32)
            eyes = eyes if bundle.crop.use_eyes else None
            box = landmark_box(face)
            t = crop_transform(box, eyes, bundle.crop.crop_scale)
            crops["detector"] = crop_input(rgb, t, fill_of(bundle.crop.border))
            edges = find_edges(rgb, box) if rule.medium else None
        relief, prob, _, live = predict(np.stack(list(crops.values())))
        scores = {name: rule.score(relief[j], prob[j], None if live is None else float(live[j]))
                  for j, name in enumerate(crops)}
        scores.setdefault("detector", float("nan"))
        if rule.medium:
            scores["detector+medium"] = scores["detector"] + (rule.medium.llr(edges) if edges else 0.0)
        frames.append(Frame(source, label, face_px, scores, bool(faces), edges.sides if edges else ""))
        if progress:
            progress(len(frames))
    return frames


def rates(frames: Iterable[Frame], rule: Rule, crop: str) -> dict:
    frames = list(frames)
    s = np.array([f.scores[crop] for f in frames], np.float64)
    accepted = np.nan_to_num(s, nan=-np.inf) >= rule.threshold  # unscored: never accepted
    k, n = int(accepted.sum()), len(frames)
    lo, hi = wilson(k, n)
    return {"n": n, "accepted": k, "apcer": k / n if n else None, "ci95": [round(lo, 4), round(hi, 4)],
            "unscored": int(np.isnan(s).sum())}


def report(frames: list[Frame], rule: Rule) -> dict:
    out = {}
    for crop in [c for c in ("landmarks", "detector", "detector+medium") if c in frames[0].scores]:
        groups = {"all": frames, "all, face found by BlazeFace": [f for f in frames if f.detected]}
        for key, attr in (("source", "source"), ("type", "label")):
            for v in sorted({getattr(f, attr) for f in frames}):
                groups[f"{key}={v}"] = [f for f in frames if getattr(f, attr) == v]
        for _, _, name in SIZE_BINS:
            groups[f"face={name}"] = [f for f in frames if size_bin(f.face_px) == name]
        out[crop] = {g: rates(fs, rule, crop) for g, fs in groups.items() if fs}
    out["detected"] = {"n": len(frames), "faces_found": sum(f.detected for f in frames)}
    return out


def table(rep: dict) -> str:
    crops = [c for c in ("landmarks", "detector", "detector+medium") if c in rep]
    lines = ["| group | n | " + " | ".join(f"APCER ({c} crop) | 95 % CI" for c in crops) + " |",
             "|---|---|" + "---|---|" * len(crops)]
    for g, r in rep["landmarks"].items():
        cells = [f"{rep[c][g]['apcer']:.1%} | {rep[c][g]['ci95'][0]:.1%}–{rep[c][g]['ci95'][1]:.1%}"
                 for c in crops]
        lines.append(f"| {g} | {r['n']} | " + " | ".join(cells) + " |")
    det = rep["detected"]
    lines.append(f"BlazeFace found a face in {det['faces_found']} of {det['n']} frames "
                 "(detector crop: not found = not accepted)")
    return "\n".join(lines)


def _frame_row(f: Frame) -> dict:
    scores = {f"score_{k}": (round(v, 4) if np.isfinite(v) else None) for k, v in f.scores.items()}
    return {"source": f.source, "type": f.label, "face_px": round(f.face_px, 1), "detected": f.detected,
            "medium_sides": f.medium_sides, **scores}


def run(bundle_dir: Path, dataset: Path, out: Path | None, max_samples: int = 0, detector_model=None) -> dict:
    from train.synth.photo_sources import detector as make_detector

    bundle = load_bundle(bundle_dir)
    rule = Rule.of_manifest(bundle.liveness, bundle.liveness_threshold_mm)
    index = DatasetIndex.load(dataset)
    if index.meta.get("kind") != "photo_attacks":
        raise DatasetError(f"{dataset}: not a photo-attack slice (make it with `make photo-attacks`)")
    det = make_detector(str(detector_model or bundle.detector))
    frames = score_frames(index, bundle, rule, det, max_samples)
    if not frames:
        raise DatasetError(f"{dataset}: the test split is empty")
    result = {"bundle": str(bundle_dir), "bundle_version": bundle.version,
              "model_sha256": bundle.model_sha256,
              "dataset": str(dataset), "rule": rule.name, "rule_text": rule.describe(),
              "threshold": rule.threshold, "sources": index.meta.get("sources", {}),
              "apcer": report(frames, rule),
              "frames": [_frame_row(f) for f in frames],
              "note": "frame level; leave-one-source-out: no training frame shows these photographs"}
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out, result)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m convert.photo_attack_eval",
                                description=__doc__.split("\n")[0])
    p.add_argument("--bundle", type=Path, default=Path("bundle/default"))
    p.add_argument("--dataset", type=Path, default=Path("out/photo_attacks"))
    p.add_argument("--out", type=Path, default=Path("out/bench/photo_attacks.json"))
    p.add_argument("--max-samples", type=int, default=0, help="score only the first N frames (0: all)")
    args = p.parse_args(argv)
    try:
        result = run(args.bundle, args.dataset, args.out, args.max_samples)
    except (BundleError, DatasetError, EvidenceError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"bundle {args.bundle} ({result['bundle_version']}), rule: {result['rule_text']}")
    print(table(result["apcer"]))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
