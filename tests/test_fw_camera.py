"""Cameras: replay of folders and video files, reconnect with backoff, clear errors for dead devices."""

from __future__ import annotations

import logging
import threading

import cv2
import numpy as np
import pytest

from firmware_app.camera import CameraError, EndOfStream, Frame, ReconnectingCamera, make_camera
from firmware_app.camera.base import Camera
from firmware_app.camera.opencv import OpenCVCamera
from firmware_app.camera.replay import ReplayCamera
from firmware_app.config import CameraConfig


def _folder(tmp_path, n=3):
    for i in range(n):
        img = np.full((48, 64, 3), 40 * i, np.uint8)
        img[0, 0] = (255, 0, 0)  # RGB red marks the channel order
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), img[..., ::-1])
    (tmp_path / "notes.txt").write_text("ignored")
    return tmp_path


def test_replay_folder_in_order_with_hold_and_end(tmp_path):
    cam = ReplayCamera(_folder(tmp_path), loop=False, hold_frames=2)
    cam.open()
    levels = [int(cam.read().rgb[5, 5, 0]) for _ in range(6)]
    assert levels == [0, 0, 40, 40, 80, 80]
    with pytest.raises(EndOfStream):
        cam.read()
    frame = ReplayCamera(tmp_path).__enter__().read()
    assert tuple(frame.rgb[0, 0]) == (255, 0, 0) and frame.rgb.dtype == np.uint8


def test_replay_stamps_clip_time_when_asked_and_counts_on_across_loops(tmp_path):
    cam = make_camera(CameraConfig(type="replay", source=str(_folder(tmp_path, 2)), loop=True, clip_fps=10))
    cam.open()
    stamps = [cam.read().timestamp for _ in range(5)]
    assert stamps == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])  # as fast as it goes, in the clip's time
    wall = ReplayCamera(tmp_path, loop=True).__enter__()
    assert wall.read().timestamp > 1.0  # the wall clock (monotonic) otherwise


def test_replay_folder_loops_and_skips_unreadable(tmp_path, caplog):
    _folder(tmp_path, 2)
    (tmp_path / "01b.png").write_bytes(b"not a png")
    cam = ReplayCamera(tmp_path, loop=True)
    cam.open()
    with caplog.at_level(logging.WARNING):
        levels = [int(cam.read().rgb[5, 5, 0]) for _ in range(5)]
    assert levels == [0, 40, 0, 40, 0]
    assert "skipping 01b.png" in caplog.text


def test_replay_video_file_loops_at_given_fps(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (64, 48))
    for i in range(4):
        writer.write(np.full((48, 64, 3), 60 * i, np.uint8))
    writer.release()
    cam = make_camera(CameraConfig(type="replay", source=str(path), loop=True, fps=100))
    cam.open()
    frames = [cam.read() for _ in range(9)]
    levels = [int(round(f.rgb.mean() / 60)) for f in frames]
    assert levels == [0, 1, 2, 3, 0, 1, 2, 3, 0]
    span = frames[-1].timestamp - frames[0].timestamp
    assert span >= 8 / 100 * 0.8  # paced at ~100 fps, not as fast as possible
    cam.close()


def test_missing_source_is_a_clear_camera_error(tmp_path):
    with pytest.raises(CameraError, match="no such file or folder"):
        ReplayCamera(tmp_path / "nope").open()
    with pytest.raises(CameraError, match="no images"):
        ReplayCamera(tmp_path).open()


def test_dead_v4l2_device_is_a_clear_camera_error():
    with pytest.raises(CameraError, match="/dev/video97: cannot open the camera"):
        OpenCVCamera("/dev/video97", read_timeout_s=0.2).open()


class _Flaky(Camera):
    """Fails to open twice, then delivers two frames, then 'unplugs' once."""

    name = "flaky"

    def __init__(self):
        self.opens = 0
        self.reads = 0

    def open(self):
        self.opens += 1
        if self.opens <= 2:
            raise CameraError("flaky: cannot open (unplugged)")

    def read(self):
        self.reads += 1
        if self.reads == 3:
            raise CameraError("flaky: timeout")
        return Frame(np.zeros((4, 4, 3), np.uint8), 0.0, 0)


def test_reconnects_with_backoff_and_numbers_frames(caplog):
    cam = ReconnectingCamera(_Flaky(), backoff_s=0.01, backoff_max_s=0.02)
    with caplog.at_level(logging.INFO):
        ids = [cam.read().frame_id for _ in range(4)]
    assert ids == [0, 1, 2, 3]
    assert cam.errors == 3 and cam.camera.opens == 4
    assert "camera error: flaky: cannot open (unplugged); reconnect attempt 2" in caplog.text
    assert "reconnected after 2 failed attempt(s)" in caplog.text


def test_stop_interrupts_the_backoff():
    stop = threading.Event()
    cam = ReconnectingCamera(ReplayCamera("/nonexistent"), backoff_s=30, stop=stop)
    threading.Timer(0.2, stop.set).start()
    assert cam.read() is None  # returned within the 0.2 s, not after the 30 s backoff
