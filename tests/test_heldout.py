"""The held-out check before a promotion (convert/heldout.py, train/session.py): a session that validation
promotes is converted and scored on the real-photo attack slice beside the committed model, both calibrated
on the committed model's dataset, and replaces the weights only if it accepts no more of its frames, and still
does in 90 % of paired resamples of the validation frames that set each threshold and of the slice."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from convert.heldout import (
    CropCount,
    HeldOutError,
    HeldOutResult,
    check,
    committed_bundle,
    compare,
    not_worse_shares,
    resampled_thresholds,
)
from convert.liveness import bona_fide_tail
from tests.fakes import tiny_run_config, write_fake_dataset
from train.config import ModelConfig

pytestmark = [pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"),
              pytest.mark.filterwarnings("ignore:Statistics for quantized inputs were expected")]
TINY_V2 = ModelConfig(arch="v2", n_bins=10, trunk_widths=(8, 8, 16, 16), blocks=(0,), refine_width=8)
BUNDLE = Path(__file__).resolve().parents[1] / "bundle" / "default"
DETECTOR = str(BUNDLE / "face_detection_short_range.tflite")  # the device's BlazeFace, committed


@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    """A committed tiny model (session 1) and a warm-started candidate run (session 2)."""
    from train import session
    from train.train import train

    tmp = tmp_path_factory.mktemp("heldout")
    index = write_fake_dataset(tmp / "ds", n_train=8, n_val=20, n_test=12, hw=(96, 128), per_shard=10)
    base = tiny_run_config(index, TINY_V2, tmp / "runs", name="t", steps=2)
    models = tmp / "models"
    cfg1, committed = session.session_config(base, models, fresh=False)
    assert session.promote(train(cfg1), models, committed, cfg1)["promoted"]  # fresh: nothing to compare
    cfg2, committed = session.session_config(base, models, fresh=False)
    return {"tmp": tmp, "models": models, "run": train(cfg2), "cfg": cfg2, "committed": committed,
            "index": index}


def _tiny_slice(out: Path) -> Path:
    from train.synth.photo_attacks import PhotoAttackConfig, generate

    generate(out, 4, seed=1, shard_size=1, cfg=PhotoAttackConfig(height=240, width=320), log=lambda _: None,
             detector_model=DETECTOR)
    return out


@pytest.mark.slow
def test_the_real_check_scores_both_bundles_on_the_same_frames(sessions, monkeypatch):
    monkeypatch.setattr("convert.liveness.MIN_ATTACKS", 2)  # the fake split has 5 val attacks
    monkeypatch.setattr("convert.liveness.MIN_BONA_FIDE", 2)
    tmp = sessions["tmp"]
    work = tmp / "work"
    photos = _tiny_slice(tmp / "slice")
    result = check(sessions["run"], committed=sessions["models"], photos=photos, work=work)
    assert [c.crop for c in result.counts] == ["detector+medium", "detector"]
    assert all(c.n == 4 and 0 <= c.candidate <= 4 and 0 <= c.committed <= 4 for c in result.counts)
    assert all(0.0 <= c.not_worse_share <= 1.0 for c in result.counts)
    assert result.passed == all(c.candidate <= c.committed and c.not_worse_share >= 0.9
                                for c in result.counts)
    for name in ("candidate", "committed"):  # both calibrated on the committed model's dataset
        manifest = json.loads((work / name / "manifest.json").read_text())
        assert manifest["dataset"]["path"] == str(sessions["index"].root.resolve())
        scored = json.loads((work / f"{name}_photo_attacks.json").read_text())
        assert scored["apcer"]["detector"]["all"]["accepted"] == getattr(result.counts[1], name)
        tail = manifest["liveness"]["val_bona_fide_tail"]  # the tiny split: every bona fide frame
        assert len(tail["index"]) + len(tail["unscored"]) == tail["n"] > 0
    ledger = result.to_ledger()
    assert ledger["passed"] == result.passed and len(ledger["accepted"]) == 2
    # the committed bundle is converted once per weights and dataset, then reused
    stamp = (work / "committed" / "manifest.json").stat().st_mtime_ns
    assert committed_bundle(sessions["models"], sessions["index"].root, work) == work / "committed"
    assert (work / "committed" / "manifest.json").stat().st_mtime_ns == stamp


def test_a_check_that_cannot_run_says_why_and_does_not_promote(sessions, tmp_path):
    from train import session

    # The real check on the fake split: too few validation attacks to calibrate the evidence → refused.
    with pytest.raises(HeldOutError, match="too few"):
        check(sessions["run"], committed=sessions["models"], photos=tmp_path / "none", work=tmp_path / "w")
    assert not (tmp_path / "none").exists()  # the slice is made only once both bundles exist
    with pytest.raises(HeldOutError, match="names no dataset"):
        check(sessions["run"], committed=tmp_path / "nothing")
    models = _improved_copy(sessions, tmp_path)
    before = (models / session.WEIGHTS).read_bytes()

    def real(run_dir):
        return check(run_dir, committed=models, photos=tmp_path / "none", work=tmp_path / "w")

    entry = session.promote(sessions["run"], models, sessions["committed"], sessions["cfg"], real)
    assert not entry["promoted"] and "too few" in entry["heldout"]["error"]
    assert (models / session.WEIGHTS).read_bytes() == before


@pytest.mark.parametrize("candidate, share, promoted", [(3, 0.99, False), (2, 0.95, True), (1, 0.97, True),
                                                      (1, 0.6, False)])
def test_validation_promotes_only_what_the_held_out_slice_does_not_refuse(sessions, tmp_path, candidate,
                                                                          share, promoted):
    """More frames accepted, or fewer but not in 90 % of the resamples (a threshold's luck): refused."""
    from train import session

    models = _improved_copy(sessions, tmp_path)
    before = (models / session.WEIGHTS).read_bytes()
    counts = (CropCount("detector+medium", candidate, 2, 600, share),
              CropCount("detector", 100, 100, 600, 1.0))
    result = HeldOutResult(counts, "ds", "cand", "comm")
    entry = session.promote(sessions["run"], models, sessions["committed"], sessions["cfg"], lambda _: result)
    assert entry["promoted"] is promoted and entry["heldout"]["passed"] is promoted
    assert entry["heldout"]["accepted"][0] == {"crop": "detector+medium", "candidate": candidate,
                                               "committed": 2, "n": 600, "not_worse_share": share}
    assert ((models / session.WEIGHTS).read_bytes() == before) is not promoted
    ledger = json.loads((models / "run.json").read_text())["ledger"]
    assert ledger[-1]["heldout"] == entry["heldout"]
    # --no-heldout: validation alone, and the ledger says the check was skipped
    models = _improved_copy(sessions, tmp_path / "skip")
    entry = session.promote(sessions["run"], models, sessions["committed"], sessions["cfg"], None)
    assert entry["promoted"] and "skipped" in entry["heldout"]


def test_the_held_out_check_judges_liveness_when_validation_only_drifts(sessions, tmp_path):
    """Validation's liveness loss is synthetic: 5 % worse goes to the held-out check, which decides; without
    the check it refuses, and 20 % worse is refused before the check runs."""
    from train import session

    counts = (CropCount("detector+medium", 1, 2, 600), CropCount("detector", 90, 100, 600))
    calls = []

    def check(run):
        calls.append(run)
        return HeldOutResult(counts, "ds", "cand", "comm")

    for factor, heldout, promoted in [(1.05, check, True), (1.05, None, False), (1.2, check, False)]:
        models = _improved_copy(sessions, tmp_path / f"{factor}-{heldout is None}", live_factor=factor)
        entry = session.promote(sessions["run"], models, sessions["committed"], sessions["cfg"], heldout)
        assert entry["promoted"] is promoted, (factor, heldout)
    assert len(calls) == 1  # the collapse never reached the check


def test_a_bundle_is_reused_for_the_same_weights_and_shards_whatever_commit_wrote_the_index(tmp_path):
    from convert.heldout import _same_source
    from train.synth.dataset_index import DatasetIndex

    index = write_fake_dataset(tmp_path / "d", n_train=4, n_val=4, n_test=0, per_shard=4)
    made = {"weights_sha256": "w", "dataset": {"content_sha256": index.content_sha256(), "index_sha256": "x"},
            "liveness": {"val_bona_fide_tail": {"n": 1, "unscored": [], "index": [0], "llr": [1.0]}}}
    assert _same_source(made, "w", index.root)
    assert not _same_source({**made, "liveness": {}}, "w", index.root)  # no tail to resample: converted again
    index.meta["source_commit"] = "another"  # regenerated at another commit: the same shards
    index.save()
    assert DatasetIndex.load(index.root).content_sha256() == made["dataset"]["content_sha256"]
    assert _same_source(made, "w", index.root) and not _same_source(made, "v", index.root)
    index.shards[0] = dataclasses.replace(index.shards[0], sha256="0" * 64)  # another calibration split
    index.save()
    assert not _same_source(made, "w", index.root)
    old = {**made, "dataset": {"index_sha256": "x"}}  # a bundle from before content_sha256
    assert not _same_source(old, "w", index.root)


def test_the_command_says_what_is_wrong_in_one_line(tmp_path, capsys):
    from convert.heldout import main

    assert main([str(tmp_path / "run"), "--committed", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "names no dataset" in err and "Traceback" not in err
    assert main([str(tmp_path), "--committed", str(tmp_path)]) == 2
    assert "the committed model itself" in capsys.readouterr().err
    assert main([]) == 2 and "name a candidate run" in capsys.readouterr().err
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "manifest.json").write_text(json.dumps({"liveness": {"bpcer_target": 0.01}}))
    photos = tmp_path / "no-slice"
    assert main(["--bundles", str(tmp_path / "old"), str(tmp_path / "old"), "--photos", str(photos)]) == 2
    err = capsys.readouterr().err.strip()
    assert "val_bona_fide_tail" in err and "\n" not in err and not photos.exists()  # refused before scoring


def test_compare_refuses_results_of_different_slices():
    a = {"apcer": {"detector": {"all": {"n": 600, "accepted": 10}}}}
    b = {"apcer": {"detector": {"all": {"n": 400, "accepted": 5}}}}
    with pytest.raises(ValueError, match="different slices"):
        compare(a, b)
    with pytest.raises(ValueError, match="detector-crop"):
        compare({"apcer": {}}, {"apcer": {}})
    (c,) = compare(a, {"apcer": {"detector": {"all": {"n": 600, "accepted": 10}}}})
    assert c.passed and "10/600 vs 10/600" in HeldOutResult((c,), "", "", "").line()


def _split(seed: int, n: int = 3375) -> tuple[np.ndarray, list[str]]:
    """Frame LLRs shaped like out/synth's validation split: 3,375 bona fide (2 unscored), 1,425 attacks."""
    rng = np.random.default_rng(seed)
    llr = np.round(np.concatenate([rng.normal(5, 2, n), rng.normal(-6, 2, 1425)]), 4)
    llr[[7, 99]] = np.nan
    return llr, ["bona_fide"] * n + ["print_flat"] * 1425


def test_a_resampled_threshold_read_from_the_tail_is_the_one_convert_sets_on_the_resample():
    llr, labels = _split(0)
    tail = bona_fide_tail(llr, labels)
    assert tail["n"] == 3375 and tail["unscored"] == [7, 99] and len(tail["index"]) == 169
    bona = llr[:3375]
    draws = np.random.default_rng(1).multinomial(3375, np.full(3375, 1 / 3375), 50)
    weights = np.vstack([np.ones(3375, int), draws])
    got = resampled_thresholds(tail, weights, 0.01)
    for w, thr in zip(weights, got):
        drawn = np.repeat(bona, w)
        assert thr == np.quantile(drawn[np.isfinite(drawn)], 0.01, method="lower")
    assert got[0] == np.quantile(bona[np.isfinite(bona)], 0.01, method="lower")  # no resampling: convert's
    with pytest.raises(ValueError, match="too short"):
        resampled_thresholds({**tail, "index": tail["index"][:3], "llr": tail["llr"][:3]}, weights, 0.01)


def _slice(scores: np.ndarray) -> dict:
    return {"frames": [{"score_detector+medium": None if np.isnan(v) else float(v), "score_detector": float(v)
                        if not np.isnan(v) else None} for v in scores]}


def test_resamples_say_a_clear_gain_from_a_tie():
    llr, labels = _split(0)
    tail = bona_fide_tail(llr, labels)
    photos = np.random.default_rng(2).normal(-2, 2.5, 600)  # the committed model accepts ~7 % of them
    same = not_worse_shares((tail, tail), (_slice(photos), _slice(photos)), 0.01)
    assert same == {"detector+medium": 1.0, "detector": 1.0}  # the same bundle is never worse than itself
    clear = not_worse_shares((tail, tail), (_slice(photos - 0.8), _slice(photos)), 0.01)
    assert min(clear.values()) > 0.95
    # another model with the same skill: its own validation scores and photo scores, one frame apart at most
    other, _ = _split(3)
    tie = not_worse_shares((bona_fide_tail(other, labels), tail), (_slice(photos + 0.01), _slice(photos)),
                           0.01)
    assert max(tie.values()) < 0.9
    with pytest.raises(ValueError, match="different splits"):
        not_worse_shares(({**tail, "n": 3000}, tail), (_slice(photos), _slice(photos)), 0.01)


def _improved_copy(sessions, tmp_path: Path, live_factor: float = 0.9) -> Path:
    """A copy of the committed model, and the candidate's log rewritten so validation promotes it (its
    liveness loss `live_factor` × the start weights')."""
    models = tmp_path / "models"
    shutil.copytree(sessions["models"], models)
    run = sessions["run"]
    info = json.loads((run / "run.json").read_text())
    mae, live = info["baseline_val"]["val_relief_mae_mm"], info["baseline_val"]["val_live_loss"]
    log = f"epoch,val_relief_mae_mm,val_live_loss\n0,{mae * 0.9},{live * live_factor}\n"
    (run / "log.csv").write_text(log)
    info["best"] = {"epoch": 0, "val_relief_mae_mm": mae * 0.9}
    (run / "run.json").write_text(json.dumps(info))
    return models
