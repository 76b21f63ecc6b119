"""No traceback for any input (issue 14): each input a hostile, careful user tried, and fuzzers for
configs (YAML features), images and the CLI. Every answer is an exit code and one clear line.
"""

from __future__ import annotations

import contextlib
import io
import json
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convert.sign import sign_bundle
from firmware_app.__main__ import main as cli
from firmware_app.config import ConfigError, parse_config
from firmware_app.image_file import ImageFileError, read_rgb
from tests.test_fw_fixtures import DEV_KEY, DEV_PUB, copy_bundle, synthetic_frames, tiny_bundle

BASE = "camera: {type: replay, source: clip}\n"


def _refused(text: str, *needles: str) -> str:
    with pytest.raises(ConfigError) as e:
        parse_config(text, "door.yaml", env={})
    msg = str(e.value)
    assert msg.startswith("door.yaml:") and "\n" not in msg, msg
    for n in needles:
        assert n in msg, msg
    return msg


@pytest.mark.parametrize("text,needles", [
    (BASE + "base: &b {num_threads: 2}\ndepth:\n  <<: *b\n", ("door.yaml:2:", "anchors and aliases")),
    (BASE + "depth:\n  <<: {num_threads: 2}\n", ("door.yaml:3:", "merge keys")),
    (BASE + "depth: {bundle: !foo x}\n", ("door.yaml:2:", "tag !foo")),
    (BASE + "depth: {bundle: !!binary aGVsbG8=}\n", ("door.yaml:2:", "tag:yaml.org,2002:binary")),
    (BASE + "depth: {num_threads: !!int abc}\n", ("door.yaml:2:", "tag:yaml.org,2002:int")),
    (BASE + "depth: {bundle: !!python/name:os.system x}\n", ("door.yaml:2:", "python/name")),
    (BASE + "x: " + "[" * 100_000 + "]" * 100_000 + "\n", ("door.yaml:2:", "nested more than")),
    (BASE + "http: {port: 70000}\n", ("http.port", "above the maximum 65535")),
    (BASE + "depth: {num_threads: 100000000000000000000000}\n", ("depth.num_threads", "above the maximum")),
    (BASE + "depth: {num_threads: 1e23}\n", ("depth.num_threads", "expected an integer")),
    (BASE + "liveness: {face_prob: 3}\n", ("liveness.face_prob", "above the maximum 1.0")),
    (BASE + "detector: {min_score: 7}\n", ("detector.min_score", "above the maximum 1.0")),
    ("camera: {type: replay, source: clip, fps: .nan}\n", ("camera.fps", "finite")),
    (BASE + "outbox: {retry_max_s: 1e300}\n", ("outbox.retry_max_s", "above the maximum")),
    ("camera: {type: replay, source: clip, fps: 1.0e999}\n", ("camera.fps", "finite")),
    (BASE + "logging: {file: 2001-02-30}\n", ("logging.file", "unreadable value")),
    (BASE + "depth: {trusted_keys: ['ed25519:no!pe']}\n", ("depth.trusted_keys", "not base64")),
    (BASE + "hooks:\n" + "".join(
        f"  - {{type: gpio, name: g{i}}}\n" for i in range(65)), ("hooks", "at most 64")),
])
def test_hostile_config_refused_with_file_line(text, needles):
    _refused(text, *needles)


def test_100001_hooks_via_an_alias_are_refused_fast():
    text = BASE + "h: &h {type: gpio}\nl: &l [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\nhooks: [" + ", ".join(
        ["*l"] * 10_001) + "]\n"
    t0 = time.monotonic()
    _refused(text, "anchors and aliases")
    assert time.monotonic() - t0 < 5


def test_50_mb_config_is_refused_by_size(tmp_path):
    big = tmp_path / "big.yaml"
    big.write_text(BASE + "# " + "x" * (50 << 20) + "\n")
    t0 = time.monotonic()
    err = _cli_err(["run", "--config", str(big), "--validate-config"], code=2)
    assert "more than a config can be" in err and time.monotonic() - t0 < 5


# --- the CLI: exit code and one line, never a traceback --------------------------------------------------

def _cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli([str(a) for a in argv])
        except SystemExit as e:  # argparse
            code = e.code
    return code, out.getvalue(), err.getvalue()


