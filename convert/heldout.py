"""The held-out check a training session must pass before its weights replace models/default.

    python -m convert.heldout RUN_DIR [--committed models/default] [--photos out/photo_attacks]
                                      [--work out/heldout]                       (make heldout RUN=)
    python -m convert.heldout --bundles CANDIDATE_BUNDLE COMMITTED_BUNDLE      (two bundles already built,
                                                                   calibrated on the same split)

The session rule (train/session.py) compares validation figures, and validation is synthetic: sessions
12 and 15 passed it and then accepted more frames of the held-out real-photo slice (out/photo_attacks:
prints and screens of photographs no training frame comes from; convert/photo_attack_eval.py). So a
candidate that validation promotes is converted and scored on that slice beside the committed model,
both calibrated on the committed model's dataset: `convert` fits the frame evidence and its 1 % BPCER
threshold on a validation split, and another split alone moved the shipped weights' figure 7.3 → 9.5 %
(session 15), so a comparison across splits measures the split.

Passed: on the same frames, the candidate accepts no more than the committed model with the device's
cues (detector crop + medium edges) and no more on the detector crop alone, and it still does in at least
PASS_SHARE of BOOTSTRAP paired resamples. Each bundle's 1 % BPCER threshold rests on ~34 bona fide
validation frames: resampled alone it moved the shipped figure 24–51 of 600 (p5–p95), so one count against
another says little. A resample draws the validation frames (the same draw for both bundles, from the
`val_bona_fide_tail` their manifests carry: convert/liveness.bona_fide_tail) and the slice's frames (the
same for both), and counts what each bundle accepts at its resampled threshold. The committed model's
bundle is converted once per weights and dataset and kept in `work` (bundle/default is reused when its
manifest names the same weights and dataset shards). The door clips are not part of the check (minutes
per seed of rendering): `make bench-liveness BUNDLE=<work>/candidate` measures them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
CROPS = ("detector+medium", "detector")  # the device's cues first: that is the figure the README gates on
SHIPPED = Path("bundle/default")
PHOTO_N = 600  # make photo-attacks' PHOTO_N
BOOTSTRAP = 2000  # paired resamples (the seed is fixed: the same bundles always get the same verdict)
PASS_SHARE = 0.9  # of them in which the candidate must accept no more frames


class HeldOutError(RuntimeError):
    """The check could not run (no committed model, a bad run or dataset, a conversion refused)."""


@dataclass(frozen=True)
class CropCount:
    crop: str
    candidate: int  # slice frames accepted (judged live)
    committed: int
    n: int
    not_worse_share: float | None = None  # share of paired resamples with candidate ≤ committed

    @property
    def passed(self) -> bool:
        steady = self.not_worse_share is None or self.not_worse_share >= PASS_SHARE
        return self.candidate <= self.committed and steady

    def text(self) -> str:
        share = "" if self.not_worse_share is None else \
            f" (no worse in {self.not_worse_share:.0%} of resamples)"
        return f"{self.crop} {self.candidate}/{self.n} vs {self.committed}/{self.n}{share}"


@dataclass(frozen=True)
class HeldOutResult:
    counts: tuple[CropCount, ...]
    calibration: str  # the dataset both bundles were calibrated on
    candidate_bundle: str
    committed_bundle: str

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.counts)

    def line(self) -> str:
        parts = [c.text() for c in self.counts]
        verdict = "passed" if self.passed else ("refused (more real-photo attack frames accepted, or no "
                                                f"worse in under {PASS_SHARE:.0%} of resamples)")
        return f"held-out real-photo slice, candidate vs committed: {'; '.join(parts)} → {verdict}"

    def to_ledger(self) -> dict:
        return {"passed": self.passed, "calibration": self.calibration,
                "candidate_bundle": self.candidate_bundle,
                "committed_bundle": self.committed_bundle, "accepted": [asdict(c) for c in self.counts]}


def resampled_thresholds(tail: dict, weights: np.ndarray, q: float) -> np.ndarray:
    """Each resample's q-quantile (numpy's "lower", as convert sets it) of the scored bona fide frame LLRs,
    read from the tail alone. weights: (resamples, tail["n"]) draw counts of the bona fide frames by rank."""
    unscored = np.asarray(tail["unscored"], int)
    n_scored = weights.sum(1) - weights[:, unscored].sum(1)
    k = np.floor(q * (n_scored - 1)).astype(int)  # the quantile's position among the drawn frames
    order = np.argsort(tail["llr"], kind="stable")
    index, llr = np.asarray(tail["index"], int)[order], np.asarray(tail["llr"], np.float64)[order]
    drawn = np.cumsum(weights[:, index], axis=1)
    pos = (drawn <= k[:, None]).sum(1)  # the first tail frame whose draws reach past position k
    if (pos >= llr.size).any():
        raise ValueError(f"the manifest's bona fide tail ({llr.size} of {tail['n']} frames) is too short "
                         "for a resampled threshold; rebuild the bundle with this convert")
    return llr[pos]


def not_worse_shares(tails: tuple[dict, dict], scores: tuple[dict, dict], q: float,
                     resamples: int = BOOTSTRAP, seed: int = 0) -> dict[str, float]:
    """Per crop, the share of paired resamples (validation bona fide frames and slice frames, one draw for
    both bundles) in which the candidate (first) accepts no more slice frames than the committed model."""
    n = tails[0]["n"]
    if tails[1]["n"] != n:
        raise ValueError(f"the two bundles were calibrated on different splits ({n} vs {tails[1]['n']} bona "
                         "fide frames)")
    rng = np.random.default_rng(seed)
    frames = [s["frames"] for s in scores]
    m = len(frames[0])
    if len(frames[1]) != m:
        raise ValueError(f"the two results score different slices ({m} vs {len(frames[1])} frames)")
    val_w = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)
    slice_w = rng.multinomial(m, np.full(m, 1.0 / m), size=resamples)
    thresholds = [resampled_thresholds(t, val_w, q) for t in tails]
    shares = {}
    for crop in CROPS:
        key = f"score_{crop}"
        if not all(key in f[0] for f in frames):
            continue
        accepted = []
        for fs, thr in zip(frames, thresholds):
            s = np.array([-np.inf if f[key] is None else f[key] for f in fs], np.float64)  # None: unscored
            accepted.append(((s[None, :] >= thr[:, None]) * slice_w).sum(1))
        shares[crop] = float(np.mean(accepted[0] <= accepted[1]))
    return shares


def compare(candidate: dict, committed: dict,
            shares: dict[str, float] | None = None) -> tuple[CropCount, ...]:
    """Accepted counts per crop of two photo_attack_eval results on the same slice (with not_worse_shares)."""
    out = []
    for crop in CROPS:
        a, b = candidate["apcer"].get(crop, {}).get("all"), committed["apcer"].get(crop, {}).get("all")
        if a is None or b is None:
            continue
        if a["n"] != b["n"]:
            raise ValueError(f"the two results score different slices ({a['n']} vs {b['n']} frames)")
        out.append(CropCount(crop, int(a["accepted"]), int(b["accepted"]), int(a["n"]),
                             None if shares is None else shares.get(crop)))
    if not out:
        raise ValueError("neither result has a detector-crop figure to compare")
    return tuple(out)


def manifest_tail(bundle: Path) -> tuple[dict, float]:
    """The manifest's val_bona_fide_tail and BPCER target (ValueError: a bundle from before them)."""
    live = json.loads((bundle / "manifest.json").read_text()).get("liveness", {})
    if "val_bona_fide_tail" not in live:
        raise ValueError(f"{bundle}/manifest.json has no liveness.val_bona_fide_tail: rebuild it with this "
                         "convert (make convert BUNDLE=...)")
    return live["val_bona_fide_tail"], float(live["bpcer_target"])


