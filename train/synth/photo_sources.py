"""Real portrait photographs, shipped inside installed packages, as presentation-attack content only.

Each source is a public-domain photograph that a package this project already installs carries as a
file (no download): its path inside the package, its sha256 (checked against the wheel's RECORD, so the
file is the one the package shipped) and its licence are recorded with every dataset made from it.
Real photographs have no depth, so they are never bona fide frames, and training never sees them
(the lead's decision: real-photo content only in training attacks would teach "photographic look =
attack"): the whole slice they make is held out (leave-one-source-out, train/synth/photo_attacks.py).

A source becomes a `train.synth.attacks.Photo`: the face is found by the device's own BlazeFace (short
range), and the 68 iBUG landmarks are a canonical template placed by the detector's two eye keypoints
(a similarity transform). The template is measured on frontal synthetic renders, in the frame the
same detector's eyes define on them (origin between the eyes, x = right eye → left eye, unit = their
distance), and committed as photo_landmark_template.json (`python -m train.synth.photo_sources --measure`
remeasures it). The face mask is the landmarks' hull raised to the forehead.
"""

from __future__ import annotations

import base64
import csv
import functools
import hashlib
import importlib.util
import json
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np

from firmware_app.face import Face, FaceDetector
from train.synth.attacks import Photo
from train.synth.sample import MASK_FACE, N_LANDMARKS

REPO = Path(__file__).resolve().parents[2]
TEMPLATE_FILE = Path(__file__).with_name("photo_landmark_template.json")  # committed; --measure rewrites it
TEMPLATE_RENDERS = 8  # frontal renders averaged into the template
FOREHEAD_EYES = 0.7  # the mask's top: the brows raised by this many eye distances (hairline)


@dataclass(frozen=True)
class PhotoSource:
    name: str
    package: str  # distribution name (its RECORD lists the file)
    module: str  # importable package that holds the file
    path_in_package: str
    subject: str
    provenance: str
    licence: str


SOURCES = (
    PhotoSource("astronaut", "scikit-image", "skimage", "data/astronaut.png",
                "Eileen Collins, NASA astronaut (official portrait)",
                "NASA Great Images database (https://flic.kr/p/r9qvLn), shipped as skimage.data.astronaut()",
                "public domain: 'No known copyright restrictions, released into the public domain' "
                "(skimage.data.astronaut docstring); NASA works are not copyrighted (17 U.S.C. § 105)"),
    PhotoSource("grace_hopper", "matplotlib", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg",
                "Commodore Grace M. Hopper, USN (official US Navy portrait, 1984)",
                "US Navy photograph (Naval History and Heritage Command NH 96919-KN), shipped as matplotlib "
                "sample data (matplotlib.cbook.get_sample_data('grace_hopper.jpg'))",
                "public domain: a work of the US federal government (17 U.S.C. § 105); the matplotlib "
                "package itself does not state the image's licence"),
)
BY_NAME = {s.name: s for s in SOURCES}


class PhotoSourceError(RuntimeError):
    """A source photo that is missing, altered or has no face the detector finds; says what to do."""


def source_path(src: PhotoSource) -> Path:
    spec = importlib.util.find_spec(src.module)
    if spec is None or not spec.submodule_search_locations:
        raise PhotoSourceError(f"{src.name}: package {src.package} is not installed; "
                               "install requirements (pip install -r requirements/...)")
    path = Path(next(iter(spec.submodule_search_locations))) / src.path_in_package
    if not path.is_file():
        raise PhotoSourceError(f"{src.name}: {path} is not in the installed {src.package}; reinstall it")
    return path


def _recorded_sha256(src: PhotoSource) -> str | None:
    """The file's sha256 as the installed wheel's RECORD lists it (None if the RECORD has no entry)."""
    record = metadata.distribution(src.package).read_text("RECORD") or ""
    want = f"{src.module}/{src.path_in_package}"
    for row in csv.reader(record.splitlines()):
        if row and row[0] == want and row[1].startswith("sha256="):
            raw = base64.urlsafe_b64decode(row[1][7:] + "=" * (-len(row[1][7:]) % 4))
            return raw.hex()
    return None


def provenance(src: PhotoSource) -> dict:
    """What a dataset records about its content: file, package version, sha256 (checked), licence."""
    path = source_path(src)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    recorded = _recorded_sha256(src)
    if recorded is not None and recorded != sha:
        raise PhotoSourceError(f"{src.name}: {path} differs from the file {src.package} shipped "
                               f"(sha256 {sha[:12]}… vs RECORD {recorded[:12]}…); reinstall {src.package}")
    return {"name": src.name, "package": f"{src.package}=={metadata.version(src.package)}",
            "file": f"{src.module}/{src.path_in_package}", "sha256": sha,
            "sha256_matches_package_record": recorded is not None, "subject": src.subject,
            "provenance": src.provenance, "licence": src.licence,
            "use": "attack content only, never training"}


