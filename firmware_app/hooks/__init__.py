"""Access-control hooks: each delivers one decision event; built from the config's `hooks:` list.

A hook's `deliver(event)` returns when the receiver accepted the event and raises on failure (the
HookWorker in events.py retries with backoff); a `HookError(permanent=True)` means the receiver
refused this event for good, and it is skipped with an error in the log.
"""

from __future__ import annotations

from firmware_app.config import CommandHookConfig, GpioHookConfig, HttpHookConfig, MqttHookConfig


class HookError(RuntimeError):
    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class Hook:
    name = "hook"
    only: tuple[str, ...] = ()

    def wants(self, event: dict) -> bool:
        return not self.only or event.get("decision") in self.only

    def deliver(self, event: dict) -> None:
        raise NotImplementedError

    def attach(self, daemon) -> None:
        """Called once the daemon is built, before it runs: a hook that also reports state starts here."""

    def close(self) -> None:
        pass


def make_hook(cfg) -> Hook:
    if isinstance(cfg, CommandHookConfig):
        from firmware_app.hooks.command import CommandHook

        return CommandHook(cfg)
    if isinstance(cfg, HttpHookConfig):
        from firmware_app.hooks.http import HttpHook

        return HttpHook(cfg)
    if isinstance(cfg, MqttHookConfig):
        from firmware_app.hooks.mqtt import MqttHook

        return MqttHook(cfg)
    if isinstance(cfg, GpioHookConfig):
        from firmware_app.hooks.gpio import GpioHook

        return GpioHook(cfg)
    raise ValueError(f"unknown hook config {type(cfg).__name__}")
