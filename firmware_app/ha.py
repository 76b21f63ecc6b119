"""Home Assistant MQTT discovery: each door appears as a device by itself (the convention Frigate follows).

With `discovery: true` on an mqtt hook, the hook publishes, retained, on connect (and again when Home
Assistant announces itself on `<prefix>/status`):

    <prefix>/binary_sensor/<node>/live_face/config      a live face is at the door now (track decided live)
    <prefix>/binary_sensor/<node>/last_decision/config  the last decision granted (live)
    <prefix>/sensor/<node>/last_score/config            its relief score, mm
    <prefix>/sensor/<node>/last_evidence/config         its accumulated evidence (LLR)
    <prefix>/sensor/<node>/track_state/config           collecting / live / spoof / undecided / none
    <prefix>/sensor/<node>/fps/config                   camera loop frame rate

Every entity reads one retained JSON `state_topic`, published by `StatePublisher` on every change and at
least every `state_interval_s`, and shares the hook's availability topic (retained "online", "offline"
as the last will), so Home Assistant shows the door unavailable when the daemon dies.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time

from firmware_app.console import track_view

log = logging.getLogger(__name__)

STATES = ("collecting", "live", "spoof", "undecided", "none")


def node_id(cfg) -> str:
    return cfg.node_id or "facedepth_" + re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())


def discovery_messages(cfg, sw_version: str = "") -> list[tuple[str, dict]]:
    """(retained config topic, payload) for each entity of this door."""
    node = node_id(cfg)
    device = {"identifiers": [node], "name": cfg.device_name or node.replace("_", " "),
              "manufacturer": "facedepth", "model": "facedepth door daemon"}
    if sw_version:
        device["sw_version"] = sw_version
    common = {"state_topic": cfg.state_topic, "availability_topic": cfg.availability_topic,
              "payload_available": "online", "payload_not_available": "offline",
              "device": device, "origin": {"name": "facedepth"}}
    entities = [
        ("binary_sensor", "live_face", {"name": "Live face", "device_class": "occupancy",
                                        "value_template": "{{ value_json.live_face }}"}),
        ("binary_sensor", "last_decision", {
            "name": "Last decision live", "value_template":
                "{{ 'ON' if value_json.last_decision == 'live' else 'OFF' }}",
            "json_attributes_topic": cfg.state_topic, "json_attributes_template":
                "{{ {'decision': value_json.last_decision, 'time': value_json.last_decision_time, "
                "'track': value_json.last_track_id, 'event': value_json.last_decision_id} | tojson }}"}),
        ("sensor", "last_score", {"name": "Last score", "unit_of_measurement": "mm",
                                  "state_class": "measurement", "value_template": "{{ value_json.score }}"}),
        ("sensor", "last_evidence", {"name": "Last evidence", "state_class": "measurement",
                                     "value_template": "{{ value_json.evidence }}"}),
        ("sensor", "track_state", {"name": "Track state", "device_class": "enum", "options": list(STATES),
                                   "value_template": "{{ value_json.track_state }}"}),
        ("sensor", "fps", {"name": "Frame rate", "unit_of_measurement": "fps", "state_class": "measurement",
                           "entity_category": "diagnostic", "value_template": "{{ value_json.fps }}"}),
    ]
    return [
        (f"{cfg.discovery_prefix}/{component}/{node}/{obj}/config",
         {**entity, **common, "unique_id": f"{node}_{obj}", "object_id": f"{node}_{obj}"})
        for component, obj, entity in entities
    ]


def state_payload(daemon, max_frame_age_s: float = 2.0) -> dict:
    """The door's state now, from the running Daemon."""
    result = getattr(daemon, "last_result", None)
    fresh = time.monotonic() - (getattr(daemon, "last_frame_t", 0.0) or 0.0) < max_frame_age_s
    tv = track_view(daemon, result) if result is not None and fresh else None
    last = getattr(daemon, "last_decision", None) or {}
    evidence = last.get("evidence")
    llr = evidence.get("llr") if isinstance(evidence, dict) else None
    try:
        fps = round(float(daemon.profiler.fps_meter.fps()), 1)
    except AttributeError:
        fps = None
    return {
        "live_face": "ON" if tv is not None and tv.state == "live" else "OFF",
        "track_state": tv.state if tv is not None else "none",
        "track_id": tv.track_id if tv is not None else None,
        "last_decision": last.get("decision", "none"),
        "last_decision_id": last.get("id"),
        "last_decision_time": last.get("time"),
        "last_track_id": last.get("track_id"),
        "score": last.get("score_mm"),
        "evidence": llr,
        "fps": fps,
    }


def _key(state: dict) -> tuple:
    """What makes a state worth publishing at once (fps alone waits for the interval)."""
    return tuple(v for k, v in sorted(state.items()) if k != "fps")


class StatePublisher(threading.Thread):
    """Publishes `state_payload` through the hook on every change and at least every `interval_s`."""

    def __init__(self, hook, daemon, interval_s: float, poll_s: float = 0.2):
        super().__init__(name=f"ha-{hook.name}", daemon=True)
        self.hook, self.daemon, self.interval_s, self.poll_s = hook, daemon, interval_s, poll_s
        self.stop_event = threading.Event()
        self.published = 0

    def run(self) -> None:
        last_key, last_t, failing = None, 0.0, False
        while not self.stop_event.wait(self.poll_s):
            try:
                state = state_payload(self.daemon)
            except Exception as e:  # a moved field must not end the publisher
                log.debug("ha state: %s", e)
                continue
            now = time.monotonic()
            if _key(state) == last_key and now - last_t < self.interval_s:
                continue
            try:
                self.hook.publish_state(state)
            except Exception as e:
                if not failing:
                    log.warning("mqtt %s: state not published (%s); retrying", self.hook.name, e)
                failing = True
                self.stop_event.wait(min(self.interval_s, 5.0))
                continue
            failing, last_key, last_t = False, _key(state), now
            self.published += 1

    def stop(self) -> None:
        """Stop, leaving a retained state without a face in view (the daemon no longer watches the door)."""
        self.stop_event.set()
        if self.is_alive():
            self.join(2.0)
        try:
            gone = {"live_face": "OFF", "track_state": "none", "track_id": None}
            self.hook.publish_state({**state_payload(self.daemon), **gone})
        except Exception as e:
            log.debug("ha final state: %s", e)
