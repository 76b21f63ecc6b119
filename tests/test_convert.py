"""int8 conversion, the verification gate, liveness calibration and the release bundle, end to end.

One tiny run (analytic fake faces at 96×128, a tiny model, a few eager steps) is converted into one bundle
in a module fixture; the tests then read that bundle like the device would, and break copies of it.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from convert.liveness import liveness_score
from convert.quantize import CalibrationError, ConvertError, QuantizationError, calibration_crops, quantize
from firmware_app.bundle import BundleError, load_bundle
from tests.fakes import tiny_run_config, write_fake_dataset
from train.config import Config, ModelConfig

pytestmark = [pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"),
              pytest.mark.filterwarnings("ignore:Statistics for quantized inputs were expected")]
TINY = ModelConfig(n_bins=10, s1_widths=(8, 8, 16, 16), s2_widths=(8, 8, 16, 16), blocks=(0,))
N_CALIB = 100


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from convert.bundle import build_bundle
    from train.train import train

    tmp = tmp_path_factory.mktemp("convert")
    index = write_fake_dataset(tmp / "ds", n_train=8, n_val=20, n_test=12, hw=(96, 128), per_shard=10)
    cfg = tiny_run_config(index, TINY, tmp / "runs")
    run_dir = train(cfg)
    with pytest.MonkeyPatch.context() as mp:  # 5 val attacks: calibrate anyway (refusal: test_liveness_v2)
        mp.setattr("convert.liveness.MIN_ATTACKS", 2)
        mp.setattr("convert.liveness.MIN_BONA_FIDE", 2)
        result = build_bundle(run_dir, tmp / "bundle", n_calib=N_CALIB, num_threads=1)
    return {"run": run_dir, "index": index, "cfg": cfg, "result": result, "tmp": tmp}


@pytest.mark.slow
def test_graph_is_int8_end_to_end(built):
    q = built["result"].quant
    assert q.n_calib == N_CALIB and q.distinct_calib_samples == 20
    assert {o.op for o in q.ops} >= {"CONV_2D", "DEPTHWISE_CONV_2D", "SOFTMAX", "RESIZE_BILINEAR"}
    for op in q.ops:
        assert "float32" not in op.inputs + op.outputs and op.op != "DEQUANTIZE", op
        assert set(op.outputs) == {"int8"}, op
    inp = q.input
    assert (inp.dtype, inp.shape, inp.scale, inp.zero_point) == ("int8", (1, 160, 160, 3), 1.0, -128)
    assert [(o.name, o.shape, o.dtype) for o in q.outputs] == [
        ("bins", (1, 80, 80, 11), "int8"), ("relief", (1, 80, 80, 1), "int8")]
    assert q.output("bins").scale == pytest.approx(1 / 256) and q.size_bytes == q.path.stat().st_size


def test_checker_names_float_ops():
    """The same check on a float model (MediaPipe's BlazeFace) must fail and name the ops."""
    from convert.mediapipe_assets import ensure_mediapipe_models
    from convert.quantize import inspect_tflite

    detector = ensure_mediapipe_models().face_detector
    with pytest.raises(QuantizationError) as e:
        inspect_tflite(detector)
    lines = str(e.value).splitlines()
    assert lines[0].endswith("face_detection_short_range.tflite: not int8 end to end:")
    assert lines[1].startswith("  input is float32") and "pixel - 128" in lines[1]
    assert "  op 0 DEQUANTIZE (a float path)" in lines and "  op 2 CONV_2D input 'input' is float32" in lines
    assert lines[-2].startswith("  ... and ") and len(lines) == 15  # long lists are cut


@pytest.mark.slow
def test_litert_output_matches_keras(built):
    """The shipped int8 model, run as on the device, agrees with the float Keras model on real crops."""
    from convert.verify import TFLitePredict
    from train.evaluate import iter_examples, keras_predict_fn
    from train.train import load_run

    cfg, model, _ = load_run(built["run"])
    crops = np.stack([ex.rgb for _, _, ex in iter_examples(built["index"], "test", cfg.data, cfg.model,
                                                             max_samples=6)])
    relief_f, prob_f, *_ = keras_predict_fn(model)(crops)
    int8 = TFLitePredict(built["result"].path / "depth.tflite", 1)
    relief_q, prob_q, bins_q, live_q = int8(crops)
    assert live_q is None  # a v1 model has no liveness logit
    step = float(int8.out["relief"]["quantization"][0])
    spread = float(relief_f.max() - relief_f.min())
    err = np.abs(relief_q - relief_f)
    assert spread > 10 * step  # the comparison below is not trivially met by a constant output
    assert err.mean() < max(0.05 * spread, 4 * step), (err.mean(), spread, step)
    assert err.max() < 0.5 * spread, (err.max(), spread)
    assert np.abs(prob_q - prob_f).mean() < 0.05
    np.testing.assert_allclose(bins_q.sum(-1), 1.0, atol=0.05)  # dequantised softmax still sums to 1


@pytest.mark.slow
def test_relief_clip_gives_the_int8_relief_its_configured_step():
    """A relief head that reaches ±900 mm off the face: unclipped, calibration spends the 256 codes on that
    span; clipped to the config's range, one step is (max - min) / 255, and the graph stays int8."""
    import keras
    from keras import layers

    from convert.quantize import convert_int8, inspect_tflite

    rgb = keras.Input((160, 160, 3), name="rgb")
    x = layers.AveragePooling2D(2)(layers.Rescaling(1 / 127.5, -1)(rgb))
    relief = layers.Conv2D(1, 1, kernel_initializer=keras.initializers.Constant(300.0))(x)
    model = keras.Model(rgb, {"bins": layers.Softmax()(layers.Conv2D(11, 1)(x)), "relief": relief})
    crops = np.random.default_rng(0).integers(0, 256, (8, 160, 160, 3)).astype(np.float32)
    steps = {}
    for clip in (None, (-60.0, 40.0)):
        path = Path(tempfile.mkdtemp()) / "m.tflite"
        path.write_bytes(convert_int8(model, crops, clip))
        _, _, (_, out_relief) = inspect_tflite(path)
        steps[clip] = out_relief.scale
    assert steps[None] > 4.0, steps  # ±~600 mm over 255 codes
    assert steps[(-60.0, 40.0)] == pytest.approx(100 / 255, rel=0.02), steps


@pytest.mark.slow
def test_16x8_conversion_runs_in_litert_and_tracks_keras(built, tmp_path):
    """The study's 16×8 row: int16 activations end to end (int16 input, no float op), as close to the
    float model as int8 at least."""
    from convert.quantize import convert_16x8, graph_ops
    from convert.verify import TFLitePredict
    from train.evaluate import iter_examples, keras_predict_fn
    from train.train import load_run

    cfg, model, _ = load_run(built["run"])
    calib, _ = calibration_crops(cfg, built["index"], N_CALIB)
    path = tmp_path / "m16.tflite"
    path.write_bytes(convert_16x8(model, calib))
    ops = graph_ops(path)
    assert {o.op for o in ops} >= {"CONV_2D", "SOFTMAX"} and "DEQUANTIZE" not in {o.op for o in ops}
    assert all("float32" not in o.inputs + o.outputs for o in ops)
    assert any("int16" in o.outputs for o in ops)
    crops = np.stack([ex.rgb for _, _, ex in iter_examples(built["index"], "test", cfg.data, cfg.model,
                                                             max_samples=6)])
    relief_f = keras_predict_fn(model)(crops)[0]
    m16, m8 = TFLitePredict(path, 1), TFLitePredict(built["result"].path / "depth.tflite", 1)
    assert m16.dtype == np.int16
    err16, err8 = (np.abs(m(crops)[0] - relief_f).mean() for m in (m16, m8))
    assert err16 <= err8 + 1e-3, (err16, err8)


@pytest.mark.slow
def test_bundle_loads_with_metrics_and_threshold(built):
    r = built["result"]
    b = load_bundle(r.path)
    m = b.manifest
    assert m["version"] == f"tiny-{b.model_sha256[:8]}"
    assert b.model_sha256 == m["files"]["depth.tflite"]["sha256"]
    assert set(m["files"]) == {"depth.tflite", "face_detection_short_range.tflite", "LICENSE.mediapipe",
                               "face_detection_full_range_sparse.tflite", "device.example.yaml"}
    assert m["detector"]["full_range_file"] == "face_detection_full_range_sparse.tflite"
    assert b.detector.name == "face_detection_short_range.tflite"
    assert m["detector"]["source"]["license"] == "Apache-2.0"
    assert m["training_config"] == json.loads((built["run"] / "run.json").read_text())["config"]
    assert m["metrics"]["gate"]["passed"] and r.verify.passed
    f, q = m["metrics"]["float"]["bona_fide"], m["metrics"]["int8"]["bona_fide"]
    assert q["mae_mm"] <= 1.05 * f["mae_mm"] + 0.05 and f["n"] == q["n"] == 9
    assert m["metrics"]["int8"]["attack"]["n"] == 3
    assert b.bins_mm == pytest.approx(np.linspace(-55, 35, 10)) and m["crop"]["crop_scale"] == 1.6
    assert m["crop"]["mirror_average"] is False and b.crop.mirror_average is False  # one pass unless asked
    live = m["liveness"]
    assert (live["n_val"]["bona_fide"], live["n_val"]["attack"], live["percentiles"]) == (15, 5, [1, 99])
    assert live["val_bpcer"] <= 0.01 + live["n_val"]["unscored"] / 15  # unscored bona fide count as rejected
    assert live["threshold_mm"] == pytest.approx(b.liveness_threshold_mm) and 0 <= live["test_apcer"] <= 1
    example = yaml.safe_load((r.path / "device.example.yaml").read_text())
    assert example["camera"]["type"] == "replay" and example["depth"]["bundle"] == "."
    assert m["source_commit"] and m["dataset"]["index_sha256"] == m["dataset"]["trained_index_sha256"]


@pytest.mark.slow
def test_tampered_copy_of_the_real_bundle_is_refused(built, tmp_path):
    copy = shutil.copytree(built["result"].path, tmp_path / "copy")
    data = bytearray((copy / "depth.tflite").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "depth.tflite").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"copy/depth\.tflite: sha256 mismatch"):
        load_bundle(copy)


