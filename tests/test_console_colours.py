"""THE depth colour map: near = red on a fixed millimetre scale, used by every picture of the depth."""

from __future__ import annotations

import numpy as np

from firmware_app.depth import DepthResult
from firmware_app.panels import RELIEF_SCALE_MM, depth_colormap, depth_rgba, legend_stops, relief_colours


def _two_cells(near_mm: float, far_mm: float) -> DepthResult:
    relief = np.full((80, 80), far_mm, np.float32)
    relief[:, 40:] = near_mm  # right half nearer the camera
    return DepthResult(relief, np.ones((80, 80), np.float32))


def test_the_nearer_cell_gets_the_red_end():
    rgb = depth_colormap(_two_cells(near_mm=30.0, far_mm=-40.0), size=80)
    near, far = rgb[40, 60].astype(int), rgb[40, 20].astype(int)
    assert near[0] > near[2] + 60, f"near cell {near} is not red"
    assert far[2] > far[0] + 60, f"far cell {far} is not blue"
    # the scale's near end is the map's red end (TURBO's last entry), its far end the blue one
    red_end, blue_end = relief_colours(np.array(RELIEF_SCALE_MM[::-1]))
    assert red_end[0] > 100 and red_end[2] < 20 and blue_end[2] > blue_end[0] > blue_end[1]


def test_the_scale_is_fixed_so_a_flat_relief_stays_one_colour():
    # stretched per frame, 6 mm of relief would span the whole map; on the fixed scale it is one band
    flat = depth_colormap(_two_cells(near_mm=3.0, far_mm=-3.0), size=80).astype(int)
    face = depth_colormap(_two_cells(near_mm=30.0, far_mm=-50.0), size=80).astype(int)
    assert np.abs(flat[40, 60] - flat[40, 20]).max() < 40
    assert np.abs(face[40, 60] - face[40, 20]).max() > 150
    # the same relief gives the same colour whatever else is in the frame
    assert (depth_colormap(_two_cells(3.0, -50.0), size=80)[40, 60] == flat[40, 60]).all()


def test_off_face_is_transparent_and_the_legend_runs_far_to_near():
    depth = _two_cells(30.0, -40.0)
    depth.face_prob[:10] = 0.0
    rgba = depth_rgba(depth)
    assert rgba.shape == (80, 80, 4) and (rgba[:10, :, 3] == 0).all() and (rgba[10:, :, 3] == 255).all()
    stops = legend_stops(5)
    assert [mm for mm, _ in stops] == [-60.0, -35.0, -10.0, 15.0, 40.0]
    first, last = (bytes.fromhex(c[1:]) for _, c in (stops[0], stops[-1]))
    assert first[2] > first[0] and last[0] > last[2]  # blue (far) → red (near)
