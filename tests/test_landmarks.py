"""The 68 iBUG landmarks and the face region on hm08 (train/synth/assets/landmarks68.json)."""

import json

import numpy as np
import pytest

from train.synth import makehuman as mh
from train.synth.head import head_mesh
from train.synth.landmark_geometry import Geometry, mirror_map
from train.synth.landmarks import (
    ASSET_PATH,
    GROUPS,
    IBUG_NAMES,
    MIDLINE,
    MIRROR,
    LandmarkSpec,
    load_landmarks,
)
from train.synth.make_landmarks import MADE_BY, build


@pytest.fixture(scope="module")
def spec() -> LandmarkSpec:
    return load_landmarks()


@pytest.fixture(scope="module")
def verts() -> np.ndarray:
    """All hm08 vertices in the head frame (mm): x the subject's left, y up, z forward."""
    head = head_mesh()
    return head.to_head_frame(mh.base_mesh().vertices.astype(np.float64)).astype(np.float64)


def test_spec_types_and_names(spec):
    assert spec.landmark_vertices.shape == (68,) and spec.landmark_vertices.dtype == np.int32
    assert spec.face_region_vertices.dtype == np.int32
    assert np.all(np.diff(spec.face_region_vertices) > 0)  # sorted, unique
    assert len(IBUG_NAMES) == 68 and len(set(IBUG_NAMES)) == 68
    covered = np.concatenate([np.arange(68)[sl] for sl, _ in GROUPS.values()])
    assert np.array_equal(np.sort(covered), np.arange(68))
    assert np.array_equal(MIRROR[MIRROR], np.arange(68))
    assert json.loads(ASSET_PATH.read_text())["made_by"] == MADE_BY
    with pytest.raises(AttributeError):
        spec.landmark_vertices = None  # frozen


def test_indices_unique_valid_and_in_the_head_mesh(spec):
    lm = spec.landmark_vertices
    assert len(set(lm.tolist())) == 68
    assert lm.min() >= 0 and lm.max() < len(mh.base_mesh().vertices)
    head = head_mesh()
    assert np.isin(lm, head.source_index).all()
    assert np.isin(spec.face_region_vertices, head.source_index).all()
    local = spec.local_indices(head.source_index)
    assert np.array_equal(head.source_index[local], lm)
    assert spec.face_mask(head.source_index).sum() == len(spec.face_region_vertices)


def test_landmarks_are_skin_vertices(spec):
    obj = mh.base_mesh()
    body = obj.quads[np.array(obj.groups)[obj.quad_group] == "body"]
    assert np.isin(spec.landmark_vertices, body).all()  # not on eyeballs, teeth or tongue


def test_mirror_symmetry(spec, verts):
    mirror = mirror_map()
    lm = spec.landmark_vertices
    assert np.array_equal(mirror[lm], lm[MIRROR])
    for a, b in ((36, 45), (0, 16), (48, 54), (39, 42), (31, 35), (17, 26), (60, 64)):
        assert mirror[lm[a]] == lm[b]
        np.testing.assert_allclose(verts[lm[a]] * [-1, 1, 1], verts[lm[b]], atol=1e-3)
    assert np.all(np.abs(verts[lm[list(MIDLINE)], 0]) < 2.0)
    # the subject's right is -x
    right = [*range(0, 8), *range(17, 22), 31, 32, *range(36, 42), 48, 49, 50, 58, 59, 60, 61, 67]
    assert np.all(verts[lm[right], 0] < -2.0)