def test_too_small_calibration_set_is_refused(tmp_path):
    with pytest.raises(CalibrationError, match=r"calibration set of 50 crops is too small.*--n-calib 100"):
        quantize(tmp_path / "any_run", tmp_path / "m.tflite", n_calib=50)
    few = write_fake_dataset(tmp_path / "few", n_train=0, n_val=6, n_test=0, hw=(96, 128))
    with pytest.raises(CalibrationError, match=r"split 'val' has 6 samples.*at least 16 distinct"):
        calibration_crops(Config(model=TINY), few, 100)
    with pytest.raises(CalibrationError, match=r"split 'test' has no samples"):
        calibration_crops(Config(model=TINY), few, 100, split="test")


def test_missing_checkpoint_names_the_run_dir(tmp_path):
    from convert.__main__ import main

    with pytest.raises(ConvertError, match=r"nowhere: not a finished run directory \(needs run\.json"):
        quantize(tmp_path / "nowhere", tmp_path / "m.tflite")
    assert main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "b")]) == 2
    assert not (tmp_path / "b" / "manifest.json").exists()


@pytest.mark.slow
def test_mismatched_checkpoint_and_cli_errors(built, tmp_path, capsys):
    from convert.__main__ import main

    run = shutil.copytree(built["run"], tmp_path / "run", ignore=shutil.ignore_patterns("tb", "backup"))
    info = json.loads((run / "run.json").read_text())
    info["config"]["model"]["n_bins"] = 12
    (run / "run.json").write_text(json.dumps(info))
    with pytest.raises(ConvertError, match=r"run/model\.keras does not match its run\.json"):
        quantize(run, tmp_path / "m.tflite")
    assert main([str(built["run"]), "--out", str(tmp_path / "b"), "--n-calib", "99"]) == 2
    assert "too small" in capsys.readouterr().err


