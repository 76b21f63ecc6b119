"""Decision panels on disk (`liveness.save_depth_dir`): one PNG per decision, the newest `keep` kept.

A door passes hundreds of people a day and the daemon runs for months; at ~60 KB a panel an unbounded
folder fills an SD card within the year. The panels are a diagnostic (the decision itself is in the
outbox, delivered to the hooks), so the oldest go first. Files already in the folder when the daemon
starts count too, oldest by modification time, and the surplus an upgrade finds is deleted then, at
start-up, not by the camera loop's first decision (5,820 old panels took 1.3 s).
"""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)


class PanelFiles:
    def __init__(self, folder: str | Path, keep: int):
        self.folder, self.keep = Path(folder), int(keep)
        try:  # oldest first
            self._kept = deque(sorted(self.folder.glob("*.png"), key=_mtime))
        except OSError:  # not there yet (made on the first save), or not a folder (that save says so)
            self._kept = deque()
        self._prune()

    def save(self, name: str, rgb: np.ndarray) -> str:
        """Write `name`.png (RGB uint8); returns its path, or "" when it cannot be written (logged)."""
        path = self.folder / f"{name}.png"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
                raise OSError("the PNG encoder wrote nothing")
        except (OSError, cv2.error) as e:
            log.warning("cannot save %s: %s", path, e)
            return ""
        self._kept.append(path)
        self._prune()
        return str(path)

    def _prune(self) -> None:
        while self.keep and len(self._kept) > self.keep:
            old = self._kept.popleft()
            try:
                old.unlink(missing_ok=True)
            except OSError as e:  # one stuck file must not stop the camera loop
                log.warning("cannot delete the old panel %s: %s", old, e)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
