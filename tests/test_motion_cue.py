"""The motion cue (firmware_app/motion.py): a flat medium moves as a plane, a turning head does not."""

from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np

from firmware_app.motion import MotionCue


def _plane_homography(c, f, yaw_deg, shift, scale, d=450.0):
    """The image motion of a plane facing the camera at d mm, turned by yaw about its centre, then moved."""
    k = np.array([[f, 0, c[0]], [0, f, c[1]], [0, 0, 1.0]])
    a = np.radians(yaw_deg)
    r = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    p0 = np.array([0, 0, d])
    h = k @ (r + np.outer(p0 - r @ p0, [0, 0, 1.0]) / d) @ np.linalg.inv(k)
    move = np.array([[scale, 0, shift[0]], [0, scale, shift[1]], [0, 0, 1.0]])
    h = move @ h
    return h / h[2, 2]


def _noisy(rgb, seed):
    return np.clip(rgb + np.random.default_rng(seed).normal(0, 2, rgb.shape), 0, 255).astype(np.uint8)


def test_a_plane_moved_by_a_known_homography_scores_planar():
    from tests.test_fw_fixtures import synthetic_frames

    first = sorted(synthetic_frames().glob("*_bona_fide.png"))[0]
    rgb = cv2.cvtColor(cv2.imread(str(first)), cv2.COLOR_BGR2RGB)
    boxes = json.loads((synthetic_frames() / "boxes.json").read_text())
    box = np.array(boxes[sorted(boxes)[0]], np.float32)
    c = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    for yaw, shift, scale in ((6.0, (10, -4), 1.03), (-8.0, (-6, 8), 0.97)):
        h = _plane_homography(c, 550.0, yaw, shift, scale)
        moved = cv2.warpPerspective(rgb, h, rgb.shape[1::-1], flags=cv2.INTER_CUBIC)
        corners = cv2.perspectiveTransform(box.reshape(1, 2, 2), h)[0].ravel()
        cue = MotionCue()
        assert cue.update(_noisy(rgb.astype(np.float32), 1), box, 0.0).reason == "first frame"
        est = cue.update(_noisy(moved.astype(np.float32), 2), corners, 0.1)
        assert est.points >= 20 and est.shift > 6 and est.llr is not None and est.llr < -0.5, est
    still = MotionCue()
    still.update(_noisy(rgb.astype(np.float32), 3), box, 0.0)
    assert still.update(_noisy(rgb.astype(np.float32), 4), box, 0.1).reason == "motion too small"  # abstains


def test_a_rendered_head_turning_scores_3d():
    from train.synth.camera import sample_camera
    from train.synth.clip import CLIP_CONFIG, _rng
    from train.synth.face_render import HeadPose, make_identity
    from train.synth.generator import _face_box, render_bona_fide, sample_pose
    from train.synth.sensor import apply_sensor, sample_sensor

    cfg = replace(CLIP_CONFIG, height=480, width=640)
    identity = make_identity(1, _rng(1, 0, 0))
    cam = sample_camera(_rng(1, 1, 0), (480, 640), cfg.hfov_deg)
    start = sample_pose(cfg, cam, _rng(1, 1, 1))
    sensor = sample_sensor(_rng(1, 1, 3))
    cue, ests = MotionCue(), []
    for i, yaw in enumerate((0.0, 8.0)):
        pose = HeadPose(start.yaw + yaw, start.pitch, start.roll, start.pivot_cam)
        img, layer, _ = render_bona_fide(cfg, identity, cam, _rng(1, 1, 2, 0), pose)
        rgb = apply_sensor(np.ascontiguousarray(img, np.float32), sensor, _rng(1, 1, 4, i))
        ests.append(cue.update(rgb, _face_box(layer.landmarks_2d), 0.1 * i))
    assert ests[0].llr is None and ests[1].llr is not None and ests[1].llr > 0, ests[1]
    assert ests[1].r_hom > 0.3  # parallax a homography cannot explain


def test_slow_motion_accumulates_over_the_same_time_at_any_frame_rate():
    """A key frame waits for motion by the frames' timestamps, not by a frame count: a face drifting
    2.4 px/s is judged after about 0.85 s at 10 and at 30 frames/s alike (a 10-frame cap gave a 30
    frames/s camera 0.33 s, in which a person standing still rarely moves enough to count)."""
    from tests.test_fw_fixtures import synthetic_frames

    first = sorted(synthetic_frames().glob("*_bona_fide.png"))[0]
    rgb = cv2.cvtColor(cv2.imread(str(first)), cv2.COLOR_BGR2RGB).astype(np.float32)
    boxes = json.loads((synthetic_frames() / "boxes.json").read_text())
    box = np.array(boxes[sorted(boxes)[0]], np.float64)
    px_per_s = 2.4 * (box[2] - box[0]) / 128.0  # 2.4 px/s at the cue's normalised face width
    judged_at = {}
    for fps in (10.0, 30.0):
        cue = MotionCue()
        for k in range(int(1.5 * fps)):
            dx = px_per_s * k / fps
            moved = cv2.warpAffine(rgb, np.float32([[1, 0, dx], [0, 1, 0]]), rgb.shape[1::-1],
                                   flags=cv2.INTER_CUBIC)
            est = cue.update(_noisy(moved, k), box + [dx, 0, dx, 0], k / fps)
            if est.llr is not None:
                judged_at[fps] = k / fps
                break
    assert set(judged_at) == {10.0, 30.0}, judged_at
    assert all(0.7 <= t <= 1.0 for t in judged_at.values()), judged_at
