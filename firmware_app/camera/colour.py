"""Colour handling common to every backend: `camera.colour: grey` for mono and IR cameras.

A mono sensor (or a colour one at night with its IR-cut filter open) gives frames without usable colour:
some drivers deliver three equal channels, others a magenta or green cast from the Bayer filter under IR
light. `GreyCamera` turns every frame into luma (ITU-R BT.601, what OpenCV's RGB2GRAY computes) repeated
in three channels, before face detection and the crop, so the network always sees the same kind of
input from such a camera, whatever tint its driver adds.
"""

from __future__ import annotations

import cv2
import numpy as np

from firmware_app.camera.base import Camera, Frame

GREY = ("grey", "gray")


def to_grey3(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB → (H, W, 3) uint8 with R = G = B = luma."""
    return cv2.cvtColor(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


class GreyCamera(Camera):
    """Wraps any Camera; its frames come out grey (three equal channels)."""

    def __init__(self, camera: Camera):
        self.camera = camera
        self.name = f"{camera.name} (grey)"

    def open(self) -> None:
        self.camera.open()

    def read(self) -> Frame:
        frame = self.camera.read()
        return Frame(to_grey3(frame.rgb), frame.timestamp, frame.frame_id)

    def close(self) -> None:
        self.camera.close()
