"""Command hook: runs argv (no shell) with the event JSON on stdin; exit status 0 = delivered.

The event id is also in the environment as FACEDEPTH_EVENT_ID and the decision as FACEDEPTH_DECISION.
"""

from __future__ import annotations

import json
import os
import subprocess

from firmware_app.config import CommandHookConfig
from firmware_app.hooks import Hook, HookError


class CommandHook(Hook):
    def __init__(self, cfg: CommandHookConfig):
        self.name, self.only, self.argv, self.timeout_s = cfg.name, cfg.only, list(cfg.argv), cfg.timeout_s

    def deliver(self, event: dict) -> None:
        env = {
            **os.environ,
            "FACEDEPTH_EVENT_ID": str(event.get("id", "")),
            "FACEDEPTH_DECISION": str(event.get("decision", "")),
        }
        try:
            proc = subprocess.run(
                self.argv,
                input=json.dumps(event).encode(),
                capture_output=True,
                timeout=self.timeout_s,
                env=env,
                shell=False,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise HookError(f"{self.argv[0]} did not finish within {self.timeout_s} s (killed)") from None
        except OSError as e:
            raise HookError(f"cannot run {self.argv[0]}: {e.strerror or e}") from None
        if proc.returncode != 0:
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise HookError(f"{self.argv[0]} exited with status {proc.returncode}: {' | '.join(tail)}")
