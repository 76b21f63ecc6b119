"""The held-out check a training session must pass before its weights replace models/default.

    python -m convert.heldout RUN_DIR [--committed models/default] [--photos out/photo_attacks]
                                      [--work out/heldout]                       (make heldout RUN=)

The session rule (train/session.py) compares validation figures, and validation is synthetic: sessions
12 and 15 passed it and then accepted more frames of the held-out real-photo slice (out/photo_attacks:
prints and screens of photographs no training frame comes from; convert/photo_attack_eval.py). So a
candidate that validation promotes is converted and scored on that slice beside the committed model,
both calibrated on the committed model's dataset: `convert` fits the frame evidence and its 1 % BPCER
threshold on a validation split, and another split alone moved the shipped weights' figure 7.3 → 9.5 %
(session 15), so a comparison across splits measures the split.

Passed: on the same frames, the candidate accepts no more than the committed model with the device's
cues (detector crop + medium edges) and no more on the detector crop alone. The committed model's
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

log = logging.getLogger(__name__)
CROPS = ("detector+medium", "detector")  # the device's cues first: that is the figure the README gates on
SHIPPED = Path("bundle/default")
PHOTO_N = 600  # make photo-attacks' PHOTO_N


class HeldOutError(RuntimeError):
    """The check could not run (no committed model, a bad run or dataset, a conversion refused)."""


@dataclass(frozen=True)
class CropCount:
    crop: str
    candidate: int  # slice frames accepted (judged live)
    committed: int
    n: int

    @property
    def passed(self) -> bool:
        return self.candidate <= self.committed


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
        parts = [f"{c.crop} {c.candidate}/{c.n} vs {c.committed}/{c.n}" for c in self.counts]
        verdict = "passed" if self.passed else "refused (more real-photo attack frames accepted)"
        return f"held-out real-photo slice, candidate vs committed: {'; '.join(parts)} → {verdict}"

    def to_ledger(self) -> dict:
        return {"passed": self.passed, "calibration": self.calibration,
                "candidate_bundle": self.candidate_bundle,
                "committed_bundle": self.committed_bundle, "accepted": [asdict(c) for c in self.counts]}


def compare(candidate: dict, committed: dict) -> tuple[CropCount, ...]:
    """Accepted counts per crop of two photo_attack_eval results on the same slice."""
    out = []
    for crop in CROPS:
        a, b = candidate["apcer"].get(crop, {}).get("all"), committed["apcer"].get(crop, {}).get("all")
        if a is None or b is None:
            continue
        if a["n"] != b["n"]:
            raise ValueError(f"the two results score different slices ({a['n']} vs {b['n']} frames)")
        out.append(CropCount(crop, int(a["accepted"]), int(b["accepted"]), int(a["n"])))
    if not out:
        raise ValueError("neither result has a detector-crop figure to compare")
    return tuple(out)


def _same_source(manifest: dict, weights_sha256: str | None, dataset: Path) -> bool:
    """The manifest's bundle holds these weights calibrated on this dataset's shards (bundles from before
    content_sha256: on this very index.json, which names the commit that wrote it)."""
    from train.synth.dataset_index import DatasetIndex
    from train.synth.shards import sha256_of

    if weights_sha256 is None or manifest.get("weights_sha256") != weights_sha256:
        return False
    if not (dataset / "index.json").is_file():
        return False
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
    from convert.photo_attack_eval import run as score_slice
    from train.synth.dataset_index import DatasetError
    from train.synth.photo_attacks import generate
    from train.synth.photo_sources import PhotoSourceError

    dataset = Path(dataset or committed_dataset(committed))
    try:
        reference = committed_bundle(committed, dataset, work)
        candidate = work / "candidate"
        build_bundle(run_dir, candidate, dataset=dataset)
        if not (photos / "index.json").is_file():
            log.info("no held-out slice at %s: making it (%d frames, make photo-attacks)", photos, PHOTO_N)
            generate(photos, PHOTO_N, seed=0)
        scores = {name: score_slice(path, photos, work / f"{name}_photo_attacks.json")
                  for name, path in (("candidate", candidate), ("committed", reference))}
        counts = compare(scores["candidate"], scores["committed"])
    except (ValueError, OSError, DatasetError, PhotoSourceError, MediapipeAssetsError) as e:
        raise HeldOutError(f"the held-out check could not run: {e}") from e
    return HeldOutResult(counts, str(dataset), str(candidate), str(reference))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m convert.heldout", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path, help="the candidate training run (run.json + model.keras)")
    p.add_argument("--committed", type=Path, default=Path("models/default"))
    p.add_argument("--photos", type=Path, default=Path("out/photo_attacks"))
    p.add_argument("--work", type=Path, default=Path("out/heldout"))
    p.add_argument("--dataset", type=Path, help="calibration dataset (default: the committed model's)")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
