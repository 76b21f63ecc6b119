"""Compression study (convert/study): each method's core property on tiny models, and one resumable run."""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import pytest

from convert.study import binary, prune, qat
from convert.study.blocks import plain_block
from convert.study.config import StudyConfig, load_study, parse_study, with_parents
from convert.study.distill import Distiller, exploration_loss, inheritance_loss, kd_bins_loss, kd_relief_loss
from convert.study.measure import VariantResult
from convert.study.report import table, winner_paragraph
from convert.study.tucker import tucker_model
from tests.fakes import write_fake_dataset
from train.config import ConfigError, ModelConfig
from train.model import build_model, count_macs

pytestmark = [pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"),
              pytest.mark.filterwarnings("ignore:Statistics for quantized inputs were expected")]
W = (8, 8, 16, 16)
TINY = ModelConfig(n_bins=10, s1_widths=W, s2_widths=W, blocks=(0,), max_macs=10**12, max_params=10**9)
RNG = np.random.default_rng(0)
X = RNG.uniform(0, 255, (2, 160, 160, 3)).astype(np.float32)


def _randomise_bn(model):
    """Non-trivial BN statistics, so a wrong weight copy cannot hide behind mean 0 / variance 1."""
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(-.5, .5, beta.shape), rng.uniform(-.2, .2, mean.shape),
                               rng.uniform(.5, 2, var.shape)])
    return model


def test_tucker_full_rank_is_exact_and_low_rank_is_smaller():
    teacher = _randomise_bn(build_model(TINY, plain_block))
    full, err = tucker_model(teacher, TINY, 1.0)
    want, got = teacher.predict(X, verbose=0), full.predict(X, verbose=0)
    assert err < 1e-5 and np.abs(want["relief"]).max() > 1.0
    np.testing.assert_allclose(got["relief"], want["relief"], atol=1e-3 * np.abs(want["relief"]).max())
    low, err_low = tucker_model(teacher, TINY, 0.25)
    t, lo = count_macs(teacher), count_macs(low)
    assert lo.params < 0.5 * t.params and lo.macs < 0.5 * t.macs and err_low > 0.1
    assert not np.allclose(low.predict(X, verbose=0)["relief"], want["relief"], atol=1e-2)


@pytest.mark.slow
def test_pruning_schedule_masks_and_gzip():
    from convert.quantize import convert_int8

    assert prune.polynomial_sparsity(0, 0.8, 10) == 0 and prune.polynomial_sparsity(10, 0.8, 10) == 0.8
    assert 0 < prune.polynomial_sparsity(3, 0.8, 10) < prune.polynomial_sparsity(6, 0.8, 10) < 0.8
    dense = build_model(TINY)
    sizes = {}
    for final in (0.5, 0.8):
        model = keras.models.clone_model(dense)
        model.set_weights(dense.get_weights())
        cb = prune.MagnitudePruning(final, end=6, every=2, target=model)
        cb.on_train_begin()
        for step in range(8):
            cb.on_train_batch_end(step)
            if step == 1:  # on the schedule: partly pruned after 2 of 6 steps
                assert 0 < prune.sparsity(model) < final
        for layer in prune.prunable(model):
            k = keras.ops.convert_to_numpy(layer.kernel)
            assert (k == 0).sum() == round(final * k.size), layer.name  # per layer, exactly
        assert prune.sparsity(model) == pytest.approx(final, abs=0.01)
        sizes[final] = prune.gzip_size(convert_int8(model, X.astype(np.uint8)))
    sizes[0.0] = prune.gzip_size(convert_int8(dense, X.astype(np.uint8)))
    assert sizes[0.8] < sizes[0.5] < sizes[0.0], sizes


