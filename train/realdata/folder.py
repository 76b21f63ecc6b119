"""A generic folder of registered RGB-D frames → `Sample`s. The format, all in one directory DIR:

    DIR/intrinsics.json    {"fx": .., "fy": .., "cx": .., "cy": ..}  or  {"K": [[..], [..], [..]]}
                           pinhole intrinsics of the colour camera, pixels, pixel centres at integers
    DIR/NAME.rgb.png       the colour frame (or NAME.rgb.jpg / NAME.rgb.jpeg; .png wins if both exist)
    DIR/NAME.depth.png     16-bit single-channel PNG: camera Z in mm, 0 = no data, already registered
                           to the colour frame (same size, same intrinsics)
    DIR/NAME.mask.png      optional 8-bit single-channel PNG: 0 background, 1 head, 2 face (MASK_*);
                           without it every nonzero depth pixel is face
    DIR/NAME.json          optional {"identity": int, "landmarks_2d": [[x, y] * 68],
                                     "face_box": [x0, y0, x1, y1], "pose_deg": [yaw, pitch, roll]};
                           every key is optional

Depth is kept only where the mask labels something (background depth is the room, not the face).
Identity defaults to 0 and pose to zeros (unknown). Landmarks are visible when inside the frame;
their 3D points are the depth at their pixel, back-projected (zeros where there is no depth).
The face box is `face_box` if given, else the landmarks' extent, else the extent of the face mask.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from train.realdata.common import (
    FrameRef,
    RealDataError,
    mask_box,
    no_landmarks,
    read_json,
    read_rgb,
)
from train.synth.sample import BONA_FIDE, MASK_FACE, N_LANDMARKS, Sample

log = logging.getLogger(__name__)

RGB_SUFFIXES = (".rgb.png", ".rgb.jpg", ".rgb.jpeg")  # in order of preference


def read_intrinsics(path: Path) -> np.ndarray:
    raw = read_json(path)
    expected = 'expected {"fx", "fy", "cx", "cy"} or {"K": 3x3}'
    try:
        if isinstance(raw, dict) and "K" in raw:
            k = np.array(raw["K"], np.float64)
        elif isinstance(raw, dict):
            k = np.array([[raw["fx"], 0, raw["cx"]], [0, raw["fy"], raw["cy"]], [0, 0, 1]], np.float64)
        else:
            raise TypeError(f"a {type(raw).__name__}")
    except (KeyError, TypeError, ValueError) as exc:
        raise RealDataError(f"{path}: {expected}; missing or bad value: {exc}") from exc
    if k.shape != (3, 3) or not np.all(np.isfinite(k)) or k[0, 0] <= 0 or k[1, 1] <= 0:
        raise RealDataError(f"{path}: {expected} with positive focal lengths; got {k.tolist()}")
    return k


def read_depth_png(path: Path) -> np.ndarray:
    if not path.is_file():
        raise RealDataError(f"{path}: missing depth image")
    depth = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if depth is None:
        raise RealDataError(f"{path}: not a readable image")
    if depth.dtype != np.uint16 or depth.ndim != 2:
        bits = 8 * depth.dtype.itemsize
        raise RealDataError(
            f"{path}: depth must be a 16-bit single-channel PNG in mm; this is {bits}-bit "
            f"with {1 if depth.ndim == 2 else depth.shape[2]} channel(s)"
        )
    return depth


def read_mask_png(path: Path) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise RealDataError(f"{path}: not a readable image")
    if mask.dtype != np.uint8 or mask.ndim != 2:
        raise RealDataError(
            f"{path}: mask must be an 8-bit single-channel PNG, got {mask.dtype} {mask.shape}"
        )
    if mask.max(initial=0) > MASK_FACE:
        raise RealDataError(f"{path}: mask values must be 0, 1 or 2; found {sorted(np.unique(mask))}")
    return mask


def _array(path: Path, meta: dict, key: str, shape: tuple[int, ...]) -> np.ndarray | None:
    if key not in meta:
        return None
    try:
        value = np.array(meta[key], np.float32).reshape(shape)
    except (TypeError, ValueError) as exc:
        raise RealDataError(f"{path}: {key!r} must be {shape} numbers: {exc}") from exc
    if not np.all(np.isfinite(value)):
        raise RealDataError(f"{path}: {key!r} has non-finite values")
    return value


def read_frame_meta(path: Path) -> dict:
    if not path.is_file():
        return {}
    meta = read_json(path)
    if not isinstance(meta, dict):
        raise RealDataError(f"{path}: expected a JSON object, got a {type(meta).__name__}")
    if not isinstance(meta.get("identity", 0), int) or isinstance(meta.get("identity"), bool):
        raise RealDataError(f"{path}: 'identity' must be an integer, got {meta['identity']!r}")
    return meta


def landmarks_from_2d(lm2: np.ndarray, depth_mm: np.ndarray, k: np.ndarray):
    """Visibility (inside the frame) and 3D points (the depth under each landmark, back-projected)."""
    h, w = depth_mm.shape
    px = np.rint(lm2).astype(np.int64)
    visible = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
    z = np.zeros(N_LANDMARKS, np.float64)
    z[visible] = depth_mm[px[visible, 1], px[visible, 0]]
    rays = np.linalg.inv(k) @ np.vstack([lm2.T, np.ones(N_LANDMARKS)])
    lm3 = (rays / rays[2] * z).T
    return visible, lm3.astype(np.float32)


class FolderSource:
    """Lists the frames of a folder in the documented format and loads each as a `Sample`."""

    kind = "folder"

    def __init__(self, root: Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise RealDataError(f"{self.root}: no such directory")
        self.intrinsics = read_intrinsics(self.root / "intrinsics.json")

    def frames(self) -> list[FrameRef]:
        found: dict[str, Path] = {}
        for suffix in reversed(RGB_SUFFIXES):  # later (preferred) suffixes overwrite earlier ones
            found.update({p.name[: -len(suffix)]: p for p in self.root.glob(f"*{suffix}")})
        if not found:
            raise RealDataError(f"{self.root}: no frames (NAME.rgb.png with NAME.depth.png)")
        return [
            FrameRef(
                identity=read_frame_meta(self.root / f"{name}.json").get("identity", 0), path=p, key=name
            )
            for name, p in sorted(found.items())
        ]

    def load(self, ref: FrameRef) -> Sample:
        rgb = read_rgb(ref.path)
        depth_path = self.root / f"{ref.key}.depth.png"
        depth = read_depth_png(depth_path).astype(np.float32)
        _check_size(depth_path, depth.shape, rgb.shape[:2])
        mask_path = self.root / f"{ref.key}.mask.png"
        if mask_path.is_file():
            mask = read_mask_png(mask_path)
            _check_size(mask_path, mask.shape, rgb.shape[:2])
        else:
            mask = np.where(depth > 0, MASK_FACE, 0).astype(np.uint8)
        meta_path = self.root / f"{ref.key}.json"
        meta = read_frame_meta(meta_path)
        lm2, lm3, visible, box = self._landmarks_and_box(meta_path, meta, depth, mask)
        pose = _array(meta_path, meta, "pose_deg", (3,))
        return Sample(
            rgb=rgb,
            depth_mm=np.where(mask > 0, depth, 0).astype(np.float32),
            mask=mask,
            landmarks_2d=lm2,
            landmarks_3d=lm3,
            landmarks_visible=visible,
            intrinsics=self.intrinsics.astype(np.float32),
            pose_deg=pose if pose is not None else np.zeros(3, np.float32),
            face_box=box,
            identity=ref.identity,
            label=BONA_FIDE,
        )

    def _landmarks_and_box(self, meta_path: Path, meta: dict, depth: np.ndarray, mask: np.ndarray):
        lm2, lm3, visible = no_landmarks()
        given = _array(meta_path, meta, "landmarks_2d", (N_LANDMARKS, 2))
        if given is not None:
            lm2 = given
            visible, lm3 = landmarks_from_2d(lm2, depth, self.intrinsics)
        box = _array(meta_path, meta, "face_box", (4,))
        if box is None and given is not None:
            box = np.concatenate([lm2.min(axis=0), lm2.max(axis=0)])
        if box is None:
            box = mask_box(mask)
        if box is None:
            log.warning("%s: no face pixels and no face box", meta_path)
            box = np.zeros(4, np.float32)
        return lm2, lm3, visible, box.astype(np.float32)


def _check_size(path: Path, shape: tuple[int, ...], rgb_hw: tuple[int, ...]) -> None:
    if tuple(shape) != tuple(rgb_hw):
        raise RealDataError(
            f"{path}: size {shape[1]}x{shape[0]} differs from its colour frame's {rgb_hw[1]}x{rgb_hw[0]}"
        )
