"""The whole daemon as a subprocess on a replay of synthetic frames, with real hooks and real signals."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.test_fw_events import Receiver
from tests.test_fw_fixtures import DEV_PUB, copy_bundle, free_port, synthetic_frames, tiny_bundle

REPO = Path(__file__).resolve().parents[1]
SECRET = "door-secret"


def _config(tmp_path, receiver=None, camera=None, **sections) -> Path:
    cfg = {
        "camera": camera
        or {"type": "replay", "source": str(synthetic_frames()), "loop": False, "hold_frames": 3},
        "depth": {"bundle": str(tiny_bundle()), "trusted_keys": [DEV_PUB]},
        # held frames: still pictures in short tracks, so no motion gate and no minimum track age
        "liveness": {"min_frames": 2, "frame_llr_max": 3.0, "min_moved_px": 0, "min_track_s": 0},
        "outbox": {
            "dir": str(tmp_path / "outbox"),
            "drain_timeout_s": 10,
            "retry_s": 0.05,
            "retry_max_s": 0.2,
        },
        "http": {"enabled": False},
        "hooks": [],
    }
    if receiver:
        cfg["hooks"].append(
            {"type": "http", "name": "acs", "url": receiver.url, "secret": "${HOOK_SECRET}", "timeout_s": 2}
        )
    for name, values in sections.items():
        cfg[name] = {**cfg.get(name, {}), **values} if isinstance(values, dict) else values
    path = tmp_path / "device.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _start(config: Path, *extra) -> subprocess.Popen:
    env = {**os.environ, "HOOK_SECRET": SECRET, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "firmware_app", "run", "--config", str(config), *extra],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _outbox_ids(tmp_path) -> list[str]:
    ids = []
    for seg in sorted((tmp_path / "outbox").glob("events-*.jsonl")):
        ids += [json.loads(line)["id"] for line in seg.read_text().splitlines()]
    return ids


def test_replay_end_to_end_with_http_and_command_hooks(tmp_path):
    rx = Receiver(secret=SECRET)
    log = tmp_path / "command.log"
    hook = {
        "type": "command",
        "name": "door",
        "argv": [
            sys.executable,
            "-c",
            f"import sys, json; open({str(log)!r}, 'a').write(json.load(sys.stdin)['id'] + '\\n')",
        ],
    }
    config = _config(tmp_path, rx, liveness={"save_depth_dir": str(tmp_path / "png")})
    cfg = yaml.safe_load(config.read_text())
    cfg["hooks"].append(hook)
    config.write_text(yaml.safe_dump(cfg))
    proc = _start(config)
    out, err = proc.communicate(timeout=120)
    rx.close()
    assert proc.returncode == 0, err
    ids = _outbox_ids(tmp_path)
    assert len(ids) >= 3 and len(set(ids)) == len(ids)  # one event per decided track, unique ids
    assert rx.ids() == ids and all(ok for _, ok in rx.received)  # in order, HMAC verified
    assert log.read_text().split() == ids
    event = json.loads((tmp_path / "outbox" / "events-00000001.jsonl").read_text().splitlines()[0])
    for key in (
        "decision",
        "score_mm",
        "threshold_mm",
        "box",
        "track_id",
        "frame_id",
        "timing_ms",
        "model_sha256",
        "depth_png",
    ):
        assert key in event
    assert Path(event["depth_png"]).is_file()
    assert "decision live: track" in err and "replay ended after 18 frames" in err


def test_status_endpoints_and_sigterm_stop_within_2s(tmp_path):
    port = free_port()
    camera = {"type": "replay", "source": str(synthetic_frames()), "loop": True, "fps": 30}
    proc = _start(_config(tmp_path, camera=camera, http={"enabled": True, "port": port}))
    try:
        deadline, health = time.monotonic() + 60, None
        while time.monotonic() < deadline and health != 200:
            time.sleep(0.2)
            try:
                health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2).status
            except OSError:
                pass
        assert health == 200
        status = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/status", timeout=2))
        assert status["frames"] > 0 and status["camera"]["errors"] == 0 and "detect" in status["stages"]
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        assert "facedepth_frames_total" in metrics
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=5)
        assert time.monotonic() - start < 2.0 and proc.returncode == 0
    finally:
        proc.kill()
        proc.communicate()


def test_kill_9_loses_no_event(tmp_path):
    """kill -9 at a random moment with deliveries outstanding; the restart delivers every event."""
    rx = Receiver(secret=SECRET, delay_s=0.15)  # a slow receiver keeps a backlog in the outbox
    camera = {"type": "replay", "source": str(synthetic_frames()), "loop": True, "fps": 40, "hold_frames": 2}
    proc = _start(_config(tmp_path, rx, camera=camera))
    deadline = time.monotonic() + 60
    while not rx.received and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(random.uniform(0.5, 1.5))
    proc.kill()
    proc.communicate()
    written = _outbox_ids(tmp_path)
    assert len(written) > len(set(rx.ids())), "no backlog at the kill; the test proves nothing"
    rx.delay_s = 0.0
    # restart on a short, non-looping replay: it ends, then drains the outbox (old and new) before exiting
    cv_camera = {"type": "replay", "source": str(synthetic_frames()), "loop": False, "hold_frames": 1}
    proc = _start(_config(tmp_path, rx, camera=cv_camera))
    _, err = proc.communicate(timeout=120)
    rx.close()
    assert proc.returncode == 0, err
    written = _outbox_ids(tmp_path)
    received = rx.ids()
    assert set(received) == set(written)  # nothing lost, nothing invented
    assert len(received) - len(set(received)) <= 1  # at most the one in flight at the kill, again


def test_dead_camera_logs_and_keeps_reconnecting(tmp_path):
    camera = {
        "type": "opencv",
        "device": "/dev/video97",
        "backoff_s": 0.05,
        "backoff_max_s": 0.1,
        "read_timeout_s": 0.2,
    }
    proc = _start(_config(tmp_path, camera=camera))
    time.sleep(4)
    assert proc.poll() is None  # still running
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=5)
    assert proc.returncode == 0
    assert "opencv /dev/video97: cannot open the camera" in err
    assert "reconnect attempt 3" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda b: b.joinpath("depth.tflite").write_bytes(
                b.joinpath("depth.tflite").read_bytes()[:-1] + b"x"
            ),
            "sha256 mismatch",
        ),
        (lambda b: b.joinpath("depth.tflite").unlink(), "depth.tflite: missing"),
    ],
)
def test_bad_bundle_is_refused_with_a_clear_error(tmp_path, damage, message):
    bundle = copy_bundle(tmp_path / "bundle")
    damage(bundle)
    config = _config(tmp_path, depth={"bundle": str(bundle), "trusted_keys": [DEV_PUB]})
    proc = _start(config)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 3 and message in err and "Traceback" not in err


def test_profile_writes_per_stage_latency(tmp_path):
    camera = {"type": "replay", "source": str(synthetic_frames()), "loop": True}
    out = tmp_path / "profile.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "firmware_app",
            "profile",
            "--config",
            str(_config(tmp_path, camera=camera)),
            "--frames",
            "24",
            "--out",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert report["frames"] == 24 and report["fps"] > 0 and report["rss_mb_end"] > 0
    for stage in ("capture", "detect", "crop", "depth", "liveness"):
        assert report["stages"][stage]["n"] > 0 and report["stages"][stage]["p95_ms"] > 0
    assert "frames/s" in proc.stdout