def _cli_err(argv, code: int) -> str:
    got, _, err = _cli(argv)
    assert got == code, (got, err)
    assert "Traceback" not in err and err.strip().count("\n") == 0, err
    return err


def _config(tmp_path: Path, extra: str = "", bundle: Path | None = None) -> Path:
    path = tmp_path / "door.yaml"
    path.write_text(f"camera: {{type: replay, source: {synthetic_frames()}}}\n"
                    f"depth: {{bundle: '{bundle or tiny_bundle()}', trusted_keys: ['{DEV_PUB}']}}\n"
                    f"http: {{enabled: false}}\n{extra}")
    return path


def test_run_with_logging_file_in_a_missing_directory(tmp_path):
    cfg = _config(tmp_path, "logging: {file: /nonexistent/dir/d.log}\n")
    err = _cli_err(["run", "--config", cfg], code=2)
    assert "logging.file /nonexistent/dir/d.log: cannot open" in err


def test_run_with_an_outbox_that_cannot_be_created(tmp_path):
    (tmp_path / "afile").write_text("x")
    cfg = _config(tmp_path, f"outbox: {{dir: {tmp_path / 'afile' / 'outbox'}}}\n")
    err = _cli_err(["run", "--config", cfg], code=2)
    assert "outbox.dir" in err and "cannot create it" in err and "model" not in err


@pytest.mark.parametrize("field,value", [("depth_bins_mm", "1,2,3"), ("relief_range_mm", "-40..40")])
def test_manifest_field_of_the_wrong_type_everywhere(tmp_path, field, value):
    bundle = copy_bundle(tmp_path / "b")
    m = json.loads((bundle / "manifest.json").read_text())
    m[field] = value
    (bundle / "manifest.json").write_text(json.dumps(m))
    sign_bundle(bundle, DEV_KEY)  # signed by the trusted key: the type check itself must refuse it
    cfg = _config(tmp_path, bundle=bundle)
    image = synthetic_frames() / "000_bona_fide.png"
    for argv in (["run", "--config", cfg, "--validate-config"], ["run", "--config", cfg],
                 ["predict", image, "--config", cfg, "--out", tmp_path / "o"]):
        assert field in _cli_err(argv, code=3)
    from firmware_app.bundle import main as verify

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert verify([str(bundle), "--trusted-key", DEV_PUB]) == 1
    assert field in err.getvalue()


@pytest.mark.parametrize("model", ["detector", "garbage"])
def test_predict_on_a_bundle_whose_model_is_not_a_depth_tflite(tmp_path, model):
    bundle = copy_bundle(tmp_path / "b")
    depth = bundle / "depth.tflite"
    depth.write_bytes((bundle / "face_detection_short_range.tflite").read_bytes() if model == "detector"
                      else np.random.default_rng(0).bytes(5000))
    m = json.loads((bundle / "manifest.json").read_text())  # re-listed and re-signed: only the model is wrong
    from firmware_app.integrity import sha256_file

    m["files"]["depth.tflite"] = {"sha256": sha256_file(depth), "bytes": depth.stat().st_size}
    (bundle / "manifest.json").write_text(json.dumps(m))
    sign_bundle(bundle, DEV_KEY)
    err = _cli_err(["predict", synthetic_frames() / "000_bona_fide.png", "--bundle", bundle,
                    "--trusted-key", DEV_PUB, "--out", tmp_path / "o"], code=3)
    assert err.startswith("error: model:") and "depth.tflite" in err


