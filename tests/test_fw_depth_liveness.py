"""Depth model (int8 (de)quantisation against the float Keras model), relief score, box mapping.

The liveness decision and evidence: tests/test_liveness_v2.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from convert.verify import TFLitePredict, mirror_averaged
from firmware_app.depth import DepthEstimator, DepthModelError, DepthResult, merge_mirrored
from firmware_app.evidence import EvidenceModel
from firmware_app.face import FaceDetector, iou
from firmware_app.liveness import FrameScorer, relief_score
from firmware_app.pipeline import landmark_box
from tests.test_fw_fixtures import build_tiny_keras, representative_crops, synthetic_frames, tiny_bundle

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bundle_dir():
    return tiny_bundle()


def test_depth_matches_the_float_model(bundle_dir):
    est = DepthEstimator(bundle_dir / "depth.tflite", num_threads=1)
    model = build_tiny_keras()  # same seeded weights as the converted file
    for (crop,) in representative_crops(3):
        crop8 = crop[0].astype(np.uint8)
        got = est.predict(crop8)
        ref = model.predict(crop8[None].astype(np.float32), verbose=0)
        assert got.relief_mm.shape == got.face_prob.shape == (80, 80)
        assert np.abs(got.relief_mm - ref["relief"][0, :, :, 0]).mean() < 0.5  # mm, a few int8 steps
        np.testing.assert_allclose(got.face_prob, 1 - ref["bins"][0, :, :, -1], atol=0.03)


def _biased_net(batch: np.ndarray):
    """A stand-in depth net with a left-right bias (relief grows to the right): what averaging removes."""
    grey = batch.astype(np.float32).mean(axis=-1)[:, ::2, ::2] / 10.0
    relief = grey + np.linspace(0.0, 8.0, 80, dtype=np.float32)
    bins = np.stack([grey / 26.0, 1.0 - grey / 26.0], axis=-1)
    return relief, 1.0 - bins[..., -1], bins, grey.mean(axis=(1, 2)) + batch[:, :, :80].mean(axis=(1, 2, 3))


def test_mirror_average_undoes_the_flip_on_the_crops_x_axis():
    crop = np.random.default_rng(3).integers(0, 256, (1, 160, 160, 3), dtype=np.uint8)
    mirror = np.ascontiguousarray(crop[:, :, ::-1])
    plain = _biased_net(np.concatenate([crop, mirror]))
    assert np.abs(plain[0][1] - plain[0][0][:, ::-1]).mean() > 1.0  # the net alone is not mirror-symmetric
    averaged = mirror_averaged(_biased_net)
    a, m = averaged(crop), averaged(mirror)
    for got, of_mirror in zip(a[:3], m[:3], strict=True):
        np.testing.assert_allclose(of_mirror[0], got[0][:, ::-1], atol=1e-4)
    assert m[3][0] == pytest.approx(a[3][0])
    # the device merges its two DepthResults with the same function
    direct, flipped = (DepthResult(r, p, float(g))
                       for r, p, g in zip(plain[0], plain[1], plain[3], strict=True))
    merged = merge_mirrored(direct, flipped)
    np.testing.assert_allclose(merged.relief_mm, a[0][0], atol=1e-5)
    np.testing.assert_allclose(merged.face_prob, a[1][0], atol=1e-6)
    assert merged.live_logit == pytest.approx(float(a[3][0]))


def test_device_and_convert_mirror_average_the_bundle_alike(bundle_dir):
    """DepthEstimator(mirror_average=True) on the device and convert's batch path give the same maps: the
    evidence is fitted on what the device computes."""
    model = bundle_dir / "depth.tflite"
    est = DepthEstimator(model, 1, mirror_average=True)
    crops = [c[0].astype(np.uint8) for (c,) in representative_crops(2)]
    relief, prob, _, live = mirror_averaged(TFLitePredict(model, 1))(np.stack(crops))
    for j, crop in enumerate(crops):
        got = est.predict(crop)
        np.testing.assert_allclose(relief[j], got.relief_mm, atol=1e-4)
        np.testing.assert_allclose(prob[j], got.face_prob, atol=1e-4)
        assert (live is None) == (got.live_logit is None)


def test_depth_quantises_as_pixel_minus_128(bundle_dir):
    est = DepthEstimator(bundle_dir / "depth.tflite")
    crop = np.arange(160 * 160 * 3, dtype=np.uint32).reshape(160, 160, 3).astype(np.uint8)
    np.testing.assert_array_equal(est.quantize(crop)[0], crop.astype(np.int16) - 128)
    with pytest.raises(ValueError, match="160, 160, 3"):
        est.predict(np.zeros((80, 80, 3), np.uint8))


def test_detector_is_not_a_depth_model(bundle_dir):
    with pytest.raises(DepthModelError, match="expected one \\(1, 160, 160, 3\\) int8"):
        DepthEstimator(bundle_dir / "face_detection_short_range.tflite")


def _grid():
    v, u = np.mgrid[0:80, 0:80].astype(np.float32)
    return u, v


def test_score_ignores_a_tilted_plane_and_sees_a_face():
    u, v = _grid()
    mask = (u - 40) ** 2 / 30**2 + (v - 40) ** 2 / 36**2 < 1
    plane = 0.8 * u - 0.5 * v + 3.0  # a photo held at an angle: 60 mm of raw range
    face = plane - 25 * np.exp(-((u - 40) ** 2 + (v - 38) ** 2) / (2 * 8**2))  # + a 25 mm nose
    flat_score, flat_raw = relief_score(plane, mask)
    face_score, _ = relief_score(face, mask)
    assert flat_raw > 50 and flat_score < 0.1
    assert 20 < face_score < 30
    scorer = FrameScorer(EvidenceModel.fallback(10.0), threshold_mm=10, face_prob=0.5, min_face_cells=200)
    prob = mask.astype(np.float32)
    assert scorer.score(DepthResult(face, prob)).live
    assert not scorer.score(DepthResult(plane, prob)).live
    assert scorer.score(DepthResult(face, np.zeros_like(prob))) is None  # no face in the depth map


def test_detector_box_maps_to_the_landmark_extent():
    """The fitted BlazeFace → 68-landmark box mapping on synthetic frames (not the fit's own frames)."""
    frames = synthetic_frames()
    boxes = json.loads((frames / "boxes.json").read_text())
    det = FaceDetector(tiny_bundle() / "face_detection_short_range.tflite")
    ious = []
    for name, true_box in boxes.items():
        if "bona_fide" not in name:
            continue
        rgb = cv2.cvtColor(cv2.imread(str(frames / name)), cv2.COLOR_BGR2RGB)
        face = max(det.detect(rgb), key=lambda f: f.x1 - f.x0)
        tb = np.array(true_box)
        side = max(tb[2] - tb[0], tb[3] - tb[1])  # the crop uses the square of the longer side
        c = (tb[:2] + tb[2:]) / 2
        square = np.concatenate([c - side / 2, c + side / 2])
        ious.append(iou(landmark_box(face), square[None])[0])
    assert len(ious) >= 3 and min(ious) > 0.7, ious


def test_firmware_imports_no_tensorflow_or_train():
    code = (
        "import sys, firmware_app.__main__, firmware_app.pipeline, firmware_app.hooks.http, "
        "firmware_app.hooks.command, firmware_app.hooks.mqtt, firmware_app.hooks.gpio, "
        "firmware_app.http_server, firmware_app.camera.opencv, firmware_app.camera.picamera2;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('tensorflow', 'keras', 'train', 'convert', 'picamera2', 'paho'));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
