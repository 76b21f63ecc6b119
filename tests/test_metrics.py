"""Metrics on hand-made arrays with known answers, and evaluate() end to end with oracle predictors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.fakes import write_fake_dataset
from train import metrics as M
from train.config import DataConfig, ModelConfig
from train.evaluate import evaluate, iter_examples, jitter_table


def test_shift_alignment_removes_a_constant_offset():
    true = np.array([[1.0, 2.0], [3.0, 40.0]])
    mask = np.ones_like(true, bool)
    aligned = M.shift_align(true + 7.0, true, mask)
    np.testing.assert_allclose(aligned, true)
    assert M.mae(aligned, true, mask) == 0.0


def test_plane_alignment_removes_tilt_but_not_shape():
    gy, gx = np.indices((20, 20)).astype(np.float64)
    true = -((gx - 10) ** 2 + (gy - 10) ** 2) / 10  # a bump: shape, not tilt
    mask = np.ones_like(true, bool)
    tilted = true + 0.8 * gx - 0.5 * gy + 3  # the same shape read with the wrong head pitch and yaw
    assert M.mae(M.shift_align(tilted, true, mask), true, mask) > 3
    assert M.mae(M.plane_align(tilted, true, mask), true, mask) < 1e-9
    flat = np.zeros_like(true)  # a flat prediction keeps its shape error after plane alignment
    assert M.mae(M.plane_align(flat, true, mask), true, mask) > 3


def test_mae_rmse_after_median_alignment():
    true = np.zeros(5)
    pred = np.array([1.0, 2.0, 3.0, 10.0, 99.0])
    mask = np.array([True, True, True, True, False])  # the 99 is outside the face
    aligned = M.shift_align(pred, true, mask)  # median of 1, 2, 3, 10 = 2.5
    np.testing.assert_allclose(aligned[mask], [-1.5, -0.5, 0.5, 7.5])
    assert math.isclose(M.mae(aligned, true, mask), 2.5)
    assert math.isclose(M.rmse(aligned, true, mask), math.sqrt(59 / 4))
    assert math.isnan(M.mae(aligned, true, np.zeros(5, bool)))


def test_delta_on_signed_relief():
    p = np.array([20.0, -20.0, 0.0, 30.0, 1.0, 24.0])
    t = np.array([20.0, 20.0, 0.0, 20.0, -1.0, 20.0])
    # (30/30 ok) (sign flip, 40 mm apart: wrong) (10/10 ok) (40/30 = 1.33 wrong) (flip within 2.5 mm: ok)
    # (34/30 = 1.13 ok)
    assert math.isclose(M.delta_accuracy(p, t, np.ones(6, bool)), 4 / 6)


def test_ordinal_accuracy_over_landmark_pairs():
    true = np.zeros((80, 80))
    pred = np.zeros((80, 80))
    face = np.zeros((80, 80), bool)
    lms = np.full((68, 2), -10.0)  # off the grid: ignored
    pos = [(10, 10), (20, 10), (30, 10), (40, 10), (50, 10)]
    t_vals = [0.0, 10.0, 20.0, 30.0, 2.0]
    p_vals = [0.0, 12.0, 9.0, 25.0, 1.0]
    for k, ((x, y), tv, pv) in enumerate(zip(pos, t_vals, p_vals, strict=True)):
        lms[k] = (x + 0.2, y - 0.3)  # rounds to the cell
        true[y, x], pred[y, x], face[y, x] = tv, pv, True
    visible = np.ones(68, bool)
    # Pairs with |Δtrue| > 5: all except (0, 4) → 9 pairs. Wrong order: (1, 2) only → 8/9.
    acc, n = M.ordinal_accuracy(pred, true, face, lms, visible)
    assert n == 9 and math.isclose(acc, 8 / 9)
    visible[2] = False  # drops pairs with landmark 2 (4 of them, one wrong) → 5/5
    acc, n = M.ordinal_accuracy(pred, true, face, lms, visible)
    assert n == 5 and acc == 1.0
    face[10, 30] = False
    assert M.ordinal_accuracy(pred, true, face, lms, np.zeros(68, bool))[1] == 0


def test_iou_range_and_topk():
    face = np.zeros((4, 4), bool)
    face[:2] = True  # 8 px
    prob = np.zeros((4, 4))
    prob[1:3] = 0.9  # 8 px, 4 shared → IoU 4 / 12
    assert math.isclose(M.iou(prob, face), 1 / 3)
    assert math.isclose(M.relief_range(np.arange(101.0), np.ones(101, bool)), 90.0)
    y, x = np.mgrid[0:10, 0:10]
    tilted = 3.0 * x - 2.0 * y + 7
    assert M.relief_range(tilted, np.ones((10, 10), bool)) > 20
    assert M.relief_range(tilted, np.ones((10, 10), bool), detrend=True) < 1e-9
    probs = np.array([[0.5, 0.3, 0.15, 0.05], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
    labels = np.array([0, 1, 3])
    assert math.isclose(M.topk_accuracy(probs, labels, 1), 1 / 3)
    assert math.isclose(M.topk_accuracy(probs, labels, 3), 2 / 3)
    assert math.isclose(M.topk_accuracy(probs, labels, 3, np.array([False, True, True])), 0.5)


def test_training_loss_and_metric():
    y_true = np.zeros((2, 4, 4, 2), np.float32)
    y_true[0, :2, :2, 1] = 1.0  # sample 0: 4 face pixels with relief 0
    y_pred = np.zeros((2, 4, 4, 1), np.float32)
    y_pred[0, 0, 0, 0] = 8.0  # one face pixel off by 8 → L1 2 mm; its x and y neighbours differ by 8
    y_pred[1] = 50.0  # sample 1 has no face: contributes 0
    mae = np.asarray(M.relief_mae(y_true, y_pred))
    np.testing.assert_allclose(mae, [2.0, 0.0])
    loss = M.ReliefLoss(w_grad=0.5, reduction=None)(y_true, y_pred)
    np.testing.assert_allclose(np.asarray(loss), [2.0 + 0.5 * (8 + 8) / 4, 0.0])


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    return write_fake_dataset(tmp_path_factory.mktemp("fake"), n_train=8, n_val=4, n_test=12)


def _oracle(index, data, model, noise: float = 0.0):
    """A predictor that looks the crop up and returns the true relief (+ offset/noise) and mask."""
    truth = {ex.rgb.tobytes(): ex for _, _, ex in iter_examples(index, "test", data, model)}

    def predict(x):
        exs = [truth[img.tobytes()] for img in x]
        rng = np.random.default_rng(0)
        relief = np.stack([ex.relief + 12.0 + rng.normal(0, noise, ex.relief.shape) for ex in exs])
        return relief, np.stack([ex.face.astype(np.float32) for ex in exs])

    return predict


def test_evaluate_with_a_perfect_predict_fn(fake):
    data, model = DataConfig(), ModelConfig()
    r = evaluate(_oracle(fake, data, model), fake, "test", data=data, model=model, batch_size=5)
    g = r.bona_fide
    assert g.n + r.attack.n == 12 and r.attack.n == 3
    assert g.mae_mm < 1e-4 and g.rmse_mm < 1e-4 and g.delta_1_25 == 1.0  # offset 12 mm is aligned away
    assert g.mae_plane_mm < 1e-4
    assert g.ordinal_accuracy == 1.0 and g.ordinal_pairs > 100 and g.mask_iou == 1.0
    assert math.isnan(g.stage1_top1)  # no bin probabilities given
    assert r.attack.planar_range_p95_mm < 1.0 < 30 < g.planar_range_p5_mm  # photos are planar, faces not
    assert r.attack.relief_range_p95_mm > 10  # ... but a tilted photo has a raw relief range
    assert r.error_hist.sum() > 1000


def test_evaluate_noise_and_jitter_table(fake):
    data, model = DataConfig(), ModelConfig()
    r = evaluate(_oracle(fake, data, model, noise=3.0), fake, "test", data=data, model=model)
    assert 2.0 < r.bona_fide.mae_mm < 2.8  # E|N(0, 3)| = 2.39
    assert 2.0 < r.bona_fide.mae_plane_mm <= r.bona_fide.mae_mm + 0.05  # noise is not a plane
    zero = lambda x: (np.zeros((len(x), 80, 80)), np.zeros((len(x), 80, 80)))  # noqa: E731
    rows = jitter_table(zero, fake, "test", data=data, model=model, levels=(0.0, 1.0), max_samples=4)
    assert [r["level"] for r in rows] == [0.0, 1.0] and rows[1]["roll_deg"] == data.jitter_roll_deg
    assert all(r["n"] > 0 and r["mae_mm"] > 5 for r in rows)


def test_off_axis_angle_from_intrinsics_and_box():
    from train.breakdown import off_axis_deg

    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    assert off_axis_deg(K, np.array([300, 220, 340, 260])) == pytest.approx(0.0)
    assert off_axis_deg(K, np.array([800, 220, 840, 260])) == pytest.approx(45.0)  # centre at cx + fx
    assert off_axis_deg(K, np.array([300, 720, 340, 760])) == pytest.approx(45.0)


def test_breakdown_bands_hold_each_bona_fide_sample_once(tmp_path):
    from dataclasses import replace

    from train.breakdown import breakdown, breakdown_markdown, off_axis_deg
    from train.evaluate import SampleScore

    index = write_fake_dataset(tmp_path / "ds", n_train=0, n_val=0, n_test=8, per_shard=8, attack_every=4)
    (entry,), (reader,) = index.entries("test"), list(index.readers("test"))
    base = SampleScore(entry.file, 0, "bona_fide", *[0.0] * 3, 0, 0, *[0.0] * 8)
    scores = [replace(base, index=i, label=str(reader.labels[i]), mae_mm=float(i), mae_plane_mm=1.0)
              for i in range(len(reader))]
    tables = breakdown(scores, index)
    bona = [s for s in scores if s.label == "bona_fide"]
    assert 0 < len(bona) < len(scores)  # the attacks are left out
    for rows in tables.values():
        assert sum(r["n"] for r in rows) == len(bona)
    axis = [off_axis_deg(reader.intrinsics[s.index], reader.face_box[s.index]) for s in bona]
    band = next(r for r in tables["off_axis"] if r["n"])
    want = [s.mae_mm for s, a in zip(bona, axis, strict=True) if band["from"] <= a < band["to"]]
    assert band["mae_mm"] == pytest.approx(np.mean(want)) and band["mae_plane_mm"] == 1.0
    assert "| face off the optical axis |" in breakdown_markdown(tables)
    assert "| face distance |" in breakdown_markdown(tables) and set(tables) >= {"distance"}


def test_inner_face_is_the_landmark_hull_within_the_face_and_slope_reads_amplitude():
    from train.metrics import inner_face, slope

    face = np.zeros((80, 80), bool)
    face[10:70, 10:70] = True
    lms = np.array([[20, 20], [60, 20], [60, 60], [20, 60], [40, 40]], np.float32)
    inner = inner_face(lms, face)
    assert inner[40, 40] and inner[21, 21] and not inner[15, 15] and not inner[65, 40]
    assert inner.sum() == pytest.approx(41 * 41, abs=2 * 41)
    yy, xx = np.mgrid[0:80, 0:80]
    true = 30.0 * np.exp(-((xx - 40.0) ** 2 + (yy - 40.0) ** 2) / 200.0)
    assert slope(0.5 * true + 7.0, true, inner) == pytest.approx(0.5)  # half the relief, any offset
    assert slope(true, true, inner) == pytest.approx(1.0)
    assert np.isnan(slope(true, np.zeros_like(true), inner))
