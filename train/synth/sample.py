"""One labelled frame: the record every data source produces and every consumer reads.

Synthetic renders, presentation attacks and converted real RGB-D recordings (Biwi, generic
folders) all become `Sample`s, so training and evaluation never care where a frame came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

N_LANDMARKS = 68

# Labels of `Sample.mask`.
MASK_BACKGROUND = 0
MASK_HEAD = 1  # head and neck surface outside the face (scalp, ears, neck), or an attack medium
MASK_FACE = 2  # the face: forehead to chin, ear to ear in front of the ears; metrics use this

BONA_FIDE = "bona_fide"
ATTACK_TYPES = ("print_flat", "print_bent", "replay_phone", "replay_tablet", "replay_monitor")
ALL_LABELS = (BONA_FIDE, *ATTACK_TYPES)


@dataclass(frozen=True)
class Sample:
    rgb: np.ndarray  # (H, W, 3) uint8, RGB order
    depth_mm: np.ndarray  # (H, W) float32, camera Z in millimetres; 0 where nothing is labelled
    mask: np.ndarray  # (H, W) uint8, MASK_* labels
    landmarks_2d: np.ndarray  # (68, 2) float32 pixel x, y (iBUG 68 order)
    landmarks_3d: np.ndarray  # (68, 3) float32 camera-frame X, Y, Z in mm (X right, Y down, Z forward)
    landmarks_visible: np.ndarray  # (68,) bool, False where self-occluded or outside the frame
    intrinsics: np.ndarray  # (3, 3) float32 pinhole K in pixels
    pose_deg: np.ndarray  # (3,) float32 head yaw, pitch, roll in degrees (of the shown face)
    face_box: np.ndarray  # (4,) float32 x0, y0, x1, y1 pixels: the landmarks' extent, visible or not
    identity: int  # identity id; identity-disjoint splits rely on it
    label: str  # BONA_FIDE or one of ATTACK_TYPES
    # The JPEG that rgb decodes from, when there is one: stored as is, so a frame is compressed once.
    rgb_jpeg: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        h, w = self.depth_mm.shape
        checks = {
            "rgb": (self.rgb.shape == (h, w, 3), self.rgb.dtype == np.uint8),
            "depth_mm": (True, self.depth_mm.dtype == np.float32),
            "mask": (self.mask.shape == (h, w), self.mask.dtype == np.uint8),
            "landmarks_2d": (self.landmarks_2d.shape == (N_LANDMARKS, 2), True),
            "landmarks_3d": (self.landmarks_3d.shape == (N_LANDMARKS, 3), True),
            "landmarks_visible": (self.landmarks_visible.shape == (N_LANDMARKS,), True),
            "intrinsics": (self.intrinsics.shape == (3, 3), True),
            "face_box": (self.face_box.shape == (4,), True),
        }
        for name, (shape_ok, dtype_ok) in checks.items():
            if not (shape_ok and dtype_ok):
                value = getattr(self, name)
                raise ValueError(f"Sample.{name}: bad shape {value.shape} or dtype {value.dtype}")
        if self.label not in ALL_LABELS:
            raise ValueError(f"Sample.label {self.label!r} is not one of {ALL_LABELS}")

    @property
    def is_attack(self) -> bool:
        return self.label != BONA_FIDE
