"""Network v2 and training sessions: three outputs, the amplitude loss, grey/edge augmentation, warm start,
promotion into a committed model directory only when validation improves, and a weights-only reload."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from tests.fakes import write_fake_dataset
from train.config import Config, ConfigError, DataConfig, ModelConfig, TrainConfig, parse_config
from train.metrics import ReliefLoss
from train.model import build_model, count_macs, output_shapes

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
TINY_V2 = ModelConfig(arch="v2", n_bins=10, trunk_widths=(8, 8, 16, 16), blocks=(0,), refine_width=8)


def test_v2_has_three_outputs_and_keeps_the_budget():
    model = build_model(TINY_V2)
    assert {k: tuple(v.shape[1:]) for k, v in model.output.items()} == output_shapes(TINY_V2)
    assert output_shapes(TINY_V2)["live"] == (1,)
    full = ModelConfig(arch="v2", trunk_widths=(16, 32, 64, 128, 256), blocks=(1, 2, 2, 2))
    stats = count_macs(build_model(full))
    assert stats.macs <= 50e6 and stats.params <= 1e6
    with pytest.raises(ValueError, match="over budget"):
        build_model(dataclasses.replace(full, max_macs=10_000_000))


def test_the_40x40_refinement_keeps_the_output_contract_and_transfers_the_trunk():
    from train.train import transfer_weights

    fast = dataclasses.replace(TINY_V2, refine_level=1, stem_block=False)
    model, source = build_model(fast), build_model(TINY_V2)
    assert {k: tuple(v.shape[1:]) for k, v in model.output.items()} == output_shapes(TINY_V2)
    assert count_macs(model).macs < count_macs(source).macs
    assert not any(layer.name.startswith(("t_e0", "s2_grey")) for layer in model.layers)
    copied, fresh = transfer_weights(source, model)
    assert "t_stem" in copied and "s1_logits" in copied and "live" in copied
    assert "s2_r0_dw" in fresh  # its input has other channels now: it starts random
    for name in copied:
        for a, b in zip(model.get_layer(name).get_weights(), source.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)


def test_bad_arch_and_head_level_are_config_errors():
    with pytest.raises(ConfigError, match=r"<string>:2: 'model.arch' 'v3'"):
        parse_config("model:\n  arch: v3\n")
    with pytest.raises(ConfigError, match="head_level"):
        parse_config("model:\n  arch: v2\n  head_level: 9\n")
    with pytest.raises(ConfigError, match="refine_level"):
        parse_config("model:\n  arch: v2\n  head_level: 2\n  refine_level: 3\n")


def test_scale_term_penalises_a_shallow_prediction_that_l1_alone_barely_sees():
    yy, xx = np.mgrid[0:80, 0:80]
    true = (30.0 * np.exp(-((xx - 40) ** 2 + (yy - 40) ** 2) / 300.0)).astype(np.float32)
    mask = np.ones_like(true)
    y_true = np.stack([true, mask], -1)[None]
    shallow = (0.6 * true)[None, ..., None]
    plain, with_scale = ReliefLoss(0.0, 0.0), ReliefLoss(0.0, 1.0)
    gap = float(with_scale(y_true, shallow)) - float(plain(y_true, shallow))
    std_gap = float(true.std() - (0.6 * true).std())
    assert gap == pytest.approx(std_gap, rel=0.01)  # the amplitude term is exactly |σ_pred − σ_true|
    assert float(with_scale(y_true, true[None, ..., None])) == pytest.approx(0.0, abs=1e-3)


def test_grey_and_edge_augmentation_reach_the_examples(tmp_path):
    from train.data import Source, make_example

    index = write_fake_dataset(tmp_path / "d", n_train=4, n_val=0, n_test=0, per_shard=4)
    sample = Source(index, "train").sample(0, 0)
    grey_cfg = DataConfig(grey_prob=1.0, edge_replicate_prob=0.0, jitter_shift=0.5)
    ex = make_example(sample, grey_cfg, TINY_V2, np.random.default_rng(1), augment=True)
    assert np.array_equal(ex.rgb[..., 0], ex.rgb[..., 1]) and np.array_equal(ex.rgb[..., 1], ex.rgb[..., 2])
    edge_cfg = DataConfig(grey_prob=0.0, edge_replicate_prob=1.0, crop_scale=4.0)
    black_cfg = dataclasses.replace(edge_cfg, edge_replicate_prob=0.0)
    rep = make_example(sample, edge_cfg, TINY_V2, np.random.default_rng(2), augment=True).rgb
    blk = make_example(sample, black_cfg, TINY_V2, np.random.default_rng(2), augment=True).rgb
    # a crop 4× the face overhangs the small fake frame: black corners without replication, none with it
    assert (blk.max(-1) == 0).mean() > 0.05 and (rep.max(-1) == 0).mean() < 0.01


def test_the_camera_pipeline_augmentation_reaches_both_classes_and_leaves_targets_alone(tmp_path):
    """isp_prob restyles bona fide crops as well as attacks (the generator restyles only attack content), and
    never the depth targets; a probability outside [0, 1] is refused."""
    from train.data import Source, make_example

    index = write_fake_dataset(tmp_path / "d", n_train=8, n_val=0, n_test=0, per_shard=8)
    src = Source(index, "train")
    samples = [src.sample(*k) for k in src.keys]
    plain = DataConfig(isp_prob=0.0, grey_prob=0.0, edge_replicate_prob=0.0, blur_prob=0.0, noise_std=0.0)
    styled = dataclasses.replace(plain, isp_prob=1.0)
    changed = {True: [], False: []}
    for k, sample in enumerate(samples):
        a = make_example(sample, plain, TINY_V2, np.random.default_rng(k), augment=True)
        b = make_example(sample, styled, TINY_V2, np.random.default_rng(k), augment=True)
        np.testing.assert_array_equal(a.relief, b.relief)
        np.testing.assert_array_equal(a.face, b.face)
        changed[sample.is_attack].append(np.abs(a.rgb.astype(int) - b.rgb.astype(int)).mean() > 0.5)
    assert changed[True] and changed[False], "the fake dataset must hold both classes"
    # restyle draws 1-3 styles, "none" among them: most crops change, in both classes
    assert np.mean(changed[True]) >= 0.5 and np.mean(changed[False]) >= 0.5
    with pytest.raises(ConfigError, match="isp_prob"):
        DataConfig(isp_prob=1.5)


def test_sessions_warm_start_and_promote_only_on_improvement(tmp_path, monkeypatch):
    from train import session
    from train.train import load_run

    index = write_fake_dataset(tmp_path / "d", n_train=16, n_val=8, n_test=4, per_shard=4)
    base = Config(data=DataConfig(dataset=str(index.root), batch_size=4, max_val_samples=8),
                  model=TINY_V2,
                  train=TrainConfig(name="t", out_dir=str(tmp_path / "runs"), epochs=1, steps_per_epoch=2,
                                    warmup_steps=1, lr=0.005, verbose=0, run_eagerly=True))
    models = tmp_path / "models"
    from train.train import train

    cfg1, committed = session.session_config(base, models, fresh=False)
    assert committed is None and cfg1.train.init_weights == ""
    e1 = session.promote(train(cfg1), models, committed, cfg1)
    assert e1["promoted"] and (models / session.WEIGHTS).is_file()
    ledger = json.loads((models / "run.json").read_text())
    assert ledger["weights_sha256"] and len(ledger["ledger"]) == 1

    cfg2, committed = session.session_config(base, models, fresh=False)
    assert cfg2.train.init_weights == str(models / session.WEIGHTS)
    assert cfg2.train.lr == pytest.approx(base.train.lr * session.CONTINUE_LR_SCALE)
    assert cfg2.train.name != cfg1.train.name
    run2 = train(cfg2)
    info = json.loads((run2 / "run.json").read_text())
    assert info["baseline_val"]["val_relief_mae_mm"] > 0  # the start weights, scored on this split
    info["best"]["val_relief_mae_mm"] = 1e9  # a session that got worse must not replace the weights
    (run2 / "run.json").write_text(json.dumps(info))
    before = (models / session.WEIGHTS).read_bytes()
    e2 = session.promote(run2, models, committed, cfg2)
    assert not e2["promoted"] and (models / session.WEIGHTS).read_bytes() == before
    assert len(json.loads((models / "run.json").read_text())["ledger"]) == 2

    # The rule reads the best checkpoint's own epoch: better on both there, worse liveness at the last epoch.
    base_mae, base_live = info["baseline_val"]["val_relief_mae_mm"], info["baseline_val"]["val_live_loss"]
    rows = [{"epoch": 0, "val_relief_mae_mm": base_mae * 0.9, "val_live_loss": base_live * 0.9},
            {"epoch": 1, "val_relief_mae_mm": base_mae * 0.95, "val_live_loss": base_live * 2}]
    (run2 / "log.csv").write_text("epoch,val_relief_mae_mm,val_live_loss\n" +
                                  "".join(f"{r['epoch']},{r['val_relief_mae_mm']},{r['val_live_loss']}\n"
                                          for r in rows))
    info["best"] = {"epoch": 1, "val_relief_mae_mm": base_mae * 0.9}
    info["last_epoch"] = {"val_relief_mae_mm": base_mae * 0.95, "val_live_loss": base_live * 2}
    (run2 / "run.json").write_text(json.dumps(info))
    assert session.main(["--models", str(models), "--decide", str(run2), "--no-heldout"]) == 0
    ledger = json.loads((models / "run.json").read_text())["ledger"]
    assert len(ledger) == 2 and ledger[-1]["promoted"] and ledger[-1]["val"]["val_live_loss"] < base_live
    assert (models / session.WEIGHTS).read_bytes() != before
    # already promoted: a no-op
    assert session.main(["--models", str(models), "--decide", str(run2), "--no-heldout"]) == 0

    cfg, model, _ = load_run(models)  # weights only: rebuilt from the committed config
    assert cfg.model == TINY_V2 and set(model.output) == {"bins", "relief", "live"}
    other = dataclasses.replace(base, model=dataclasses.replace(TINY_V2, refine_width=16))
    with pytest.raises(ConfigError, match="another model config"):
        session.session_config(other, models, fresh=False)
    assert session.session_config(other, models, fresh=True)[1] is None
    # An architecture change with --transfer: matching layers carried over, judged against the old model.
    cfg3, committed = session.session_config(other, models, fresh=False, transfer=True)
    assert cfg3.train.init_from_run == str(models / "run.json")
    run3 = train(cfg3)
    old_model = load_run(models)[1]
    info = json.loads((run3 / "run.json").read_text())
    from train.data import make_dataset
    from train.synth.dataset_index import DatasetIndex
    from train.train import compile_model

    compile_model(old_model, base, 1)  # the bar is the old model's own score on this split
    val = make_dataset(cfg3, "val", False, DatasetIndex.load(index.root), 4)[0]
    old_mae = old_model.evaluate(val, return_dict=True, verbose=0)["relief_mae_mm"]
    assert info["baseline_val"]["val_relief_mae_mm"] == pytest.approx(old_mae, rel=1e-4)
    e3 = session.promote(run3, models, committed, cfg3)
    assert e3["transfer"] and e3["baseline_val"] == {k: info["baseline_val"][k]
                                                      for k in (session.MONITOR, session.LIVE_MONITOR)}
    assert e3["promoted"] == session.improves(e3["val"], [], info["baseline_val"])
    assert load_run(models)[0].model == (other.model if e3["promoted"] else TINY_V2)
    assert set(old_model.output) == {"bins", "relief", "live"}


def test_v2_converts_to_int8_with_its_live_logit_and_the_device_reads_it(tmp_path):
    """All three outputs survive full-integer conversion; the device's DepthEstimator finds "live" by name
    and its dequantised logit follows the float model's."""
    import keras

    from convert.quantize import convert_int8, inspect_tflite
    from firmware_app.depth import DepthEstimator
    from train.data import Source, make_example

    keras.utils.set_random_seed(3)
    index = write_fake_dataset(tmp_path / "d", n_train=0, n_val=24, n_test=0, per_shard=8)
    src = Source(index, "val")
    crops = np.stack([make_example(src.sample(*k), DataConfig(), TINY_V2).rgb for k in src.keys])
    model = build_model(TINY_V2)
    path = tmp_path / "v2.tflite"
    path.write_bytes(convert_int8(model, np.concatenate([crops] * 5), TINY_V2.relief_range_mm))
    _, _, outputs = inspect_tflite(path)
    assert [o.name for o in outputs] == ["bins", "relief", "live"] and outputs[2].dtype == "int8"
    est = DepthEstimator(path)
    assert est.has_live and "live" in est.output_quant
    float_live = np.asarray(model.predict(crops.astype(np.float32), verbose=0)["live"])[:, 0]
    int8_live = np.array([est.predict(c).live_logit for c in crops])
    scale = est.output_quant["live"][0]
    assert np.abs(int8_live - float_live).max() < max(4 * scale, 0.1 * np.ptp(float_live) + scale)
    assert np.corrcoef(int8_live, float_live)[0, 1] > 0.9 or np.ptp(float_live) < 4 * scale


