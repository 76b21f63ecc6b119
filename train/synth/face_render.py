"""Render one posed, expressive, textured head into a camera with exact depth, mask and landmarks."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache

import cv2
import numba
import numpy as np

from train.synth import albedo as albedo_lib
from train.synth import morph
from train.synth.camera import HEAD_TO_CAMERA, Camera, rotation_ypr
from train.synth.face_pass import face_pass
from train.synth.head import PART_SKIN, head_mesh
from train.synth.raster import project, rasterize_window
from train.synth.sample import MASK_FACE
from train.synth.shading import Lighting

PIVOT_MM = np.array([0.0, -70.0, -80.0])  # head frame: top of the neck, where the head turns
NECK_CENTRE_MM = np.array([0.0, -135.0, -100.0])  # head frame: centre of the collar ring
NECK_RADIUS_MM = 62.0


@dataclass(frozen=True)
class Identity:
    identity_id: int
    neutral: np.ndarray  # (V, 3) mm, head frame, identity morphs applied
    albedo: np.ndarray  # (S, S, 3) float32 linear RGB texture
    appearance: object  # the albedo module's Appearance (for occluders)


@dataclass(frozen=True)
class HeadPose:
    yaw: float
    pitch: float
    roll: float
    pivot_cam: np.ndarray  # (3,) camera-frame position of the head pivot, mm

    def transform(self, head_points: np.ndarray) -> np.ndarray:
        rot = rotation_ypr(self.yaw, self.pitch, self.roll) @ HEAD_TO_CAMERA
        return (head_points - PIVOT_MM) @ rot.T + self.pivot_cam

    @property
    def degrees(self) -> np.ndarray:
        return np.array([self.yaw, self.pitch, self.roll], np.float32)


@dataclass(frozen=True)
class FaceLayer:
    radiance: np.ndarray  # (H, W, 3) float32 linear RGB: the canvas drawn into (else black around the head)
    depth: np.ndarray  # (H, W) float32 mm
    mask: np.ndarray  # (H, W) uint8 MASK_*
    landmarks_2d: np.ndarray  # (68, 2)
    landmarks_3d: np.ndarray  # (68, 3)
    landmarks_visible: np.ndarray  # (68,)
    torso: np.ndarray  # (H, W) bool: clothing drawn over the neck's cut end

    @property
    def covered(self) -> np.ndarray:
        return self.mask > 0


@lru_cache(maxsize=1)
def _landmarks_and_face_triangles() -> tuple[np.ndarray, np.ndarray]:
    """(landmark head-vertex indices (68,), per-triangle is-face flag (F,))."""
    from train.synth.landmarks import load_landmarks

    mesh = head_mesh()
    spec = load_landmarks()
    lookup = {int(s): i for i, s in enumerate(mesh.source_index)}
    lm = np.array([lookup[int(s)] for s in spec.landmark_vertices], np.int32)
    in_face = np.isin(mesh.source_index, spec.face_region_vertices)
    tri_face = in_face[mesh.triangles].sum(axis=1) >= 2
    tri_face |= mesh.tri_part != PART_SKIN  # eyeballs, teeth and tongue belong to the face
    return lm, tri_face


def make_identity(identity_id: int, rng: np.random.Generator) -> Identity:
    id_basis, _ = morph.load_bases()
    neutral = head_mesh().vertices + morph.apply(id_basis, morph.sample_identity_weights(id_basis, rng))
    eyes = neutral[_eye_vertices()]
    neutral = neutral - eyes.mean(axis=0)  # keep the head frame's origin between the eyes
    appearance = albedo_lib.sample_appearance(rng)
    texture = albedo_lib.make_albedo(appearance, rng)
    return Identity(identity_id, neutral.astype(np.float32), texture, appearance)


def with_relief_scale(identity: Identity, scale: float) -> Identity:
    """The identity with its head frame's depth axis (z, out of the face) stretched by `scale` about the
    eyes' plane: nose, brows, lips and chin stand out more (> 1) or less (< 1) than hm08's morphs reach,
    so a network has to read relief from shading and silhouette instead of recalling hm08's profile."""
    neutral = identity.neutral.copy()
    neutral[:, 2] *= np.float32(scale)
    return replace(identity, neutral=neutral)


@lru_cache(maxsize=1)
def _eye_vertices() -> np.ndarray:
    mesh = head_mesh()
    return np.unique(mesh.triangles[mesh.tri_part == 1])


def _material(rng: np.random.Generator) -> tuple[float, float]:
    """Skin's specular strength and shininess: dull to oily (eyes are wet: face_pass.EYE_*)."""
    return float(rng.uniform(0.02, 0.12)), float(rng.uniform(8, 30))


def render_face(
    identity: Identity,
    expression: np.ndarray,
    pose: HeadPose,
    camera: Camera,
    lighting: Lighting,
    rng: np.random.Generator,
    canvas: np.ndarray | None = None,
    torso_colour: np.ndarray | None = None,
) -> FaceLayer:
    """Render the head into `canvas` (H, W, 3) float32 linear RGB, in place; a black frame if None.

    With torso_colour, the clothing over the neck's cut end is painted in that colour first.
    """
    mesh = head_mesh()
    _, expr_basis = morph.load_bases()
    head_pts = identity.neutral + morph.apply(expr_basis, expression)
    pts = pose.transform(head_pts)
    window = rasterize_window(pts, mesh.triangles, camera.K, camera.hw)
    lm_idx, tri_face = _landmarks_and_face_triangles()
    h, w = camera.hw
    radiance = np.zeros((h, w, 3), np.float32) if canvas is None else canvas
    hull = _torso_hull(pose, camera)
    torso = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(torso, hull, 1)
    if torso_colour is not None:
        cv2.fillConvexPoly(radiance, hull, tuple(float(c) for c in torso_colour))
    depth = np.zeros((h, w), np.float32)
    mask = np.zeros((h, w), np.uint8)
    torso = torso.view(bool)
    face_pass(window, mesh, tri_face, pts, identity, _material(rng), lighting, torso, radiance, depth, mask)
    torso &= mask != MASK_FACE  # what the clothing covers: never the face (the chin is in front)

    lm3 = pts[lm_idx]
    lm2 = project(lm3, camera.K)
    visible = landmark_visibility(lm2, lm3[:, 2], depth)
    return FaceLayer(radiance, depth, mask, lm2.astype(np.float32), lm3.astype(np.float32), visible, torso)


