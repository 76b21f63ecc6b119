"""Render one posed, expressive, textured head into a camera with exact depth, mask and landmarks."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from train.synth import albedo as albedo_lib
from train.synth import morph
from train.synth.camera import HEAD_TO_CAMERA, Camera, rotation_ypr
from train.synth.head import PART_EYE, PART_SKIN, head_mesh, vertex_normals
from train.synth.raster import project, rasterize, sample_texture
from train.synth.sample import MASK_FACE, MASK_HEAD
from train.synth.shading import Lighting, shade

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
    radiance: np.ndarray  # (H, W, 3) float32 linear RGB, 0 where not covered
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


@lru_cache(maxsize=1)
def _eye_coordinates() -> np.ndarray:
    return albedo_lib.eye_coordinates()


@lru_cache(maxsize=1)
def _eye_vertices() -> np.ndarray:
    mesh = head_mesh()
    return np.unique(mesh.triangles[mesh.tri_part == 1])


def _material(tri_part: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-triangle specular strength and shininess: skin is dull to oily, eyes are wet."""
    spec = np.where(tri_part == PART_SKIN, rng.uniform(0.02, 0.12), 0.6).astype(np.float32)
    shin = np.where(tri_part == PART_SKIN, rng.uniform(8, 30), 80.0).astype(np.float32)
    return spec, shin


def render_face(
    identity: Identity,
    expression: np.ndarray,
    pose: HeadPose,
    camera: Camera,
    lighting: Lighting,
    rng: np.random.Generator,
) -> FaceLayer:
    mesh = head_mesh()
    _, expr_basis = morph.load_bases()
    head_pts = identity.neutral + morph.apply(expr_basis, expression)
    pts = pose.transform(head_pts)
    raster = rasterize(pts, mesh.triangles, camera.K, camera.hw)
    hit = raster.hit_index
    lm_idx, tri_face = _landmarks_and_face_triangles()

    n = raster.at_hits(vertex_normals(pts, mesh.triangles)[mesh.triangles])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-6)
    uv = raster.at_hits(mesh.tri_uv)
    size = identity.albedo.shape[0]
    albedo = sample_texture(
        identity.albedo, uv[:, 0] * size, uv[:, 1] * size, cv2.INTER_LINEAR, cv2.BORDER_WRAP
    )
    spec, shin = _material(mesh.tri_part, rng)
    tri = raster.tri.ravel()[hit]
    on_eye = mesh.tri_part[tri] == PART_EYE
    if on_eye.any():  # the eyeball's UV island is too small for an iris: paint it procedurally
        eye_uv = raster.at_hits(_eye_coordinates()[mesh.triangles])[on_eye]
        albedo[on_eye] = albedo_lib.eye_albedo(identity.appearance, eye_uv)
    points = raster.at_hits(pts[mesh.triangles].astype(np.float32))
    h, w = camera.hw
    radiance = np.zeros((h * w, 3), np.float32)
    radiance[hit] = shade(albedo, n, points, lighting, spec[tri], shin[tri])
    radiance = radiance.reshape(h, w, 3)
    mask = np.zeros(h * w, np.uint8)
    mask[hit] = np.where(tri_face[tri], MASK_FACE, MASK_HEAD)
    mask = mask.reshape(h, w)
    depth = raster.depth.copy()
    # Clothing hides the neck's cut end, never the face (the chin is in front of the collar).
    torso = _torso_mask(pose, camera) & (mask != MASK_FACE)
    for layer in (depth, mask):
        layer[torso] = 0
    radiance[torso] = 0

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
    its pixel is nearer than it.
    """
    visible = np.zeros(len(lm2), bool)
    h, w = depth.shape
    for i, (xy, z) in enumerate(zip(lm2, lm_z)):
        if not (0 <= xy[0] < w and 0 <= xy[1] < h):
            continue
        seen, step = surface_depth_at(depth, xy)
        if np.isfinite(step):
            visible[i] = abs(seen - z) <= 0.5 + 0.5 * step
        else:
            px = depth[int(xy[1]), int(xy[0])]
            visible[i] = px == 0 or px >= z - 0.5
    return visible


def _torso_mask(pose: HeadPose, camera: Camera) -> np.ndarray:
    """Screen-space clothing: the collar ring around the neck and shoulders below it, to the frame bottom.

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
    hull = cv2.convexHull(np.concatenate([pts, below]).astype(np.float32)).astype(np.int32)
    out = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(out, hull, 1)
    return out.astype(bool)
