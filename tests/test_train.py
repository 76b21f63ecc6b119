"""Training: config validation, clear errors, overfitting a fixed batch, a killed-and-resumed run, report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from tests.fakes import write_fake_dataset
from train.config import Config, ConfigError, DataConfig, ModelConfig, TrainConfig, load_config, parse_config
from train.synth.dataset_index import DatasetError, DatasetIndex

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")
TINY_MODEL = ModelConfig(n_bins=10, s1_widths=(16, 16, 32, 32), s2_widths=(16, 16, 32, 32), blocks=(0,))


@pytest.fixture(scope="module")
def fake(tmp_path_factory) -> DatasetIndex:
    return write_fake_dataset(tmp_path_factory.mktemp("fake"), n_train=8, n_val=4, n_test=8, per_shard=4)


def test_unknown_key_names_file_line_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("data:\n  batch_size: 4\n\ntrain:\n  epochs: 3\n  lerning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:6: unknown key 'train\.lerning_rate'"):
        load_config(path)
    with pytest.raises(ConfigError, match=r":1: unknown key 'trian'"):
        parse_config("trian:\n  epochs: 3\n")


def test_wrong_types_and_overrides(tmp_path):
    with pytest.raises(ConfigError, match=r"<string>:2: 'model.n_bins': expected int, got 'many'"):
        parse_config("model:\n  n_bins: many\n")
    with pytest.raises(ConfigError, match="expected a list"):
        parse_config("model:\n  s1_widths: 8\n")
    path = tmp_path / "ok.yaml"
    path.write_text("model:\n  s1_widths: [8, 16]\ntrain:\n  lr: 1\n")
    cfg = load_config(path, ["train.epochs=7", "data.use_eyes=false"])
    assert cfg.model.s1_widths == (8, 16) and cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.train.epochs == 7 and cfg.data.use_eyes is False and cfg.train.name == "ok"
    with pytest.raises(ConfigError, match="unknown key 'train.epoch'"):
        load_config(path, ["train.epoch=7"])
    assert parse_config("") == Config()


def test_shipped_configs_parse():
    paths = sorted((ROOT / "train" / "configs").glob("*.yaml"))
    assert {p.stem for p in paths} >= {"default", "tiny", "crop_ray"}
    for path in paths:
        load_config(path)


def test_cli_rejects_unknown_key_before_loading_tensorflow(tmp_path):
    path = tmp_path / "typo.yaml"
    path.write_text("model:\n  nbins: 3\n")
    proc = subprocess.run([sys.executable, "-m", "train", "--config", str(path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"{path}:2: unknown key 'model.nbins'" in proc.stderr


def test_missing_or_bad_dataset_is_a_clear_error(tmp_path):
    from train.train import train

    cfg = Config(data=DataConfig(dataset=str(tmp_path / "nowhere")), train=TrainConfig(out_dir=str(tmp_path)))
    with pytest.raises(DatasetError, match="no such dataset directory"):
        train(cfg)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "index.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        train(Config(data=DataConfig(dataset=str(tmp_path / "broken"))))


def test_tiny_model_overfits_a_fixed_batch(fake):
    from train.data import make_example
    from train.model import build_model
    from train.train import compile_model

    keras.utils.set_random_seed(0)
    cfg = Config(model=TINY_MODEL, train=TrainConfig(lr=0.01, warmup_steps=0))
    reader = next(fake.readers("train"))
    exs = [make_example(reader.sample(i), cfg.data, cfg.model) for i in range(2)]
    x = np.stack([e.rgb for e in exs]).astype(np.float32)
    y = {"bins": np.stack([e.bins for e in exs]),
         "relief": np.stack([np.stack([e.relief, e.face.astype(np.float32)], -1) for e in exs])}
    model = build_model(cfg.model)
    compile_model(model, cfg, total_steps=10_000)
    losses = []
    for _ in range(150):
        losses.append(model.train_on_batch(x, y, return_dict=True)["loss"])
        if losses[-1] < losses[0] / 12:
            break
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1], len(losses))


class _Died(Exception):
    pass


class _Kill(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 0:
            raise _Died  # as if the process died right after epoch 1's checkpoint


def test_killed_run_resumes_and_evaluates(fake, tmp_path):
    from train.evaluate import main as evaluate_main
    from train.train import train

    model = ModelConfig(n_bins=10, s1_widths=(8, 8, 16), s2_widths=(8, 8, 16), blocks=(0,))
    cfg = Config(data=DataConfig(dataset=str(fake.root), batch_size=2, max_val_samples=4), model=model,
                 train=TrainConfig(name="t", out_dir=str(tmp_path), epochs=2, steps_per_epoch=2, verbose=0,
                                   run_eagerly=True))  # eager: 2 steps do not pay ~30 s of graph tracing
    with pytest.raises(_Died):
        train(cfg, extra_callbacks=[_Kill()])
    run = tmp_path / "t"
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    assert (run / "backup").is_dir() and (run / "model.keras").is_file()
    train(cfg)  # the same command again: resumes at epoch 2
    info = json.loads((run / "run.json").read_text())
    rows = (run / "log.csv").read_text().strip().splitlines()
    assert info["status"] == "done" and info["epochs_done"] == 2 and len(rows) == 3  # header + 2 epochs
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1"]
    assert info["dataset"]["index_sha256"] and info["config"]["train"]["epochs"] == 2
    assert info["model"]["macs"] > 0 and list((run / "tb" / "train").iterdir())
    with pytest.raises(ConfigError, match="already finished"):
        train(cfg)

    assert evaluate_main([str(run), "--jitter-samples", "4"]) == 0
    report = run / "eval-test"
    for name in ("metrics.json", "jitter.md", "breakdown.md", "error_hist.png", "learning_curves.png",
                 "examples.png"):
        assert (report / name).is_file(), name
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["trained_on_this_dataset"] and metrics["bona_fide"]["n"] + metrics["attack"]["n"] == 8
    assert len(metrics["jitter"]) == 4 and 0 <= metrics["bona_fide"]["stage1_top1"] <= 1


@pytest.mark.parametrize("center", [(320.0, 240.0), (500.0, 360.0)])
def test_crop_ray_relief_of_a_surface_facing_the_crop_is_flat(center):
    """A plane perpendicular to the ray through the crop centre (a flat face looking at the camera):
    its camera-z relief ramps when the crop is off the optical axis, its crop-ray relief is flat."""
    from firmware_app.preprocess import CropTransform
    from train.data import relief_targets
    from train.synth.sample import MASK_FACE

    K = np.array([[400.0, 0, 320], [0, 400.0, 240], [0, 0, 1]])
    t = CropTransform.from_square(center, 200.0)
    c = np.array([(center[0] - 320) / 400, (center[1] - 240) / 400, 1.0])
    c /= np.linalg.norm(c)
    v, u = np.mgrid[0:480, 0:640]
    rays = np.stack([(u - 320) / 400, (v - 240) / 400, np.ones_like(u, float)], -1)
    depth = (600.0 / (rays @ c)).astype(np.float32)  # P · ĉ = 600 mm for every pixel
    mask = np.full(depth.shape, MASK_FACE, np.uint8)
    camera_z, face = relief_targets(depth, mask, t)
    crop_ray, _ = relief_targets(depth, mask, t, K)
    assert face.all()
    assert np.ptp(crop_ray[face]) < 1.0  # what is left: nearest-neighbour resampling of the depth
    if center == (320.0, 240.0):
        assert np.ptp(camera_z[face]) < 0.5  # on the axis the two frames agree
    else:
        assert np.ptp(camera_z[face]) > 40  # ~28° off the axis: a ramp of tens of mm across the crop


def test_relief_frame_is_checked():
    with pytest.raises(ConfigError, match=r"c.yaml:2: 'data.relief_frame' 'ray': expected one of camera_z"):
        parse_config("data:\n  relief_frame: ray\n", "c.yaml")
    assert parse_config("data: {relief_frame: crop_ray}\n").data.relief_frame == "crop_ray"
