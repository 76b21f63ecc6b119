"""YAML nodes → checked values of frozen config dataclasses, every error naming the file, line and key.

Works on nodes rather than loaded data because only nodes carry line numbers. Fields are declared with
`field(metadata={"choices": ..., "min": ...})` (firmware_app/config.py's `_f`); which sections exist and
the rules across fields live there.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing

import yaml

MAX_BYTES = 1 << 20  # a device config is a few kB; a bigger file is a mistake (or an attack on the parser)
MAX_DEPTH = 32  # sections are 3 levels deep; deep flow nesting would exhaust the composer's recursion
MAX_INT = 2**31 - 1  # bound of an int field without its own maximum
MAX_FLOAT = 1e9  # bound of a float field without its own maximum (seconds, mm, ...: all far below)


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file, line and key."""


_MERGE = "tag:yaml.org,2002:merge"


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses, with file:line, what a config never needs and a hostile file abuses:
    explicit tags (`!foo`, `!!binary`, `!!python/...`), anchors and aliases (`&a`, `*a`: exponential
    expansion), merge keys (`<<:`), and nesting deeper than MAX_DEPTH."""

    def __init__(self, text: str, filename: str):
        super().__init__(text)
        self.filename, self.depth = filename, 0

    def _refuse(self, mark, msg: str) -> ConfigError:
        return ConfigError(f"{self.filename}:{mark.line + 1}: {msg}")

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
            raise self._refuse(event.start_mark, "YAML anchors and aliases (&name, *name) are not supported "
                               "here; write each value out")
        if getattr(event, "tag", None) not in (None, "!"):
            raise self._refuse(event.start_mark, f"YAML tag {event.tag} is not supported here; remove it "
                               "(each field's type is known)")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self._refuse(event.start_mark, f"nested more than {MAX_DEPTH} levels deep; not a config")
        try:
            node = super().compose_node(parent, index)
        finally:
            self.depth -= 1
        if isinstance(node, yaml.MappingNode):
            for key, _ in node.value:
                if key.tag == _MERGE:
                    raise self._refuse(key.start_mark, "YAML merge keys (<<:) are not supported here; write "
                                       "the keys out")
        return node


def is_null(node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"


_EXP_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Ctx:
    """The file being read and the environment for ${NAME}; makes errors that name file:line: key."""

    def __init__(self, filename: str, env):
        self.filename, self.env = filename, env

    def error(self, node, key: str, msg: str) -> ConfigError:
        line = node.start_mark.line + 1 if node is not None else 0
        return ConfigError(
            f"{self.filename}:{line}: {key}: {msg}" if key else f"{self.filename}:{line}: {msg}"
        )


def scalar(loader: yaml.SafeLoader, node, key: str, ctx: Ctx):
    if not isinstance(node, yaml.ScalarNode):
        raise ctx.error(
            node,
            key,
            "expected a single value, got a "
            + ("list" if isinstance(node, yaml.SequenceNode) else "mapping"),
        )
    try:
        return loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as e:  # e.g. a date like 2001-02-30
        raise ctx.error(node, key, f"unreadable value {node.value[:40]!r} ({e})") from None


def _expand_env(value: str, node, key: str, ctx: Ctx) -> str:
    def sub(m):
        name, default = m.group(1), m.group(2)
        if name in ctx.env:
            return ctx.env[name]
        if default is not None:
            return default
        raise ctx.error(
            node, key, f"environment variable {name} is not set (export it, or write ${{{name}:-default}})"
        )

    return _ENV.sub(sub, value)


def convert(loader, node, tp, key: str, meta: dict, ctx: Ctx):
    """One field's YAML node → a checked Python value of type tp."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        if is_null(node):
            return ()
        if not isinstance(node, yaml.SequenceNode):
            raise ctx.error(node, key, "expected a list")
        item = typing.get_args(tp)[0]
        return tuple(convert(loader, n, item, f"{key}[{i}]", {}, ctx) for i, n in enumerate(node.value))
    value = scalar(loader, node, key, ctx)
    if tp is bool:
        if not isinstance(value, bool):
            raise ctx.error(node, key, f"expected true or false, got {value!r}")
    elif tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ctx.error(node, key, f"expected an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, str) and _EXP_NUMBER.fullmatch(value):  # YAML 1.1 reads 1e3 as a string
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ctx.error(node, key, f"expected a number, got {value!r}")
        try:
            value = float(value)
        except OverflowError:
            value = float("inf")
        if not math.isfinite(value):
            raise ctx.error(node, key, f"expected a finite number, got {value!r}")
    elif tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)  # e.g. camera.device: 0
        if not isinstance(value, str):
            raise ctx.error(node, key, f"expected a string, got {value!r}")
        value = _expand_env(value, node, key, ctx)
    if meta.get("choices") and value not in meta["choices"]:
        raise ctx.error(node, key, f"{value!r} is not one of {', '.join(map(str, meta['choices']))}")
    if meta.get("min") is not None and value < meta["min"]:
        raise ctx.error(node, key, f"{value!r} is below the minimum {meta['min']}")
    if tp in (int, float):
        top = meta.get("max")
        top = top if top is not None else MAX_INT if tp is int else MAX_FLOAT
        if value > top:
            raise ctx.error(node, key, f"{value!r} is above the maximum {top}")
    return value


def section(loader, node, cls, key: str, ctx: Ctx, read_value=None):
    """A YAML mapping → an instance of the dataclass cls, unknown keys rejected.

    read_value(loader, node, name, ctx), if given, reads each value instead of the field's type: the top
    level, whose values are whole sections, uses it.
    """
    if is_null(node):
        return cls()
    if not isinstance(node, yaml.MappingNode):
        raise ctx.error(node, key, f"expected a mapping of {cls.__name__} fields")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    values, seen = {}, set()
    for knode, vnode in node.value:
        name = str(scalar(loader, knode, key, ctx))
        full = f"{key}.{name}" if key else name
        if name in seen:
            raise ctx.error(knode, full, "given twice")
        seen.add(name)
        if name not in fields:
            raise ctx.error(knode, "", f"unknown key '{full}' (known: {', '.join(sorted(fields))})")
        if read_value is not None:
            values[name] = read_value(loader, vnode, name, ctx)
        else:
            values[name] = convert(loader, vnode, hints[name], full, fields[name].metadata, ctx)
    return cls(**values)


def described(default, doc: str, *, choices: tuple = (), min: float | None = None,
              max: float | None = None, secret: bool = False):
    """A field with its default and description (and optional allowed values / bounds)."""
    meta = {"doc": doc, "choices": choices, "min": min, "max": max, "secret": secret}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)