def _same_source(manifest: dict, weights_sha256: str | None, dataset: Path) -> bool:
    """The manifest's bundle holds these weights calibrated on this dataset's shards (bundles from before
    content_sha256: on this very index.json, which names the commit that wrote it)."""
    from train.synth.dataset_index import DatasetIndex
    from train.synth.shards import sha256_of

    if weights_sha256 is None or manifest.get("weights_sha256") != weights_sha256:
        return False
    if not (dataset / "index.json").is_file() or "val_bona_fide_tail" not in manifest.get("liveness", {}):
        return False  # ... and a bundle from before the tail cannot be resampled: converted again
    made_on = manifest.get("dataset", {})
    if "content_sha256" in made_on:
        return made_on["content_sha256"] == DatasetIndex.load(dataset).content_sha256()
    return made_on.get("index_sha256") == sha256_of(dataset / "index.json")


def committed_bundle(committed: Path, dataset: Path, work: Path, shipped: Path = SHIPPED) -> Path:
    """A bundle of the committed weights calibrated on `dataset`: the shipped one if it is that, else one
    converted into work/committed (kept while the weights and the dataset index stay the same)."""
    from convert.bundle import build_bundle

    weights = json.loads((committed / "run.json").read_text()).get("weights_sha256")
    for path in (shipped, work / "committed"):
        manifest = path / "manifest.json"
        if manifest.is_file() and _same_source(json.loads(manifest.read_text()), weights, dataset):
            log.info("committed model: %s (same weights and calibration split)", path)
            return path
    log.info("converting the committed model %s on %s into %s", committed, dataset, work / "committed")
    build_bundle(committed, work / "committed", dataset=dataset)
    return work / "committed"


