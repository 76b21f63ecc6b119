"""What every real-data source shares: the error type, frame references, file readers, box helpers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from train.synth.sample import MASK_FACE, N_LANDMARKS, Sample


class RealDataError(RuntimeError):
    """A source file that is missing, unreadable or malformed; the message names the file and the fault."""


@dataclass(frozen=True)
class FrameRef:
    """One frame of a source, cheap to list: what `Source.load` needs to build its `Sample`."""

    identity: int
    path: Path  # the frame's colour image; named in error messages
    key: str  # the frame's name inside its source, e.g. "01/frame_00003"


class Source(Protocol):
    kind: str  # "biwi", "folder": the CLI's name for it
    root: Path

    def frames(self) -> list[FrameRef]: ...

    def load(self, ref: FrameRef) -> Sample: ...


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise RealDataError(f"{path}: missing {what}")
    return path


def read_rgb(path: Path) -> np.ndarray:
    require_file(path, "colour image")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise RealDataError(f"{path}: not a readable image")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def read_json(path: Path) -> object:
    require_file(path, "JSON file")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RealDataError(f"{path}: not valid JSON ({exc})") from exc


def read_numbers(path: Path, count: int, layout: str) -> np.ndarray:
    """All whitespace-separated numbers of a text file; exactly `count` of them, laid out as `layout`."""
    require_file(path, f"file ({layout})")
    try:
        values = np.array([float(tok) for tok in path.read_text().split()], np.float64)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RealDataError(f"{path}: expected {count} numbers ({layout}): {exc}") from exc
    if values.size != count or not np.all(np.isfinite(values)):
        raise RealDataError(f"{path}: expected {count} finite numbers ({layout}), found {values.size}")
    return values


def mask_box(mask: np.ndarray, label: int = MASK_FACE) -> np.ndarray | None:
    """x0, y0, x1, y1 (x1, y1 exclusive) of the pixels labelled `label`; None if there are none."""
    rows = np.flatnonzero((mask == label).any(axis=1))
    cols = np.flatnonzero((mask == label).any(axis=0))
    if rows.size == 0:
        return None
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], np.float32)


def no_landmarks() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2D, 3D and visibility arrays for a source without landmarks: zeros, nothing visible."""
    return (
        np.zeros((N_LANDMARKS, 2), np.float32),
        np.zeros((N_LANDMARKS, 3), np.float32),
        np.zeros(N_LANDMARKS, bool),
    )
