"""GPIO hook: pulses a relay line on a granted (live) decision, through the sysfs GPIO tree under env.path.

    /sys/class/gpio/export            write the line number to make gpio<N> appear
    /sys/class/gpio/gpio<N>/direction "out"
    /sys/class/gpio/gpio<N>/value     "1" for pulse_s, then "0" (inverted when active_low)

Tests point FACEDEPTH_ROOT at a fake tree. On kernels without the sysfs GPIO interface (Raspberry Pi
OS Bookworm on a Pi 5 uses the character device), use a command hook with `gpioset` instead.

Delivery is at least once and retried for ever, so a grant can arrive late (the relay unreachable for
an hour, a restart with the outbox still full): a decision older than `max_age_s` by its own event time
is refused for good (logged), never acted on — the door does not open for someone long gone.
"""

from __future__ import annotations

import time

from firmware_app import env
from firmware_app.config import GpioHookConfig
from firmware_app.hooks import Hook, HookError


class GpioHook(Hook):
    def __init__(self, cfg: GpioHookConfig):
        self.name, self.only = cfg.name, cfg.only
        self.pin, self.pulse_s, self.active_low = cfg.pin, cfg.pulse_s, cfg.active_low
        self.max_age_s = cfg.max_age_s
        self._ready = False

    def _line(self, leaf: str):
        return env.path(f"{env.GPIO_SYSFS}/gpio{self.pin}/{leaf}")

    def _setup(self) -> None:
        try:
            if not self._line("value").parent.exists():
                env.path(f"{env.GPIO_SYSFS}/export").write_text(str(self.pin))
            self._line("direction").write_text("out")
            self._write(False)
        except OSError as e:
            raise HookError(
                f"GPIO {self.pin}: cannot set up through {env.path(env.GPIO_SYSFS)} ({e})"
            ) from None
        self._ready = True

    def _write(self, on: bool) -> None:
        self._line("value").write_text("1" if on != self.active_low else "0")

    def deliver(self, event: dict) -> None:
        t = event.get("unix_time")
        age = time.time() - t if isinstance(t, (int, float)) and not isinstance(t, bool) else None
        if age is None or not -self.max_age_s <= age <= self.max_age_s:
            got = "no event time" if age is None else f"{age:.1f} s old"
            raise HookError(f"GPIO {self.pin}: decision {event.get('decision')} is {got} (max_age_s "
                            f"{self.max_age_s:g}); not acted on, the door stays shut", permanent=True)
        if not self._ready:
            self._setup()
        try:
            self._write(True)
            time.sleep(self.pulse_s)
        except OSError as e:
            raise HookError(f"GPIO {self.pin}: {e}") from None
        finally:
            try:
                self._write(False)
            except OSError:
                pass
