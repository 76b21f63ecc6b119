"""The device's bundle loader on hand-made bundles: each way a bundle can be wrong is refused by name.

(The real bundle written by `python -m convert` is loaded in tests/test_convert.py.)
"""

from __future__ import annotations

import ast
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convert.sign import keygen, sign_bundle
from firmware_app.bundle import SCHEMA, BundleError, load_bundle, main
from tests.test_fw_fixtures import DEV_KEY, DEV_PUB, DEV_PUB_FILE

ROOT = Path(__file__).resolve().parents[1]
N_BINS = 4


def _entry(data: bytes) -> dict:
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _spec(name, shape, scale=1.0, zp=-128, dtype="int8"):
    return {"name": name, "index": 0, "shape": list(shape), "dtype": dtype, "scale": scale, "zero_point": zp}


def write_bundle(root: Path, **overrides) -> Path:
    """A structurally valid bundle with stand-in model bytes (the loader never runs the models)."""
    root.mkdir(parents=True, exist_ok=True)
    contents = {"depth.tflite": np.random.default_rng(0).bytes(3000), "det.tflite": b"detector" * 100,
                "LICENSE.mediapipe": b"Apache License 2.0\n"}
    for name, data in contents.items():
        (root / name).write_bytes(data)
    manifest = {
        "schema": SCHEMA, "version": "t-00000000", "created": "2026-01-01T00:00:00+00:00",
        "files": {name: _entry(data) for name, data in contents.items()},
        "depth_model": {"file": "depth.tflite", "inputs": [_spec("rgb", (1, 160, 160, 3))],
                        "outputs": [_spec("bins", (1, 80, 80, N_BINS + 1), 1 / 256),
                                    _spec("relief", (1, 80, 80, 1), 0.4, 20)], "macs": 1, "params": 1},
        "detector": {"file": "det.tflite", "source": {}},
        "crop": {"input_size": 160, "grid_size": 80, "crop_scale": 1.6, "border": "constant0",
                 "use_eyes": True},
        "depth_bins_mm": [-30.0, -10.0, 10.0, 30.0], "relief_range_mm": [-40.0, 40.0],
        "liveness": {"score": "plane_removed_relief_range_mm", "threshold_mm": 12.5, "bpcer_target": 0.01},
    }
    for key, value in overrides.items():
        manifest[key] = value
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture
def bundle(tmp_path) -> Path:
    return write_bundle(tmp_path / "b")


def test_valid_bundle_loads(bundle):
    b = load_bundle(bundle)
    assert b.version == "t-00000000" and b.depth_model == bundle / "depth.tflite"
    assert b.model_sha256 == hashlib.sha256((bundle / "depth.tflite").read_bytes()).hexdigest()
    assert b.input.shape == (1, 160, 160, 3) and (b.input.scale, b.input.zero_point) == (1.0, -128)
    assert b.outputs["bins"].shape == (1, 80, 80, N_BINS + 1) and b.outputs["relief"].scale == 0.4
    assert b.bins_mm == (-30.0, -10.0, 10.0, 30.0) and b.liveness_threshold_mm == 12.5
    assert b.crop.crop_scale == 1.6 and b.detector.name == "det.tflite"
    assert b.crop.mirror_average is False  # a bundle from before mirror averaging was calibrated without it
    q = np.array([20, 30, -128], np.int8)
    np.testing.assert_allclose(b.outputs["relief"].dequantize(q), [0.0, 4.0, -59.2], atol=1e-5)


def test_tampered_file_is_refused_naming_it(bundle):
    data = bytearray((bundle / "depth.tflite").read_bytes())
    data[1234] ^= 0x01  # one bit, same size
    (bundle / "depth.tflite").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"depth\.tflite: sha256 mismatch \(bundle tampered.*make convert"):
        load_bundle(bundle)


def test_partly_copied_file_is_refused(bundle):
    (bundle / "det.tflite").write_bytes((bundle / "det.tflite").read_bytes()[:100])
    with pytest.raises(BundleError, match=r"det\.tflite: 100 bytes, manifest\.json says 800"):
        load_bundle(bundle)


def test_missing_file_and_missing_manifest(bundle, tmp_path):
    (bundle / "LICENSE.mediapipe").unlink()
    with pytest.raises(BundleError, match=r"LICENSE\.mediapipe: missing \(listed in manifest\.json\)"):
        load_bundle(bundle)
    (bundle / "manifest.json").unlink()
    with pytest.raises(BundleError, match=r"manifest\.json: missing"):
        load_bundle(bundle)
    with pytest.raises(BundleError, match="no such bundle directory"):
        load_bundle(tmp_path / "nowhere")


