"""The 68 iBUG-300W facial landmarks and the face region, as fixed hm08 vertex indices.

Both are chosen once on the neutral MakeHuman hm08 mesh by `python -m train.synth.make_landmarks`
(see that module for how each group is derived) and stored in `assets/landmarks68.json`. Because they
are vertex indices, they follow every identity and expression morph: a landmark's 3D position is the
morphed position of its vertex.

Order and semantics are iBUG's 68-point scheme, left/right from the subject's point of view
(the subject's right is -x in hm08, and appears on the left of a frontal image):

    0-16 jaw (subject's right ear level → chin 8 → left)   17-21 right brow, 22-26 left brow
    27-30 nose bridge → tip                                 31-35 nostril base, right → left
    36-41 right eye (36 outer corner, 39 inner)             42-47 left eye (42 inner, 45 outer)
    48-59 outer lip contour (48 right corner, 51 top, 54 left corner, 57 bottom)
    60-67 inner lip line (60 right corner, 62 upper centre, 64 left corner, 66 lower centre)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

ASSET_PATH = Path(__file__).parent / "assets" / "landmarks68.json"
N_LANDMARKS = 68

# Groups for drawing: name → (slice into the 68 points, closed polygon?)
JAW = slice(0, 17)
RIGHT_BROW = slice(17, 22)
LEFT_BROW = slice(22, 27)
NOSE_BRIDGE = slice(27, 31)
NOSTRILS = slice(31, 36)
RIGHT_EYE = slice(36, 42)
LEFT_EYE = slice(42, 48)
OUTER_LIPS = slice(48, 60)
INNER_LIPS = slice(60, 68)
GROUPS: dict[str, tuple[slice, bool]] = {
    "jaw": (JAW, False),
    "right_brow": (RIGHT_BROW, False),
    "left_brow": (LEFT_BROW, False),
    "nose_bridge": (NOSE_BRIDGE, False),
    "nostrils": (NOSTRILS, False),
    "right_eye": (RIGHT_EYE, True),
    "left_eye": (LEFT_EYE, True),
    "outer_lips": (OUTER_LIPS, True),
    "inner_lips": (INNER_LIPS, True),
}

IBUG_NAMES: tuple[str, ...] = (
    *(f"jaw_{i}" for i in range(17)),
    *(f"right_brow_{i}" for i in range(5)),
    *(f"left_brow_{i}" for i in range(5)),
    "nose_bridge_top", "nose_bridge_1", "nose_bridge_2", "nose_tip",
    "right_alar_base", "right_nostril", "subnasale", "left_nostril", "left_alar_base",
    "right_eye_outer", "right_eye_upper_outer", "right_eye_upper_inner", "right_eye_inner",
    "right_eye_lower_inner", "right_eye_lower_outer",
    "left_eye_inner", "left_eye_upper_inner", "left_eye_upper_outer", "left_eye_outer",
    "left_eye_lower_outer", "left_eye_lower_inner",
    "mouth_right", "upper_lip_right_2", "upper_lip_right_1", "upper_lip_top", "upper_lip_left_1",
    "upper_lip_left_2", "mouth_left", "lower_lip_left_2", "lower_lip_left_1", "lower_lip_bottom",
    "lower_lip_right_1", "lower_lip_right_2",
    "inner_mouth_right", "inner_upper_lip_right", "inner_upper_lip_centre", "inner_upper_lip_left",
    "inner_mouth_left", "inner_lower_lip_left", "inner_lower_lip_centre", "inner_lower_lip_right",
)  # fmt: skip

# Index of each point's mirror partner (a horizontally flipped face has landmark i where i's partner was).
MIRROR: np.ndarray = np.array(
    [*range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, 35, 34, 33, 32, 31,
     45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
     54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55,
     64, 63, 62, 61, 60, 67, 66, 65],
    np.int64,
)  # fmt: skip
MIDLINE: tuple[int, ...] = (8, 27, 28, 29, 30, 33, 51, 57, 62, 66)


@dataclass(frozen=True)
class LandmarkSpec:
    landmark_vertices: np.ndarray  # (68,) int32 hm08 vertex indices, iBUG order
    face_region_vertices: np.ndarray  # (F,) int32 sorted hm08 vertex indices: face skin, eyeballs, mouth

    def face_mask(self, source_index: np.ndarray) -> np.ndarray:
        """(V,) bool: which vertices of a mesh cut from hm08 (given its `source_index`) are face."""
        return np.isin(source_index, self.face_region_vertices)

    def local_indices(self, source_index: np.ndarray) -> np.ndarray:
        """(68,) indices of the landmark vertices in a mesh cut from hm08 (e.g. `head_mesh()`)."""
        order = np.argsort(source_index)
        pos = np.searchsorted(source_index, self.landmark_vertices, sorter=order)
        local = order[np.clip(pos, 0, len(order) - 1)]
        if not np.array_equal(source_index[local], self.landmark_vertices):
            raise ValueError("the mesh does not contain every landmark vertex")
        return local


@lru_cache(maxsize=1)
def load_landmarks(path: Path = ASSET_PATH) -> LandmarkSpec:
    data = json.loads(Path(path).read_text())
    lm = np.asarray(data["landmark_vertices"], np.int32)
    region = np.asarray(data["face_region_vertices"], np.int32)
    if lm.shape != (N_LANDMARKS,):
        raise ValueError(f"{path}: expected {N_LANDMARKS} landmark vertices, got {lm.shape}")
    lm.setflags(write=False)
    region.setflags(write=False)
    return LandmarkSpec(landmark_vertices=lm, face_region_vertices=region)