def _png_header(w: int, h: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    chunk = lambda kind, data: (struct.pack(">I", len(data)) + kind + data  # noqa: E731
                                + struct.pack(">I", zlib.crc32(kind + data)))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(
        b"IEND", b"")


def test_predict_refuses_bad_images_with_one_line(tmp_path):
    frame = cv2.imread(str(synthetic_frames() / "000_bona_fide.png"))
    jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
    (tmp_path / "cut.jpg").write_bytes(jpeg[: int(len(jpeg) * 0.7)])
    (tmp_path / "huge.png").write_bytes(_png_header(100_000, 100_000))
    (tmp_path / "text.png").write_text("not an image")
    cases = {"cut.jpg": "truncated JPEG", "huge.png": "100000×100000", "missing.png": "no such file",
             "text.png": "not a readable image", ".": "is a directory"}
    for name, needle in cases.items():
        err = _cli_err(["predict", tmp_path / name, "--bundle", tiny_bundle(), "--trusted-key", DEV_PUB,
                        "--out", tmp_path / "o"], code=2)
        assert needle in err


def test_predict_refuses_an_unsigned_bundle_and_names_the_fix(tmp_path):
    bundle = copy_bundle(tmp_path / "b")
    (bundle / "manifest.json.sig").unlink()
    err = _cli_err(["predict", synthetic_frames() / "000_bona_fide.png", "--bundle", bundle,
                    "--trusted-key", DEV_PUB, "--out", tmp_path / "o"], code=3)
    assert "unsigned" in err and "make sign-bundle" in err


# --- fuzzers: YAML features, image bytes, CLI arguments ----------------------------------------------------

_FRAGMENTS = [
    "camera:", "  type: replay", "  source: x", "depth:", "  num_threads: 2", "hooks:", "  - type: gpio",
    "  - &a {type: gpio}", "  - *a", "  <<: *a", "<<: {x: 1}", "depth: {bundle: !foo 1}",
    "depth: {bundle: !!binary aGk=}", "camera: {fps: !!python/name:os.system}",
    "depth: {num_threads: !!int abc}",
    "x: [[[[[[", "x: {{{", "http: {port: 99999}", "liveness: {face_prob: .inf}", "camera: {fps: .nan}",
    "? [a, b]\n: c", "logging: {file: 2001-02-30}", "camera: {source: " + "[" * 3000, "---", "...",
    "%YAML 1.1", "x: |\n  y", "\t", "x: '\\ud800'", "x: \"\\ud800\"", "&x", "*x", "!", "x: 0x" + "f" * 40,
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=8))
def test_fuzzed_yaml_features_never_traceback(lines):
    try:
        parse_config("\n".join(lines) + "\n", "fuzz.yaml", env={})
    except ConfigError as e:
        assert str(e).startswith("fuzz.yaml")


@pytest.fixture(scope="module")
def image_seeds():
    frame = cv2.resize(cv2.imread(str(synthetic_frames() / "000_bona_fide.png")), (64, 48))
    return [cv2.imencode(ext, frame)[1].tobytes() for ext in (".png", ".jpg", ".bmp")]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 2), cut=st.floats(0, 1), flips=st.lists(st.tuples(st.integers(0, 10**6),
       st.integers(0, 255)), max_size=6), w=st.integers(0, 2**32 - 1), h=st.integers(0, 2**32 - 1),
       header=st.booleans())
def test_fuzzed_images_are_read_or_refused(tmp_path, image_seeds, which, cut, flips, w, h, header):
    data = bytearray(image_seeds[which])
    if header and which == 0:
        data[16:24] = struct.pack(">II", w, h)
    for pos, value in flips:
        data[pos % len(data)] = value
    truncated = cut < 0.98
    data = bytes(data[: max(1, int(len(data) * cut))]) if truncated else bytes(data)
    path = tmp_path / "fz.img"
    path.write_bytes(data)
    try:
        rgb = read_rgb(path)
    except ImageFileError as e:
        assert str(e).startswith(str(path))
        return
    assert not truncated, "a truncated image was decoded (made-up pixels must not be judged)"
    assert rgb.ndim == 3 and rgb.shape[2] == 3 and rgb.dtype == np.uint8


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["run", "predict", "profile", "config", "--config", "--bundle", "--frames",
                                 "--seconds", "--fov-deg", "--trusted-key", "--validate-config", "-1", "0",
                                 "nan", "1e99", "/nonexistent", "/dev/null", "/", "door.yaml", "ed25519:x"]),
                max_size=6))
def test_fuzzed_cli_arguments_answer_with_an_exit_code(tmp_path, argv):
    (tmp_path / "door.yaml").write_text("camera: {type: replay, source: /x}\nhttp: {enabled: false}\n")
    argv = [str(tmp_path / a) if a == "door.yaml" else a for a in argv]
    if argv[:1] in (["run"], ["profile"]) and "--validate-config" not in argv:
        argv.append("--validate-config") if argv[:1] == ["run"] else None
    code, _, err = _cli([*argv, "--out", str(tmp_path / "o")] if argv[:1] == ["predict"] else argv)
    assert isinstance(code, int) and "Traceback" not in err
