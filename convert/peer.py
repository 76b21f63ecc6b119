"""Benchmark against a peer: our int8 depth model next to MediaPipe's face mesh (`face_landmark.tflite`).

    python -m convert.peer [--bundle bundle/default] [--dataset out/synth] [--split test]
                           [--max-samples 300] [--runs 200]           (make bench-peer)

Prints one markdown table (input size, latency on 1 thread, relief MAE after scale+shift alignment,
samples) and whether the goals are met — ours at least as fast as MediaPipe's landmark model, and our MAE
at most 0.7 × MediaPipe's — and writes the same to out/bench/peer.json.

Method
- Samples: the split's bona fide samples, `--max-samples` of them evenly spaced over the split (so a
  subset spans all shards and identities); attacks have no face relief to compare.
- Ours: the bundle's depth.tflite on the device crop (`train.data.make_example`, no jitter: the exact
  landmark box, eye-aligned, the bundle's crop parameters) → relief mm on the 80×80 grid.
- MediaPipe: the ROI it is built for — a square from the same face box (the 68 landmarks' extent) and
  the same eye line, at MediaPipe's own ROI scale (1.5 × the box, as its detection→ROI and
  landmarks→ROI steps use), resized to 192×192 with the same sampling as our crop. Its output is
  468 × (x, y, z): x, y in pixels of the 192 input, z relative depth in about the same pixel scale
  (smaller = nearer), so its relief is −z.
- MediaPipe's input range is chosen at run time from its second output, the face-presence logit:
  [0, 1] or [-1, 1], whichever gives the higher median logit on the first 16 bona fide crops
  (`--mp-range` forces one). The model accepts both. On out/synth **[-1, 1] wins**, by a hair (median
  logit 14.7 vs 13.8, both p > 0.9999), and the MediaPipe MAE differs by 0.01 mm between the two; on the
  test fakes [0, 1] wins. The result records, per range, the presence and a cross-check, the landmark
  NME (6 mesh points vs the true iBUG landmarks / outer-eye distance), which prefers [0, 1] slightly —
  the range MediaPipe's own graphs of this wheel's era feed (ImageToTensorCalculator 0..1; older
  graphs fed [-1, 1]).
- Rasterisation: the 468 (x, y) go through the two crops (both similarity transforms of the frame:
  MediaPipe 192 px → frame → our 80 grid), are Delaunay-triangulated, and −z is linearly interpolated
  at the 80×80 cell centres; cells outside the points' convex hull are NaN.
- Region: the inner face (hull of the 68 landmarks within the face mask: brows to chin, no ears, neck or
  scalp; train.metrics.inner_face) ∩ MediaPipe's hull, the same cells for both.
- Fair alignment: MediaPipe's z is not metric, so per sample a scale a ≥ 0 and shift b are fitted by least
  squares (a·pred + b ≈ true relief) for it; ours is trained to output mm and gets the project's headline
  alignment, the median offset only. Each MAE over those cells is averaged over samples. For reference our
  scale+shift MAE over the same cells is reported too (what a metric scale error costs us).
- Latency: both interpreters built by `firmware_app.tflite.make_interpreter` with 1 thread in the same
  process; after warm-up, `--runs` invokes each, interleaved (ours, MediaPipe, ours, ...) so load from
  other processes hits both alike; the median of each (and the minimum, in the table's brackets).
  Only `invoke()` is timed (input already set).

Caveats
- The scale is fitted per sample for both: generous to a model whose depth units are arbitrary
  (MediaPipe's z is in pixels, with a scale that varies with pose), and generous to ours too (it is
  trained to output mm). The fit clamps a at 0: an inverted relief earns nothing (a = 0, b = mean).
- A least-squares (L2) fit scored with MAE (L1); the comparison is over MediaPipe's hull only, which
  leaves out the face-mask cells it does not cover (forehead top, face edges).
- Delaunay over the projected points ignores the mesh's own triangles and occlusion: at large yaw,
  points of the far side of the nose fold over and are interpolated as if visible.
- MediaPipe's 192 input sees the face larger than our 160 input (1.5 vs 1.6 × box) — its design, not a
  handicap. Latencies are of this machine (x86, XNNPACK); compare the ratio, not the absolute numbers,
  and with other processes running they are noisy.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from itertools import chain, islice
from pathlib import Path

import numpy as np

from convert.mediapipe_assets import DEFAULT_DEST, MediapipeAssetsError, ensure_mediapipe_models
from convert.peer_mesh import (
    MP_SIZE,
    landmark_nme,
    mediapipe_roi,
    mesh_relief,
    mesh_to_frame,
    scale_shift_mae,
    shift_mae,
)
from convert.verify import TFLitePredict
from firmware_app.bundle import Bundle, BundleError, load_bundle
from firmware_app.preprocess import crop_square
from firmware_app.tflite import make_interpreter
from train.config import Config, config_from_dict
from train.data import jittered_transform, make_example
from train.metrics import inner_face
from train.provenance import cpu_model
from train.synth.dataset_index import DatasetError, DatasetIndex
from train.synth.sample import BONA_FIDE, Sample
from train.synth.shards import ShardReader

log = logging.getLogger(__name__)
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "out" / "bench" / "peer.json"
N_MESH = 468
NORMALISATIONS = {"[0,1]": (1 / 255, 0.0), "[-1,1]": (2 / 255, -1.0)}  # x·mul + add
N_NORM_PROBE = 16  # bona fide crops used to choose the normalisation
MIN_CELLS = 50  # a sample needs this many (face ∩ hull) cells to be scored
MAE_GOAL_RATIO = 0.7
WARMUP = 10
OURS, PEER = "facedepth int8 (ours)", "MediaPipe face_landmark (float)"


class PeerError(RuntimeError):
    """A missing input (bundle, dataset, MediaPipe model); the message names what creates it."""


# ---- the peer model ----

class FaceMesh:
    """face_landmark.tflite: uint8 (192, 192, 3) → (468, 3) landmarks and the face-presence logit."""

    def __init__(self, path: Path, num_threads: int = 1, normalisation: str = "[0,1]"):
        self.interpreter = make_interpreter(path, num_threads)
        (self.inp,) = self.interpreter.get_input_details()
        outs = {int(np.prod(d["shape"])): d for d in self.interpreter.get_output_details()}
        if tuple(self.inp["shape"]) != (1, MP_SIZE, MP_SIZE, 3) or set(outs) != {N_MESH * 3, 1}:
            raise PeerError(f"{path}: not MediaPipe's face mesh (input {self.inp['shape']}, outputs "
                            f"{sorted(outs)}); re-extract it with `python -m convert.mediapipe_assets`")
        self.mesh, self.presence = outs[N_MESH * 3], outs[1]
        self.normalisation = normalisation

    def set_input(self, rgb: np.ndarray) -> None:
        mul, add = NORMALISATIONS[self.normalisation]
        self.interpreter.set_tensor(self.inp["index"], (rgb.astype(np.float32) * mul + add)[None])

    def __call__(self, rgb: np.ndarray) -> tuple[np.ndarray, float]:
        self.set_input(rgb)
        self.interpreter.invoke()
        mesh = self.interpreter.get_tensor(self.mesh["index"]).reshape(N_MESH, 3)
        return mesh.astype(np.float64), float(self.interpreter.get_tensor(self.presence["index"]).ravel()[0])


@dataclass(frozen=True)
class RangeProbe:
    presence_logit: float  # median face-presence logit over the probe crops (the choice)
    landmark_nme: float  # cross-check: mean landmark_nme over the probe samples


def choose_normalisation(mesh: FaceMesh, probe: list[Sample], cfg: Config) -> dict[str, RangeProbe]:
    """Try each input range on the probe samples' MediaPipe crops; leave `mesh` set to the one with the
    higher median face-presence logit (the median of the logits = logit of the median probability)."""
    result = {}
    for name in NORMALISATIONS:
        mesh.normalisation = name
        logits, nme = [], []
        for s in probe:
            crop = mediapipe_roi(s, cfg.data.use_eyes)
            landmarks, logit = mesh(crop_square(s.rgb, crop, MP_SIZE))
            logits.append(logit)
            nme.append(landmark_nme(mesh_to_frame(landmarks[:, :2], crop), s.landmarks_2d))
        result[name] = RangeProbe(float(np.median(logits)), float(np.mean(nme)))
    mesh.normalisation = max(result, key=lambda n: result[n].presence_logit)
    return result


# ---- results ----

@dataclass(frozen=True)
class PeerRow:
    model: str
    input_size: str
    latency_ms: float  # median of `runs` invokes, 1 thread
    latency_min_ms: float  # fastest of them: less sensitive to other processes' load
    mae_mm: float  # mean over samples of the aligned MAE over (inner face ∩ MediaPipe hull): ours shift-only,
    n_samples: int  # MediaPipe scale+shift


@dataclass(frozen=True)
class PeerResult:
    ours: PeerRow
    peer: PeerRow
    ours_scale_shift_mae_mm: float  # our MAE with a fitted scale and shift too, same cells
    normalisation: str  # MediaPipe input range used (chosen by face presence unless forced)
    ranges: dict[str, RangeProbe]  # each candidate input range on the first N_NORM_PROBE samples
    peer_presence_mean: float  # mean face-presence probability over the scored samples
    cells_mean: float  # mean number of (face ∩ hull) cells per scored sample
    skipped: int  # samples with fewer than MIN_CELLS cells
    split: str
    runs: int
    dataset: str
    bundle: str
    cpu: str = ""  # model name and VNNI: the latency ratio is this CPU's (2.37 on one, 0.91 on another)

    @property
    def presence_choice(self) -> str:
        """The input range with the higher median face-presence logit (what "auto" uses)."""
        return max(self.ranges, key=lambda n: self.ranges[n].presence_logit)

    @property
    def latency_ok(self) -> bool:
        return self.ours.latency_ms <= self.peer.latency_ms

    @property
    def mae_ok(self) -> bool:
        return self.ours.mae_mm <= MAE_GOAL_RATIO * self.peer.mae_mm

    def to_dict(self) -> dict:
        return {**asdict(self), "goals": {"latency_ok": self.latency_ok, "mae_ok": self.mae_ok,
                                          "mae_goal_ratio": MAE_GOAL_RATIO}}


def table_text(r: PeerResult) -> str:
    lines = [f"| model ({r.split} split, bona fide) | input | latency ms, 1 thread: median of {r.runs} (min) "
             "| inner-face relief MAE mm (ours: shift; MediaPipe: scale+shift) | n samples |",
             "|---|---|---|---|---|"]
    for row in (r.ours, r.peer):
        lines.append(f"| {row.model} | {row.input_size} | {row.latency_ms:.2f} ({row.latency_min_ms:.2f}) | "
                     f"{row.mae_mm:.2f} | "
                     f"{row.n_samples} |")
    yes = {True: "met", False: "NOT met"}
    lines += [
        "",
        f"CPU: {r.cpu or 'not recorded'}",
        f"goal latency ours ≤ MediaPipe: {yes[r.latency_ok]} ({r.ours.latency_ms:.2f} vs "
        f"{r.peer.latency_ms:.2f} ms, ratio {r.ours.latency_ms / r.peer.latency_ms:.2f}); "
        f"goal MAE ours ≤ {MAE_GOAL_RATIO} × MediaPipe: {yes[r.mae_ok]} ({r.ours.mae_mm:.2f} vs "
        f"{MAE_GOAL_RATIO * r.peer.mae_mm:.2f} mm, ratio {r.ours.mae_mm / r.peer.mae_mm:.2f})",
        f"reference: ours scale+shift MAE {r.ours_scale_shift_mae_mm:.2f} mm on the same cells "
        f"({r.cells_mean:.0f} inner-face cells inside MediaPipe's hull per sample, "
        f"{r.skipped} samples skipped)",
        f"MediaPipe input {r.normalisation}, "
        + ("chosen by face presence (" if r.normalisation == r.presence_choice else "forced by --mp-range (")
        + "; ".join(f"{n}: median logit {p.presence_logit:.1f}, landmark NME {p.landmark_nme:.3f}"
                    for n, p in r.ranges.items())
        + f"); mean presence over the samples {r.peer_presence_mean:.3f}",
    ]
    return "\n".join(lines)


# ---- the run ----

def bona_fide_ordinals(index: DatasetIndex, split: str, max_samples: int) -> list[int]:
    """Ordinals (among the split's bona fide samples, index order) of `max_samples` evenly spaced ones
    (0 = all), so a subset spans all shards and identities."""
    total = sum(e.labels.get(BONA_FIDE, 0) for e in index.entries(split))
    if total == 0:
        raise DatasetError(f"{index.root}: split {split!r} has no bona fide samples ({index.counts()})")
    n = total if max_samples <= 0 else min(max_samples, total)
    return sorted(set(np.linspace(0, total - 1, n).round().astype(int).tolist()))


def iter_bona_fide(index: DatasetIndex, split: str, ordinals: list[int]) -> Iterator[Sample]:
    """The split's bona fide samples at `ordinals`, one at a time (a shard is opened only if needed)."""
    wanted, seen = set(ordinals), 0
    for e in index.entries(split):
        k = e.labels.get(BONA_FIDE, 0)
        if wanted.isdisjoint(range(seen, seen + k)):
            seen += k
            continue
        reader = ShardReader(index.root / e.file, e.sha256)
        for i in np.flatnonzero(reader.labels == BONA_FIDE):
            if seen in wanted:
                yield reader.sample(int(i))
            seen += 1


def interleaved_latency(invokes: list[Callable[[], object]], runs: int,
                        warmup: int = WARMUP) -> list[tuple[float, float]]:
    """(median, min) ms of each zero-argument callable, called in turn `warmup` + `runs` times."""
    times = np.zeros((len(invokes), runs))
    for k in range(warmup + runs):
        for j, invoke in enumerate(invokes):
            t0 = time.perf_counter()
            invoke()
            if k >= warmup:
                times[j, k - warmup] = time.perf_counter() - t0
    return [(1000 * float(np.median(t)), 1000 * float(t.min())) for t in times]


def _load_inputs(bundle_dir: Path, dataset: Path | None,
                 mediapipe_dir: Path) -> tuple[Bundle, Config, DatasetIndex, Path]:
    try:
        bundle = load_bundle(bundle_dir)
    except BundleError as e:
        raise PeerError(f"{e} (`make convert BUNDLE={bundle_dir}` builds one)") from e
    cfg = config_from_dict(bundle.manifest["training_config"])
    crop = bundle.crop
    if (crop.crop_scale, crop.use_eyes) != (cfg.data.crop_scale, cfg.data.use_eyes):
        raise PeerError(f"{bundle_dir}/manifest.json: crop {crop} disagrees with its training config")
    try:
        index = DatasetIndex.load(dataset or cfg.data.dataset)
    except DatasetError as e:
        raise PeerError(f"{e} (`make data` writes out/synth)") from e
    try:
        models = ensure_mediapipe_models(mediapipe_dir)
    except MediapipeAssetsError as e:
        raise PeerError(f"MediaPipe's face_landmark.tflite is not in {mediapipe_dir} and could not be "
                        f"fetched: {e}\n`make bench-peer` (python -m convert.mediapipe_assets) fetches "
                        "it") from e
    return bundle, cfg, index, models.face_landmark


@dataclass
class _Scores:
    ours: list[float]
    peer: list[float]
    ours_scale_shift: list[float]
    presence: list[float]
    cells: list[int]
    skipped: int = 0


def _score(s: Sample, cfg: Config, ours: TFLitePredict, mesh: FaceMesh, scores: _Scores) -> None:
    """Both models on one sample; appends its aligned MAEs (or counts it skipped)."""
    ex = make_example(s, cfg.data, cfg.model)
    relief = ours(ex.rgb[None])[0][0]
    mp_crop = mediapipe_roi(s, cfg.data.use_eyes)
    landmarks, logit = mesh(crop_square(s.rgb, mp_crop, MP_SIZE))
    peer = mesh_relief(landmarks, mp_crop, jittered_transform(s, cfg.data, None))
    where = inner_face(ex.landmarks, ex.face) & np.isfinite(peer)
    if where.sum() < MIN_CELLS:
        scores.skipped += 1
        return
    scores.ours.append(shift_mae(relief, ex.relief, where))
    scores.peer.append(scale_shift_mae(peer, ex.relief, where))
    scores.ours_scale_shift.append(scale_shift_mae(relief, ex.relief, where))
    scores.presence.append(float(1 / (1 + np.exp(-logit))))
    scores.cells.append(int(where.sum()))


def run_peer(bundle_dir: Path | str = "bundle/default", dataset: Path | str | None = None,
             split: str = "test", max_samples: int = 300, runs: int = 200,
             mediapipe_dir: Path | str = DEFAULT_DEST, mp_range: str = "auto") -> PeerResult:
    """Score and time both models on `split`'s bona fide samples (see the module docstring).

    mp_range: "auto" (choose by face presence) or a key of NORMALISATIONS to force it."""
    if mp_range != "auto" and mp_range not in NORMALISATIONS:
        raise PeerError(f"MediaPipe input range {mp_range!r}: use auto or one of {', '.join(NORMALISATIONS)}")
    if runs < 1:
        raise PeerError(f"--runs {runs}: need at least one timed invoke")
    bundle, cfg, index, mesh_path = _load_inputs(Path(bundle_dir), dataset and Path(dataset),
                                                 Path(mediapipe_dir))
    ours, mesh = TFLitePredict(bundle.depth_model, num_threads=1), FaceMesh(mesh_path, num_threads=1)
    ordinals = bona_fide_ordinals(index, split, max_samples)
    samples = iter_bona_fide(index, split, ordinals)
    probe = list(islice(samples, N_NORM_PROBE))
    ranges = choose_normalisation(mesh, probe, cfg)
    mesh.normalisation = mesh.normalisation if mp_range == "auto" else mp_range
    log.info("MediaPipe input %s (%s)", mesh.normalisation, ranges)

    scores, t0 = _Scores([], [], [], [], []), time.perf_counter()
    for k, s in enumerate(chain(probe, samples), 1):
        _score(s, cfg, ours, mesh, scores)
        if k % 50 == 0 or k == len(ordinals):
            rate = k / (time.perf_counter() - t0)
            log.info("%d/%d samples, %.1f/s, ETA %.0f s", k, len(ordinals), rate, (len(ordinals) - k) / rate)
    if not scores.ours:
        raise PeerError(f"none of the {len(ordinals)} samples had {MIN_CELLS} face cells inside "
                        "MediaPipe's mesh: nothing to compare")

    ours.invoke_one(make_example(probe[0], cfg.data, cfg.model).rgb)  # inputs set once: only invoke timed
    mesh.set_input(crop_square(probe[0].rgb, mediapipe_roi(probe[0], cfg.data.use_eyes), MP_SIZE))
    ours_ms, peer_ms = interleaved_latency([ours.interpreter.invoke, mesh.interpreter.invoke], runs)
    n = len(scores.ours)
    return PeerResult(
        PeerRow(OURS, "160×160×3 int8", *ours_ms, float(np.mean(scores.ours)), n),
        PeerRow(PEER, f"{MP_SIZE}×{MP_SIZE}×3 float32", *peer_ms, float(np.mean(scores.peer)), n),
        float(np.mean(scores.ours_scale_shift)), mesh.normalisation, ranges, float(np.mean(scores.presence)),
        float(np.mean(scores.cells)), scores.skipped, split, runs, str(index.root), str(bundle.root),
        cpu_model())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m convert.peer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", type=Path, default=Path("bundle/default"), help="release bundle (%(default)s)")
    p.add_argument("--dataset", type=Path, default=None,
                   help="dataset directory (default: the bundle's training dataset, out/synth)")
    p.add_argument("--split", default="test", help="dataset split (%(default)s)")
    p.add_argument("--max-samples", type=int, default=300, help="bona fide samples, evenly spaced; 0 = all")
    p.add_argument("--runs", type=int, default=200, help="timed invokes per model after warm-up")
    p.add_argument("--mp-range", default="auto", choices=["auto", *NORMALISATIONS],
                   help="MediaPipe input range; auto = the one with higher face presence (%(default)s)")
    p.add_argument("--mediapipe", type=Path, default=DEFAULT_DEST, help="MediaPipe models (%(default)s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON result (%(default)s)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        r = run_peer(a.bundle, a.dataset, a.split, a.max_samples, a.runs, a.mediapipe, a.mp_range)
    except (PeerError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(table_text(r))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(r.to_dict(), indent=1) + "\n")
    print(f"→ {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