@pytest.mark.slow
def test_gate_refuses_a_lossy_model(built):
    from convert.verify import GateError, gate

    v = built["result"].verify
    f, q = v.float_result, v.int8_result
    assert gate(f, q, built["result"].quant.output("relief").scale) == ([], [])
    lossy = dataclasses.replace(q.bona_fide, mae_mm=f.bona_fide.mae_mm * 1.1 + 0.1)
    worse = dataclasses.replace(q, bona_fide=lossy)
    failures, _ = gate(f, worse, 0.1)
    assert len(failures) == 1 and failures[0].startswith("int8 MAE")
    attack = dataclasses.replace(q, attack=dataclasses.replace(
        q.attack, planar_range_p95_mm=f.attack.planar_range_p95_mm * 1.2 + 1.0))
    assert "attack planar_range_p95_mm" in gate(f, attack, 0.1)[0][0]
    assert gate(f, dataclasses.replace(q, attack=None), 0.1)[1] == ["test split has no attack samples: "
                                                                    "attack relief not checked"]
    refused = dataclasses.replace(v, failures=("int8 MAE 9 mm > 5 mm",))
    with pytest.raises(GateError, match="int8 model is refused: int8 MAE 9 mm"):
        refused.check()


def test_liveness_score_and_threshold():
    yy, xx = np.mgrid[0:80, 0:80].astype(np.float32)
    face = np.zeros((80, 80), np.float32)
    face[10:70, 15:65] = 1.0
    tilted_photo = 0.5 * xx - 0.3 * yy
    real = 40 * np.exp(-((xx - 40) ** 2 + (yy - 40) ** 2) / 300)
    assert liveness_score(tilted_photo, face) < 1e-3 and liveness_score(real, face) > 20
    assert np.isnan(liveness_score(real, np.zeros_like(face)))  # too few face cells: the device gives none
    # the calibration of the evidence model: tests/test_liveness_v2.py