def test_ibug_semantics(spec, verts):
    p = verts[spec.landmark_vertices]
    x, y, z = p[:, 0], p[:, 1], p[:, 2]
    # eyes: corners are the extreme x, upper lid above lower lid, right eye outer corner more lateral
    assert x[36] < x[37:42].min() and x[39] > x[36:39].max() and x[39] > x[40:42].max()
    assert y[37] > y[41] and y[38] > y[40]
    assert x[45] > x[42:45].max() and y[43] > y[47] and y[44] > y[46]
    # brows above the eyes, nose bridge going down to the frontmost tip, nostrils below the tip
    assert y[17:27].min() > y[36:48].max()
    assert np.all(np.diff(y[27:31]) < 0) and z[30] == z[27:36].max()
    assert y[31:36].max() < y[30]
    # lips: top above bottom, corners the extreme x, inner line between the outer ones
    assert y[51] > y[62] >= y[66] > y[57]
    assert x[48] == x[48:68].min() and x[54] == x[48:68].max()
    # jaw: from eye-corner height down to the chin, the lowest landmark
    assert abs(y[0] - y[36]) < 5.0 and y[8] == y.min()
    assert np.all(np.diff(y[0:9]) < 0)
    assert np.all(np.abs(x[0:8]) > np.abs(x[1:9]))
    assert np.abs(x[0]) > np.abs(x[36]) + 15.0


def test_eyelid_points_on_the_skin_edge_not_the_eyeball(spec, verts):
    obj = mh.base_mesh()
    groups = np.array(obj.groups)[obj.quad_group]
    for eye, pts in (("helper-r-eye", range(36, 42)), ("helper-l-eye", range(42, 48))):
        ball = verts[np.unique(obj.quads[groups == eye])]
        centre = ball.mean(axis=0)
        radius = np.linalg.norm(ball - centre, axis=1).mean()
        d = np.linalg.norm(verts[spec.landmark_vertices[list(pts)]] - centre, axis=1)
        assert np.all(d > radius - 0.5) and np.all(d < radius + 3.0)  # just outside the eyeball


def test_face_region(spec, verts):
    lm, region = spec.landmark_vertices, spec.face_region_vertices
    assert np.isin(lm, region).all()
    head = head_mesh()
    skin = np.unique(head.source_index[head.triangles])
    p = verts[region]
    # ears: beside and below the eye corners, far out and well behind them (the face's side, the
    # frontal outline through jaw points 0-3, is ~50 mm behind the eye corners, the ears ~70 mm)
    corners = verts[lm[[36, 45]]]
    half_width = np.abs(corners[:, 0]).max()
    ear = (np.abs(verts[:, 0]) > half_width + 25.0) & (verts[:, 2] < corners[:, 2].mean() - 60.0)
    ear &= verts[:, 1] < corners[:, 1].mean() + 15.0
    assert np.isin(np.flatnonzero(ear), skin).sum() > 200  # the ear test does find the ears
    assert not ear[region].any()
    # nothing below the chin (neck, underside of the jaw) nor behind the face
    assert p[:, 1].min() >= verts[lm[8], 1] - 1.0
    assert not ((verts[region, 1] < verts[lm[8], 1] - 1.0) & (np.abs(verts[region, 0]) < 60)).any()
    # up to about the hairline, 6-7 cm above the brows, but not the scalp
    brow = verts[lm[17:27], 1].mean()
    forehead = p[np.abs(p[:, 0]) < 10]
    assert 55.0 < forehead[:, 1].max() - brow < 75.0
    # the face region is a sizeable part of the head, eyeballs and mouth interior included
    obj = mh.base_mesh()
    groups = np.array(obj.groups)[obj.quad_group]
    for g in ("helper-l-eye", "helper-r-eye", "helper-tongue"):
        assert np.isin(np.unique(obj.quads[groups == g]), region).all()
    assert 0.3 < len(region) / len(head.source_index) < 0.85


def test_regenerates_identically(spec):
    """The asset is what `python -m train.synth.make_landmarks` writes today (and that is deterministic)."""
    fresh = build()
    assert fresh["landmark_vertices"] == spec.landmark_vertices.tolist()
    assert fresh["face_region_vertices"] == spec.face_region_vertices.tolist()


def test_geometry_segmentation_loops():
    g = Geometry.load()
    for a, b in (("head", "eye_cavity.R"), ("head", "eye_cavity.L"), ("head", "mouth_cavity")):
        loop = g.boundary_loop(a, b)
        assert len(loop) > 20 and len(set(loop.tolist())) == len(loop)
