"""MQTT hook (paho-mqtt 2.x): each event is published with QoS 1 and counts as delivered on PUBACK.

The availability topic holds a retained "online" while connected and "offline" as the last will (so it
turns "offline" when the daemon dies) and on a clean stop. paho-mqtt is imported only by this hook.
"""

from __future__ import annotations

import json
import logging
import socket

from firmware_app.config import MqttHookConfig
from firmware_app.hooks import Hook, HookError

log = logging.getLogger(__name__)


class MqttHook(Hook):
    def __init__(self, cfg: MqttHookConfig):
        self.cfg, self.name, self.only = cfg, cfg.name, cfg.only
        self._client = None

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
        try:
            client.connect(cfg.host, cfg.port, keepalive=30)
        except (OSError, ValueError) as e:
            raise HookError(f"mqtt {cfg.host}:{cfg.port}: cannot connect ({e})") from None
        client.loop_start()
        client.publish(cfg.availability_topic, "online", qos=1, retain=True)
        self._client = client
        log.info("mqtt %s:%d connected; events on %s", cfg.host, cfg.port, cfg.topic)

    def deliver(self, event: dict) -> None:
        if self._client is None:
            self._connect()
        info = self._client.publish(self.cfg.topic, json.dumps(event, separators=(",", ":")), qos=1)
        try:
            info.wait_for_publish(self.cfg.timeout_s)
        except (RuntimeError, ValueError) as e:  # not queued (disconnected) or timed out
            self._drop()
            raise HookError(f"mqtt {self.cfg.host}:{self.cfg.port}: publish failed ({e})") from None
        if not info.is_published():
            self._drop()
            raise HookError(f"mqtt {self.cfg.host}:{self.cfg.port}: no PUBACK within {self.cfg.timeout_s} s")

    def _drop(self) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()
            self._client = None

    def close(self) -> None:
        if self._client is not None:
            info = self._client.publish(self.cfg.availability_topic, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(1.0)
            except (RuntimeError, ValueError):
                pass
            self._drop()