def test_bad_json_and_unknown_schema(bundle):
    (bundle / "manifest.json").write_text('{"schema": "facedepth-bundle/1", "files": {')
    with pytest.raises(BundleError, match=r"manifest\.json: not valid JSON"):
        load_bundle(bundle)
    (bundle / "manifest.json").write_text("[1, 2]")
    with pytest.raises(BundleError, match="not a JSON object"):
        load_bundle(bundle)
    write_bundle(bundle, schema="facedepth-bundle/9")
    with pytest.raises(BundleError, match=r"unknown schema 'facedepth-bundle/9'.*update the firmware"):
        load_bundle(bundle)


def test_wrong_model_io_is_refused(tmp_path):
    dm = json.loads((write_bundle(tmp_path / "a") / "manifest.json").read_text())["depth_model"]
    float_in = {**dm, "inputs": [_spec("rgb", (1, 160, 160, 3), dtype="float32")]}
    with pytest.raises(BundleError, match=r"depth\.tflite: input is .*float32.*int8"):
        load_bundle(write_bundle(tmp_path / "b", depth_model=float_in))
    no_relief = {**dm, "outputs": dm["outputs"][:1]}
    with pytest.raises(BundleError, match=r"output 'relief' is None"):
        load_bundle(write_bundle(tmp_path / "c", depth_model=no_relief))
    # bins channels must be len(depth_bins_mm) + 1 (background)
    with pytest.raises(BundleError, match=r"output 'bins' is .*expected \(1, 80, 80, 6\)"):
        load_bundle(write_bundle(tmp_path / "d", depth_bins_mm=[1.0, 2.0, 3.0, 4.0, 5.0]))
    bad_scale = {**dm, "outputs": [dm["outputs"][0], _spec("relief", (1, 80, 80, 1), 0.0)]}
    with pytest.raises(BundleError, match="quantisation scale 0.0"):
        load_bundle(write_bundle(tmp_path / "e", depth_model=bad_scale))


def test_files_outside_the_bundle_and_bad_liveness(tmp_path):
    outside = tmp_path / "secret"
    outside.write_bytes(b"x")
    root = write_bundle(tmp_path / "a")
    files = json.loads((root / "manifest.json").read_text())["files"]
    with pytest.raises(BundleError, match=r"lists '\.\./secret', which is not a plain file name"):
        load_bundle(write_bundle(tmp_path / "a", files={**files, "../secret": _entry(b"x")}))
    with pytest.raises(BundleError, match=r"liveness\.threshold_mm' is missing"):
        load_bundle(write_bundle(tmp_path / "b", liveness={"score": "x"}))


def test_cli(bundle, capsys):
    sign_bundle(bundle, DEV_KEY)
    assert main([str(bundle), "--trusted-key", str(DEV_PUB_FILE)]) == 0
    assert "bundle t-00000000 OK" in capsys.readouterr().out
    assert main([str(bundle)]) == 1  # no key given: nothing is trusted
    assert "no trusted key given" in capsys.readouterr().err
    shutil.copy(bundle / "det.tflite", bundle / "depth.tflite")
    assert main([str(bundle), "--trusted-key", DEV_PUB]) == 1
    assert "depth.tflite" in capsys.readouterr().err


# --- signatures: sha256 stops corruption, the signature stops someone who rewrites hashes too ---------------

def _forge_threshold(root: Path) -> None:
    """What an attacker with write access does: edit the threshold, keep the JSON valid (hashes unchanged)."""
    m = json.loads((root / "manifest.json").read_text())
    m["liveness"]["threshold_mm"] = 0.0  # every print granted
    (root / "manifest.json").write_text(json.dumps(m))


