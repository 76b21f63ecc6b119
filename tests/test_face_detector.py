"""The device's face detector (BlazeFace short range from the pinned mediapipe wheel) and its model assets."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convert import mediapipe_assets
from convert.mediapipe_assets import MediapipeAssetsError, ensure_mediapipe_models
from firmware_app.face import KEYPOINT_NAMES, FaceDetector, Letterbox, ssd_anchors, weighted_nms

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "out" / "models" / "mediapipe"


@pytest.fixture(scope="module")
def models():
    return ensure_mediapipe_models(MODELS)  # downloads the wheel once into out/cache/wheels (needs PyPI)


@pytest.fixture(scope="module")
def detector(models):
    return FaceDetector(models.face_detector, num_threads=1)


def test_assets_are_recorded_and_idempotent(models, tmp_path):
    source = json.loads(models.source.read_text())
    assert source["wheel"] == mediapipe_assets.WHEEL_NAME
    for name, f in source["files"].items():
        assert mediapipe_assets.sha256_file(MODELS / name) == f["sha256"]
    assert "Apache License" in models.license.read_text()
    # A second call rewrites nothing; a damaged file is extracted again from the cached wheel.
    before = {p.name: p.stat().st_mtime_ns for p in MODELS.iterdir()}
    ensure_mediapipe_models(MODELS)
    assert {p.name: p.stat().st_mtime_ns for p in MODELS.iterdir()} == before
    copy = ensure_mediapipe_models(tmp_path / "mp")
    copy.face_landmark.write_bytes(b"damaged")
    ensure_mediapipe_models(tmp_path / "mp")
    assert copy.face_landmark.read_bytes() == models.face_landmark.read_bytes()


def test_assets_unreachable_index_says_what_to_do(tmp_path, monkeypatch):
    def failing_pip(cmd, **kwargs):
        assert cmd[:4] == [sys.executable, "-m", "pip", "download"]
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for mediapipe")

    monkeypatch.setattr(mediapipe_assets.subprocess, "run", failing_pip)
    with pytest.raises(MediapipeAssetsError, match="package index") as err:
        ensure_mediapipe_models(tmp_path / "mp", cache=tmp_path / "wheels")
    assert str(tmp_path / "wheels") in str(err.value) and "No matching distribution" in str(err.value)


def test_anchors_follow_mediapipe_short_range():
    anchors = ssd_anchors()
    assert anchors.shape == (896, 2)
    # stride 8: 16×16 cells × 2 anchors, then the three stride-16 layers merged: 8×8 cells × 6 anchors
    np.testing.assert_allclose(anchors[0], anchors[1])
    np.testing.assert_allclose(anchors[:2], [[1 / 32, 1 / 32]] * 2)
    np.testing.assert_allclose(anchors[2], [3 / 32, 1 / 32])
    np.testing.assert_allclose(anchors[512:518], [[1 / 16, 1 / 16]] * 6)
    np.testing.assert_allclose(anchors[518], [3 / 16, 1 / 16])


def test_weighted_nms_averages_a_cluster_by_score():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    kps = np.zeros((3, 6, 2))
    kps[:, :, 0] = np.array([0.0, 3.0, 9.0])[:, None]
    out = weighted_nms(boxes, kps, np.array([0.9, 0.6, 0.7]), 0.3)
    assert [s for _, _, s in out] == [0.9, 0.7]
    np.testing.assert_allclose(out[0][0], [0.4, 0.4, 10.4, 10.4])
    np.testing.assert_allclose(out[0][1][:, 0], 1.2)
    np.testing.assert_allclose(out[1][0], boxes[2])


def test_letterbox_maps_back_to_the_frame():
    lb = Letterbox.for_frame(480, 640)
    assert (lb.pad_x, lb.pad_y) == (0.0, 16.0)
    corners = np.array([[0.0, 16 / 128], [1.0, 112 / 128]])
    np.testing.assert_allclose(lb.to_frame(corners), [[0, 0], [640, 480]])
    assert lb.apply(np.full((480, 640, 3), 200, np.uint8))[:16].max() == 0


def test_astronaut_gives_one_face_with_eyes_inside(detector):
    from skimage.data import astronaut

    faces = detector.detect(astronaut())
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.8
    assert 150 < face.x0 < face.x1 < 300 and 60 < face.y0 < face.y1 < 200  # her face, not the helmet
    (rx, ry), (lx, ly) = face.keypoint("right_eye"), face.keypoint("left_eye")
    for x, y in ((rx, ry), (lx, ly)):
        assert face.x0 < x < face.x1 and face.y0 < y < face.y1
    assert rx < lx  # her right eye is on the image's left
    assert face.keypoint_array.shape == (len(KEYPOINT_NAMES), 2)


def test_blank_frame_has_no_face(detector):
    assert detector.detect(np.full((480, 640, 3), 128, np.uint8)) == []


def test_bad_frame_is_rejected(detector):
    with pytest.raises(ValueError, match="uint8 RGB"):
        detector.detect(np.zeros((480, 640), np.uint8))
    with pytest.raises(ValueError, match="uint8 RGB"):
        detector.detect(np.zeros((480, 640, 3), np.float32))


def test_wrong_model_is_rejected(models):
    with pytest.raises(ValueError, match="BlazeFace"):
        FaceDetector(models.face_landmark)


def test_synthetic_faces_are_detected(detector):
    from train.synth.realism import measure_realism

    report = measure_realism(n=4, seed=0, max_distance=450.0, detector=detector)
    assert report.astronaut_faces == 1
    assert sum(f.detected for f in report.frames) >= 3  # a smoke test; the rate is measured by the CLI
    assert all(300 <= f.distance_mm <= 460 for f in report.frames)


def test_face_module_imports_and_runs_without_tensorflow(models):
    code = (
        "import sys, numpy as np\n"
        "from firmware_app.face import FaceDetector\n"
        "assert 'tensorflow' not in sys.modules, 'imported tensorflow'\n"
        "FaceDetector(sys.argv[1]).detect(np.zeros((48, 64, 3), np.uint8))\n"
        "assert 'tensorflow' not in sys.modules, 'loaded tensorflow for the interpreter'\n"
    )
    subprocess.run([sys.executable, "-c", code, str(models.face_detector)], cwd=REPO, check=True, timeout=120)