def test_a_session_with_better_depth_but_worse_liveness_is_not_promoted():
    from train.session import improves

    ledger = [{"promoted": True, "val": {"val_relief_mae_mm": 4.87, "val_live_loss": 0.078}}]
    assert improves({"val_relief_mae_mm": 4.71, "val_live_loss": 0.070}, ledger)
    assert not improves({"val_relief_mae_mm": 4.71, "val_live_loss": 0.089}, ledger)  # more prints get in
    assert not improves({"val_relief_mae_mm": 4.90, "val_live_loss": 0.050}, ledger)
    assert improves({"val_relief_mae_mm": 9.0}, [])  # nothing to compare with: a fresh start
    # A warm start scored its start weights on its own (regenerated) validation split: that is the bar.
    base = {"val_relief_mae_mm": 5.20, "val_live_loss": 0.095}
    assert improves({"val_relief_mae_mm": 5.00, "val_live_loss": 0.090}, ledger, base)
    assert not improves({"val_relief_mae_mm": 4.50, "val_live_loss": 0.100}, ledger, base)
    assert not improves({"val_relief_mae_mm": 5.30, "val_live_loss": 0.050}, ledger, base)
    # When the held-out check judges liveness on real photographs, validation only guards against a collapse.
    assert improves({"val_relief_mae_mm": 4.50, "val_live_loss": 0.100}, ledger, base, live_slack=1.10)
    assert not improves({"val_relief_mae_mm": 4.50, "val_live_loss": 0.110}, ledger, base, live_slack=1.10)


