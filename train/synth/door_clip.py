"""Door clips for the liveness benchmark: one subject per clip, as a door camera sees people and attacks.

    render_door_clip(out, DoorClip("bona_fide", "walk", seed=3), seconds=4.5, fps=10)

Kinds (`door_plan` cycles through them, so a small count still covers every one):

  bona fide  walk    walks up from ~2 m to 0.5-0.65 m in the first 55 % of the clip (eased), then stands,
                     with a little head bob;
             stand   stands at 0.4-0.65 m, swaying a degree or two and a few millimetres;
             turn    stands and turns its head from one side to the other (±15-25° yaw);
  attacks    every sample.ATTACK_TYPES medium, `handheld` (tilted ±5-10° about two axes, moved a few
             percent of the frame and of scale: a perspective warp of the medium, as a hand-held plane
             moves) or `static` (on a stand: only the sensor noise changes).

Identities and attack content are unseen in training: identity seeds start at UNSEEN_SEED (training
identities are numbered from 0), and attack photos are restyled (`make_photo` with restyle_attacks).
Half the attack clips show a real photograph instead of a render (`content`: one of the public-domain
sources of train/synth/photo_sources.py, which training never sees, randomly cropped, scaled and
restyled by photo_attacks.shown_photo): the content a door meets in the field, where the depth network is
fooled most.

Video replays (`video_plan`, content `video`): a phone, tablet or monitor, on a stand or hand-held, playing
a video of an unseen identity turning its head (±15-25° yaw, a little nod; each frame the same portrait
shot with the head turned). The face inside the screen moves in 3D, so the motion cue's "it moved" and
"not as a plane" conditions do not stop it: what is left is the medium's border and the depth network.
Each clip writes frame_NNNN.png and labels.json ({"frame_0000.png": label}), the replay camera's folder
layout of train/synth/clip.py, plus clip.json (kind, motion, seed, fps).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from train.synth.attacks import draw_fingers, render_attack, sample_medium
from train.synth.background import make_background
from train.synth.camera import sample_camera
from train.synth.clip import CLIP_CONFIG, FRAME_NAME, LABELS, _ease
from train.synth.face_render import HeadPose, make_identity
from train.synth.generator import make_photo, render_bona_fide, sample_pose
from train.synth.photo_attacks import PhotoAttackConfig, shown_photo
from train.synth.photo_sources import SOURCES as PHOTO_SOURCES
from train.synth.photo_sources import detector, load_photo
from train.synth.sample import ATTACK_TYPES, BONA_FIDE
from train.synth.sensor import apply_sensor, sample_sensor
from train.synth.shading import sample_lighting

UNSEEN_SEED = 1_000_000
BONA_MOTIONS = ("walk", "stand", "turn")
ATTACK_MOTIONS = ("handheld", "static")
KINDS = tuple((BONA_FIDE, m) for m in BONA_MOTIONS) + tuple(
    (t, m) for t in ATTACK_TYPES for m in ATTACK_MOTIONS)
RENDER = "render"
ATTACK_CONTENTS = tuple(x for src in PHOTO_SOURCES for x in (RENDER, src.name))  # render, photo, ...
VIDEO = "video"  # a screen playing a video of an unseen identity turning its head (video_plan)
PAN = "pan_"  # + a real photo source's name: a screen slowly zooming into and panning over that photograph
SCREEN_TYPES = tuple(t for t in ATTACK_TYPES if t.startswith("replay_"))
VIDEO_KINDS = tuple((t, m) for t in SCREEN_TYPES for m in ATTACK_MOTIONS)
VIDEO_SEED_OFFSET = 50_000  # video clips' identities are not the door plan's
WALK_FROM_MM = 2000.0
DOOR_CONFIG = replace(CLIP_CONFIG, distance_mm=(400.0, 650.0), restyle_attacks=True)


@dataclass(frozen=True)
class DoorClip:
    label: str  # BONA_FIDE or an attack type
    motion: str  # BONA_MOTIONS or ATTACK_MOTIONS
    seed: int
    content: str = RENDER  # an attack's photo: a render of an unseen identity, or a real photo source's name

    @property
    def name(self) -> str:
        return f"{self.seed:05d}_{self.label}_{self.motion}" + ("" if self.content == RENDER else
                                                                  f"_{self.content}")


def door_plan(n_clips: int, seed: int = 0) -> list[DoorClip]:
    """n clips cycling through KINDS; bona fide kinds come first so a small n still has some. Attack clips
    alternate their content per cycle: render, real photo, render, the other real photo, ..."""
    plan = []
    for i in range(n_clips):
        label, motion = KINDS[i % len(KINDS)]
        content = RENDER if label == BONA_FIDE else ATTACK_CONTENTS[(i // len(KINDS)) % len(ATTACK_CONTENTS)]
        plan.append(DoorClip(label, motion, seed * 100_000 + i, content))
    return plan


def video_plan(n_clips: int, seed: int = 0, pan: bool = False) -> list[DoorClip]:
    """n video-replay attack clips cycling through VIDEO_KINDS (each screen type on a stand and hand-held),
    with identities of their own: a rendered head turning, or with `pan` the real photographs, alternately,
    zoomed into and panned over. Apart from door_plan, whose clips (and figures) it leaves as they were."""
    def content(i: int) -> str:
        return PAN + PHOTO_SOURCES[(i // len(VIDEO_KINDS)) % len(PHOTO_SOURCES)].name if pan else VIDEO

    return [DoorClip(*VIDEO_KINDS[i % len(VIDEO_KINDS)], seed * 100_000 + VIDEO_SEED_OFFSET + i, content(i))
            for i in range(n_clips)]


def _rng(clip: DoorClip, stream: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([UNSEEN_SEED + clip.seed, stream, *more])


def _bona_fide(clip: DoorClip, cfg, camera, n: int):
    identity = make_identity(UNSEEN_SEED + clip.seed, _rng(clip, 0))
    m = _rng(clip, 1)
    near = sample_pose(cfg, camera, m)
    t = np.linspace(0.0, 1.0, n)
    sign = float(m.choice([-1.0, 1.0]))
    amp = m.uniform(15.0, 25.0)  # turn
    n_walk = max(int(0.55 * n), 2)
    walk = _ease(n_walk)
    for k in range(n):
        yaw, pitch, pivot = near.yaw, near.pitch, near.pivot_cam.copy()
        if clip.motion == "walk":
            s = walk[k] if k < n_walk else 1.0
            far = WALK_FROM_MM / max(float(near.pivot_cam[2]), 1.0)
            pivot = near.pivot_cam * (far + (1.0 - far) * s)
            pitch += 2.0 * np.sin(2 * np.pi * 1.8 * t[k])  # steps
        elif clip.motion == "stand":
            yaw += 1.5 * np.sin(2 * np.pi * 0.4 * t[k] + sign)
            pivot[0] += 5.0 * np.sin(2 * np.pi * 0.3 * t[k])
        else:  # turn
            yaw = near.yaw * 0.3 + sign * amp * (2 * _ease(n)[k] - 1)
        pose = HeadPose(yaw, pitch, near.roll, pivot)
        img, _, _ = render_bona_fide(cfg, identity, camera, _rng(clip, 2), pose)
        yield img


def _plane_motion(centre, f: float, d: float, yaw: float, pitch: float, shift, scale: float) -> np.ndarray:
    """Homography of a plane facing the camera at d mm, turned about its centre, then moved in the image."""
    k = np.array([[f, 0, centre[0]], [0, f, centre[1]], [0, 0, 1.0]])
    a, b = np.radians(yaw), np.radians(pitch)
    r = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]) @ np.array(
        [[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    p0 = np.array([0, 0, d])
    h = k @ (r + np.outer(p0 - r @ p0, [0, 0, 1.0]) / d) @ np.linalg.inv(k)
    c = np.array([[1, 0, centre[0]], [0, 1, centre[1]], [0, 0, 1.0]])
    move = c @ np.diag([scale, scale, 1.0]) @ np.linalg.inv(c)
    move[:2, 2] += shift
    h = move @ h
    return h / h[2, 2]


def _medium_in_room(photo, clip: DoorClip, camera, rng: np.random.Generator):
    """(background, premultiplied medium radiance, its alpha (H, W), its image centre, its depth in mm)."""
    h, w = camera.hw
    medium = sample_medium(clip.label, photo.rgb.shape[1] / photo.rgb.shape[0], rng)
    layer = render_attack(photo, medium, camera, sample_lighting(rng), rng)
    background = make_background(rng, camera.hw)
    radiance = layer.radiance.copy()
    fingers = np.ones(camera.hw, np.float32)
    if clip.motion == "handheld":
        draw_fingers(radiance, fingers, layer.mask.copy(), rng)
    alpha = ((layer.mask > 0) | (fingers == 0)).astype(np.float32)
    ys, xs = np.nonzero(alpha)
    centre = (float(xs.mean()), float(ys.mean())) if xs.size else (w / 2, h / 2)
    d = float(np.median(layer.depth[layer.mask > 0])) if (layer.mask > 0).any() else 450.0
    return background, radiance * alpha[..., None], alpha, centre, d


def _video_turns(clip: DoorClip, n: int) -> list[tuple[float, float]]:
    """(yaw, pitch) added to the video's head pose in each frame: it turns from one side to the other
    (±15-25°, as a bona fide `turn`) and nods a little."""
    m = _rng(clip, 6)
    sign, amp, nod = float(m.choice([-1.0, 1.0])), m.uniform(15.0, 25.0), m.uniform(0.0, 6.0)
    ease, t = _ease(n), np.linspace(0.0, 1.0, n)
    return [(float(sign * amp * (2 * ease[k] - 1)), float(nod * np.sin(2 * np.pi * 0.7 * t[k])))
            for k in range(n)]


def _panned(photo, n: int, rng: np.random.Generator):
    """The photograph as a slideshow shows it: zoomed in by 10-20 % over the clip while the view drifts
    3-6 % of its size, each frame a similarity transform of the same picture (so a plane's motion)."""
    h, w = photo.rgb.shape[:2]
    zoom, drift = rng.uniform(0.10, 0.20), rng.uniform(0.03, 0.06) * np.array([w, h]) * rng.choice([-1, 1], 2)
    for t in np.linspace(0.0, 1.0, n):
        s = 1.0 + zoom * t
        m = np.array([[s, 0, (1 - s) * w / 2 + drift[0] * t], [0, s, (1 - s) * h / 2 + drift[1] * t]])
        rgb = cv2.warpAffine(photo.rgb, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        mask = cv2.warpAffine(photo.mask, m, (w, h), flags=cv2.INTER_NEAREST)
        lms = (photo.landmarks_2d.astype(np.float64) @ m[:, :2].T + m[:, 2]).astype(np.float32)
        yield replace(photo, rgb=rgb, mask=mask, landmarks_2d=lms)


def _attack(clip: DoorClip, cfg, camera, n: int):
    identity = make_identity(UNSEEN_SEED + clip.seed, _rng(clip, 0))
    h, w = camera.hw
    if clip.content == VIDEO:  # every frame: the next video frame on the same medium in the same room
        scenes = (_medium_in_room(make_photo(cfg, identity, _rng(clip, 2), turn), clip, camera, _rng(clip, 7))
                  for turn in _video_turns(clip, n))
    elif clip.content.startswith(PAN):  # a real photograph, zoomed and panned on the same medium
        source = load_photo(clip.content[len(PAN):], detector())
        frames = _panned(shown_photo(source, PhotoAttackConfig(), _rng(clip, 2)), n, _rng(clip, 6))
        scenes = (_medium_in_room(frame, clip, camera, _rng(clip, 7)) for frame in frames)
    else:  # one still picture for the whole clip
        rng = _rng(clip, 2)
        if clip.content == RENDER:
            photo = make_photo(cfg, identity, rng)
        else:
            photo = shown_photo(load_photo(clip.content, detector()), PhotoAttackConfig(), rng)
        scenes = itertools.repeat(_medium_in_room(photo, clip, camera, rng), n)
    m = _rng(clip, 1)
    amp = m.uniform(5.0, 10.0, 2) * m.choice([-1.0, 1.0], 2)
    freq, phase = m.uniform(0.3, 0.8, 2), m.uniform(0, 2 * np.pi, 2)
    drift = m.uniform(-0.03, 0.03, 2) * np.array([w, h])
    zoom = m.uniform(-0.04, 0.04)
    warp = dict(dsize=(w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    for k, (background, premultiplied, alpha, centre, d) in enumerate(scenes):
        if clip.motion == "static":
            yield background * (1.0 - alpha[..., None]) + premultiplied
            continue
        t = k / max(n - 1, 1)
        yaw, pitch = amp * np.sin(2 * np.pi * freq * t * 4 + phase)
        hm = _plane_motion(centre, float(camera.K[0, 0]), d, yaw, pitch, drift * np.sin(np.pi * t),
                           1 + zoom * t)
        a = cv2.warpPerspective(alpha, hm, **warp)[..., None]
        yield background * (1.0 - a) + cv2.warpPerspective(premultiplied, hm, **warp)


def render_door_clip(out: Path, clip: DoorClip, seconds: float = 4.0, fps: float = 10.0,
                     size: tuple[int, int] = (640, 480)) -> dict[str, str]:
    """Write the clip's frames, labels.json and clip.json into out; returns the labels."""
    n = max(int(round(seconds * fps)), 2)
    width, height = size
    cfg = replace(DOOR_CONFIG, height=height, width=width)
    camera = sample_camera(_rng(clip, 3), (height, width), cfg.hfov_deg)
    sensor = sample_sensor(_rng(clip, 4))
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob("frame_*.png"), out / LABELS]:
        stale.unlink(missing_ok=True)
    frames = _bona_fide(clip, cfg, camera, n) if clip.label == BONA_FIDE else _attack(clip, cfg, camera, n)
    labels = {}
    for k, linear in enumerate(frames):
        rgb = apply_sensor(np.ascontiguousarray(linear, np.float32), sensor, _rng(clip, 5, k))
        name = FRAME_NAME.format(k)
        if not cv2.imwrite(str(out / name), np.ascontiguousarray(rgb[..., ::-1])):
            raise OSError(f"cannot write {out / name}")
        labels[name] = clip.label
    (out / LABELS).write_text(json.dumps(labels, indent=1) + "\n")
    (out / "clip.json").write_text(json.dumps({"label": clip.label, "motion": clip.motion, "seed": clip.seed,
                                               "content": clip.content, "fps": fps, "frames": n}) + "\n")
    return labels
