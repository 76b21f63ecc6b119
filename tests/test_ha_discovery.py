"""Home Assistant MQTT discovery: config rules, the discovery payloads, and the daemon announcing a door and
its state changes to a real mosquitto."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import yaml

from firmware_app.config import ConfigError, MqttHookConfig, parse_config
from firmware_app.ha import discovery_messages, node_id
from tests.test_fw_fixtures import DEV_PUB, REPO, free_port, synthetic_frames, tiny_bundle

SBIN = "/usr/sbin/mosquitto"
MOSQUITTO = shutil.which("mosquitto") or (SBIN if os.path.exists(SBIN) else None)
needs_broker = pytest.mark.skipif(MOSQUITTO is None, reason="needs mosquitto (apt-get install mosquitto)")


def _hook(**fields) -> str:
    return "camera: {source: x}\nhooks:\n  - " + json.dumps({"type": "mqtt", **fields}) + "\n"


def test_discovery_is_off_by_default_and_validated():
    cfg = parse_config(_hook(), "c.yaml", env={})
    assert cfg.hooks[0].discovery is False
    on = parse_config(_hook(discovery=True, node_id="front-door"), "c.yaml", env={}).hooks[0]
    assert on.discovery and node_id(on) == "front-door"
    for fields, error in [
        ({"state_topic": "doors/+/state"}, "hooks\\[0\\].state_topic: 'doors/\\+/state': an MQTT topic"),
        ({"discovery_prefix": "ha/#"}, "hooks\\[0\\].discovery_prefix"),
        ({"node_id": "front door"}, "hooks\\[0\\].node_id: 'front door': use only"),
        ({"discovery": True, "state_topic": "facedepth/events"}, "must differ"),
        ({"state_interval_s": 0.1}, "state_interval_s"),
    ]:
        with pytest.raises(ConfigError, match=error):
            parse_config(_hook(**fields), "c.yaml", env={})


def test_discovery_payloads_follow_home_assistant_conventions():
    cfg = MqttHookConfig(discovery=True, node_id="door1", device_name="Front door", state_topic="d/state",
                         availability_topic="d/status")
    msgs = dict(discovery_messages(cfg, sw_version="1.2"))
    assert set(msgs) == {
        "homeassistant/binary_sensor/door1/live_face/config",
        "homeassistant/binary_sensor/door1/last_decision/config",
        "homeassistant/sensor/door1/last_score/config",
        "homeassistant/sensor/door1/last_evidence/config",
        "homeassistant/sensor/door1/track_state/config",
        "homeassistant/sensor/door1/fps/config",
    }
    ids = {m["unique_id"] for m in msgs.values()}
    assert len(ids) == 6 and all(i.startswith("door1_") for i in ids)
    for m in msgs.values():  # one device, one state topic, the hook's availability
        assert m["device"] == {"identifiers": ["door1"], "name": "Front door", "manufacturer": "facedepth",
                               "model": "facedepth door daemon", "sw_version": "1.2"}
        assert m["state_topic"] == "d/state" and m["availability_topic"] == "d/status"
        assert m["payload_available"] == "online" and m["payload_not_available"] == "offline"
    assert msgs["homeassistant/sensor/door1/fps/config"]["unit_of_measurement"] == "fps"
    assert msgs["homeassistant/sensor/door1/last_score/config"]["unit_of_measurement"] == "mm"


class _Subscriber:
    def __init__(self, port: int, topics=("#",)):
        import paho.mqtt.client as mqtt

        self.got: list[tuple[str, bytes, bool]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = lambda c, u, m: self.got.append((m.topic, m.payload, bool(m.retain)))
        self.client.on_connect = lambda c, u, f, rc, p: [c.subscribe(t, qos=1) for t in topics]
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def wait(self, test, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [g for g in list(self.got) if test(*g)]
            if found:
                return found
            time.sleep(0.02)
        return []

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


@needs_broker
def test_daemon_announces_the_door_and_its_state_changes_to_a_real_broker(tmp_path):
    port = free_port()
    conf = tmp_path / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    cfg = {
        # 4 frames/s: a track collects evidence for ≥ 0.5 s, longer than the publisher's 0.2 s poll
        "camera": {"type": "replay", "source": str(synthetic_frames()), "loop": False, "hold_frames": 4,
                   "fps": 4},
        "depth": {"bundle": str(tiny_bundle()), "trusted_keys": [DEV_PUB]},
        # held frames: still pictures in short tracks, so no motion gate and no minimum track age
        "liveness": {"min_frames": 2, "frame_llr_max": 3.0, "min_moved_px": 0, "min_track_s": 0},
        "outbox": {"dir": str(tmp_path / "outbox"), "drain_timeout_s": 10},
        "http": {"enabled": False},
        "hooks": [{"type": "mqtt", "name": "ha", "port": port, "topic": "door1/events",
                   "availability_topic": "door1/availability", "state_topic": "door1/state",
                   "discovery": True, "node_id": "door1", "state_interval_s": 1.0, "timeout_s": 3}],
    }
    config = tmp_path / "d.yaml"
    config.write_text(yaml.safe_dump(cfg))
    try:
        time.sleep(0.3)
        live = _Subscriber(port, ("door1/#", "homeassistant/#"))
        proc = subprocess.run([sys.executable, "-m", "firmware_app", "run", "--config", str(config)],
                              cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        states = [json.loads(p) for t, p, _ in live.got if t == "door1/state"]
        live.close()
        # a state change seen while it ran: a decision was made, a live face came into view, then went
        # (the first state may already carry a decision: the replay can decide before MQTT connects)
        assert states[-1]["last_decision"] in ("live", "spoof")
        assert "ON" in [s["live_face"] for s in states] and states[-1]["live_face"] == "OFF"
        assert any(s["track_state"] == "collecting" for s in states)
        # what a Home Assistant starting now would read: the retained discovery, state and availability
        late = _Subscriber(port, ("door1/#", "homeassistant/#"))
        assert late.wait(lambda t, p, r: t == "door1/availability" and p == b"offline" and r)
        assert late.wait(lambda t, p, r: t.endswith("/config") and r, 3)
        time.sleep(0.3)
        configs = {t: json.loads(p) for t, p, r in late.got if t.endswith("/config") and r}
        state = next(json.loads(p) for t, p, r in late.got if t == "door1/state" and r)
        late.close()
        expected = MqttHookConfig(discovery=True, node_id="door1", state_topic="door1/state",
                                  availability_topic="door1/availability")
        assert set(configs) == {t for t, _ in discovery_messages(expected)}
        assert configs["homeassistant/binary_sensor/door1/live_face/config"]["state_topic"] == "door1/state"
        events = [json.loads(line) for f in sorted((tmp_path / "outbox").glob("events-*.jsonl"))
                  for line in f.read_text().splitlines()]
        last = events[-1]
        assert (state["last_decision_id"], state["last_decision"]) == (last["id"], last["decision"])
        assert state["fps"] is not None and state["live_face"] == "OFF"
    finally:
        broker.terminate()
        broker.wait(5)
