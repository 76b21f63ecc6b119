"""The head-and-neck triangle mesh cut from the MakeHuman hm08 base mesh.

Kept: body skin above the shoulders, the eyeballs (`helper-l-eye`, `helper-r-eye`, so the eye holes of
the skin are filled by a real eyeball surface), and teeth and tongue (seen when the mouth opens).
Coordinates are converted to millimetres in a head frame: origin between the eyeballs' centres,
x to the subject's left, y up, z forward (out of the face).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from train.synth import makehuman as mh

MM_PER_UNIT = 100.0  # MakeHuman units are decimetres

# Part ids per triangle.
PART_SKIN = 0
PART_EYE = 1
PART_MOUTH = 2  # teeth, tongue
_HELPER_PARTS = {
    "helper-l-eye": PART_EYE,
    "helper-r-eye": PART_EYE,
    "helper-upper-teeth": PART_MOUTH,
    "helper-lower-teeth": PART_MOUTH,
    "helper-tongue": PART_MOUTH,
}
NECK_CUT_Y = 5.75  # MakeHuman units: below the chin (~6.1), above the shoulders
NECK_HALF_WIDTH = 1.25


@dataclass(frozen=True)
class HeadMesh:
    vertices: np.ndarray  # (V, 3) float32 mm, head frame
    triangles: np.ndarray  # (F, 3) int32
    tri_uv: np.ndarray  # (F, 3, 2) float32 texture coordinates (u right, v down, in [0, 1])
    tri_part: np.ndarray  # (F,) uint8 PART_*
    source_index: np.ndarray  # (V,) int32 hm08 vertex index of each vertex
    origin_units: np.ndarray  # (3,) float32 head-frame origin in MakeHuman units

    def to_head_frame(self, hm08_positions: np.ndarray) -> np.ndarray:
        """hm08 positions (MakeHuman units) of our vertices → head-frame millimetres."""
        return ((hm08_positions - self.origin_units) * MM_PER_UNIT).astype(np.float32)


def _selected_quads(obj: mh.ObjMesh) -> tuple[np.ndarray, np.ndarray]:
    centroid = obj.vertices[obj.quads].mean(axis=1)
    group = np.array(obj.groups)[obj.quad_group]
    skin = (group == "body") & (centroid[:, 1] > NECK_CUT_Y) & (np.abs(centroid[:, 0]) < NECK_HALF_WIDTH)
    part = np.full(len(obj.quads), PART_SKIN, np.uint8)
    keep = skin.copy()
    for name, pid in _HELPER_PARTS.items():
        sel = group == name
        keep |= sel
        part[sel] = pid
    return np.flatnonzero(keep), part


@lru_cache(maxsize=1)
def head_mesh() -> HeadMesh:
    obj = mh.base_mesh()
    quads_idx, part = _selected_quads(obj)
    quads = obj.quads[quads_idx]
    used = np.unique(quads)
    remap = np.full(len(obj.vertices), -1, np.int32)
    remap[used] = np.arange(len(used), dtype=np.int32)
    q = remap[quads]
    triangles = np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]]).astype(np.int32)
    quv = obj.uvs[obj.quad_uvs[quads_idx]].copy()
    quv[..., 1] = 1.0 - quv[..., 1]  # image convention: v grows downwards
    tri_uv = np.concatenate([quv[:, [0, 1, 2]], quv[:, [0, 2, 3]]]).astype(np.float32)
    tri_part = np.concatenate([part[quads_idx], part[quads_idx]])
    eyes = obj.vertices[np.unique(obj.quads[np.isin(obj.quad_group, _eye_groups(obj))])]
    origin = eyes.mean(axis=0).astype(np.float32)
    return HeadMesh(
        vertices=((obj.vertices[used] - origin) * MM_PER_UNIT).astype(np.float32),
        triangles=triangles,
        tri_uv=tri_uv,
        tri_part=tri_part,
        source_index=used.astype(np.int32),
        origin_units=origin,
    )


def _eye_groups(obj: mh.ObjMesh) -> list[int]:
    return [obj.groups.index(g) for g in ("helper-l-eye", "helper-r-eye")]


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals, unit length, for smooth (Phong) shading."""
    v = vertices[triangles]
    face_n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    n = len(vertices)
    idx = triangles.ravel()
    per_corner = np.repeat(face_n, 3, axis=0)
    normals = np.stack([np.bincount(idx, per_corner[:, c], minlength=n) for c in range(3)], axis=1)
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
