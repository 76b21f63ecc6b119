"""The peer benchmark (convert/peer.py, convert/peer_mesh.py): rasterisation, alignment, crop mapping,
and one end-to-end run of bundle/default and MediaPipe's face_landmark.tflite (from the pinned wheel) on
analytic fake faces."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from convert import peer, peer_mesh
from convert.mediapipe_assets import ensure_mediapipe_models
from firmware_app.preprocess import CropTransform
from tests.fakes import write_fake_dataset

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "bundle" / "default"
MODELS = REPO / "out" / "models" / "mediapipe"


def plane(x, y):
    return 0.3 * x - 0.2 * y + 5.0


def test_rasterise_reproduces_a_plane_inside_the_hull_and_nan_outside():
    rng = np.random.default_rng(0)
    corners = np.array([[20, 10], [60, 10], [20, 50], [60, 50]], float)  # hull = this rectangle
    pts = np.concatenate([corners, rng.uniform([20, 10], [60, 50], (200, 2))])
    grid = peer_mesh.rasterise(pts, plane(pts[:, 0], pts[:, 1]), size=80)
    assert grid.shape == (80, 80)
    v, u = np.mgrid[0:80, 0:80]
    inside = (u > 20) & (u < 60) & (v > 10) & (v < 50)
    outside = (u < 20) | (u > 60) | (v < 10) | (v > 50)
    np.testing.assert_allclose(grid[inside], plane(u, v)[inside], atol=1e-9)
    assert np.isnan(grid[outside]).all()
    # collinear points span no surface: all NaN, no exception
    assert np.isnan(peer_mesh.rasterise(np.array([[0, 0], [1, 1], [2, 2.0]]), np.zeros(3))).all()


def test_mesh_coordinates_map_through_both_crops():
    mp = CropTransform.from_square((200.0, 150.0), 150.0, 20.0)
    ours = CropTransform.from_square((200.0, 150.0), 160.0, 20.0)
    # MediaPipe's continuous coordinates: (0, 0) is the square's corner, (96, 96) its centre
    a = math.radians(20.0)
    corner = np.array([200.0, 150.0]) + np.array([[math.cos(a), -math.sin(a)],
                                                  [math.sin(a), math.cos(a)]]) @ np.array([-75.0, -75.0])
    np.testing.assert_allclose(peer_mesh.mesh_to_frame(np.array([[0.0, 0.0]]), mp)[0], corner, atol=1e-9)
    landmarks = np.array([[96.0, 96.0, -10.0], [0.0, 96.0, 0.0], [96.0, 0.0, 0.0], [192.0, 192.0, 0.0]])
    relief = peer_mesh.mesh_relief(landmarks, mp, ours, size=80)
    # the shared centre is grid (39.5, 39.5); the four cells around it lie inside the triangles near it
    assert np.isfinite(relief[39:41, 39:41]).all() and (relief[39:41, 39:41] > 0).all()
    assert np.isnan(relief[0, 79]) and np.isnan(relief[79, 0])


def test_scale_shift_alignment_recovers_a_and_b():
    rng = np.random.default_rng(1)
    true = rng.normal(0, 15, (80, 80))
    mask = np.zeros((80, 80), bool)
    mask[10:70, 15:65] = True
    pred = (true - -7.0) / 2.5  # a·pred + b = true with a = 2.5, b = -7
    a, b = peer_mesh.fit_scale_shift(pred[mask], true[mask])
    assert a == pytest.approx(2.5) and b == pytest.approx(-7.0)
    assert peer_mesh.scale_shift_mae(pred, true, mask) < 1e-9
    assert peer_mesh.shift_mae(pred, true, mask) > 5.0  # a shift cannot undo the scale
    # an inverted relief earns nothing: a = 0, the prediction becomes the mean
    a, b = peer_mesh.fit_scale_shift(-true[mask], true[mask])
    assert a == 0.0 and b == pytest.approx(true[mask].mean())


@pytest.mark.parametrize("what", ["bundle", "dataset"])
def test_missing_input_names_the_make_target(what, tmp_path, capsys):
    args = ["--bundle", str(tmp_path / "nobundle" if what == "bundle" else BUNDLE),
            "--dataset", str(tmp_path / "nodata"), "--out", str(tmp_path / "peer.json")]
    assert peer.main(args) == 1
    err = capsys.readouterr().err
    assert ("make convert" if what == "bundle" else "make data") in err
    assert not (tmp_path / "peer.json").exists()


@pytest.mark.slow
def test_end_to_end_on_fake_faces(tmp_path, capsys):
    models = ensure_mediapipe_models(MODELS)  # downloads the wheel once into out/cache/wheels (needs PyPI)
    write_fake_dataset(tmp_path / "ds", n_train=0, n_val=0, n_test=8, per_shard=4)  # 6 bona fide, 2 attacks
    out = tmp_path / "bench" / "peer.json"
    assert peer.main(["--bundle", str(BUNDLE), "--dataset", str(tmp_path / "ds"), "--max-samples", "4",
                      "--runs", "5", "--mediapipe", str(models.face_landmark.parent), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert peer.OURS in printed and peer.PEER in printed and "goal latency" in printed
    r = json.loads(out.read_text())
    for key in ("ours", "peer"):
        row = r[key]
        assert row["n_samples"] == 4
        assert math.isfinite(row["latency_ms"]) and row["latency_ms"] > 0
        assert 0 < row["latency_min_ms"] <= row["latency_ms"]
        assert math.isfinite(row["mae_mm"]) and row["mae_mm"] >= 0
    assert r["normalisation"] in peer.NORMALISATIONS and set(r["ranges"]) == set(peer.NORMALISATIONS)
    assert r["skipped"] == 0 and r["cells_mean"] >= peer.MIN_CELLS
    assert set(r["goals"]) == {"latency_ok", "mae_ok", "mae_goal_ratio"}
    # the latency ratio is the CPU's: the result names it, with its int8 dot-product support
    assert r["cpu"] and ("vnni" in r["cpu"].lower() or not Path("/proc/cpuinfo").is_file())
    assert f"CPU: {r['cpu']}" in printed
