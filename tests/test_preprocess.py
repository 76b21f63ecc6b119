"""The device crop (firmware_app.preprocess): geometry, borders, anti-aliasing, and a golden output.

Regenerate the golden arrays after an intended change of the crop:
    FACEDEPTH_REGEN_GOLDEN=1 .venv/bin/python -m pytest tests/test_preprocess.py
    (or: .venv/bin/python -m tests.test_preprocess --regen)
"""

from __future__ import annotations

import ast
import math
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from firmware_app import preprocess as P

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("FACEDEPTH_REGEN_GOLDEN") == "1"


def synthetic_frame(h: int = 240, w: int = 320) -> np.ndarray:
    """Deterministic RGB frame with gradients, rings and sharp edges (no RNG, no JPEG)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.hypot(x - 0.55 * w, y - 0.45 * h)
    img = np.stack([255 * x / w, 128 + 100 * np.sin(r / 6.0), 255 * y / h], axis=-1)
    img[(x // 16 + y // 16) % 2 == 0, 2] *= 0.5
    cv2.circle(img, (int(0.55 * w), int(0.45 * h)), 20, (250, 20, 20), -1)
    return np.clip(img, 0, 255).astype(np.uint8)


def synthetic_depth(h: int = 240, w: int = 320) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return (500 - 40 * np.exp(-((x - 170) ** 2 + (y - 110) ** 2) / 800)).astype(np.float32)


CASES = {  # name: (frame size, face box, eyes)
    "crop_rolled": ((240, 320), (130, 60, 220, 160), ((150, 95), (200, 112))),
    "crop_large": ((480, 640), (180, 60, 480, 400), None),  # side 544 px → 3× INTER_AREA prescale
    "crop_edge": ((240, 320), (250, 150, 330, 250), None),  # square partly outside the frame
}


def golden_arrays() -> dict[str, np.ndarray]:
    out = {}
    for name, (hw, box, eyes) in CASES.items():
        t = P.crop_transform(box, eyes)
        out[name] = P.crop_input(synthetic_frame(*hw), t)[::2, ::2]  # every 2nd pixel keeps the file small
    t = P.crop_transform(*CASES["crop_rolled"][1:])
    out["grid_depth"] = P.crop_to_grid(synthetic_depth(), t)
    return out


def regenerate() -> None:
    GOLDEN.mkdir(exist_ok=True)
    for name, arr in golden_arrays().items():
        np.save(GOLDEN / f"{name}.npy", arr)
        print(f"wrote {GOLDEN / name}.npy {arr.shape} {arr.dtype}")


@pytest.mark.parametrize("name", [*CASES, "grid_depth"])
def test_golden_crop(name):
    if REGEN:
        regenerate()
    got = golden_arrays()[name]
    want = np.load(GOLDEN / f"{name}.npy")
    assert got.shape == want.shape and got.dtype == want.dtype
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    if name == "grid_depth":  # nearest-neighbour: the same cells, exactly
        np.testing.assert_allclose(got, want, atol=1e-3)
    else:  # bilinear weights are fixed point in cv2; allow 1-2 levels between CPUs / versions
        assert diff.max() <= 3 and diff.mean() < 0.3, (diff.max(), diff.mean())


def test_grid_roundtrip_and_shared_square():
    t = P.crop_transform((100, 50, 180, 150), ((110, 90), (170, 80)))
    pts = np.array([[0.0, 0.0], [79.0, 79.0], [12.3, 45.6]])
    np.testing.assert_allclose(P.frame_to_grid(P.grid_to_frame(pts, t), t), pts, atol=1e-9)
    # 80-grid pixel g and 160-input pixel 2g + 0.5 are the same frame point.
    np.testing.assert_allclose(P.grid_to_frame(pts, t), P.grid_to_frame(2 * pts + 0.5, t, P.INPUT_SIZE))
    # The grid's centre is the box centre; its extent is CROP_SCALE × the box's larger side.
    np.testing.assert_allclose(P.grid_to_frame([39.5, 39.5], t), [140, 100], atol=1e-9)
    corners = P.grid_to_frame(np.array([[-0.5, -0.5], [79.5, -0.5]]), t)
    assert math.isclose(np.linalg.norm(corners[1] - corners[0]), P.CROP_SCALE * 100, rel_tol=1e-9)
    coords = P.grid_frame_coords(t)
    np.testing.assert_allclose(coords[45, 12], P.grid_to_frame([12, 45], t))


def test_marker_lands_where_the_transform_says():
    frame = np.zeros((240, 320, 3), np.uint8)
    cv2.circle(frame, (150, 120), 3, (255, 255, 255), -1)
    t = P.crop_transform((110, 80, 210, 180), ((130, 110), (190, 140)))  # rolled ~26.6°
    crop = P.crop_input(frame, t).astype(np.float64).sum(-1)
    y, x = np.mgrid[0:160, 0:160]
    centroid = np.array([(crop * x).sum(), (crop * y).sum()]) / crop.sum()
    np.testing.assert_allclose(centroid, P.frame_to_grid([150, 120], t, P.INPUT_SIZE), atol=0.3)


def test_eye_roll_and_swapped_eyes():
    eyes = np.array([[100.0, 100.0], [100 + 50 * math.cos(0.3), 100 + 50 * math.sin(0.3)]])
    assert math.isclose(P.eye_angle_deg(eyes), math.degrees(0.3), rel_tol=1e-9)
    assert math.isclose(P.eye_angle_deg(eyes[::-1]), math.degrees(0.3), rel_tol=1e-9)
    t = P.crop_transform((80, 80, 140, 140), eyes)
    left, right = P.frame_to_grid(eyes, t)
    assert abs(left[1] - right[1]) < 1e-9 and right[0] > left[0]  # eye line horizontal in the crop


def test_outside_the_frame_is_black_and_no_depth():
    frame = np.full((240, 320, 3), 200, np.uint8)
    t = P.crop_transform((260, 180, 340, 260))  # box hangs over the bottom-right corner
    crop = P.crop_input(frame, t)
    assert (crop[-20:, -20:] == 0).all() and (crop[:20, :20] == 200).all()
    depth = P.crop_to_grid(np.full((240, 320), 500, np.float32), t)
    assert depth[-5:, -5:].max() == 0 and depth[0, 0] == 500


def test_blurred_fill_continues_the_frame_without_its_streaks():
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[:, ::4] = 255  # vertical stripes: replicating the bottom edge streaks them down
    t = P.crop_transform((200, 180, 280, 260))  # box hangs over the bottom edge
    rep, blur = P.crop_input(frame, t, "replicate"), P.crop_input(frame, t, "replicate_blur")
    inside = P.inside_frame(t, frame.shape[:2])
    assert 0.1 < inside.mean() < 0.9
    core = cv2.erode(inside.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    assert np.array_equal(rep[core], blur[core])  # the frame itself is untouched
    out = ~cv2.dilate(inside.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    assert rep[out].std() > 50 and blur[out].std() < 0.2 * rep[out].std()  # streaks gone
    assert abs(float(blur[out].mean()) - float(frame.mean())) < 20  # its colour continued, not black
    centred = P.crop_transform((120, 80, 200, 160))  # wholly inside: the same pixels as replicate
    assert np.array_equal(P.crop_input(frame, centred, "replicate_blur"),
                          P.crop_input(frame, centred, "replicate"))


def test_prescale_matches_direct_bilinear_on_smooth_images():
    y, x = np.mgrid[0:480, 0:640].astype(np.float64)
    smooth = np.stack([127 + 100 * np.sin(x / 40), 127 + 100 * np.cos(y / 50), x * 0 + 90], -1)
    smooth = smooth.astype(np.uint8)
    t = P.crop_transform((150, 50, 450, 400), ((200, 150), (400, 170)))
    assert int(t.side / P.INPUT_SIZE) >= 2  # the INTER_AREA path is taken
    direct = cv2.warpAffine(smooth, t.matrix, (160, 160), flags=cv2.INTER_LINEAR)
    diff = np.abs(P.crop_input(smooth, t).astype(int) - direct.astype(int)).max(-1)
    xy = P.grid_frame_coords(t, P.INPUT_SIZE)  # compare away from the frame edge (blended with black)
    inner = (xy[..., 0] > 4) & (xy[..., 0] < 635) & (xy[..., 1] > 4) & (xy[..., 1] < 475)
    assert diff[inner].mean() < 0.5 and diff[inner].max() <= 6


def test_prescale_reduces_aliasing():
    stripes = np.zeros((480, 640, 3), np.uint8)
    stripes[:, ::2] = 255  # 2-px period: bilinear sampling at 3× picks near-random 0s and 255s
    t = P.crop_transform((170, 70, 477, 377))  # side 491 px: not an exact multiple of 160
    direct = cv2.warpAffine(stripes, t.matrix, (160, 160), flags=cv2.INTER_LINEAR)[10:-10, 10:-10]
    crop = P.crop_input(stripes, t)[10:-10, 10:-10].astype(np.float64)
    assert abs(crop.mean() - 127.5) < 5 and crop.std() < 0.5 * direct.std()


def test_device_module_imports_only_numpy_and_cv2():
    tree = ast.parse(Path(P.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert names <= {"__future__", "math", "dataclasses", "cv2", "numpy"}, names


if __name__ == "__main__":
    if "--regen" in sys.argv:
        regenerate()
