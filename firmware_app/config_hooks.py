"""Hook sections of the daemon config (`hooks:` list items): one frozen dataclass per hook type."""

from __future__ import annotations

import typing
from dataclasses import dataclass

from firmware_app.config_yaml import described as _f

# Fields every hook shares, defined once so they cannot drift apart between hook types: type and name come
# first (the _Hook base); timeout_s (all but gpio) and `only` come last, where a base class cannot put them
# (a dataclass appends a subclass's own fields after its base's), so they share a helper and a doc instead.
_ONLY_DOC = "deliver only these decisions (live, spoof, undecided); empty = all"


def _hook_type(kind: str):
    """The `type` field of one hook class: `kind`, the only value it accepts."""
    return _f(kind, "hook type", choices=(kind,))


def _hook_timeout(doc: str):
    return _f(5.0, doc, min=0.01)


@dataclass(frozen=True)
class _Hook:
    """The leading fields; a subclass redefines `type` (which keeps its place first) via _hook_type."""

    type: str
    name: str = _f("", "name used for its delivery cursor and in logs; '' = type + index")


@dataclass(frozen=True)
class CommandHookConfig(_Hook):
    type: str = _hook_type("command")
    argv: tuple[str, ...] = _f((), "program and arguments (no shell); the event JSON is on stdin")
    timeout_s: float = _hook_timeout("the program is killed after this")
    only: tuple[str, ...] = _f((), _ONLY_DOC)


@dataclass(frozen=True)
class HttpHookConfig(_Hook):
    type: str = _hook_type("http")
    url: str = _f("", "POST target (http or https)")
    secret: str = _f("", "HMAC-SHA256 key for the X-Facedepth-Signature header; use ${ENV}", secret=True)
    timeout_s: float = _hook_timeout("per request")
    only: tuple[str, ...] = _f((), _ONLY_DOC)


@dataclass(frozen=True)
class MqttHookConfig(_Hook):
    type: str = _hook_type("mqtt")
    host: str = _f("127.0.0.1", "broker host")
    port: int = _f(1883, "broker port", min=1, max=65535)
    topic: str = _f("facedepth/events", "events are published here with QoS 1")
    availability_topic: str = _f("facedepth/status", "retained 'online'; 'offline' as last will")
    username: str = _f("", "broker user; '' = anonymous")
    password: str = _f("", "broker password; use ${ENV}", secret=True)
    client_id: str = _f("", "'' = facedepth-<hostname>")
    discovery: bool = _f(False, "announce this door to Home Assistant (MQTT discovery, retained) and keep "
                                "state_topic current")
    discovery_prefix: str = _f("homeassistant", "Home Assistant's discovery prefix")
    node_id: str = _f("", "the door's id in discovery topics and unique_ids (A-Z a-z 0-9 _ -); "
                          "'' = facedepth_<hostname>")
    device_name: str = _f("", "the device name Home Assistant shows; '' = from node_id")
    state_topic: str = _f("facedepth/state", "retained JSON: live face now, last decision, score, frame rate")
    state_interval_s: float = _f(10.0, "state is published on each change and at least this often",
                                 min=1.0, max=3600.0)
    timeout_s: float = _hook_timeout("connect and publish acknowledgement timeout")
    only: tuple[str, ...] = _f((), _ONLY_DOC)


@dataclass(frozen=True)
class GpioHookConfig(_Hook):
    type: str = _hook_type("gpio")
    pin: int = _f(17, "BCM line number of the relay", min=0, max=1023)
    pulse_s: float = _f(1.0, "relay on-time for a granted (live) decision", min=0.0)
    active_low: bool = _f(False, "the relay closes on a low level")
    max_age_s: float = _f(
        5.0, "a decision older than this (event time) is not acted on: the door never opens late, after an "
        "outage or a restart", min=0.1, max=3600.0,
    )
    only: tuple[str, ...] = _f(("live",), "decisions that pulse the relay")


HOOK_TYPES = {
    "command": CommandHookConfig,
    "http": HttpHookConfig,
    "mqtt": MqttHookConfig,
    "gpio": GpioHookConfig,
}
HookConfig = typing.Union[CommandHookConfig, HttpHookConfig, MqttHookConfig, GpioHookConfig]  # noqa: UP007
