"""Raspberry Pi camera through Picamera2 (libcamera): the low-resolution YUV stream feeds inference.

picamera2 is imported here only, when the camera opens: it comes from Raspberry Pi OS's apt
(`apt install python3-picamera2`; a venv needs --system-site-packages), not from PyPI.
The main stream (full resolution) stays available for a preview; inference reads the `lores` stream
(width × height, YUV420) converted to RGB.
"""

from __future__ import annotations

import time

import cv2

from firmware_app.camera.base import Camera, CameraError, Frame, check_rgb


class Picamera2Camera(Camera):
    name = "picamera2"

    def __init__(self, width: int = 640, height: int = 480, fps: float = 0.0, read_timeout_s: float = 2.0):
        self.width, self.height, self.fps, self.read_timeout_s = width, height, fps, read_timeout_s
        self._cam = None
        self._count = 0

    def open(self) -> None:
        try:
            from picamera2 import Picamera2
        except ImportError as e:
            raise CameraError(
                f"picamera2: cannot import ({e}); on Raspberry Pi OS: sudo apt install "
                "python3-picamera2 and create the venv with --system-site-packages"
            ) from None
        try:
            cam = Picamera2()
            controls = {"FrameRate": self.fps} if self.fps > 0 else {}
            config = cam.create_video_configuration(
                main={"size": (max(self.width, 1280), max(self.height, 720))},
                lores={"size": (self.width, self.height), "format": "YUV420"},
                controls=controls,
                buffer_count=4,
            )
            cam.configure(config)
            cam.start()
        except Exception as e:  # libcamera raises RuntimeError / OSError / its own errors
            raise CameraError(
                f"picamera2: cannot start the camera ({e}); is the ribbon cable seated and "
                "the camera enabled?"
            ) from None
        self._cam = cam

    def read(self) -> Frame:
        if self._cam is None:
            raise CameraError("picamera2: not open")
        try:
            job = self._cam.capture_array("lores", wait=False)
            yuv = self._cam.wait(job, timeout=self.read_timeout_s) if job is not None else None
        except Exception as e:
            raise CameraError(f"picamera2: capture failed ({e})") from None
        if yuv is None:
            raise CameraError(f"picamera2: no frame within {self.read_timeout_s} s")
        rgb = cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420)[: self.height, : self.width]
        self._count += 1
        return Frame(check_rgb(rgb, self.name), time.monotonic(), self._count - 1)

    def close(self) -> None:
        if self._cam is not None:
            try:
                self._cam.stop()
                self._cam.close()
            finally:
                self._cam = None
