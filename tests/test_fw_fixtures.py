"""Shared test material for the firmware tests (imported by tests/test_fw_*.py; builds on first use).

- `tiny_bundle()`: a release bundle (manifest.json + int8 depth.tflite + BlazeFace) around a tiny Keras
  model with the real model's input/output names, shapes and quantisation; its relief is a fixed
  function of the image's brightness, so the depth is not a face but the numbers are reproducible.
- `synthetic_frames()`: a few 640×480 frames from train.synth (bona fide faces and attacks) as PNGs.

Both are cached under out/cache/fw_tests/ (keyed by VERSION) so the suite converts once per machine.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / "out" / "cache" / "fw_tests"
VERSION = "4"
N_BINS = 20
THRESHOLD_MM = 4.0
DEV_KEY = REPO / "keys" / "dev" / "signing.key"  # the committed DEVELOPMENT pair signs test bundles
DEV_PUB_FILE = REPO / "keys" / "dev" / "signing.pub"
DEV_PUB = DEV_PUB_FILE.read_text().strip()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_tiny_keras():
    import keras
    from keras import layers

    rgb = keras.Input((160, 160, 3), name="rgb")
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(rgb)
    x = layers.AveragePooling2D(2)(x)  # 80×80
    grey = layers.Conv2D(1, 1, use_bias=False, kernel_initializer=keras.initializers.Constant(1 / 3))(x)
    h = layers.Conv2D(
        4,
        3,
        padding="same",
        activation="relu",
        kernel_initializer=keras.initializers.RandomNormal(0, 0.3, seed=1),
    )(x)
    logits = layers.Conv2D(
        N_BINS + 1,
        1,
        kernel_initializer=keras.initializers.RandomNormal(0, 0.3, seed=2),
        bias_initializer=keras.initializers.Constant([0.0] * N_BINS + [-3.0]),
    )(h)
    bins = layers.Softmax(name="bins")(logits)
    relief = layers.Rescaling(20.0, name="relief")(grey)  # brightness → ±20 mm
    return keras.Model(rgb, {"bins": bins, "relief": relief}, name="tiny_facedepth")


def representative_crops(n: int = 8):
    rng = np.random.default_rng(0)
    for _ in range(n):
        base = rng.uniform(0, 255, (1, 1, 1, 3))
        yield [np.clip(base + rng.normal(0, 60, (1, 160, 160, 3)), 0, 255).astype(np.float32)]


def convert_int8(model) -> bytes:
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative_crops
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()


def _tensor_specs(model_path: Path) -> tuple[list, list]:
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(model_path))
    runner = interp.get_signature_runner()
    by_index = {d["index"]: d for d in interp.get_output_details()}

    def spec(name, d):
        scale, zero = d["quantization"]
        return {
            "name": name,
            "index": int(d["index"]),
            "shape": [int(v) for v in d["shape"]],
            "dtype": np.dtype(d["dtype"]).name,
            "scale": float(scale),
            "zero_point": int(zero),
        }

    inputs = [spec(name, d) for name, d in runner.get_input_details().items()]
    outputs = [spec(name, by_index[d["index"]]) for name, d in runner.get_output_details().items()]
    return inputs, outputs


def write_manifest(root: Path, threshold_mm: float = THRESHOLD_MM) -> dict:
    files = {
        p.name: {"sha256": _sha(p), "bytes": p.stat().st_size}
        for p in sorted(root.iterdir())
        if p.name != "manifest.json" and p.is_file()
    }
    inputs, outputs = _tensor_specs(root / "depth.tflite")
    edges = np.linspace(-60, 40, N_BINS + 1)
    manifest = {
        "schema": "facedepth-bundle/1",
        "version": f"test-tiny-{VERSION}",
        "files": files,
        "depth_model": {"file": "depth.tflite", "inputs": inputs, "outputs": outputs},
        "detector": {"file": "face_detection_short_range.tflite"},
        "crop": {
            "input_size": 160,
            "grid_size": 80,
            "crop_scale": 1.6,
            "border": "constant0",
            "use_eyes": True,
        },
        "depth_bins_mm": [round(float(v), 3) for v in (edges[:-1] + edges[1:]) / 2],
        "relief_range_mm": [-60.0, 40.0],
        "liveness": {"threshold_mm": float(threshold_mm), "score": "plane_removed_relief_range_mm"},
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def tiny_bundle() -> Path:
    """The cached tiny bundle directory (built with TensorFlow on first use, ~20 s)."""
    root = CACHE / f"bundle-v{VERSION}"
    if (root / "manifest.json").is_file():
        if not (root / "manifest.json.sig").is_file():  # cached before bundles were signed
            from convert.sign import sign_bundle

            sign_bundle(root, DEV_KEY)
        return root
    from convert.mediapipe_assets import ensure_mediapipe_models

    tmp = CACHE / f".bundle-v{VERSION}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "depth.tflite").write_bytes(convert_int8(build_tiny_keras()))
    models = ensure_mediapipe_models(REPO / "out" / "models" / "mediapipe")
    shutil.copy(models.face_detector, tmp / "face_detection_short_range.tflite")
    write_manifest(tmp)
    from convert.sign import sign_bundle

    sign_bundle(tmp, DEV_KEY)
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return root


def copy_bundle(dest: Path) -> Path:
    shutil.copytree(tiny_bundle(), dest)
    return dest


FRAME_LABELS = ("bona_fide", "bona_fide", "print_flat", "bona_fide", "replay_phone", "bona_fide")


def synthetic_frames() -> Path:
    """A folder of 640×480 PNG frames from train.synth: faces at 300-700 mm and two attacks."""
    import cv2

    root = CACHE / f"frames-v{VERSION}"
    if (root / "done").is_file():
        return root
    from train.synth.face_render import make_identity
    from train.synth.generator import GeneratorConfig, generate_sample

    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    cfg = GeneratorConfig(distance_mm=(300.0, 700.0), yaw_deg=20, pitch_deg=15, roll_deg=10, p_occluder=0.0)
    boxes = {}
    for i, label in enumerate(FRAME_LABELS):
        rng = np.random.default_rng([11, i])
        s = generate_sample(cfg, make_identity(i, rng), label, rng)
        cv2.imwrite(str(root / f"{i:03d}_{label}.png"), cv2.cvtColor(s.rgb, cv2.COLOR_RGB2BGR))
        boxes[f"{i:03d}_{label}.png"] = [float(v) for v in s.face_box]
    (root / "boxes.json").write_text(json.dumps(boxes, indent=1))
    (root / "done").write_text("ok\n")
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fixtures_build():
    """The shared material exists and the bundle passes the device's own checks."""
    from firmware_app.bundle import load_bundle

    bundle = load_bundle(tiny_bundle(), [DEV_PUB])
    assert bundle.liveness_threshold_mm == THRESHOLD_MM
    assert len(list(synthetic_frames().glob("*.png"))) == len(FRAME_LABELS)
