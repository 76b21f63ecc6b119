"""The synthetic world: exact depth, landmarks, occlusion, attacks, determinism."""

import numpy as np
import pytest

from train.synth import morph
from train.synth.camera import Camera, backproject
from train.synth.face_render import HeadPose, make_identity, render_face, surface_depth_at
from train.synth.generator import GeneratorConfig, generate_sample, sample_pose
from train.synth.head import head_mesh
from train.synth.raster import rasterize
from train.synth.sample import ATTACK_TYPES, BONA_FIDE, MASK_FACE
from train.synth.shading import sample_lighting

HW = (480, 640)
K = np.array([[520.0, 0, 320], [0, 520.0, 240], [0, 0, 1]])


@pytest.fixture(scope="module")
def identity():
    return make_identity(7, np.random.default_rng(7))


def _render(identity, yaw, pitch=0.0, roll=0.0, dist=450.0, seed=0):
    rng = np.random.default_rng(seed)
    camera = Camera(K, HW)
    pose = HeadPose(yaw, pitch, roll, pivot_cam=np.zeros(3))
    pose = HeadPose(yaw, pitch, roll, pivot_cam=np.array([0, 0, dist]) - pose.transform(np.zeros((1, 3)))[0])
    _, expr = morph.load_bases()
    return render_face(
        identity, np.zeros(len(expr.names), np.float32), pose, camera, sample_lighting(rng), rng
    )


@pytest.mark.parametrize("yaw", [0.0, 30.0, -45.0])
def test_depth_at_visible_landmarks_equals_the_landmark_vertex_depth(identity, yaw):
    layer = _render(identity, yaw)
    vis = layer.landmarks_visible
    assert vis.sum() >= 35
    smooth_errors = []
    for xy, z in zip(layer.landmarks_2d[vis], layer.landmarks_3d[vis, 2]):
        seen, step = surface_depth_at(layer.depth, xy)
        if not np.isfinite(step):
            continue  # on the silhouette: no surface to interpolate across
        assert abs(seen - z) <= 0.5 + 0.5 * step
        if step < 1.0:  # smooth surface: brows, nose, cheeks, lips
            smooth_errors.append(abs(seen - z))
    assert len(smooth_errors) >= 15
    assert max(smooth_errors) < 0.5


def test_far_side_landmarks_are_reported_occluded_at_large_yaw(identity):
    frontal = _render(identity, 0.0)
    turned = _render(identity, 60.0)
    assert frontal.landmarks_visible[[19, 24, 27, 30, 33, 36, 39, 42, 45, 51]].all()
    # Turning 60 degrees hides the jaw contour on one side behind the cheek and nose.
    jaw = turned.landmarks_visible[:17]
    assert not jaw[:4].all() or not jaw[-4:].all()
    assert turned.landmarks_visible.sum() < frontal.landmarks_visible.sum()


def test_backprojected_depth_lands_on_the_mesh_surface(identity):
    layer = _render(identity, 20.0, 10.0, 5.0)
    mesh = head_mesh()
    pose_pts = None
    # Re-derive the posed vertices the same way the renderer did and check each pixel's 3D point
    # against the plane of the triangle the rasteriser says it hit.
    _, expr = morph.load_bases()
    pose = HeadPose(20.0, 10.0, 5.0, pivot_cam=np.zeros(3))
    pose = HeadPose(20.0, 10.0, 5.0, pivot_cam=np.array([0, 0, 450.0]) - pose.transform(np.zeros((1, 3)))[0])
    pose_pts = pose.transform(identity.neutral)
    r = rasterize(pose_pts, mesh.triangles, K, HW)
    np.testing.assert_array_equal(r.depth[layer.depth > 0], layer.depth[layer.depth > 0])
    p = backproject(r.depth, K)[r.covered].astype(np.float64)
    tri = pose_pts[mesh.triangles[r.tri[r.covered]]]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    distance = np.abs(np.sum((p - tri[:, 0]) * normal, axis=1))
    assert np.percentile(distance, 99.9) < 0.01
    assert distance.max() < 0.05