def surface_depth_at(depth: np.ndarray, xy: np.ndarray) -> tuple[float, float]:
    """(bilinear depth at sub-pixel position xy, largest depth step between neighbouring pixels there).

    Pixel centres are at +0.5. Returns (0, inf) where any of the 2x2 pixels is empty (a silhouette).
    """
    fx, fy = xy[0] - 0.5, xy[1] - 0.5
    x0, y0 = int(np.floor(fx)), int(np.floor(fy))
    h, w = depth.shape
    if x0 < 1 or y0 < 1 or x0 + 2 >= w or y0 + 2 >= h:
        return 0.0, np.inf
    patch = depth[y0 : y0 + 2, x0 : x0 + 2].astype(np.float64)
    if (patch == 0).any():
        return 0.0, np.inf
    ax, ay = fx - x0, fy - y0
    top = patch[0, 0] * (1 - ax) + patch[0, 1] * ax
    bottom = patch[1, 0] * (1 - ax) + patch[1, 1] * ax
    window = depth[y0 - 1 : y0 + 3, x0 - 1 : x0 + 3].astype(np.float64)
    window = np.where(window > 0, window, np.nan)
    step = np.nanmax([np.nanmax(np.abs(np.diff(window, axis=0))), np.nanmax(np.abs(np.diff(window, axis=1)))])
    return float(top * (1 - ay) + bottom * ay), float(step)


def landmark_visibility(lm2: np.ndarray, lm_z: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Visible = the surface seen at the landmark's position is the landmark's own surface.

    The depth seen there (bilinear) must match the landmark's Z within 0.5 mm plus half the local depth
    step per pixel (the sampling error on a slope). A nearer surface (nose, cheek, lid, lip) means
    occluded; on a silhouette (an empty neighbour) the landmark counts as visible only if nothing in
    its pixel is nearer than it. (surface_depth_at, compiled, per landmark.)
    """
    return _visibility(np.asarray(lm2, np.float64), np.asarray(lm_z, np.float64), depth)


@numba.njit(cache=True, nogil=True)
def _visibility(lm2, lm_z, depth):
    h, w = depth.shape
    visible = np.zeros(lm2.shape[0], np.bool_)
    for i in range(lm2.shape[0]):
        x, y, z = lm2[i, 0], lm2[i, 1], lm_z[i]
        if not (0 <= x < w and 0 <= y < h):
            continue
        fx, fy = x - 0.5, y - 0.5
        x0, y0 = int(np.floor(fx)), int(np.floor(fy))
        silhouette = x0 < 1 or y0 < 1 or x0 + 2 >= w or y0 + 2 >= h
        if not silhouette:
            for yy in range(y0, y0 + 2):
                for xx in range(x0, x0 + 2):
                    silhouette |= depth[yy, xx] == 0
        if silhouette:
            px = depth[int(y), int(x)]
            visible[i] = px == 0 or px >= z - 0.5
            continue
        ax, ay = fx - x0, fy - y0
        top = depth[y0, x0] * (1 - ax) + depth[y0, x0 + 1] * ax
        bottom = depth[y0 + 1, x0] * (1 - ax) + depth[y0 + 1, x0 + 1] * ax
        seen = top * (1 - ay) + bottom * ay
        step = 0.0  # the largest step between labelled neighbours in the 4 x 4 window around it
        for yy in range(y0 - 1, y0 + 3):
            for xx in range(x0 - 1, x0 + 3):
                d = float(depth[yy, xx])
                if d == 0:
                    continue
                if yy + 1 < y0 + 3 and depth[yy + 1, xx] > 0:
                    step = max(step, abs(float(depth[yy + 1, xx]) - d))
                if xx + 1 < x0 + 3 and depth[yy, xx + 1] > 0:
                    step = max(step, abs(float(depth[yy, xx + 1]) - d))
        visible[i] = abs(seen - z) <= 0.5 + 0.5 * step
    return visible


def _torso_hull(pose: HeadPose, camera: Camera) -> np.ndarray:
    """Screen-space clothing: the convex hull of the collar ring around the neck and the shoulders below
    it, extended to the frame bottom (int32 points for cv2.fillConvexPoly).

    The mesh ends in a cut neck; clothing in front of it is what a real frame shows there.
    """
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    ring = NECK_CENTRE_MM + np.stack(
        [np.cos(angles) * NECK_RADIUS_MM, np.zeros_like(angles), np.sin(angles) * NECK_RADIUS_MM], 1
    )
    shoulders = NECK_CENTRE_MM + np.stack(
        [np.cos(angles) * 190.0, np.full_like(angles, -90.0), np.sin(angles) * 90.0], 1
    )
    pts = project(pose.transform(np.concatenate([ring, shoulders])), camera.K)
    h, w = camera.hw
    below = pts.copy()
    below[:, 1] = np.maximum(pts[:, 1], h + 10) + 4 * h  # extend the silhouette off the bottom edge
    return cv2.convexHull(np.concatenate([pts, below]).astype(np.float32)).astype(np.int32)
