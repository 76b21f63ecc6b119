"""Device config: every error names the file, line and key; secrets from the environment; no tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_app.config import Config, ConfigError, HttpHookConfig, describe, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]
GOOD = """\
camera:
  type: replay
  source: clips/door.mp4
  fps: 15
depth:
  bundle: /opt/facedepth/bundle
hooks:
  - type: http
    url: https://acs.local/events
    secret: ${HMAC_SECRET}
  - type: command
    argv: [/usr/local/bin/open-door, --quiet]
"""


def test_good_config_and_secret_from_env():
    cfg = parse_config(GOOD, "door.yaml", env={"HMAC_SECRET": "s3cret"})
    assert cfg.camera.fps == 15.0 and isinstance(cfg.camera.fps, float)
    assert cfg.detector == Config().detector  # untouched sections keep their defaults
    http, cmd = cfg.hooks
    assert isinstance(http, HttpHookConfig) and http.secret == "s3cret" and http.name == "http0"
    assert cmd.argv == ("/usr/local/bin/open-door", "--quiet") and cmd.name == "command1"


@pytest.mark.parametrize(
    "text, message",
    [
        ("camera:\n  type: replay\n  source: x\n  fsp: 10\n", "door.yaml:4: unknown key 'camera.fsp'"),
        ("camera: {type: replay, source: x}\ncamra: {}\n", "door.yaml:2: unknown key 'camra'"),
        ("camera: {type: usb}\n", "door.yaml:1: camera.type: 'usb' is not one of replay, opencv, picamera2"),
        (
            "camera: {source: x}\ndetector:\n  num_threads: two\n",
            "door.yaml:3: detector.num_threads: expected an int",
        ),
        (
            "camera: {source: x}\nliveness: {frame_llr_max: 4}\n",
            "liveness.frame_llr_max: 4.0 + the motion cap 1.0 reaches the live bound 4.61",
        ),
        (
            "camera: {source: x}\nhooks:\n  - type: http\n    url: x\n    retries: 3\n",
            "door.yaml:5: unknown key 'hooks[0].retries'",
        ),
        ("camera: {source: x}\nhooks:\n  - type: sms\n", "door.yaml:3: hooks[0].type: 'sms' is not one of"),
        ("camera: {source: x}\nhooks:\n  - type: [http]\n",
         "door.yaml:3: hooks[0].type: 'a sequence' is not"),
        (
            "camera: {source: x}\nhooks:\n  - {type: http, url: 'https://a', secret: '${NOPE}'}\n",
            "door.yaml:3: hooks[0].secret: environment variable NOPE is not set",
        ),
        ("camera: {source: x}\nhttp: {host: 0.0.0.0}\n", "http.token: required when http.host is 0.0.0.0"),
        ("camera: [1, 2\n", "door.yaml:2: not valid YAML"),
        ("camera: {type: replay}\n", "camera.source: a replay camera needs"),
        ("camera: {source: x}\ncamera: {source: y}\n", "door.yaml:2: camera: given twice"),
    ],
)
def test_errors_name_line_and_key(text, message):
    with pytest.raises(ConfigError) as err:
        parse_config(text, "door.yaml", env={})
    assert message in str(err.value)


def test_env_default_and_missing_file(tmp_path):
    cfg = parse_config("camera: {source: '${CLIP:-/data/door.mp4}'}\n", env={})
    assert cfg.camera.source == "/data/door.mp4"
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_describe_lists_every_field_with_its_description():
    text = describe()
    assert "backoff_max_s: 10.0  # longest reconnect delay" in text
    assert "# - type: mqtt" in text
    # the defaults it prints are a loadable config (hooks commented out), with a replay source added
    data = yaml.safe_load(text)
    data["camera"]["source"] = "x"
    parse_config(yaml.safe_dump(data), env={})


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers(-5, 5)
        | st.floats(allow_nan=True)
        | st.text(max_size=8)
        | st.sampled_from(["replay", "http", "command", "${X}", "${X:-1}", "camera", "hooks", "type"]),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "camera",
                        "hooks",
                        "type",
                        "source",
                        "url",
                        "argv",
                        "fps",
                        "liveness",
                        "min_frames",
                        "http",
                        "host",
                        "x",
                    ]
                ),
                children,
                max_size=4,
            )
        ),
        max_leaves=12,
    )
)
def test_fuzzed_configs_never_traceback(data):
    try:
        parse_config(yaml.safe_dump(data), "fuzz.yaml", env={})
    except ConfigError as e:
        assert str(e).startswith("fuzz.yaml")


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60))
def test_fuzzed_text_never_traceback(text):
    try:
        parse_config(text, "fuzz.yaml", env={})
    except ConfigError as e:
        assert str(e).startswith("fuzz.yaml")


def test_validate_config_exit_codes(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text("camera: {type: replay, source: clip.mp4}\n")
    bad.write_text("camera:\n  type: replay\n  source: clip.mp4\n  fsp: 3\n")
    run = [sys.executable, "-m", "firmware_app", "run", "--validate-config", "--config"]
    ok = subprocess.run([*run, str(good)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    fail = subprocess.run([*run, str(bad)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert fail.returncode == 2
    assert f"{bad}:4: unknown key 'camera.fsp'" in fail.stderr and "Traceback" not in fail.stderr