def test_signed_bundle_loads_and_forgeries_are_refused(bundle, tmp_path):
    sign_bundle(bundle, DEV_KEY)
    assert load_bundle(bundle, [DEV_PUB]).liveness_threshold_mm == 12.5
    _forge_threshold(bundle)
    with pytest.raises(BundleError, match=r"manifest\.json: signature by key \w+ does not match the file"):
        load_bundle(bundle, [DEV_PUB])
    # re-signed by the attacker's own key: refused by name, with the fix
    _, attacker_pub = keygen(tmp_path / "attacker")
    sign_bundle(bundle, tmp_path / "attacker" / "signing.key")
    with pytest.raises(BundleError, match=r"signed by key \w+, which this device does not trust.*trusted_k"):
        load_bundle(bundle, [DEV_PUB])
    assert load_bundle(bundle, [DEV_PUB, attacker_pub]).liveness_threshold_mm == 0.0  # listed = trusted


def test_unsigned_or_garbled_signature_or_no_keys_is_refused(bundle):
    with pytest.raises(BundleError, match=r"json: unsigned \(no manifest\.json\.sig\).*sign-bundle"):
        load_bundle(bundle, [DEV_PUB])
    sign_bundle(bundle, DEV_KEY)
    with pytest.raises(BundleError, match="no trusted public keys configured"):
        load_bundle(bundle, [])
    sig = bundle / "manifest.json.sig"
    bad_key = b'{"schema": "facedepth-signature/1", "key": "ed25519:AAAA", "signature": "x"}'
    for garbage in (b"", b"[]", bad_key, b"\xff" * 5000):
        sig.write_bytes(garbage)
        with pytest.raises(BundleError, match="manifest.json"):
            load_bundle(bundle, [DEV_PUB])


def test_mirror_average_is_read_and_must_be_a_bool(tmp_path):
    crop = {"input_size": 160, "grid_size": 80, "crop_scale": 1.6, "border": "constant0", "use_eyes": True}
    on = write_bundle(tmp_path / "on", crop={**crop, "mirror_average": True})
    assert load_bundle(on).crop.mirror_average is True
    bad = write_bundle(tmp_path / "bad", crop={**crop, "mirror_average": "yes"})
    with pytest.raises(BundleError, match="mirror_average"):  # calibrated one way or the other: no guessing
        load_bundle(bad)


@pytest.mark.parametrize("field,value", [
    ("depth_bins_mm", "1,2,3"), ("depth_bins_mm", ["a", "b"]), ("depth_bins_mm", [float("nan")]),
    ("relief_range_mm", "-40..40"), ("relief_range_mm", [40, -40]), ("relief_range_mm", [True, 2]),
    ("liveness", {"threshold_mm": -1000}), ("liveness", {"threshold_mm": "12"}), ("crop", "x"),
    ("crop", {"input_size": "huge"}), ("depth_model", {"file": ["depth.tflite"]}),
    ("depth_model", {"file": "depth.tflite", "inputs": "rgb"}), ("detector", {"file": {}}),
    ("files", {"depth.tflite": {"sha256": "0" * 64, "bytes": "3000"}}), ("files", []),
])
def test_manifest_fields_of_the_wrong_type_are_refused(tmp_path, field, value):
    with pytest.raises(BundleError, match="manifest.json"):
        load_bundle(write_bundle(tmp_path / "b", **{field: value}))


_SCALAR = st.none() | st.booleans() | st.integers(-10**30, 10**30) | st.floats() | st.text(max_size=8)
_JSON = st.recursive(_SCALAR, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                  max_size=4), max_leaves=12)
_FIELDS = ("schema", "files", "depth_model", "detector", "crop", "depth_bins_mm", "relief_range_mm",
           "liveness", "version", "metrics")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(_FIELDS), _JSON, min_size=1, max_size=3))
def test_fuzzed_manifests_are_refused_never_traceback(tmp_path, overrides):
    """Any value in any field: the loader and the CLI answer BundleError / exit 1, never another exception."""
    root = write_bundle(tmp_path / "fz", **overrides)
    try:
        load_bundle(root)
    except BundleError:
        pass
    sign_bundle(root, DEV_KEY)
    assert main([str(root), "--trusted-key", DEV_PUB]) in (0, 1)


def test_manifest_nested_deep_or_huge_is_refused(bundle):
    (bundle / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BundleError, match="not valid JSON|not a JSON object"):
        load_bundle(bundle)


def test_loader_is_device_code():
    """firmware_app.bundle runs on the device: stdlib, numpy and firmware_app only (no TF, train, convert)."""
    tree = ast.parse((ROOT / "firmware_app" / "bundle.py").read_text())
    mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert mods <= {"__future__", "json", "math", "dataclasses", "pathlib", "numpy", "firmware_app",
                    "argparse", "sys", "collections"}, mods