def test_eye_holes_are_filled_with_a_plausible_eyeball(identity):
    layer = _render(identity, 0.0)
    eye = layer.landmarks_2d[36:42].mean(axis=0).astype(int)
    depth = layer.depth[eye[1] - 2 : eye[1] + 3, eye[0] - 2 : eye[0] + 3]
    assert (depth > 0).all()
    assert (layer.mask[eye[1], eye[0]]) == MASK_FACE
    corners_z = layer.landmarks_3d[[36, 39], 2].mean()
    # The cornea bulges a few mm in front of the eye corners; a hole would put it far behind them.
    assert 0.0 < corners_z - depth.mean() < 12.0


def test_rendering_is_deterministic_for_a_seed():
    cfg = GeneratorConfig(height=120, width=160)
    a = generate_sample(cfg, make_identity(3, np.random.default_rng(3)), BONA_FIDE, np.random.default_rng(11))
    b = generate_sample(cfg, make_identity(3, np.random.default_rng(3)), BONA_FIDE, np.random.default_rng(11))
    np.testing.assert_array_equal(a.rgb, b.rgb)
    np.testing.assert_array_equal(a.depth_mm, b.depth_mm)


@pytest.mark.parametrize("label", ATTACK_TYPES)
def test_attacks_have_the_nearly_flat_geometry_of_their_medium(identity, label):
    cfg = GeneratorConfig(height=240, width=320)
    s = generate_sample(cfg, identity, label, np.random.default_rng(5))
    face = s.mask == MASK_FACE
    assert face.sum() > 50, "the shown face must be labelled on the medium"
    p = backproject(s.depth_mm, s.intrinsics)[face].astype(np.float64)
    a = np.c_[p[:, 0], p[:, 1], np.ones(len(p))]
    coef, *_ = np.linalg.lstsq(a, p[:, 2], rcond=None)
    residual = p[:, 2] - a @ coef
    limit = 0.01 if label != "print_bent" else 12.0  # a bent sheet curves, but far less than a face
    assert np.abs(residual).max() < limit
    assert s.label == label and s.is_attack


def test_face_box_and_pose_are_within_the_configured_ranges():
    cfg = GeneratorConfig(height=240, width=320)
    rng = np.random.default_rng(0)
    for _ in range(50):
        pose = sample_pose(cfg, Camera(K * np.array([[0.5], [0.5], [1]]), (240, 320)), rng)
        assert abs(pose.yaw) <= 60 and abs(pose.pitch) <= 30 and abs(pose.roll) <= 20


@pytest.mark.parametrize("length", [3, 4, 8])
def test_motion_blur_blurs_without_moving_the_picture(length):
    """A door clip of a print on a stand is the same picture in every frame: its per-frame motion blur must
    not shift it (a lopsided kernel moved whole frames by up to 4 px, and the still print 'moved')."""
    from dataclasses import replace

    from train.synth.sensor import sample_sensor, sense

    img = np.zeros((48, 48, 3), np.float32)
    img[22:26, 20:28] = 0.8
    p = replace(sample_sensor(np.random.default_rng(1)), motion_px=length, blur_sigma=0.0, read_noise=0.0,
                shot_noise=0.0)
    ys, xs = np.mgrid[:48, :48]
    sharp = sense(img, replace(p, motion_px=0), np.random.default_rng(0)).astype(np.float64).sum(axis=2)
    for seed in range(6):
        out = sense(img, p, np.random.default_rng(seed)).astype(np.float64).sum(axis=2)
        assert np.abs(out - sharp).sum() > 1000  # blurred
        out -= out.min()
        centre = ((out * xs).sum() / out.sum(), (out * ys).sum() / out.sum())
        assert centre == pytest.approx((23.5, 23.5), abs=0.02)