def test_the_deploy_graph_folds_the_grey_conv_and_computes_the_same_function():
    """deploy_graph drops the 160×160 grey 1×1 conv (s2_grey then reads the RGB crop with the luma weights
    folded into its kernel) and gives the training graph's outputs; refine_level 1 has nothing to fold."""
    import keras

    from train.model_v2 import GREY_RGB, deploy_graph

    keras.utils.set_random_seed(5)
    model = build_model(TINY_V2)
    folded = deploy_graph(model, TINY_V2)
    names = {layer.name for layer in folded.layers}
    assert "grey" in {layer.name for layer in model.layers} and "grey" not in names
    kernel = folded.get_layer("s2_grey").get_weights()[0]
    assert kernel.shape[2] == 3
    grey_kernel = model.get_layer("s2_grey").get_weights()[0][:, :, 0]
    np.testing.assert_allclose(kernel[:, :, 1] / GREY_RGB[1], grey_kernel, rtol=1e-5)
    x = np.random.default_rng(0).uniform(0, 255, (4, 160, 160, 3)).astype(np.float32)
    x[0, :40] = 0.0  # a crop whose top ran past the frame (black fill): padding must not change the fold
    want, got = model.predict(x, verbose=0), folded.predict(x, verbose=0)
    for key in ("bins", "relief", "live"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-4)
    assert deploy_graph(model, dataclasses.replace(TINY_V2, refine_level=1)) is model
