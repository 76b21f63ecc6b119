"""A short synthetic replay clip for the daemon: a bona fide person, then a print and a screen attack.

    python -m train.synth.clip --out out/quickstart/clip --seconds 4 --fps 10 --seed 0 [--size 640x480]
                               [--walk-in-s 1.5]

    out/
      frame_0000.png ...  RGB frames; names sort in time order (the replay camera reads an image folder
                          sorted by name and ignores other files)
      labels.json         the truth per frame: {"frame_0000.png": "bona_fide", ...}: "bona_fide", an
                          attack type of sample.ATTACK_TYPES, or "empty" (no one in view)

The clip is three segments, each one continuous shot of one scene:

  1. bona fide: one identity turning its head a little (yaw and pitch eased between two poses about the
     neck pivot; camera, expression, lighting, background, clothing and sensor settings fixed); with
     --walk-in-s, the segment first shows the person walking up from WALK_FROM_MM to that pose (eased,
     in that many extra seconds of frames, at the starting head pose);
  2. PRINT: the empty scene for GAP frames, then a photo of the same identity printed on paper is held
     up, drifting slightly in the hand;
  3. SCREEN: the same with the photo shown on a tablet.

The GAP empty frames (one more than the daemon's default `detector.track_max_gap`) end the daemon's
face track, as someone leaving the door would: without them the next face, overlapping the last one,
continues its track and the daemon, which reports a track's verdict when it changes, says nothing
about a second attack after a first one. The rest of the frames are shared out about equally.

Each segment draws its scene from its own generator, `np.random.default_rng([seed, segment, stream])`,
and the scene is rebuilt from the same draws for every frame, so only the pose (head) or the medium's
placement (attacks) changes between consecutive frames, plus fresh sensor noise per frame. An attack's
medium is rendered once with `attacks.render_attack`; its drift (a few pixels, degrees and percent of
scale) is a 2D similarity warp of the rendered medium and the fingers holding it over the fixed
background. An attack scene whose shown face would be narrower than MIN_ATTACK_FACE of the frame (a
small portrait letterboxed on the medium) is drawn again from the segment's next stream, up to
ATTACK_ATTEMPTS times. Everything is a function of the seed: the same command writes the same bytes.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from firmware_app.config import DetectorConfig
from train.synth.attacks import draw_fingers, render_attack, sample_medium
from train.synth.background import make_background
from train.synth.camera import Camera, sample_camera
from train.synth.face_render import HeadPose, Identity, make_identity
from train.synth.generator import GeneratorConfig, make_photo, render_bona_fide, sample_pose
from train.synth.makehuman import AssetsMissingError
from train.synth.sample import BONA_FIDE
from train.synth.sensor import apply_sensor, sample_sensor
from train.synth.shading import sample_lighting

PRINT, SCREEN = "print_flat", "replay_tablet"
SEGMENTS = (BONA_FIDE, PRINT, SCREEN)
EMPTY = "empty"
GAP = DetectorConfig().track_max_gap + 1
FRAME_NAME = "frame_{:04d}.png"
LABELS = "labels.json"

# A door camera: the face within BlazeFace short-range's reach, turned moderately.
CLIP_CONFIG = GeneratorConfig(
    hfov_deg=(50.0, 75.0),
    distance_mm=(400.0, 650.0),
    yaw_deg=20.0,
    pitch_deg=10.0,
    roll_deg=5.0,
    frontal_share=1.0,
)
HEAD_TURN_DEG = ((6.0, 14.0), (3.0, 7.0))  # yaw, pitch change over a bona fide segment
MIN_ATTACK_FACE = 0.15  # shown face's landmark width / frame width: held up to be seen, as attackers do
ATTACK_ATTEMPTS = 8
DRIFT = {"shift": 0.03, "angle_deg": 3.0, "scale": 0.04}  # largest attack drift over a segment
WALK_FROM_MM = 2000.0  # where --walk-in-s starts the person (camera distance of the head pivot)


@dataclass(frozen=True)
class Segment:
    label: str
    first: int  # index of the segment's first frame (an empty one when gap > 0)
    gap: int  # empty frames of the segment's scene before the subject appears
    n: int  # frames with the subject

    @property
    def last(self) -> int:
        return self.first + self.gap + self.n - 1


def min_frames() -> int:
    return GAP * (len(SEGMENTS) - 1) + len(SEGMENTS)


def plan_segments(n_frames: int) -> list[Segment]:
    """Bona fide, then each attack after GAP empty frames; subject frames shared out about equally."""
    if n_frames < min_frames():
        raise ValueError(
            f"a clip of {len(SEGMENTS)} segments separated by {GAP} empty frames needs at least "
            f"{min_frames()} frames, got {n_frames}"
        )
    base, extra = divmod(n_frames - GAP * (len(SEGMENTS) - 1), len(SEGMENTS))
    out, first = [], 0
    for k, label in enumerate(SEGMENTS):
        gap = GAP if k else 0
        n = base + (1 if k < extra else 0)
        out.append(Segment(label, first, gap, n))
        first += gap + n
    return out


def _rng(seed: int, segment: int, stream: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([seed, segment, stream, *more])


def _ease(n: int) -> np.ndarray:
    """n values from 0 to 1, slow at both ends (a smooth start and stop)."""
    t = np.linspace(0.0, 1.0, n) if n > 1 else np.zeros(1)
    return 0.5 - 0.5 * np.cos(np.pi * t)


def _sign(rng: np.random.Generator) -> float:
    return float(rng.choice([-1.0, 1.0]))


def bona_fide_frames(cfg: GeneratorConfig, identity: Identity, camera: Camera, seed: int, k: int, n: int,
                     walk: int = 0):
    """Linear-light frames of the identity (walking up for `walk` frames, then) turning its head;
    everything else fixed."""
    motion = _rng(seed, k, 1)
    start = sample_pose(cfg, camera, motion)
    d_yaw = _sign(motion) * motion.uniform(*HEAD_TURN_DEG[0])
    d_pitch = _sign(motion) * motion.uniform(*HEAD_TURN_DEG[1])
    far = WALK_FROM_MM / max(float(start.pivot_cam[2]), 1.0)
    walk_in = [(start.yaw, start.pitch, start.pivot_cam * (far + (1.0 - far) * s))
               for s in (_ease(walk) if walk else [])]
    turn = [(start.yaw + s * d_yaw, start.pitch + s * d_pitch, start.pivot_cam) for s in _ease(n)]
    for yaw, pitch, pivot in walk_in + turn:
        pose = HeadPose(yaw, pitch, start.roll, pivot)
        # The same scene draws every frame: expression, lighting, material, clothing, background.
        img, _, _ = render_bona_fide(cfg, identity, camera, _rng(seed, k, 2, 0), pose)
        yield img


def attack_frames(cfg: GeneratorConfig, identity: Identity, camera: Camera, kind: str, seed: int, k: int,
                  n: int, gap: int = 0):
    """Linear-light frames: gap of the empty scene, then n of the identity's photo on a print or screen
    held up and drifting slightly."""
    h, w = camera.hw
    best = None
    for attempt in range(ATTACK_ATTEMPTS):  # until the shown face is large enough to be seen
        rng = _rng(seed, k, 2, attempt)
        photo = make_photo(cfg, identity, rng)
        medium = sample_medium(kind, photo.rgb.shape[1] / photo.rgb.shape[0], rng)
        layer = render_attack(photo, medium, camera, sample_lighting(rng), rng)
        face_width = float(np.ptp(layer.landmarks_2d[:, 0]))
        if best is None or face_width > best[0]:
            best = (face_width, layer, rng)
        if face_width >= MIN_ATTACK_FACE * w:
            break
    _, layer, rng = best
    background = make_background(rng, camera.hw)
    radiance = layer.radiance.copy()
    fingers = np.ones(camera.hw, np.float32)  # draw_fingers zeroes its "depth" where fingers are
    draw_fingers(radiance, fingers, layer.mask.copy(), rng)
    alpha = ((layer.mask > 0) | (fingers == 0)).astype(np.float32)
    premultiplied = radiance * alpha[..., None]
    for _ in range(gap):
        yield background

    motion = _rng(seed, k, 1)
    ys, xs = np.nonzero(alpha)
    centre = (float(xs.mean()), float(ys.mean())) if xs.size else (w / 2, h / 2)
    shift = motion.uniform(-1.0, 1.0, 2) * DRIFT["shift"] * np.array([w, h])
    angle = motion.uniform(-1.0, 1.0) * DRIFT["angle_deg"]
    scale = motion.uniform(-1.0, 1.0) * DRIFT["scale"]
    for s in _ease(n):
        m = cv2.getRotationMatrix2D(centre, s * angle, 1.0 + s * scale)
        m[:, 2] += s * shift
        warp = dict(dsize=(w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        a = cv2.warpAffine(alpha, m, **warp)[..., None]
        yield background * (1.0 - a) + cv2.warpAffine(premultiplied, m, **warp)


def render_clip(out: Path, seconds: float, fps: float, seed: int = 0, size: tuple[int, int] = (640, 480),
                log=print, walk_in_s: float = 0.0) -> dict[str, str]:
    """Write the frames and labels.json into out; returns the labels (frame file → label)."""
    n_frames = int(round(seconds * fps))
    walk = int(round(walk_in_s * fps))
    segments = [replace(s, first=s.first + walk if i else s.first, n=s.n + walk if not i else s.n)
                for i, s in enumerate(plan_segments(n_frames))]
    width, height = size
    cfg = replace(CLIP_CONFIG, height=height, width=width)
    identity = make_identity(seed, _rng(seed, 0, 0))
    out.mkdir(parents=True, exist_ok=True)
    for stale in [*out.glob("frame_*.png"), out / LABELS]:  # a shorter clip must not keep old frames
        stale.unlink(missing_ok=True)
    labels: dict[str, str] = {}
    for k, seg in enumerate(segments, start=1):
        camera = sample_camera(_rng(seed, k, 0), (height, width), cfg.hfov_deg)
        sensor = sample_sensor(_rng(seed, k, 3))
        frames = (
            bona_fide_frames(cfg, identity, camera, seed, k, seg.n - walk, walk)
            if seg.label == BONA_FIDE
            else attack_frames(cfg, identity, camera, seg.label, seed, k, seg.n, seg.gap)
        )
        t0 = time.monotonic()
        for i, linear in enumerate(frames):
            index = seg.first + i
            rgb = apply_sensor(np.ascontiguousarray(linear, np.float32), sensor, _rng(seed, k, 4, index))
            name = FRAME_NAME.format(index)
            if not cv2.imwrite(str(out / name), np.ascontiguousarray(rgb[..., ::-1])):
                raise OSError(f"cannot write {out / name}")
            labels[name] = EMPTY if i < seg.gap else seg.label
        parts = [f"{seg.first}-{seg.first + seg.gap - 1} {EMPTY}"] if seg.gap else []
        parts.append(f"{seg.first + seg.gap}-{seg.last} {seg.label}")
        log(f"  frames {', '.join(parts)}  ({time.monotonic() - t0:.1f} s)")
    (out / LABELS).write_text(json.dumps(labels, indent=1) + "\n")
    return labels


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}") from None
    if w < 32 or h < 32:
        raise argparse.ArgumentTypeError(f"frames must be at least 32x32, got {text}")
    return w, h


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m train.synth.clip",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__,
    )
    p.add_argument("--out", type=Path, required=True, help="folder for the frames and labels.json")
    p.add_argument("--seconds", type=_positive_float, default=4.0)
    p.add_argument("--fps", type=_positive_float, default=10.0, help="frames per second of clip time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=_size, default=(640, 480), help="WIDTHxHEIGHT (default: 640x480)")
    p.add_argument("--walk-in-s", type=float, default=0.0,
                   help=f"the bona fide person first walks up from {WALK_FROM_MM / 1000:g} m for this long "
                        "(extra frames; 0 = off)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    n = int(round(args.seconds * args.fps))
    if n < min_frames():
        print(f"error: --seconds × --fps gives {n} frames; a clip needs {min_frames()}", file=sys.stderr)
        return 2
    width, height = args.size
    n += int(round(max(args.walk_in_s, 0.0) * args.fps))  # the walk-in frames come on top
    print(f"{args.out}: rendering {n} frames at {width}x{height} (seed {args.seed})", flush=True)
    try:
        render_clip(args.out, args.seconds, args.fps, args.seed, args.size,
                    log=lambda line: print(line, flush=True), walk_in_s=max(args.walk_in_s, 0.0))
    except AssetsMissingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"{args.out}: wrote {n} frames ({n / args.fps:.1f} s at {args.fps:g} frames/s) and {LABELS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
