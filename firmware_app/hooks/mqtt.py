"""MQTT hook (paho-mqtt 2.x): each event is published with QoS 1 and counts as delivered on PUBACK.

The availability topic holds a retained "online" while connected and "offline" as the last will (so it
turns "offline" when the daemon dies) and on a clean stop. With `discovery: true` it also announces the
door to Home Assistant (retained discovery configs, firmware_app/ha.py) and keeps a retained state
topic current from a thread of its own; the client is shared under a lock. paho-mqtt is imported only
by this hook.
"""

from __future__ import annotations

import json
import logging
import socket
import threading

from firmware_app.config import MqttHookConfig
from firmware_app.hooks import Hook, HookError

log = logging.getLogger(__name__)


class MqttHook(Hook):
    def __init__(self, cfg: MqttHookConfig):
        self.cfg, self.name, self.only = cfg, cfg.name, cfg.only
        self._client = None
        self._lock = threading.RLock()  # the hook worker and the state publisher share the client
        self._publisher = None
        self.sw_version = ""

    def _connect(self):
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise HookError("paho-mqtt is not installed: pip install paho-mqtt") from None
        cfg = self.cfg
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=cfg.client_id or f"facedepth-{socket.gethostname()}"
        )
        if cfg.username:
            client.username_pw_set(cfg.username, cfg.password or None)
        client.will_set(cfg.availability_topic, "offline", qos=1, retain=True)
        client.connect_timeout = cfg.timeout_s
        if cfg.discovery:
            client.on_connect = self._on_connect
            client.on_message = self._on_ha_status
        try:
            client.connect(cfg.host, cfg.port, keepalive=30)
        except (OSError, ValueError) as e:
            raise HookError(f"mqtt {cfg.host}:{cfg.port}: cannot connect ({e})") from None
        client.loop_start()
        client.publish(cfg.availability_topic, "online", qos=1, retain=True)
        self._client = client
        log.info("mqtt %s:%d connected; events on %s", cfg.host, cfg.port, cfg.topic)

    # Home Assistant ------------------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason, properties=None):
        """On every (re)connect: announce the entities, and listen for Home Assistant's birth message."""
        from firmware_app.ha import discovery_messages

        for topic, payload in discovery_messages(self.cfg, self.sw_version):
            client.publish(topic, json.dumps(payload, separators=(",", ":")), qos=1, retain=True)
        client.subscribe(f"{self.cfg.discovery_prefix}/status", qos=1)

    def _on_ha_status(self, client, userdata, message):
        if message.payload == b"online":  # Home Assistant restarted: announce again (Frigate does too)
            self._on_connect(client, userdata, None, None)

    def attach(self, daemon) -> None:
        if not self.cfg.discovery:
            return
        from firmware_app.ha import StatePublisher

        self.sw_version = getattr(getattr(daemon, "bundle", None), "version", "") or ""
        self._publisher = StatePublisher(self, daemon, self.cfg.state_interval_s)
        self._publisher.start()

    def publish_state(self, state: dict) -> None:
        with self._lock:
            if self._client is None:
                self._connect()
            info = self._client.publish(self.cfg.state_topic, json.dumps(state, separators=(",", ":")),
                                        qos=1, retain=True)
            self._wait(info)

    # events --------------------------------------------------------------------------------------
    def deliver(self, event: dict) -> None:
        with self._lock:
            if self._client is None:
                self._connect()
            self._wait(self._client.publish(self.cfg.topic, json.dumps(event, separators=(",", ":")), qos=1))

    def _wait(self, info) -> None:
        try:
            info.wait_for_publish(self.cfg.timeout_s)
        except (RuntimeError, ValueError) as e:  # not queued (disconnected) or timed out
            self._drop()
            raise HookError(f"mqtt {self.cfg.host}:{self.cfg.port}: publish failed ({e})") from None
        if not info.is_published():
            self._drop()
            raise HookError(f"mqtt {self.cfg.host}:{self.cfg.port}: no PUBACK within {self.cfg.timeout_s} s")

    def _drop(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.loop_stop()
                self._client.disconnect()
                self._client = None

    def close(self) -> None:
        if self._publisher is not None:
            self._publisher.stop()
        with self._lock:
            if self._client is not None:
                info = self._client.publish(self.cfg.availability_topic, "offline", qos=1, retain=True)
                try:
                    info.wait_for_publish(1.0)
                except (RuntimeError, ValueError):
                    pass
                self._drop()
