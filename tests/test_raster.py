import numpy as np

from train.synth.camera import backproject
from train.synth.raster import project, rasterize

K = np.array([[300.0, 0, 80], [0, 300.0, 60], [0, 0, 1]])


def _quad(z_near: float, z_far: float):
    """A tilted square, Z varying linearly from left to right."""
    pts = np.array([[-100, -100, z_near], [100, -100, z_far], [100, 100, z_far], [-100, 100, z_near]], float)
    return pts, np.array([[0, 1, 2], [0, 2, 3]], np.int32)


def test_depth_is_the_exact_plane_depth_along_each_pixel_ray():
    pts, tris = _quad(400.0, 700.0)
    r = rasterize(pts, tris, K, (120, 160))
    hit = r.covered
    assert hit.sum() > 1000
    # Plane through the quad: z = 550 + 1.5 x  → along a ray (x = a z): z = 550 / (1 - 1.5 a).
    ys, xs = np.nonzero(hit)
    a = (xs + 0.5 - K[0, 2]) / K[0, 0]
    expected = 550.0 / (1 - 1.5 * a)
    np.testing.assert_allclose(r.depth[hit], expected, rtol=1e-6)


def test_backprojected_depth_lies_on_the_plane():
    pts, tris = _quad(500.0, 800.0)
    r = rasterize(pts, tris, K, (120, 160))
    p = backproject(r.depth, K)[r.covered]
    residual = p[:, 2] - (650.0 + 1.5 * p[:, 0])
    assert np.abs(residual).max() < 1e-3


def test_nearer_surface_wins_regardless_of_draw_order():
    far, tris = _quad(900.0, 900.0)
    near = far.copy()
    near[:, 2] = 500.0
    small = near * np.array([0.3, 0.3, 1.0])
    for order in ((far, small), (small, far)):
        pts = np.concatenate(order)
        both = np.concatenate([tris, tris + 4])
        r = rasterize(pts, both, K, (120, 160))
        assert r.depth[60, 80] == np.float32(500.0)
        assert r.depth[60, 105] == np.float32(900.0)  # outside the small near square


def test_uncovered_pixels_have_zero_depth_and_no_triangle():
    pts, tris = _quad(400.0, 400.0)
    pts = pts * np.array([0.1, 0.1, 1.0])
    r = rasterize(pts, tris, K, (120, 160))
    assert r.depth[0, 0] == 0 and r.tri[0, 0] == -1
    corner = project(pts[:1], K)[0]
    assert 0 < corner[0] < 160


def test_barycentrics_sum_to_one():
    pts, tris = _quad(300.0, 900.0)
    r = rasterize(pts, tris, K, (120, 160))
    np.testing.assert_allclose(r.bary[r.covered].sum(axis=1), 1.0, atol=1e-5)
