"""The held-out real-photo attack slice: sources, samples, dataset and the per-source APCER benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from convert.liveness import wilson
from convert.photo_attack_eval import Rule
from convert.photo_attack_eval import main as eval_main
from firmware_app.evidence import EvidenceModel
from train.synth import photo_sources as ps
from train.synth.dataset_index import DatasetError, DatasetIndex
from train.synth.photo_attacks import PhotoAttackConfig, generate, photo_attack_sample
from train.synth.sample import ATTACK_TYPES, MASK_FACE

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundle" / "default"
DETECTOR = str(BUNDLE / "face_detection_short_range.tflite")  # the device's BlazeFace, committed
SMALL = PhotoAttackConfig(height=240, width=320)


@pytest.fixture(scope="module")
def photos():
    det = ps.detector(DETECTOR)
    return {s.name: ps.load_photo(s.name, det) for s in ps.SOURCES}


def test_sources_are_the_packages_files_with_licence(photos):
    for src in ps.SOURCES:
        prov = ps.provenance(src)
        assert prov["sha256_matches_package_record"], f"{src.name}: not checked against the wheel's RECORD"
        assert "public domain" in prov["licence"] and prov["use"].startswith("attack content only")


def test_landmarks_sit_on_the_detected_face(photos):
    det = ps.detector(DETECTOR)
    for name, photo in photos.items():
        face = ps.largest_face(photo.rgb, det)
        lm = photo.landmarks_2d
        w = face.x1 - face.x0
        # every landmark inside the detector's box grown by 15 %; the eye centres on its eye keypoints
        assert (lm[:, 0] > face.x0 - 0.15 * w).all() and (lm[:, 0] < face.x1 + 0.15 * w).all(), name
        assert (lm[:, 1] > face.y0 - 0.15 * w).all() and (lm[:, 1] < face.y1 + 0.15 * w).all(), name
        eyes = np.array([lm[36:42].mean(0), lm[42:48].mean(0)])
        assert np.abs(eyes - ps.face_eyes(face)).max() < 0.15 * w, name
        # the face mask covers the landmarks' hull and not the whole photo
        inside = photo.mask[lm[:, 1].astype(int), lm[:, 0].astype(int)] == MASK_FACE
        assert inside.mean() > 0.9 and (photo.mask == MASK_FACE).mean() < 0.5, name


def test_attack_sample_is_a_flat_labelled_attack(photos):
    rng = np.random.default_rng(3)
    s = photo_attack_sample(SMALL, photos["astronaut"], 9_000_000, "print_flat", rng)
    assert s.is_attack and s.label == "print_flat" and s.rgb.shape == (240, 320, 3)
    on = s.mask > 0
    assert on.sum() > 500 and (s.mask == MASK_FACE).any()
    # the medium's depth is a plane: back-projected, its points fit a plane to well under a millimetre
    ys, xs = np.nonzero(on)
    k = s.intrinsics
    z = s.depth_mm[on].astype(np.float64)
    pts = np.stack([(xs - k[0, 2]) * z / k[0, 0], (ys - k[1, 2]) * z / k[1, 1], z], 1)
    centred = pts - pts.mean(0)
    assert np.linalg.svd(centred, compute_uv=False)[-1] / np.sqrt(len(z)) < 0.5
    # the shown face is where its landmarks say
    x0, y0, x1, y1 = s.face_box
    assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 240


@pytest.fixture(scope="module")
def tiny_slice(tmp_path_factory, photos):
    out = tmp_path_factory.mktemp("photo") / "slice"
    generate(out, 4, seed=1, shard_size=1, cfg=SMALL, log=lambda _: None, detector_model=DETECTOR)
    return out


def test_slice_is_all_test_and_names_its_sources(tiny_slice):
    index = DatasetIndex.load(tiny_slice)
    assert {e.split for e in index.entries()} == {"test"} and index.n_samples("test") == 4
    by_source = {}
    for e in index.entries():
        by_source.setdefault(index.meta["shard_sources"][e.file], []).extend(e.labels)
    assert set(by_source) == {"astronaut", "grace_hopper"}
    assert all(lab in ATTACK_TYPES for labs in by_source.values() for lab in labs)
    assert set(index.meta["sources"]) == {"astronaut", "grace_hopper"}
    with pytest.raises(DatasetError, match="different slice"):
        generate(tiny_slice, 4, seed=2, shard_size=1, cfg=SMALL)


def test_eval_prints_rates_per_source_and_type(tiny_slice, tmp_path, capsys):
    out = tmp_path / "pa.json"
    assert eval_main(["--bundle", str(BUNDLE), "--dataset", str(tiny_slice), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "source=astronaut" in text and "source=grace_hopper" in text and "rule:" in text
    result = json.loads(out.read_text())
    rows = result["apcer"]["landmarks"]
    assert rows["all"]["n"] == 4
    assert rows["source=astronaut"]["n"] + rows["source=grace_hopper"]["n"] == 4
    assert 0 <= rows["all"]["ci95"][0] <= rows["all"]["ci95"][1] <= 1
    assert result["rule"] in ("evidence", "v1")


def test_eval_refuses_a_dataset_that_is_not_the_slice(tmp_path, capsys):
    assert eval_main(["--bundle", str(BUNDLE), "--dataset", str(tmp_path / "none"), "--out",
                      str(tmp_path / "x.json")]) == 1
    assert "no such dataset directory" in capsys.readouterr().err


def test_rule_follows_the_manifest():
    v1 = Rule.of_manifest({"threshold_mm": 30.0}, 30.0)
    model = EvidenceModel.fallback(30.0)
    v2 = Rule.of_manifest({"threshold_mm": 30.0, "evidence": model.to_manifest(), "frame_llr_threshold": 0.0},
                          30.0)
    assert v1.name == "v1" and v2.name == "evidence"
    prob = np.ones((80, 80), np.float32)
    u = np.linspace(-1, 1, 80, dtype=np.float32)
    for amp, live in ((10.0, False), (50.0, True)):  # a bump: v1 and the fallback evidence model agree
        relief = amp * np.exp(-4 * (u[None] ** 2 + u[:, None] ** 2))
        assert (v1.score(relief, prob, None) >= v1.threshold) is live
        assert (v2.score(relief, prob, None) >= v2.threshold) is live
    assert np.isnan(v1.score(relief, np.zeros((80, 80), np.float32), None))  # no face cells: unscored
    lo, hi = wilson(0, 10)
    assert lo == 0 and 0.25 < hi < 0.35
