"""Every operating-system path the daemon touches (GPIO, thermal, throttling, /proc), under one prefix.

Tests and development point FACEDEPTH_ROOT at a fake tree (see tests/test_fw_hooks.py) and the daemon
reads and writes there instead of the real /sys and /proc:

    FACEDEPTH_ROOT=/tmp/fake python -m firmware_app run --config c.yaml
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT_VAR = "FACEDEPTH_ROOT"


def root() -> Path:
    return Path(os.environ.get(ROOT_VAR, "/"))


def path(system_path: str) -> Path:
    """/sys/class/gpio → $FACEDEPTH_ROOT/sys/class/gpio (or the real path when the variable is unset)."""
    return root() / system_path.lstrip("/")


GPIO_SYSFS = "/sys/class/gpio"
THERMAL_ZONE0 = "/sys/class/thermal/thermal_zone0/temp"
PROC_SELF_STATUS = "/proc/self/status"
VCGENCMD = "/usr/bin/vcgencmd"


def read_text(system_path: str) -> str | None:
    """The file's text, or None when it does not exist on this machine."""
    try:
        return path(system_path).read_text()
    except OSError:
        return None


def soc_temperature_c() -> float | None:
    text = read_text(THERMAL_ZONE0)
    try:
        return int(text.strip()) / 1000.0 if text else None
    except ValueError:
        return None


def rss_mb() -> float | None:
    """Resident set size of this process in MiB (from /proc/self/status, not through the prefix)."""
    try:
        for line in Path(PROC_SELF_STATUS).read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    return None


def sd_notify(state: str) -> bool:
    """Tell systemd (Type=notify, WatchdogSec) our state: "READY=1", "WATCHDOG=1", "STOPPING=1".

    A datagram to $NOTIFY_SOCKET (an abstract socket when it starts with "@"); no-op without systemd.
    """
    import socket

    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(state.encode(), address)
        return True
    except OSError:
        return False
