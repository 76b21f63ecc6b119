"""Cameras behind one interface (base.Camera), chosen by the config's `type:`."""

from __future__ import annotations

from firmware_app.camera.base import Camera, CameraError, EndOfStream, Frame, ReconnectingCamera
from firmware_app.camera.colour import GREY, GreyCamera
from firmware_app.config import CameraConfig

__all__ = ["Camera", "CameraError", "EndOfStream", "Frame", "ReconnectingCamera", "make_camera"]


def make_camera(cfg: CameraConfig) -> Camera:
    """The backend `cfg.type` names; its frames made grey when `cfg.colour` is grey (mono and IR cameras)."""
    camera = _backend(cfg)
    if cfg.colour in GREY:
        return GreyCamera(camera)
    return camera


def _backend(cfg: CameraConfig) -> Camera:
    if cfg.type == "replay":
        from firmware_app.camera.replay import ReplayCamera

        return ReplayCamera(cfg.source, cfg.loop, cfg.fps, cfg.hold_frames, cfg.clip_fps)
    if cfg.type == "opencv":
        from firmware_app.camera.opencv import OpenCVCamera

        return OpenCVCamera(cfg.device, cfg.width, cfg.height, cfg.fps, cfg.read_timeout_s)
    if cfg.type == "picamera2":
        from firmware_app.camera.picamera2 import Picamera2Camera

        return Picamera2Camera(cfg.width, cfg.height, cfg.fps, cfg.read_timeout_s)
    raise ValueError(f"unknown camera type {cfg.type!r}")