def test_binary_forward_uses_two_values_per_output_channel():
    import tensorflow as tf

    from convert.study.swap import to_plain

    net = binary.to_binary(build_model(TINY))
    conv = net.get_layer("s1_e1_pw")
    assert isinstance(conv, binary.BinaryConv2D) and not isinstance(net.get_layer("s1_stem"), binary.Swapped)
    # Both signs in every output channel (a random init of 8 weights may draw one sign only): the check
    # below that binarisation gives exactly ±α then holds for a fixed reason, not a lucky draw.
    k0 = np.abs(RNG.normal(size=conv.kernel.shape)).astype(np.float32) * np.where(
        np.arange(conv.kernel.shape[2])[:, None] % 2 == 0, 1.0, -1.0)
    conv.kernel.assign(k0)
    x = tf.constant(RNG.normal(size=(1, 8, 8, conv.kernel.shape[2])).astype(np.float32))
    with tf.GradientTape() as tape:
        y = conv(x)
        loss = tf.reduce_sum(y * y)
    grad = tape.gradient(loss, conv.kernel)
    effective = keras.ops.convert_to_numpy(binary.binarise(conv.kernel))
    np.testing.assert_allclose(y, keras.ops.conv(x, effective, padding="same"), rtol=1e-4, atol=1e-4)
    k = keras.ops.convert_to_numpy(conv.kernel)
    for c in range(k.shape[-1]):
        values = np.unique(effective[..., c])
        assert len(values) == 2 and values[0] == -values[1]
        assert values[1] == pytest.approx(np.abs(k[..., c]).mean(), rel=1e-6)
        np.testing.assert_array_equal(np.sign(effective[..., c]), np.where(k[..., c] >= 0, 1, -1))
    assert np.abs(keras.ops.convert_to_numpy(grad)).sum() > 0  # straight-through: master weights learn
    plain = to_plain(net)
    assert not any(isinstance(layer, binary.Swapped) for layer in plain.layers)
    np.testing.assert_allclose(plain.predict(X, verbose=0)["relief"], net.predict(X, verbose=0)["relief"],
                               atol=1e-3)
    dw = keras.ops.convert_to_numpy(plain.get_layer("s1_e1_dw").kernel)
    assert all(len(np.unique(dw[:, :, c, 0])) <= 2 for c in range(dw.shape[2]))


def test_fake_quant_grid_and_straight_through():
    import tensorflow as tf

    w = tf.Variable(RNG.normal(size=(3, 3, 4, 5)).astype(np.float32))
    with tf.GradientTape() as tape:
        q = qat.fake_quant_weights(w)
    grad = keras.ops.convert_to_numpy(tape.gradient(q, w))
    q = keras.ops.convert_to_numpy(q)
    step = np.abs(w.numpy()).max(axis=(0, 1, 2)) / 127
    assert np.allclose(q / step, np.round(q / step), atol=1e-3)
    assert np.abs(q - w.numpy()).max() <= step.max() / 2 + 1e-6
    np.testing.assert_array_equal(grad, 1.0)
    a = keras.ops.convert_to_numpy(qat.fake_quant_activation(tf.constant([-1.0, 0.3, 2.0, 9.0]), 2.55))
    np.testing.assert_allclose(a, [0.0, 0.3, 2.0, 2.55], atol=1e-6)


def test_kd_losses_vanish_only_when_student_matches_teacher():
    logits = RNG.normal(size=(2, 5, 5, 11)).astype(np.float32)
    relief = RNG.normal(size=(2, 5, 5, 1)).astype(np.float32) * 10
    face = np.ones((2, 5, 5), np.float32)
    feat = RNG.normal(size=(2, 5, 5, 6)).astype(np.float32)
    assert float(kd_bins_loss(logits, logits, 4.0)) == pytest.approx(0, abs=1e-5)
    assert float(kd_bins_loss(logits * 0.2, logits, 4.0)) > 1e-3
    assert float(kd_relief_loss(relief, relief, face)) == 0
    assert float(kd_relief_loss(relief + 2, relief, face)) == pytest.approx(2)
    assert float(inheritance_loss(3 * feat, feat)) == pytest.approx(0, abs=1e-5)  # up to scale
    assert float(inheritance_loss(-feat, feat)) == pytest.approx(2, abs=1e-4)
    assert float(exploration_loss(feat, feat)) == pytest.approx(1, abs=1e-4)
    other = RNG.normal(size=feat.shape).astype(np.float32)  # minus its projection on feat: orthogonal
    orth = other - feat * (np.sum(other * feat, -1, keepdims=True) / np.sum(feat * feat, -1, keepdims=True))
    assert float(exploration_loss(orth, feat)) == pytest.approx(0, abs=1e-6)


def test_distiller_trains_only_the_student():
    from train.config import Config, DataConfig, TrainConfig
    from train.train import compile_model

    student, teacher = build_model(TINY), build_model(TINY, plain_block)
    frozen = [w.copy() for w in teacher.get_weights()]
    before = [w.copy() for w in student.get_weights()]
    d = Distiller(student, teacher, temperature=4.0, kd_weight=1.0, w_relief=0.1, ie_weight=1.0,
                  explore_weight=0.5)
    cfg = Config(data=DataConfig(batch_size=2), model=TINY, train=TrainConfig(run_eagerly=True))
    compile_model(d, cfg, 2)
    y = {"bins": RNG.integers(0, 11, (2, 80, 80)), "relief": np.stack(
        [RNG.normal(size=(2, 80, 80)) * 10, np.ones((2, 80, 80))], -1).astype(np.float32)}
    logs = d.fit(X, y, epochs=1, batch_size=2, verbose=0).history
    assert {"kd_bins", "kd_relief", "inherit", "explore"} <= set(logs)
    assert all(np.array_equal(a, b) for a, b in zip(frozen, teacher.get_weights(), strict=True))
    assert any(not np.array_equal(a, b) for a, b in zip(before, student.get_weights(), strict=True))
    assert "ie_proj" not in {layer.name for layer in student.layers}


