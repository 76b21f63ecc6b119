"""Real-data loaders: files written here in the Biwi and folder formats, converted, read back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from train.realdata.__main__ import main
from train.realdata.biwi import BiwiSource, pose_to_ypr, read_depth_bin, write_depth_bin
from train.realdata.common import RealDataError
from train.realdata.convert import assign_splits, convert
from train.realdata.folder import FolderSource
from train.realdata.register import register_depth
from train.synth.dataset_index import DatasetIndex
from train.synth.sample import MASK_BACKGROUND, MASK_FACE, MASK_HEAD, N_LANDMARKS
from train.synth.shards import ShardReader

REPO = Path(__file__).resolve().parents[1]
PYTHON = (
    REPO / ".venv" / "bin" / "python"
    if (REPO / ".venv" / "bin" / "python").exists()
    else Path(sys.executable)
)
HW = (48, 64)
K = np.array([[60.0, 0, 32], [0, 60.0, 24], [0, 0, 1]])
HEAD = (0.0, 0.0, 600.0)  # head sphere centre, mm; radius 90 → front point at (32, 24), Z = 510
NECK = (0.0, 110.0, 640.0)  # neck sphere, radius 60: front at 112 mm from the head centre → head label
NECK_PIXEL = (35, 32)  # row, col of the neck's front: v = 24 + 60 * 110 / 580 ≈ 35.4


def render(centre=HEAD, wall_mm=1000.0) -> np.ndarray:
    """int16 depth of a head sphere and a neck sphere in front of a wall, with a row of dropouts."""
    h, w = HW
    v, u = np.mgrid[0:h, 0:w]
    rays = np.linalg.inv(K) @ np.stack([u.ravel(), v.ravel(), np.ones(h * w)])
    z = np.full(h * w, wall_mm)
    neck = np.add(NECK, np.subtract(centre, HEAD))
    for c, r in ((np.asarray(centre, float), 90.0), (neck, 60.0)):
        a, b = (rays**2).sum(0), rays.T @ c
        disc = b**2 - a * (c @ c - r * r)
        s = (b - np.sqrt(np.maximum(disc, 0))) / a
        z = np.where((disc >= 0) & (s < z), s, z)
    depth = np.rint(z).reshape(h, w).astype(np.int16)
    depth[0, 5:20] = 0  # sensor dropouts, as Kinect has
    return depth


def rot_y(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def rows(m: np.ndarray) -> str:
    return "\n".join(" ".join(f"{x:.6f}" for x in row) for row in np.atleast_2d(m))


def write_cal(path: Path, t=(0.0, 0.0, 0.0)) -> None:
    """K, zero distortion, identity R, translation t; blank lines between blocks as in Biwi."""
    k, rot = K, np.eye(3)
    path.write_text(f"{rows(k)}\n\n0 0 0 0\n\n{rows(rot)}\n\n{rows(np.asarray(t))}\n")


def write_biwi_subject(root: Path, subject: int, centres, rgb_t=(0.0, 0.0, 0.0), yaw=20.0) -> Path:
    d = root / f"{subject:02d}"
    d.mkdir(parents=True)
    write_cal(d / "depth.cal")
    write_cal(d / "rgb.cal", t=rgb_t)
    rng = np.random.default_rng(subject)
    for i, centre in enumerate(centres):
        stem = d / f"frame_{i + 3:05d}"
        cv2.imwrite(f"{stem}_rgb.png", rng.integers(0, 255, (*HW, 3), np.uint8))
        write_depth_bin(Path(f"{stem}_depth.bin"), render(centre))
        Path(f"{stem}_pose.txt").write_text(f"{rows(rot_y(yaw))}\n\n{rows(np.asarray(centre))}\n")
    return d


@pytest.fixture
def biwi(tmp_path) -> Path:
    root = tmp_path / "hpdb"
    for subject in (1, 2):
        write_biwi_subject(root, subject, [HEAD, (10.0, -5.0, 620.0)])
    return root


# --- Biwi format -----------------------------------------------------------------------------------


def test_depth_bin_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    depth = rng.integers(400, 2000, HW).astype(np.int16)
    depth[rng.random(HW) < 0.4] = 0
    depth[-1, -7:] = 0  # trailing empty run
    depth[0, 0] = 777  # leading full run
    for name, d in (("random", depth), ("scene", render()), ("empty", np.zeros(HW, np.int16))):
        write_depth_bin(tmp_path / f"{name}.bin", d)
        np.testing.assert_array_equal(read_depth_bin(tmp_path / f"{name}.bin"), d)


def test_truncated_depth_bin_is_named(tmp_path):
    path = tmp_path / "frame_00001_depth.bin"
    write_depth_bin(path, render())
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(RealDataError, match=r"frame_00001_depth\.bin: truncated depth file"):
        read_depth_bin(path)
    path.write_bytes(b"\x01\x00")
    with pytest.raises(RealDataError, match="header needs 8"):
        read_depth_bin(path)


def test_registration_with_identity_is_exact():
    depth = render()
    reg = register_depth(depth, K, K, np.eye(3), np.zeros(3), HW)
    np.testing.assert_array_equal(reg.depth_mm, depth.astype(np.float32))
    np.testing.assert_array_equal(reg.points[..., 2], reg.depth_mm)


def test_registration_keeps_the_nearest_point():
    # half the focal length: depth pixels (31, 24) and (32, 24) both land on colour pixel (16, 12)
    k_half = np.array([[30.0, 0, 16.25], [0, 30.0, 12], [0, 0, 1]])  # x = 15.75 and 16.25
    for near_col, far_col in ((31, 32), (32, 31)):
        depth = np.zeros(HW, np.int16)
        depth[24, near_col], depth[24, far_col] = 500, 1000
        reg = register_depth(depth, K, k_half, np.eye(3), np.zeros(3), (24, 32))
        assert reg.depth_mm[12, 16] == 500 and np.count_nonzero(reg.depth_mm) == 1


def test_biwi_sample_labels_and_pose(biwi):
    source = BiwiSource(biwi.parent)  # the folder holding hpdb/ is accepted too
    refs = source.frames()
    assert [(r.identity, r.key) for r in refs] == [
        (1, "01/frame_00003"), (1, "01/frame_00004"), (2, "02/frame_00003"), (2, "02/frame_00004"),
    ]  # fmt: skip
    s = source.load(refs[0])
    scene = render().astype(np.float32)
    assert s.mask[24, 32] == MASK_FACE and s.depth_mm[24, 32] == 510.0
    assert s.mask[NECK_PIXEL] == MASK_HEAD
    assert s.mask[5, 2] == MASK_BACKGROUND and s.depth_mm[5, 2] == 0  # the wall is dropped
    labelled = s.mask > 0
    np.testing.assert_array_equal(s.depth_mm[labelled], scene[labelled])
    assert np.all(s.depth_mm[~labelled] == 0) and np.all(scene[labelled] < 1000)
    x0, y0, x1, y1 = s.face_box
    assert x0 < 32 < x1 and y0 < 24 < y1 and (x1 - x0) < 25  # around the 90 mm sphere, ~18 px wide
    np.testing.assert_allclose(s.pose_deg, [20, 0, 0], atol=1e-4)
    assert not s.landmarks_visible.any() and not s.landmarks_2d.any()
    assert s.identity == 1 and s.label == "bona_fide"
    np.testing.assert_array_equal(s.intrinsics, K.astype(np.float32))


def test_pose_to_ypr_identity_is_frontal():
    np.testing.assert_allclose(pose_to_ypr(np.eye(3)), [0, 0, 0], atol=1e-6)


def test_head_centre_lands_at_translated_pixel(tmp_path):
    # 51 mm to the side: the front point (Z = 510) moves by fx * 51 / 510 = 6 px in the colour image
    write_biwi_subject(tmp_path, 3, [HEAD], rgb_t=(51.0, 0.0, 0.0))
    s = BiwiSource(tmp_path).load(BiwiSource(tmp_path).frames()[0])
    assert s.depth_mm[24, 38] == 510.0 and s.mask[24, 38] == MASK_FACE
    face_cols = np.flatnonzero((s.mask == MASK_FACE).any(axis=0))
    assert abs((face_cols[0] + face_cols[-1]) / 2 - 38) <= 1
    assert s.depth_mm[24, 32] != 510.0


def test_missing_cal_is_named(biwi):
    (biwi / "02" / "rgb.cal").unlink()
    source = BiwiSource(biwi)
    with pytest.raises(RealDataError, match=r"02/rgb\.cal: missing"):
        source.load(source.frames()[2])


def test_bad_cal_is_named(biwi):
    (biwi / "01" / "depth.cal").write_text("1 0 0\n0 1 0\n")
    with pytest.raises(RealDataError, match=r"depth\.cal: expected 25 finite numbers .* found 6"):
        BiwiSource(biwi).load(BiwiSource(biwi).frames()[0])


# --- conversion ------------------------------------------------------------------------------------


def test_assign_splits():
    biwi = assign_splits(range(1, 25))
    assert sorted(i for i, s in biwi.items() if s == "test") == [10, 20]
    assert sorted(i for i, s in biwi.items() if s == "val") == [1, 11, 21]
    small = assign_splits([2, 3, 4])
    assert sorted(small.values()) == ["test", "train", "val"]
    assert assign_splits([4, 2, 3]) == small  # deterministic, order-free
    assert assign_splits([5, 6]) == {5: "train", 6: "train"}  # < 3 identities: modulo only


def test_convert_biwi_round_trip(biwi, tmp_path):
    out = tmp_path / "ds"
    result = convert(BiwiSource(biwi), out, shard_size=1, progress=False)
    assert (result.n_frames, result.n_shards, result.n_resumed) == (4, 4, 0)
    assert result.splits == {1: "val", 2: "train"}
    index = DatasetIndex.load(out)
    assert tuple(index.image_hw) == HW and index.meta["source"] == "biwi"
    split_of: dict[int, set[str]] = {}
    for e in index.entries():
        assert len(e.identities) == 1  # one identity per shard
        split_of.setdefault(e.identities[0], set()).add(e.split)
    assert all(len(s) == 1 for s in split_of.values()) and split_of == {1: {"val"}, 2: {"train"}}
    direct = BiwiSource(biwi)
    read_back = [s for r in index.readers() for s in r]
    for ref, s in zip(direct.frames(), read_back):
        want = direct.load(ref)
        np.testing.assert_array_equal(s.depth_mm, want.depth_mm)
        np.testing.assert_array_equal(s.mask, want.mask)
        assert s.identity == ref.identity
    e = index.entries("val")[0]
    assert len(ShardReader(out / e.file, e.sha256)) == 1


def test_convert_resumes_and_refuses_other_dataset(biwi, tmp_path):
    out = tmp_path / "ds"
    convert(BiwiSource(biwi), out, shard_size=64, progress=False)
    again = convert(BiwiSource(biwi), out, shard_size=64, progress=False)
    assert (again.n_shards, again.n_resumed) == (2, 2)
    with pytest.raises(RealDataError, match="holds a different dataset"):
        convert(BiwiSource(biwi), out, shard_size=1, progress=False)


# --- folder format ---------------------------------------------------------------------------------


def write_folder_frame(root: Path, name: str, depth: np.ndarray, mask=None, meta=None) -> None:
    h, w = depth.shape
    cv2.imwrite(str(root / f"{name}.rgb.png"), np.full((h, w, 3), 128, np.uint8))
    cv2.imwrite(str(root / f"{name}.depth.png"), depth)
    if mask is not None:
        cv2.imwrite(str(root / f"{name}.mask.png"), mask)
    if meta is not None:
        (root / f"{name}.json").write_text(json.dumps(meta))


@pytest.fixture
def folder(tmp_path) -> Path:
    root = tmp_path / "capture"
    root.mkdir()
    (root / "intrinsics.json").write_text(json.dumps({"fx": 60, "fy": 60, "cx": 32, "cy": 24}))
    depth = render().astype(np.uint16)
    depth[depth >= 1000] = 0  # a segmented capture: the wall already removed
    write_folder_frame(root, "a", depth)
    mask = np.where(depth > 0, MASK_HEAD, 0).astype(np.uint8)
    mask[20:29, 28:37] = MASK_FACE
    lm = [[30 + i % 5, 20 + i % 9] for i in range(N_LANDMARKS)]
    write_folder_frame(root, "b", render().astype(np.uint16), mask, {"identity": 7, "landmarks_2d": lm})
    return root


def test_folder_samples(folder):
    source = FolderSource(folder)
    assert [(r.key, r.identity) for r in source.frames()] == [("a", 0), ("b", 7)]
    a, b = (source.load(r) for r in source.frames())
    depth = render().astype(np.float32)
    face = a.depth_mm > 0
    np.testing.assert_array_equal(a.depth_mm[face], depth[face])  # 16-bit PNG is lossless
    assert np.all(a.mask[face] == MASK_FACE) and np.all(a.mask[~face] == 0)
    assert not a.landmarks_visible.any()
    assert b.mask[24, 32] == MASK_FACE and b.mask[NECK_PIXEL] == MASK_HEAD
    assert b.depth_mm[5, 2] == 0  # unlabelled wall depth is dropped
    assert b.landmarks_visible.all() and b.landmarks_3d[0, 2] == depth[20, 30]
    np.testing.assert_allclose(b.face_box, [30, 20, 34, 28])  # the landmarks' extent
    np.testing.assert_array_equal(b.intrinsics, K.astype(np.float32))


def test_convert_folder(folder, tmp_path):
    result = convert(FolderSource(folder), tmp_path / "ds", progress=False)
    assert result.splits == {0: "test", 7: "train"}
    index = DatasetIndex.load(tmp_path / "ds")
    assert [(e.identities, e.split, e.n) for e in index.entries()] == [([0], "test", 1), ([7], "train", 1)]


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", r"intrinsics\.json: not valid JSON"),
        ('{"fx": 60, "fy": 60, "cx": 32}', r"intrinsics\.json: expected .*'cy'"),
        ('{"K": [[1, 0], [0, 1]]}', r"intrinsics\.json: expected .*positive focal"),
    ],
)
def test_bad_intrinsics_are_named(folder, text, message):
    (folder / "intrinsics.json").write_text(text)
    with pytest.raises(RealDataError, match=message):
        FolderSource(folder)


def test_8bit_depth_is_rejected(folder):
    cv2.imwrite(str(folder / "a.depth.png"), np.full(HW, 50, np.uint8))
    source = FolderSource(folder)
    with pytest.raises(RealDataError, match=r"a\.depth\.png: depth must be a 16-bit .* this is 8-bit"):
        source.load(source.frames()[0])


def test_frame_of_other_size_is_rejected(folder, tmp_path):
    write_folder_frame(folder, "c", np.full((24, 32), 700, np.uint16))
    with pytest.raises(
        RealDataError, match=r"c\.rgb\.png: frame size 32x24 differs from the first frame's 64x48"
    ):
        convert(FolderSource(folder), tmp_path / "ds", progress=False)


# --- CLI -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["bogus", "x", "--out", "y"], ["folder", "x"], ["folder", "x", "--out", "y", "--shard-size", "0"]],
)
def test_cli_bad_arguments_exit_2(args):
    run = subprocess.run(
        [str(PYTHON), "-m", "train.realdata", *args],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "usage:" in run.stderr


def test_cli_data_error_exit_1_without_traceback(folder, tmp_path, capsys):
    (folder / "intrinsics.json").unlink()
    assert main(["folder", str(folder), "--out", str(tmp_path / "ds"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "intrinsics.json: missing" in err and "Traceback" not in err


def test_cli_converts(folder, tmp_path, capsys):
    assert main(["folder", str(folder), "--out", str(tmp_path / "ds"), "--quiet"]) == 0
    assert "2 frames in 2 shards" in capsys.readouterr().out
    assert DatasetIndex.load(tmp_path / "ds").n_samples() == 2
