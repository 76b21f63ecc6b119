"""Biwi Kinect Head Pose Database → `Sample`s with depth registered into the colour frame.

Layout: SRC/01 .. SRC/24 (SRC may also be the folder holding `hpdb/`), each subject folder with
`depth.cal`, `rgb.cal` and per frame `frame_XXXXX_rgb.png`, `frame_XXXXX_depth.bin`,
`frame_XXXXX_pose.txt`.

- `_depth.bin`: little-endian int32 width, int32 height, then runs of (int32 numempty, int32 numfull,
  numfull int16 depths in mm) filling width*height pixels row-major; skipped pixels are 0 (no data).
- `.cal`: 3x3 K, 4 distortion numbers, 3x3 R, 3-vector t (mm): X_cam = R X_ref + t. The reference is
  the depth camera (depth.cal holds identity R, zero t); both are composed anyway, so a non-identity
  depth.cal is still handled. Distortion is ignored (it is zero in the released files; a warning says
  so when it is not).
- `_pose.txt`: the head's 3x3 rotation, then its centre in mm, both in the depth camera frame.

Biwi has no landmarks: they are zeros and all invisible. The mask comes from 3D distance to the
head centre (see `head_mask`); depth outside the head is dropped because Biwi records the room too.
Identity is the subject folder's number; note that Biwi records 4 of its 20 people twice, so two
folders can be one person.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train.realdata.common import (
    FrameRef,
    RealDataError,
    mask_box,
    no_landmarks,
    read_numbers,
    read_rgb,
    require_file,
)
from train.realdata.register import register_depth
from train.synth.sample import BONA_FIDE, MASK_FACE, MASK_HEAD, Sample

log = logging.getLogger(__name__)

FACE_RADIUS_MM = 100.0  # face surface lies ~70-100 mm from the Biwi head centre
HEAD_RADIUS_MM = 130.0  # scalp, ears and upper neck; beyond this is shoulders, hands or room
_MAX_SIDE = 10_000  # a header beyond this is garbage, not a depth image


# --- depth.bin -------------------------------------------------------------------------------------


def read_depth_bin(path: Path) -> np.ndarray:
    """Decode a Biwi run-length encoded depth file into an (H, W) int16 image in mm."""
    data = require_file(path, "Biwi depth file").read_bytes()
    if len(data) < 8:
        raise RealDataError(f"{path}: truncated depth file ({len(data)} bytes, header needs 8)")
    width, height = struct.unpack_from("<ii", data, 0)
    if not (0 < width <= _MAX_SIDE and 0 < height <= _MAX_SIDE):
        raise RealDataError(f"{path}: bad depth image size {width}x{height} in the header")
    total, out = width * height, np.zeros(width * height, np.int16)
    filled, offset = 0, 8
    while filled < total:  # one iteration per run; the values of a run are copied at once
        if offset + 8 > len(data):
            raise RealDataError(f"{path}: truncated depth file: {filled} of {total} pixels decoded")
        empty, full = struct.unpack_from("<ii", data, offset)
        offset += 8
        if empty < 0 or full < 0 or filled + empty + full > total:
            raise RealDataError(f"{path}: corrupt run ({empty} empty, {full} full) at pixel {filled}")
        filled += empty
        if offset + 2 * full > len(data):
            raise RealDataError(f"{path}: truncated depth file: {filled} of {total} pixels decoded")
        out[filled : filled + full] = np.frombuffer(data, "<i2", full, offset)
        filled, offset = filled + full, offset + 2 * full
    return out.reshape(height, width)


def write_depth_bin(path: Path, depth_mm: np.ndarray) -> None:
    """Encode an (H, W) depth image (mm, 0 = no data) in Biwi's run-length format."""
    flat = np.asarray(depth_mm).astype("<i2").ravel()
    height, width = depth_mm.shape
    edges = np.flatnonzero(np.diff((flat != 0).astype(np.int8))) + 1
    starts, ends = np.r_[0, edges], np.r_[edges, flat.size]
    parts, empty = [struct.pack("<ii", width, height)], 0
    for start, end in zip(starts, ends):
        if flat[start] == 0:
            empty = end - start
            continue
        parts += [struct.pack("<ii", empty, end - start), flat[start:end].tobytes()]
        empty = 0
    if empty:
        parts.append(struct.pack("<ii", empty, 0))
    Path(path).write_bytes(b"".join(parts))


# --- calibration and pose --------------------------------------------------------------------------


@dataclass(frozen=True)
class Calibration:
    K: np.ndarray  # (3, 3) intrinsics in pixels
    distortion: np.ndarray  # (4,)
    R: np.ndarray  # (3, 3) reference (depth camera) → this camera
    t: np.ndarray  # (3,) mm


@dataclass(frozen=True)
class HeadPose:
    R: np.ndarray  # (3, 3) head rotation in the depth camera frame
    centre: np.ndarray  # (3,) head centre in mm, depth camera frame


def read_cal(path: Path) -> Calibration:
    v = read_numbers(path, 25, "Biwi .cal: 3x3 K, 4 distortion, 3x3 R, 3 t")
    cal = Calibration(K=v[:9].reshape(3, 3), distortion=v[9:13], R=v[13:22].reshape(3, 3), t=v[22:])
    if cal.K[0, 0] <= 0 or cal.K[1, 1] <= 0 or not np.allclose(cal.K[2], [0, 0, 1]):
        raise RealDataError(f"{path}: intrinsic matrix is not a pinhole K: {cal.K.tolist()}")
    _check_rotation(path, cal.R)
    if np.any(cal.distortion != 0):
        log.warning("%s: distortion %s is ignored", path, cal.distortion.tolist())
    return cal


