"""Hook sections of the daemon config (`hooks:` list items): one frozen dataclass per hook type, and the
list's parsing and checks (`parse_hooks`: each item's class by its type, names unique, values usable)."""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass

import yaml

from firmware_app.config_yaml import Ctx, is_null, section
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
MAX_HOOKS = 64


def parse_hooks(loader, node, ctx: Ctx) -> tuple:
    """The `hooks:` list: each item's class chosen by its type; ConfigError naming the item and key."""
    if is_null(node):
        return ()
    if not isinstance(node, yaml.SequenceNode):
        raise ctx.error(node, "hooks", "expected a list of hooks, each with a type")
    if len(node.value) > MAX_HOOKS:
        raise ctx.error(node, "hooks", f"{len(node.value)} hooks; at most {MAX_HOOKS}")
    hooks, names = [], set()
    for i, item in enumerate(node.value):
        key = f"hooks[{i}]"
        if not isinstance(item, yaml.MappingNode):
            raise ctx.error(item, key, "expected a mapping with a type")
        types = [v for k, v in item.value if isinstance(k, yaml.ScalarNode) and k.value == "type"]
        kind = (None if not types else types[0].value if isinstance(types[0], yaml.ScalarNode)
                else f"a {types[0].id}")  # a list or mapping where the type name belongs
        if kind not in HOOK_TYPES:
            raise ctx.error(
                types[0] if types else item, f"{key}.type", f"{kind!r} is not one of {', '.join(HOOK_TYPES)}"
            )
        hook = section(loader, item, HOOK_TYPES[kind], key, ctx)
        if not hook.name:
            hook = dataclasses.replace(hook, name=f"{kind}{i}")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", hook.name) or hook.name in names:
            raise ctx.error(
                item, f"{key}.name", f"{hook.name!r} must be unique and use only A-Z a-z 0-9 _ . -"
            )
        names.add(hook.name)
        _check_hook(hook, item, key, ctx)
        hooks.append(hook)
    return tuple(hooks)


def _check_hook(hook, node, key: str, ctx: Ctx) -> None:
    if isinstance(hook, CommandHookConfig) and not hook.argv:
        raise ctx.error(node, f"{key}.argv", "a command hook needs argv: [program, args...]")
    if isinstance(hook, HttpHookConfig) and not re.match(r"https?://", hook.url):
        raise ctx.error(node, f"{key}.url", f"{hook.url!r} is not an http:// or https:// URL")
    if isinstance(hook, MqttHookConfig):
        _check_mqtt(hook, node, key, ctx)
    bad = set(getattr(hook, "only", ())) - {"live", "spoof", "undecided"}
    if bad:
        raise ctx.error(node, f"{key}.only", f"{sorted(bad)}: decisions are live, spoof and undecided")


def _check_mqtt(hook: MqttHookConfig, node, key: str, ctx: Ctx) -> None:
    """Topics we publish to may not hold wildcards; a node id goes into topics and unique ids."""
    topics = {"topic": hook.topic, "availability_topic": hook.availability_topic,
              "state_topic": hook.state_topic, "discovery_prefix": hook.discovery_prefix}
    for name, topic in topics.items():
        if not topic or "+" in topic or "#" in topic or "\0" in topic:
            raise ctx.error(node, f"{key}.{name}", f"{topic!r}: an MQTT topic to publish to, not empty, "
                            "without the wildcards + and #")
    if hook.node_id and not re.fullmatch(r"[A-Za-z0-9_-]+", hook.node_id):
        raise ctx.error(node, f"{key}.node_id", f"{hook.node_id!r}: use only A-Z a-z 0-9 _ -")
    if hook.discovery and len({hook.topic, hook.state_topic, hook.availability_topic}) < 3:
        raise ctx.error(node, f"{key}.state_topic", "topic, state_topic and availability_topic must differ")
