"""The camera interface every backend implements, and the reconnecting wrapper the daemon reads through.

    camera.open()           acquire the device / file; raises CameraError
    camera.read() -> Frame  the next RGB frame; raises CameraError (unplugged, timeout, corrupt frame)
                            or EndOfStream (a replay that does not loop has ended)
    camera.close()          release; safe to call twice

`ReconnectingCamera` turns CameraErrors into logged reconnects with exponential backoff, so a camera
problem never stops the daemon; only EndOfStream and a stop request end its frames.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


class CameraError(RuntimeError):
    """The camera cannot deliver a frame now; the message says which camera and why."""


class EndOfStream(Exception):
    """A non-looping replay has delivered its last frame."""


@dataclass(frozen=True, eq=False)
class Frame:
    rgb: np.ndarray  # (H, W, 3) uint8, RGB order
    timestamp: float  # time.monotonic() at capture
    frame_id: int  # increasing for the daemon's lifetime (across reconnects)


class Camera:
    """A frame source; subclasses set `name` (for messages) and implement the three methods."""

    name = "camera"

    def open(self) -> None:
        raise NotImplementedError

    def read(self) -> Frame:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc):
        self.close()


def is_rgb_frame(image) -> bool:
    """Whether `image` is a non-empty (H, W, 3) uint8 array: the one frame format the pipeline and the
    face detector accept (a Frame's rgb)."""
    return (
        isinstance(image, np.ndarray)
        and image.ndim == 3
        and image.shape[2] == 3
        and image.dtype == np.uint8
        and min(image.shape[:2]) > 0
    )


def check_rgb(image, name: str) -> np.ndarray:
    """A frame the pipeline can use, or CameraError (a corrupt or empty frame)."""
    if not is_rgb_frame(image):
        got = getattr(image, "shape", None), getattr(image, "dtype", type(image).__name__)
        raise CameraError(f"{name}: corrupt frame (shape {got[0]}, dtype {got[1]})")
    return image


class ReconnectingCamera:
    """Wraps a Camera: opens lazily, reconnects after errors with backoff, numbers frames."""

    def __init__(
        self,
        camera: Camera,
        backoff_s: float = 0.5,
        backoff_max_s: float = 10.0,
        stop: threading.Event | None = None,
    ):
        self.camera = camera
        self.backoff_s, self.backoff_max_s = backoff_s, backoff_max_s
        self.stop = stop or threading.Event()
        self.is_open = False
        self.errors = 0  # camera errors since start (reported in /status)
        self.last_error = ""
        self._failures = 0  # consecutive, for the backoff
        self._next_id = 0

    def read(self) -> Frame | None:
        """The next frame; None when stop is set. Raises EndOfStream when a finite replay ends."""
        while not self.stop.is_set():
            try:
                if not self.is_open:
                    self.camera.open()
                    self.is_open = True
                    if self._failures:
                        log.info(
                            "%s: reconnected after %d failed attempt(s)", self.camera.name, self._failures
                        )
                frame = self.camera.read()
            except CameraError as e:
                self._failed(e)
                continue
            self._failures = 0
            frame = Frame(frame.rgb, frame.timestamp, self._next_id)
            self._next_id += 1
            return frame
        return None

    def _failed(self, error: CameraError) -> None:
        self.errors += 1
        self._failures += 1
        self.last_error = str(error)
        self.close()
        delay = min(self.backoff_s * 2 ** (self._failures - 1), self.backoff_max_s)
        log.error("camera error: %s; reconnect attempt %d in %.1f s", error, self._failures, delay)
        self.stop.wait(delay)

    def close(self) -> None:
        if self.is_open:
            try:
                self.camera.close()
            except Exception as e:  # a camera that fails to close must not stop the daemon
                log.warning("%s: close failed: %s", self.camera.name, e)
        self.is_open = False


def monotonic() -> float:
    return time.monotonic()
