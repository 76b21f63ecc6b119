"""Decision panels on disk (`liveness.save_depth_dir`): one PNG per decision, the newest `keep` kept.

A door passes hundreds of people a day and the daemon runs for months; at ~60 KB a panel an unbounded
folder fills an SD card within the year. The panels are a diagnostic (the decision itself is in the
outbox, delivered to the hooks), so the oldest go first. Files already in the folder when the daemon
starts count too, oldest by modification time.
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
        self._kept: deque[Path] | None = None  # oldest first; listed on first save

    def save(self, name: str, rgb: np.ndarray) -> str:
        """Write `name`.png (RGB uint8); returns its path, or "" when it cannot be written (logged)."""
        path = self.folder / f"{name}.png"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if self._kept is None:
                self._kept = deque(sorted(self.folder.glob("*.png"), key=_mtime))
            if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1])):
                raise OSError("the PNG encoder wrote nothing")
        except (OSError, cv2.error) as e:
            log.warning("cannot save %s: %s", path, e)
            return ""
        self._kept.append(path)
        while self.keep and len(self._kept) > self.keep:
            old = self._kept.popleft()
            try:
                old.unlink(missing_ok=True)
            except OSError as e:  # one stuck file must not stop the camera loop
                log.warning("cannot delete the old panel %s: %s", old, e)
        return str(path)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