def committed_dataset(committed: Path) -> Path:
    """The dataset the committed model was trained (and bundle/default calibrated) on, as its config names
    it (relative: run.json's resolved path is the training machine's)."""
    try:
        return Path(json.loads((committed / "run.json").read_text())["config"]["data"]["dataset"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise HeldOutError(f"{committed}/run.json names no dataset ({e!r}): there is no committed model to "
                           "compare with; promote on validation alone (--no-heldout)") from e


def check(run_dir: Path, committed: Path = Path("models/default"), photos: Path = Path("out/photo_attacks"),
          work: Path = Path("out/heldout"), dataset: Path | None = None) -> HeldOutResult:
    """Convert the candidate on the committed model's dataset, score both bundles on the slice (made if
    missing) and compare. HeldOutError (one line) when any step cannot run."""
    from convert.bundle import build_bundle
    from convert.mediapipe_assets import MediapipeAssetsError
    from train.synth.dataset_index import DatasetError

    dataset = Path(dataset or committed_dataset(committed))
    try:
        reference = committed_bundle(committed, dataset, work)
        candidate = work / "candidate"
        build_bundle(run_dir, candidate, dataset=dataset)
    except (ValueError, OSError, DatasetError, MediapipeAssetsError) as e:
        raise HeldOutError(f"the held-out check could not run: {e}") from e
    return compare_bundles(candidate, reference, photos, work, str(dataset))


def compare_bundles(candidate: Path, reference: Path, photos: Path = Path("out/photo_attacks"),
                    work: Path = Path("out/heldout"), calibration: str = "") -> HeldOutResult:
    """Score two bundles (calibrated on the same split) on the slice (made if missing) and compare them."""
    from convert.mediapipe_assets import MediapipeAssetsError
    from convert.photo_attack_eval import run as score_slice
    from train.synth.dataset_index import DatasetError
    from train.synth.photo_attacks import generate
    from train.synth.photo_sources import PhotoSourceError

    try:
        (tail_a, q), (tail_b, _) = manifest_tail(candidate), manifest_tail(reference)  # before any scoring
        if not (photos / "index.json").is_file():
            log.info("no held-out slice at %s: making it (%d frames, make photo-attacks)", photos, PHOTO_N)
            generate(photos, PHOTO_N, seed=0)
        scores = {name: score_slice(path, photos, work / f"{name}_photo_attacks.json")
                  for name, path in (("candidate", candidate), ("committed", reference))}
        shares = not_worse_shares((tail_a, tail_b), (scores["candidate"], scores["committed"]), q)
        counts = compare(scores["candidate"], scores["committed"], shares)
    except (ValueError, OSError, DatasetError, PhotoSourceError, MediapipeAssetsError) as e:
        raise HeldOutError(f"the held-out check could not run: {e}") from e
    return HeldOutResult(counts, calibration, str(candidate), str(reference))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m convert.heldout", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, nargs="?",
                   help="the candidate training run (run.json + model.keras)")
    p.add_argument("--bundles", type=Path, nargs=2, metavar=("CANDIDATE", "COMMITTED"),
                   help="compare two bundles already built (calibrated on the same split) instead of a run")
    p.add_argument("--committed", type=Path, default=Path("models/default"))
    p.add_argument("--photos", type=Path, default=Path("out/photo_attacks"))
    p.add_argument("--work", type=Path, default=Path("out/heldout"))
    p.add_argument("--dataset", type=Path, help="calibration dataset (default: the committed model's)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if (a.run_dir is None) == (a.bundles is None):
        print("error: name a candidate run (make heldout RUN=out/runs/<run>) or two bundles (--bundles A B), "
              "not both", file=sys.stderr)
        return 2
    if a.bundles:
        try:
            result = compare_bundles(*a.bundles, a.photos, a.work)
        except HeldOutError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(result.line())
        return 0 if result.passed else 1
    if a.run_dir.resolve() == a.committed.resolve():
        print(f"error: {a.run_dir} is the committed model itself; name a candidate run "
              "(make heldout RUN=out/runs/<run>)", file=sys.stderr)
        return 2
    try:
        result = check(a.run_dir, a.committed, a.photos, a.work, a.dataset)
    except HeldOutError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result.line())
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