def test_relief_scale_stretches_the_rendered_relief_about_the_eyes(identity):
    """A frontal face at 45 cm: the nose tip's depth ahead of the eye line grows by the relief factor."""
    from train.synth.face_render import with_relief_scale

    def nose_ahead_of_eyes(ident):
        layer = _render(ident, 0.0)
        lm = layer.landmarks_3d  # camera frame, mm (iBUG 68: 30 nose tip, 36-47 eye corners)
        return float(lm[36:48, 2].mean() - lm[30, 2])

    base = nose_ahead_of_eyes(identity)
    assert base > 10.0
    assert nose_ahead_of_eyes(with_relief_scale(identity, 1.25)) == pytest.approx(1.25 * base, rel=0.05)
    assert nose_ahead_of_eyes(with_relief_scale(identity, 0.8)) == pytest.approx(0.8 * base, rel=0.05)


def test_relief_scale_is_recorded_only_when_used_and_leaves_other_draws_alone():
    from train.synth.generator import generate_shard

    assert "relief_scale" not in GeneratorConfig().to_dict()  # old datasets' recipes still match
    small = dict(height=96, width=128, attack_share=0.0)
    plain = generate_shard(GeneratorConfig(**small), 5, 3, 2)
    deep = generate_shard(GeneratorConfig(**small, relief_scale=(1.3, 1.3)), 5, 3, 2)
    assert GeneratorConfig(relief_scale=(0.8, 1.25)).to_dict()["relief_scale"] == (0.8, 1.25)
    for a, b in zip(plain, deep):
        assert a.identity == b.identity and np.array_equal(a.intrinsics, b.intrinsics)
        assert not np.array_equal(a.depth_mm, b.depth_mm)


def test_real_plates_are_cut_from_the_cc0_photographs_at_the_plate_size():
    from train.synth.background import make_plate, real_plate

    hw = (480, 640)
    a, b = real_plate(np.random.default_rng(1), hw), real_plate(np.random.default_rng(1), hw)
    assert a.shape == make_plate(np.random.default_rng(1), hw).shape == (240, 320, 3)
    assert a.dtype == np.float32 and 0.0 <= a.min() and a.max() <= 1.0
    assert np.array_equal(a, b)  # from the rng alone: shards stay reproducible
    # a photograph has fine detail at the plate's resolution; a procedural wall is smooth
    detail = lambda p: float(np.abs(np.diff(p.mean(axis=2), axis=1)).mean())  # noqa: E731
    real = np.mean([detail(real_plate(np.random.default_rng(k), hw)) for k in range(8)])
    procedural = np.mean([detail(make_plate(np.random.default_rng(k), hw)) for k in range(8)])
    assert real > 2 * procedural


def test_real_backdrop_share_is_recorded_only_when_used():
    assert "real_backdrop_share" not in GeneratorConfig().to_dict()
    assert GeneratorConfig(real_backdrop_share=0.3).to_dict()["real_backdrop_share"] == 0.3


def test_near_share_draws_people_close_and_is_recorded_only_when_used():
    from train.synth.camera import sample_camera
    from train.synth.generator import sample_pose

    assert "near_share" not in GeneratorConfig().to_dict() and "near_mm" not in GeneratorConfig().to_dict()
    assert GeneratorConfig(near_share=0.3).to_dict()["near_mm"] == (300.0, 550.0)
    cam = sample_camera(np.random.default_rng(0), (480, 640), (50.0, 90.0))

    def eyes_mm(cfg, seed):  # the eyes' depth in front of the camera
        pose = sample_pose(cfg, cam, np.random.default_rng(seed))
        return float(pose.transform(np.zeros((1, 3)))[0][2])

    near = [eyes_mm(GeneratorConfig(near_share=1.0), s) for s in range(40)]
    wide = [eyes_mm(GeneratorConfig(), s) for s in range(40)]
    assert max(near) <= 551 and min(near) >= 299 and max(wide) > 700
    # off: no extra draw, so the recipe of every dataset written before stays as it was
    assert wide == [eyes_mm(GeneratorConfig(near_share=0.0), s) for s in range(40)]
