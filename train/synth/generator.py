"""From a seed to a labelled frame: identity, expression, pose, camera, light, scene, attack, sensor.

Everything random comes from `np.random.default_rng([seed, shard, index, stream])`, so a shard is
the same bytes whenever and wherever it is generated, which is what makes resuming safe.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from train.synth import morph, occluders
from train.synth.attacks import Photo, draw_fingers, render_attack, sample_medium
from train.synth.background import make_background, make_plate, plate_to_frame, real_plate
from train.synth.camera import Camera, ray_through, sample_camera
from train.synth.face_render import (
    FaceLayer,
    HeadPose,
    Identity,
    make_identity,
    render_face,
    with_relief_scale,
)
from train.synth.restyle import restyle
from train.synth.sample import ATTACK_TYPES, BONA_FIDE, Sample
from train.synth.sensor import apply_sensor, decode_jpeg, encode_jpeg, sample_sensor, sense
from train.synth.shading import sample_lighting
from train.synth.shards import JPEG_QUALITY  # frames whose camera has no JPEG pass of its own


@dataclass(frozen=True)
class GeneratorConfig:
    height: int = 480
    width: int = 640
    attack_share: float = 0.15
    hfov_deg: tuple[float, float] = (50.0, 90.0)
    distance_mm: tuple[float, float] = (300.0, 1200.0)
    yaw_deg: float = 60.0
    pitch_deg: float = 30.0
    roll_deg: float = 20.0
    frontal_share: float = 0.6  # share of poses drawn near frontal (sigma = range / 3); rest uniform
    samples_per_identity: int = 4
    p_occluder: float = 0.25
    restyle_attacks: bool = True  # attack photos graded/retouched/sharpened/mono (train/synth/restyle.py)
    # Each identity's relief (head-frame depth) stretched by a factor drawn log-uniformly from this range
    # (face_render.with_relief_scale); (1, 1) leaves hm08's faces as they are.
    relief_scale: tuple[float, float] = (1.0, 1.0)
    # Share of rooms, and of the backdrops inside attack pictures, cut from real photographs without faces
    # (background.real_plate) instead of drawn procedurally; 0 = none.
    real_backdrop_share: float = 0.0
    # Share of poses drawn at near_mm instead of across distance_mm: a door camera sees people standing
    # close, where the liveness logit was weakest (180+ px faces: 12-14 % of val frames under LLR 1.0,
    # against 2-4 % farther); 0 = none.
    near_share: float = 0.0
    near_mm: tuple[float, float] = (300.0, 550.0)

    @property
    def stretches_relief(self) -> bool:
        return tuple(self.relief_scale) != (1.0, 1.0)

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.stretches_relief:
            del d["relief_scale"]  # as datasets written before it record their generator
        if self.real_backdrop_share == 0.0:
            del d["real_backdrop_share"]
        if self.near_share == 0.0:
            del d["near_share"], d["near_mm"]
        return d


def _pose_angle(rng: np.random.Generator, limit: float, frontal_share: float) -> float:
    if rng.random() < frontal_share:
        return float(np.clip(rng.normal(0.0, limit / 3), -limit, limit))
    return float(rng.uniform(-limit, limit))


def sample_pose(cfg: GeneratorConfig, camera: Camera, rng: np.random.Generator, distance=None) -> HeadPose:
    """Head turned within the configured ranges, its eyes at a random place in the middle of the frame."""
    yaw = _pose_angle(rng, cfg.yaw_deg, cfg.frontal_share)
    pitch = _pose_angle(rng, cfg.pitch_deg, cfg.frontal_share)
    roll = _pose_angle(rng, cfg.roll_deg, cfg.frontal_share)
    dist = distance
    if dist is None:
        near = cfg.near_share > 0 and rng.random() < cfg.near_share  # no draw when off: old recipes hold
        dist = float(np.exp(rng.uniform(*np.log(cfg.near_mm if near else cfg.distance_mm))))
    h, w = camera.hw
    # Closer faces are larger, so keep them nearer the centre to stay inside the frame.
    spread = np.clip((dist - 250.0) / 900.0, 0.05, 0.3)
    eyes_px = np.array(
        [w * (0.5 + rng.uniform(-spread, spread)), h * (0.45 + rng.uniform(-spread, spread) * 0.8)]
    )
    eyes_cam = ray_through(camera, eyes_px) * dist
    pose = HeadPose(yaw, pitch, roll, pivot_cam=np.zeros(3))
    # Place the pivot so that the head-frame origin (between the eyes) lands on eyes_cam.
    offset = pose.transform(np.zeros((1, 3)))[0]
    return HeadPose(yaw, pitch, roll, pivot_cam=eyes_cam - offset)


def render_bona_fide(
    cfg: GeneratorConfig,
    identity: Identity,
    camera: Camera,
    rng: np.random.Generator,
    pose: HeadPose | None = None,
    plate: np.ndarray | None = None,
) -> tuple[np.ndarray, FaceLayer, HeadPose]:
    """Linear-light frame of the identity in front of a procedural background (the room `plate`, from
    background.make_plate, when given: an identity's frames can share a room)."""
    _, expr_basis = morph.load_bases()
    pose = pose or sample_pose(cfg, camera, rng)
    expression = morph.sample_expression_weights(expr_basis, rng)
    lighting = sample_lighting(rng)
    torso_colour = (rng.uniform(0.02, 0.6) * (1 + rng.uniform(-0.5, 0.5, 3))).astype(np.float32)
    torso_colour *= 0.85 + 0.15 * rng.random()
    canvas = _backdrop(rng, camera.hw, plate)
    layer = render_face(identity, expression, pose, camera, lighting, rng, canvas, torso_colour)
    if rng.random() < occluders.OCCLUDER_PROBABILITY:
        occluders.draw_occluders(
            identity.appearance, canvas, layer.landmarks_2d, layer.landmarks_visible, rng, in_place=True
        )
    return canvas, layer, pose


def _backdrop(rng: np.random.Generator, hw: tuple[int, int], plate: np.ndarray | None) -> np.ndarray:
    if plate is None:
        return make_background(rng, hw)
    return plate_to_frame(plate, hw, mirror=bool(rng.random() < 0.5))


def _face_box(landmarks_2d: np.ndarray) -> np.ndarray:
    return np.array([*landmarks_2d.min(axis=0), *landmarks_2d.max(axis=0)], np.float32)


def make_photo(cfg: GeneratorConfig, identity: Identity, rng: np.random.Generator,
               turn_deg: tuple[float, float] = (0.0, 0.0)) -> Photo:
    """A portrait of the identity, as an attacker would print or display it. `turn_deg` (yaw, pitch) is
    added to the sampled pose: the same rng state with another turn is the next frame of a video."""
    # The photo ends up on a medium that fills at most the frame's height: larger renders only cost time.
    h = int(rng.choice([300, 400, 480]))
    w = int(h * rng.choice([0.75, 1.0, 4 / 3]))
    camera = sample_camera(rng, (h, w), (40.0, 70.0))
    portrait = GeneratorConfig(height=h, width=w, yaw_deg=20, pitch_deg=15, roll_deg=10, frontal_share=1.0)
    f = camera.K[0, 0]
    distance = f * 190.0 / (h * rng.uniform(0.5, 0.85))  # the face fills 50-85% of the photo height
    pose = sample_pose(portrait, camera, rng, distance=distance)
    if turn_deg != (0.0, 0.0):  # about the same pivot: the head turns, the shot stays
        pose = HeadPose(pose.yaw + turn_deg[0], pose.pitch + turn_deg[1], pose.roll, pose.pivot_cam)
    plate = None
    if cfg.real_backdrop_share > 0 and rng.random() < cfg.real_backdrop_share:
        plate = real_plate(rng, (h, w))
    img, layer, _ = render_bona_fide(portrait, identity, camera, rng, pose, plate=plate)
    rgb = apply_sensor(img, sample_sensor(rng), rng)
    if cfg.restyle_attacks:
        rgb = restyle(rgb, rng)
    return Photo(rgb, layer.mask, layer.landmarks_2d, layer.landmarks_visible)


def generate_sample(
    cfg: GeneratorConfig,
    identity: Identity,
    label: str,
    rng: np.random.Generator,
    plate: np.ndarray | None = None,
) -> Sample:
    """One labelled frame; `plate` (background.make_plate) is the room, else one is drawn from rng."""
    camera = sample_camera(rng, (cfg.height, cfg.width), cfg.hfov_deg)
    if label == BONA_FIDE:
        img, layer, pose = render_bona_fide(cfg, identity, camera, rng, plate=plate)
        depth, mask, pose_deg = layer.depth, layer.mask, pose.degrees
        lm2, lm3, vis = layer.landmarks_2d, layer.landmarks_3d, layer.landmarks_visible
    else:
        photo = make_photo(cfg, identity, rng)
        medium = sample_medium(label, photo.rgb.shape[1] / photo.rgb.shape[0], rng)
        img = _backdrop(rng, camera.hw, plate)
        layer = render_attack(photo, medium, camera, sample_lighting(rng), rng, canvas=img)
        depth, mask = layer.depth, layer.mask
        draw_fingers(img, depth, mask, rng)
        lm2, lm3, vis, pose_deg = (
            layer.landmarks_2d,
            layer.landmarks_3d,
            layer.landmarks_visible,
            layer.pose_deg,
        )
    sensor = sample_sensor(rng)
    bgr = sense(img, sensor, rng)
    # One JPEG encode per frame: the camera's own JPEG pass when it has one, else the shard's storage
    # quality; rgb is what those bytes decode to, so a sample reads back from its shard as generated.
    jpeg = encode_jpeg(bgr, sensor.jpeg_quality or JPEG_QUALITY)
    return Sample(
        rgb=decode_jpeg(jpeg),
        rgb_jpeg=jpeg,
        depth_mm=depth.astype(np.float32),
        mask=mask.astype(np.uint8),
        landmarks_2d=lm2,
        landmarks_3d=lm3,
        landmarks_visible=vis,
        intrinsics=camera.K.astype(np.float32),
        pose_deg=pose_deg.astype(np.float32),
        face_box=_face_box(lm2),
        identity=identity.identity_id,
        label=label,
    )


def warm_up(cfg: GeneratorConfig) -> None:
    """Build the caches (morph basis, texture atlas, landmarks) and compile the numba kernels once,
    before worker processes fork, so that every worker starts fast and shares the memory."""
    small = GeneratorConfig(height=96, width=128, attack_share=0.5)
    generate_shard(small, 0, 0, 2)


def shard_labels(cfg: GeneratorConfig, n: int, rng: np.random.Generator) -> list[str]:
    """Exactly round(n * attack_share) attacks per shard, types in turn, so counts are predictable."""
    n_attacks = int(round(n * cfg.attack_share))
    start = int(rng.integers(len(ATTACK_TYPES)))
    labels = [ATTACK_TYPES[(start + k) % len(ATTACK_TYPES)] for k in range(n_attacks)]
    labels += [BONA_FIDE] * (n - n_attacks)
    rng.shuffle(labels)
    return labels


def generate_shard(cfg: GeneratorConfig, seed: int, shard_id: int, n: int, on_sample=None) -> list[Sample]:
    labels = shard_labels(cfg, n, np.random.default_rng([seed, shard_id, 0, 0]))
    n_ids = -(-n // cfg.samples_per_identity)
    samples, identities, plates = [], {}, {}
    for i, label in enumerate(labels):
        k = i % n_ids
        if k not in identities:
            identity_id = shard_id * 100_000 + k  # unique per shard → identity-disjoint splits
            identities[k] = make_identity(identity_id, np.random.default_rng([seed, shard_id, k, 1]))
            if cfg.stretches_relief:  # its own stream: the other draws stay as they were
                draw = np.random.default_rng([seed, shard_id, k, 4]).uniform(*np.log(cfg.relief_scale))
                identities[k] = with_relief_scale(identities[k], float(np.exp(draw)))
            # The identity's room: its frames see the same wall (mirrored or not), as a door camera would.
            room_rng = np.random.default_rng([seed, shard_id, k, 3])
            real = cfg.real_backdrop_share > 0 and room_rng.random() < cfg.real_backdrop_share
            plates[k] = (real_plate if real else make_plate)(room_rng, (cfg.height, cfg.width))
        rng = np.random.default_rng([seed, shard_id, i, 2])
        samples.append(generate_sample(cfg, identities[k], label, rng, plates[k]))
        if on_sample:
            on_sample()
    return samples