def read_pose(path: Path) -> HeadPose:
    v = read_numbers(path, 12, "Biwi pose: 3x3 head rotation, head centre in mm")
    pose = HeadPose(R=v[:9].reshape(3, 3), centre=v[9:])
    _check_rotation(path, pose.R)
    return pose


def _check_rotation(path: Path, rot: np.ndarray) -> None:
    if not np.allclose(rot @ rot.T, np.eye(3), atol=1e-2):
        raise RealDataError(f"{path}: matrix {rot.tolist()} is not a rotation")


def depth_to_rgb(depth_cal: Calibration, rgb_cal: Calibration) -> tuple[np.ndarray, np.ndarray]:
    """R, t with X_rgb = R X_depth + t, composed through the shared reference frame."""
    rot = rgb_cal.R @ depth_cal.R.T
    return rot, rgb_cal.t - rot @ depth_cal.t


def pose_to_ypr(rot: np.ndarray) -> np.ndarray:
    """Yaw, pitch, roll in degrees, in the convention of the published Biwi benchmarks (Hopenet)."""
    r = rot.T
    pitch = np.arctan2(r[2, 1], r[2, 2])
    yaw = -np.arctan2(-r[2, 0], np.hypot(r[2, 1], r[2, 2]))
    roll = -np.arctan2(r[1, 0], r[0, 0])
    return np.degrees([yaw, pitch, roll]).astype(np.float32)


# --- labels ----------------------------------------------------------------------------------------


def head_mask(points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """MASK_FACE: within FACE_RADIUS_MM of the centre and nearer the camera than it; MASK_HEAD: the
    rest within HEAD_RADIUS_MM. Camera-facing rather than head-facing, so no head-axis convention
    is needed; on a profile view this labels the visible cheek and ear side as face."""
    valid = points[..., 2] > 0
    dist = np.linalg.norm(points - centre.astype(np.float32), axis=-1)
    face = valid & (dist <= FACE_RADIUS_MM) & (points[..., 2] < centre[2])
    head = valid & (dist <= HEAD_RADIUS_MM) & ~face
    mask = np.zeros(points.shape[:2], np.uint8)
    mask[head], mask[face] = MASK_HEAD, MASK_FACE
    return mask


def sphere_box(centre: np.ndarray, k: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """The image box of a head-sized sphere at `centre`, clipped: the face box when no face is seen."""
    if centre[2] <= 0:
        return np.zeros(4, np.float32)
    u, v, _ = k @ centre / centre[2]
    r = k[0, 0] * FACE_RADIUS_MM / centre[2]
    h, w = hw
    return np.clip([u - r, v - r, u + r, v + r], 0, [w, h, w, h]).astype(np.float32)


# --- the source ------------------------------------------------------------------------------------


def _subject_dirs(root: Path) -> list[Path]:
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit())
    if not dirs and (root / "hpdb").is_dir():
        return _subject_dirs(root / "hpdb")
    return dirs


class BiwiSource:
    """Lists Biwi frames and loads each as a `Sample` in the colour camera's frame."""

    kind = "biwi"

    def __init__(self, root: Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise RealDataError(f"{self.root}: no such Biwi directory")
        self._cal: dict[Path, tuple[Calibration, Calibration]] = {}

    def frames(self) -> list[FrameRef]:
        dirs = _subject_dirs(self.root)
        if not dirs:
            raise RealDataError(f"{self.root}: no Biwi subject folders (01 .. 24, or hpdb/01 ..)")
        return [
            FrameRef(identity=int(d.name), path=p, key=f"{d.name}/{p.name[: -len('_rgb.png')]}")
            for d in dirs
            for p in sorted(d.glob("frame_*_rgb.png"))
        ]

    def calibration(self, subject: Path) -> tuple[Calibration, Calibration]:
        if subject not in self._cal:
            self._cal[subject] = (read_cal(subject / "depth.cal"), read_cal(subject / "rgb.cal"))
        return self._cal[subject]

    def load(self, ref: FrameRef) -> Sample:
        stem = ref.path.with_name(ref.path.name[: -len("_rgb.png")])
        rgb = read_rgb(ref.path)
        depth = read_depth_bin(Path(f"{stem}_depth.bin"))
        pose = read_pose(Path(f"{stem}_pose.txt"))
        depth_cal, rgb_cal = self.calibration(ref.path.parent)
        rot, trans = depth_to_rgb(depth_cal, rgb_cal)
        centre = rot @ pose.centre + trans
        # nothing farther than the back of the head can be labelled or hide a labelled point
        reg = register_depth(
            depth, depth_cal.K, rgb_cal.K, rot, trans, rgb.shape[:2], max_z=centre[2] + HEAD_RADIUS_MM
        )
        mask = head_mask(reg.points, centre)
        box = mask_box(mask)
        lm2, lm3, visible = no_landmarks()
        return Sample(
            rgb=rgb,
            depth_mm=np.where(mask > 0, reg.depth_mm, 0).astype(np.float32),
            mask=mask,
            landmarks_2d=lm2,
            landmarks_3d=lm3,
            landmarks_visible=visible,
            intrinsics=rgb_cal.K.astype(np.float32),
            pose_deg=pose_to_ypr(rot @ pose.R),
            face_box=box if box is not None else sphere_box(centre, rgb_cal.K, rgb.shape[:2]),
            identity=ref.identity,
            label=BONA_FIDE,
        )
