"""`make arm-check`'s cheap part (CI): the device requirements resolve to aarch64 cp311 wheels; and its
comparison of x86 and aarch64 decisions. The emulated run itself takes minutes: `make arm-check`."""

from __future__ import annotations

import json

import yaml

from tools import arm_check


def test_device_requirements_resolve_to_aarch64_wheels(tmp_path):
    wheels = arm_check.resolve_wheels(tmp_path / "resolve.json")  # metadata only (needs PyPI)
    for name in ("numpy", "opencv-python-headless", "pyyaml", "cryptography", "ai-edge-litert"):
        version, url = wheels[name]
        assert "aarch64" in url and ("cp311" in url or "abi3" in url), url
    assert wheels["ai-edge-litert"][0] == "2.3.0"
    assert int(wheels["numpy"][0].split(".")[0]) >= 2  # fine for ai-edge-litert (not for tflite-runtime)


def test_the_fallback_resolves_to_tflite_runtime_with_numpy_1(tmp_path):
    """install.sh's fallback where ai-edge-litert has no wheel: what make arm-check runs the daemon on."""
    wheels = arm_check.resolve_wheels(tmp_path / "resolve.json", "fallback")
    for name in ("tflite-runtime", "numpy", "opencv-python-headless", "pyyaml", "cryptography"):
        version, url = wheels[name]
        assert "aarch64" in url and ("cp311" in url or "abi3" in url), url
    assert "ai-edge-litert" not in wheels and wheels["tflite-runtime"][0] == "2.14.0"
    assert wheels["numpy"][0].startswith("1.")  # tflite-runtime 2.14 is built against numpy 1.x
    install = (arm_check.REPO / "deploy/install.sh").read_text()
    assert "requirements/device-fallback.txt" in install  # the file this resolves is what a device installs


def _ev(track, frame, decision, score, llr=None, raw_range=None):
    ev = {"type": "decision", "track_id": track, "frame_id": frame, "decision": decision, "score_mm": score}
    if llr is not None:
        ev["evidence"] = {"llr": llr}
    return ev if raw_range is None else {**ev, "relief_range_mm": raw_range}


def test_compare_needs_the_same_verdicts_near_the_same_frame():
    x86 = [_ev(1, 9, "live", 40.0), _ev(2, 30, "spoof", 3.0)]
    assert arm_check.compare(x86, [_ev(1, 9, "live", 40.4), _ev(2, 30, "spoof", 2.7)], 0.5) == []
    assert arm_check.compare(x86, [_ev(1, 8, "live", 44.0), _ev(2, 31, "spoof", 1.0)], 0.5) == []  # ±1 frame
    assert arm_check.compare(x86, [_ev(1, 9, "live", 43.9), _ev(2, 30, "spoof", 3.0)], 0.5) == []  # < 10 %
    assert "score_mm" in arm_check.compare(x86, [_ev(1, 9, "live", 44.5), _ev(2, 30, "spoof", 3.0)], 0.5)[0]
    assert "score_mm" in arm_check.compare(x86, [_ev(1, 9, "live", 40.0), _ev(2, 30, "spoof", 3.6)], 0.5)[0]
    late = [_ev(1, 12, "live", 40.0), _ev(2, 30, "spoof", 3.0)]
    assert "more than 1 apart" in arm_check.compare(x86, late, 0.5)[0]
    flipped = [_ev(1, 9, "spoof", 40.0), _ev(2, 30, "spoof", 3.0)]
    assert "decisions differ" in arm_check.compare(x86, flipped, 0.5)[0]
    assert "decisions differ" in arm_check.compare(x86, x86[:1], 0.5)[0]


def test_compare_reads_the_evidence_not_the_raw_range():
    x86 = [_ev(3, 46, "spoof", 9.05, llr=-6.0, raw_range=11.4)]
    assert arm_check.compare(x86, [_ev(3, 46, "spoof", 9.69, llr=-6.0, raw_range=13.7)], 0.39) == []
    problems = arm_check.compare(x86, [_ev(3, 46, "spoof", 9.05, llr=-5.2)], 0.39)
    assert problems and "evidence -6.0 vs -5.2" in problems[0]
    assert "evidence -6.0 vs None" in arm_check.compare(x86, [_ev(3, 46, "spoof", 9.05)], 0.39)[0]


def test_daemon_config_is_the_quick_start_without_hooks(tmp_path):
    path = arm_check.daemon_config(tmp_path, tmp_path / "clip", tmp_path / "bundle")
    cfg = yaml.safe_load(path.read_text())
    assert cfg["hooks"] == [] and cfg["outbox"]["dir"] == str(tmp_path / "outbox")
    assert cfg["camera"]["source"] == str(tmp_path / "clip") and cfg["camera"]["loop"] is False
    assert cfg["liveness"]["timeout_s"] == arm_check.EMULATION_TIMEOUT_S  # emulation is slow, not undecided
    (tmp_path / "outbox").mkdir()
    lines = [json.dumps(_ev(1, 9, "live", 40.0)), json.dumps({"type": "started"})]
    (tmp_path / "outbox" / "events-00000001.jsonl").write_text("\n".join(lines) + "\n")
    assert arm_check.decisions(tmp_path / "outbox") == [_ev(1, 9, "live", 40.0)]