def test_config_errors_and_parents(tmp_path):
    with pytest.raises(ConfigError, match=r"<string>:2: unknown key 'study.step'"):
        parse_study("name: x\nstep: 3\n")
    with pytest.raises(ConfigError, match=r"unknown variant\(s\) prune"):
        parse_study("variants: [student, prune]\n")
    assert with_parents(["qat", "kd", "prune90"]) == ("teacher", "student", "prune90", "kd", "qat")
    smoke = load_study("convert/study/configs/smoke.yaml")
    assert smoke.name == "smoke" and smoke.out_dir == "out/study" and smoke.steps - smoke.finetune_steps > 0


def _result(variant, ms, mae, kb=50.0, macs=10**6) -> VariantResult:
    return VariantResult(variant, "", 100.0, 10, ms, kb, kb / 2, macs, 1000, mae, mae, 10, {"CONV_2D": 9}, {})


def test_winner_is_computed_from_the_numbers():
    rows = [_result("teacher", 20.0, 3.0, macs=10**7), _result("student", 5.0, 4.0),
            _result("kd", 5.2, 3.5), _result("fire", 5.4, 3.2, macs=2 * 10**6),
            _result("prune80", 6.0, 4.4, kb=20)]
    text = winner_paragraph(rows, 1500)
    assert "**What wins** at the student's speed (int8 ≤ 1.10 × its 5.00 ms): **fire** (3.20 mm)" in text
    assert "rows with the student's graph: 5.00–6.00 ms" in text  # prune80 counts as fast: same graph
    rows[3] = _result("fire", 9.0, 3.2, macs=2 * 10**6)  # now too slow
    text = winner_paragraph(rows, 1500)
    assert "**kd** (3.50 mm) — 0.50 mm better than the student's 4.00 mm" in text
    assert "kd closes 50% of that gap" in text and "Smallest after gzip: prune80" in text
    assert "Pareto front on (int8 ms, int8 MAE): student, kd, fire, teacher." in text and "Caveat" not in text
    rows[2] = _result("kd", 5.2, 4.1)
    assert "**student** (4.00 mm) — the student itself" in winner_paragraph(rows, 10)


@pytest.mark.slow
def test_runner_end_to_end_then_resumes(tmp_path, monkeypatch):
    from convert.study import runner, variants

    index = write_fake_dataset(tmp_path / "ds", n_train=8, n_val=20, n_test=8, hw=(96, 128), per_shard=10)
    cfg = StudyConfig(name="t", out_dir=str(tmp_path / "out"), dataset=str(index.root), steps=4,
                      finetune_fraction=0.5, batch_size=2, warmup_steps=1, eval_samples=4, n_calib=100,
                      bench_runs=5, n_bins=10, student_s1_widths=W, student_s2_widths=W, student_blocks=(0,),
                      log_every=2, run_eagerly=True)
    results = runner.run_study(cfg, ("qat",), docs=tmp_path / "docs")
    root = tmp_path / "out" / "t"
    assert [r.variant for r in results] == ["student", "qat"]
    for r in results:
        saved = json.loads((root / r.variant / "result.json").read_text())
        numbers = [v for v in saved.values() if isinstance(v, (int, float))]
        assert len(numbers) == 10 and all(np.isfinite(numbers)), saved
        assert saved["size_kb"] > 10 and saved["macs"] > 10**6 and saved["n_eval"] > 0
    assert (root / "student" / "snapshot.keras").is_file()
    assert (tmp_path / "docs" / "compression_study.png").is_file()
    md = (tmp_path / "docs" / "compression_study.md").read_text()
    assert [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ")][1:] == \
        ["student", "qat"]
    # Second run: student is skipped, qat (result deleted, model kept) is measured again, nothing trains.
    (root / "qat" / "result.json").unlink()
    monkeypatch.setattr(variants, "trainer_of", lambda v: pytest.fail(f"{v} trained again"))
    measured = []
    monkeypatch.setattr(runner, "measure", lambda v, *a, **k: measured.append(v) or _stub(root, v, results))
    again = runner.run_study(cfg, ("qat",))
    assert measured == ["qat"] and [r.variant for r in again] == ["student", "qat"]
    assert table(again).count("\n") == 4
    with pytest.raises(ConfigError, match="another config"):
        runner.run_study(dataclasses.replace(cfg, steps=5), ("qat",))


def _stub(root, variant, results):
    r = next(r for r in results if r.variant == variant)
    (root / variant / "result.json").write_text(json.dumps(r.to_json()))
    return r
