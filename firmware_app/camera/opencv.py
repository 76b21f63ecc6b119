"""OpenCV camera: a V4L2 USB camera (index or /dev/videoN) or a GStreamer pipeline string (Jetson CSI).

    device: "0"                         /dev/video0 through V4L2
    device: "/dev/video2"
    device: "nvarguscamerasrc ! video/x-raw(memory:NVMM),width=1280,height=720 ! nvvidconv ! \\
             video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=1"
"""

from __future__ import annotations

import time

import cv2

from firmware_app.camera.base import Camera, CameraError, Frame, check_rgb


class OpenCVCamera(Camera):
    def __init__(
        self,
        device: str = "0",
        width: int = 640,
        height: int = 480,
        fps: float = 0.0,
        read_timeout_s: float = 2.0,
    ):
        self.device = str(device)
        self.width, self.height, self.fps, self.read_timeout_s = width, height, fps, read_timeout_s
        self.gstreamer = "!" in self.device
        self.name = f"opencv {'gstreamer pipeline' if self.gstreamer else self.device}"
        self._cap: cv2.VideoCapture | None = None
        self._count = 0

    def open(self) -> None:
        timeout_ms = int(self.read_timeout_s * 1000)
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        if self.gstreamer:
            cap = cv2.VideoCapture(self.device, cv2.CAP_GSTREAMER)
        else:
            target = int(self.device) if self.device.isdigit() else self.device
            cap = cv2.VideoCapture(target, cv2.CAP_V4L2, params)
        if not cap.isOpened():
            cap.release()
            hint = (
                "is OpenCV built with GStreamer? (cv2.getBuildInformation())"
                if self.gstreamer
                else "is it plugged in, and is the user in the video group?"
            )
            raise CameraError(f"{self.name}: cannot open the camera ({hint})")
        if not self.gstreamer:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            if self.fps > 0:
                cap.set(cv2.CAP_PROP_FPS, self.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the newest frame, not a stale queue
        self._cap = cap

    def read(self) -> Frame:
        if self._cap is None:
            raise CameraError(f"{self.name}: not open")
        start = time.monotonic()
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            raise CameraError(
                f"{self.name}: no frame after {time.monotonic() - start:.1f} s (unplugged or stalled)"
            )
        if bgr.ndim == 3 and bgr.shape[2] == 4:
            bgr = bgr[..., :3]
        rgb = cv2.cvtColor(check_rgb(bgr, self.name), cv2.COLOR_BGR2RGB)
        self._count += 1
        return Frame(rgb, time.monotonic(), self._count - 1)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
