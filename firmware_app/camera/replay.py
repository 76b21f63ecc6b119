"""Replay camera: a video file or a folder of images as a full camera (the daemon runs on a laptop and in CI).

Pacing: `fps` > 0 delivers at that rate; 0 means the clip's native rate for a video file and as fast as
possible for an image folder. Timestamps are the wall clock, or with `clip_fps` > 0 the clip's own time
(the k-th frame delivered at k / clip_fps s, counting on across loops), so that time-based rules (a
track's minimum age, its timeout) see a 10 frames/s clip as 10 frames/s even when replayed faster.
Folders of up to CACHE_IMAGES images are decoded once and kept in memory. Unreadable images in a folder
are skipped with a warning; a folder with none readable is a CameraError.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np

from firmware_app.camera.base import Camera, CameraError, EndOfStream, Frame, check_rgb

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
CACHE_IMAGES = 64


class ReplayCamera(Camera):
    def __init__(self, source: str | Path, loop: bool = True, fps: float = 0.0, hold_frames: int = 1,
                 clip_fps: float = 0.0):
        self.source = Path(source)
        self.clip_fps, self._delivered = float(clip_fps), 0
        self.loop, self.fps, self.hold_frames = loop, float(fps), max(1, int(hold_frames))
        self.name = f"replay {self.source}"
        self._video: cv2.VideoCapture | None = None
        self._images: list[Path] = []
        self._cache: dict[int, np.ndarray] = {}
        self._pos = 0  # frames delivered since open (images: index × hold_frames)
        self._period = 0.0
        self._next_t = 0.0

    def open(self) -> None:
        if self.source.is_dir():
            self._images = sorted(p for p in self.source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self._images:
                raise CameraError(
                    f"{self.name}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in the folder"
                )
            self._period = 1.0 / self.fps if self.fps > 0 else 0.0
        elif self.source.is_file():
            self._video = cv2.VideoCapture(str(self.source))
            if not self._video.isOpened():
                raise CameraError(f"{self.name}: OpenCV cannot open this video file")
            native = self._video.get(cv2.CAP_PROP_FPS) or 0.0
            rate = self.fps or (native if 0 < native < 1000 else 0.0)
            self._period = 1.0 / rate if rate > 0 else 0.0
        else:
            raise CameraError(f"{self.name}: no such file or folder")
        self._pos, self._next_t = 0, time.monotonic()

    def read(self) -> Frame:
        rgb = self._read_image() if self._images else self._read_video()
        self._pace()
        self._pos += 1
        self._delivered += 1
        t = (self._delivered - 1) / self.clip_fps if self.clip_fps > 0 else time.monotonic()
        return Frame(check_rgb(rgb, self.name), t, self._pos - 1)

    def _pace(self) -> None:
        if self._period <= 0:
            return
        now = time.monotonic()
        if self._next_t > now:
            time.sleep(self._next_t - now)
        self._next_t = max(self._next_t, now - self._period) + self._period

    def _read_image(self) -> np.ndarray:
        for _ in range(len(self._images)):
            index = self._pos // self.hold_frames
            if index >= len(self._images):
                if not self.loop:
                    raise EndOfStream(self.name)
                self._pos, index = 0, 0
            if index in self._cache:
                return self._cache[index]
            bgr = cv2.imread(str(self._images[index]), cv2.IMREAD_COLOR)
            if bgr is not None:
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                if len(self._images) <= CACHE_IMAGES:
                    self._cache[index] = rgb
                return rgb
            log.warning("%s: skipping %s (not a readable image)", self.name, self._images[index].name)
            self._pos = (index + 1) * self.hold_frames
        raise CameraError(f"{self.name}: none of the {len(self._images)} images is readable")

    def _read_video(self) -> np.ndarray:
        if self._video is None:
            raise CameraError(f"{self.name}: not open")
        ok, bgr = self._video.read()
        if not ok:
            if not self.loop:
                raise EndOfStream(self.name)
            if self._pos == 0:
                raise CameraError(f"{self.name}: the video has no readable frame")
            self._video.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, bgr = self._video.read()
            if not ok:
                raise CameraError(f"{self.name}: cannot rewind to the first frame")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def close(self) -> None:
        if self._video is not None:
            self._video.release()
            self._video = None