def _eye_frame(eyes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origin, x axis, y axis) of the frame two eye points (subject's right, left) define."""
    mid = eyes.mean(axis=0)
    ex = eyes[1] - eyes[0]
    return mid, ex, np.array([-ex[1], ex[0]])


def place_template(template: np.ndarray, eyes: np.ndarray) -> np.ndarray:
    """Template (68, 2) in eye units → frame pixels, by the similarity the two eye points define."""
    mid, ex, ey = _eye_frame(np.asarray(eyes, np.float64))
    return (mid + template[:, :1] * ex + template[:, 1:] * ey).astype(np.float32)


def to_eye_units(points: np.ndarray, eyes: np.ndarray) -> np.ndarray:
    mid, ex, ey = _eye_frame(np.asarray(eyes, np.float64))
    d = np.asarray(points, np.float64) - mid
    return np.stack([d @ ex, d @ ey], axis=1) / float(ex @ ex)


def face_eyes(face: Face) -> np.ndarray:
    return np.array([face.keypoint("right_eye"), face.keypoint("left_eye")], np.float64)


@functools.lru_cache(maxsize=2)
def detector(model_path: str | None = None) -> FaceDetector:
    if model_path is None:
        from convert.mediapipe_assets import ensure_mediapipe_models

        model_path = str(ensure_mediapipe_models().face_detector)
    return FaceDetector(model_path, num_threads=1)


def largest_face(rgb: np.ndarray, det: FaceDetector) -> Face | None:
    faces = det.detect(rgb)
    return max(faces, key=lambda f: (f.x1 - f.x0) * (f.y1 - f.y0)) if faces else None


def measure_template(n: int = TEMPLATE_RENDERS, det: FaceDetector | None = None) -> np.ndarray:
    """Mean 68 landmarks of `n` frontal synthetic renders in the eye units of BlazeFace's eye keypoints."""
    from train.synth.camera import sample_camera
    from train.synth.face_render import make_identity
    from train.synth.generator import GeneratorConfig, render_bona_fide, sample_pose
    from train.synth.sensor import apply_sensor, sample_sensor

    det = det or detector()
    cfg = GeneratorConfig(height=480, width=480, yaw_deg=0.0, pitch_deg=0.0, roll_deg=0.0, frontal_share=1.0)
    rows = []
    for k in range(n * 2):
        if len(rows) == n:
            break
        rng = np.random.default_rng([7_700_000, k])
        identity = make_identity(7_700_000 + k, rng)
        camera = sample_camera(rng, (cfg.height, cfg.width), (50.0, 60.0))
        pose = sample_pose(cfg, camera, rng, distance=float(rng.uniform(350.0, 500.0)))
        img, layer, _ = render_bona_fide(cfg, identity, camera, rng, pose)
        face = largest_face(apply_sensor(img, sample_sensor(rng), rng), det)
        if face is not None:
            rows.append(to_eye_units(layer.landmarks_2d, face_eyes(face)))
    if len(rows) < max(n // 2, 1):
        raise PhotoSourceError(f"BlazeFace found only {len(rows)} of {2 * n} frontal renders; the detector "
                               "or the generator is broken")
    return np.mean(rows, axis=0)


@functools.lru_cache(maxsize=1)
def landmark_template(path: Path = TEMPLATE_FILE) -> np.ndarray:
    """The canonical template (68, 2), eye units, from the committed file."""
    try:
        template = np.array(json.loads(path.read_text())["template"], np.float64)
    except (OSError, ValueError, KeyError) as e:
        raise PhotoSourceError(f"{path}: unreadable landmark template ({e}); remeasure it with "
                               "`python -m train.synth.photo_sources --measure`") from None
    if template.shape != (N_LANDMARKS, 2):
        raise PhotoSourceError(f"{path}: template shape {template.shape}, expected (68, 2); remeasure it")
    return template


def write_template(path: Path = TEMPLATE_FILE) -> np.ndarray:
    template = measure_template()
    doc = {"what": "mean iBUG-68 landmarks of frontal synthetic renders, in the eye units of BlazeFace short "
                   "range's eye keypoints (origin between the eyes, x: subject's right eye -> left eye, "
                   "y: x turned 90 degrees towards the chin, unit: eye distance)",
           "renders": TEMPLATE_RENDERS, "template": np.round(template, 4).tolist()}
    path.write_text(json.dumps(doc, indent=None) + "\n")
    return template


def face_mask(hw: tuple[int, int], landmarks: np.ndarray, eyes: np.ndarray) -> np.ndarray:
    """MASK_FACE over the landmarks' hull, raised from the brows to the forehead."""
    _, ex, ey = _eye_frame(np.asarray(eyes, np.float64))
    up = -ey * FOREHEAD_EYES
    pts = np.concatenate([landmarks[:17], landmarks[17:27] + up]).astype(np.float32)
    mask = np.zeros(hw, np.uint8)
    cv2.fillConvexPoly(mask, np.round(cv2.convexHull(pts)[:, 0] * 4).astype(np.int32), MASK_FACE,
                       cv2.LINE_8, shift=2)
    return mask


def load_photo(name: str, det: FaceDetector | None = None, template: np.ndarray | None = None) -> Photo:
    """The named source as a Photo: RGB, face mask, template landmarks placed on the detected face."""
    src = BY_NAME.get(name)
    if src is None:
        raise PhotoSourceError(f"unknown photo source {name!r}; known: {', '.join(BY_NAME)}")
    path = source_path(src)
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise PhotoSourceError(f"{name}: {path} does not decode as an image; reinstall {src.package}")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    face = largest_face(rgb, det or detector())
    if face is None:
        raise PhotoSourceError(f"{name}: BlazeFace finds no face in {path}; the detector model is wrong")
    eyes = face_eyes(face)
    lms = place_template(template if template is not None else landmark_template(), eyes)
    return Photo(rgb, face_mask(rgb.shape[:2], lms, eyes), lms, np.ones(N_LANDMARKS, bool))


def main(argv: list[str] | None = None) -> int:
    if "--measure" in (sys.argv[1:] if argv is None else argv):
        write_template()
        print(f"wrote {TEMPLATE_FILE}")
    det = detector()
    for src in SOURCES:
        photo = load_photo(src.name, det)
        x0, y0 = photo.landmarks_2d.min(axis=0)
        x1, y1 = photo.landmarks_2d.max(axis=0)
        print(f"{src.name}: {photo.rgb.shape[1]}×{photo.rgb.shape[0]}, face box "
              f"({x0:.0f}, {y0:.0f})–({x1:.0f}, {y1:.0f})")
        print(json.dumps(provenance(src), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
