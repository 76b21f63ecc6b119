"""Far faces (full-range BlazeFace, region around the last face, tiles), face-like keypoints, grey cameras."""

from __future__ import annotations

import types

import cv2
import numpy as np
import pytest

from convert.mediapipe_assets import ensure_mediapipe_models
from firmware_app.camera import make_camera
from firmware_app.camera.colour import GreyCamera, to_grey3
from firmware_app.config import CameraConfig, ConfigError, DetectorConfig, parse_config
from firmware_app.face import FULL_RANGE, SHORT_RANGE, Face, FaceDetector, face_like, ssd_anchors
from firmware_app.face_search import (
    DetectorChoiceError,
    FaceFinder,
    SearchConfig,
    make_finder,
    merge,
    roi_region,
    tile_regions,
)
from tests.test_face_detector import MODELS


@pytest.fixture(scope="module")
def models():
    return ensure_mediapipe_models(MODELS)


@pytest.fixture(scope="module")
def full(models):
    return FaceDetector(models.face_detector_full_range, num_threads=1)


def _face(kps, box=(100, 100, 200, 200), score=0.9):
    return Face(*box, score, tuple(kps) + ((100, 150), (200, 150)))


UPRIGHT = ((130, 135), (170, 135), (150, 160), (150, 180))


def test_face_like_keeps_faces_and_drops_scrambled_keypoints():
    assert face_like(_face(UPRIGHT))
    assert face_like(_face(((175, 135), (190, 137), (198, 160), (185, 180))))  # profile: nose at the edge
    assert not face_like(_face(((130, 180), (170, 180), (150, 160), (150, 135))))  # upside down
    assert not face_like(_face(((170, 135), (130, 135), (150, 160), (150, 180))))  # eyes swapped
    assert not face_like(_face(((149, 135), (150, 135), (150, 160), (150, 180))))  # eyes on one spot
    assert not face_like(_face(((130, 135), (170, 135), (150, 160), (150, 290))))  # mouth far outside the box
    assert not face_like(_face(UPRIGHT, box=(100, 100, 100, 200)))  # empty box


def test_full_range_model_is_recognised_by_its_input(full, models):
    assert full.model is FULL_RANGE and len(full.anchors) == 48 * 48
    assert FaceDetector(models.face_detector).model is SHORT_RANGE
    np.testing.assert_allclose(ssd_anchors(192, (4,), False)[:2], [[1 / 96, 1 / 96], [3 / 96, 1 / 96]])
    source = models.source.read_text()
    assert "face_detection_full_range_sparse.tflite" in source and "Apache-2.0" in source


def test_tiles_cover_the_frame_with_overlap():
    tiles = tile_regions(480, 640, 2)
    assert len(tiles) == 4 and tile_regions(480, 640, 1) == []
    cover = np.zeros((480, 640), int)
    for x0, y0, x1, y1 in tiles:
        assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 480
        cover[y0:y1, x0:x1] += 1
    assert cover.min() == 1 and cover.max() == 4  # all covered; the centre by all four
    box = np.array([300, 200, 330, 230])
    assert roi_region(box, 4.0, 480, 640) == (255, 155, 375, 275)  # 4× the face
    assert roi_region(box, 4.0, 480, 640, min_side=0.5) == (155, 55, 475, 375)  # at least half the frame
    assert roi_region(np.array([0, 0, 200, 200]), 4.0, 480, 640) == (0, 0, 500, 480)  # clipped


def test_merge_keeps_the_best_box_of_each_cluster():
    a, b = _face(UPRIGHT, score=0.7), _face(UPRIGHT, (105, 105, 205, 205), 0.9)
    c = _face(UPRIGHT, (400, 0, 500, 100))
    assert merge([a, b, c]) == [b, c]


def _far_astronaut(scale=0.2):
    from skimage.data import astronaut

    small = cv2.resize(astronaut(), None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frame = np.full((480, 640, 3), 120, np.uint8)
    frame[300 : 300 + small.shape[0], 420 : 420 + small.shape[1]] = small  # a ~20 px face, lower right
    return frame


def test_far_face_is_found_by_the_tiles_and_then_held(full, models):
    frame = _far_astronaut()
    assert FaceDetector(models.face_detector).detect(frame) == []  # short range: too small
    assert [f for f in full.detect(frame) if face_like(f)] == []  # full range on the whole frame: too
    finder = FaceFinder(full, SearchConfig(tiles=2, tiles_per_frame=1))
    found = [finder.detect(frame) for _ in range(6)]
    first = next(i for i, faces in enumerate(found) if faces)
    assert first <= 3  # the lower right tile's turn comes within 2×2 frames
    for faces in found[first:]:  # then the region around it keeps it
        assert len(faces) == 1 and 440 < faces[0].center[0] < 500 and 310 < faces[0].center[1] < 360
    calls = finder.calls
    assert finder.detect(np.full((480, 640, 3), 120, np.uint8)) == []  # gone: whole frame, region, a tile
    assert finder.calls - calls == 3


def _bundle(tmp_path, models, full_range: bool):
    import shutil

    shutil.copy(models.face_detector, tmp_path / "short.tflite")
    files = {"short.tflite": {}}
    det = {"file": "short.tflite"}
    if full_range:
        shutil.copy(models.face_detector_full_range, tmp_path / "full.tflite")
        files["full.tflite"], det["full_range_file"] = {}, "full.tflite"
    return types.SimpleNamespace(root=tmp_path, detector=tmp_path / "short.tflite",
                                 manifest={"files": files, "detector": det})  # fmt: skip


def test_make_finder_follows_the_config_and_the_bundle(tmp_path, models):
    (tmp_path / "old").mkdir(), (tmp_path / "new").mkdir()
    old, new = _bundle(tmp_path / "old", models, False), _bundle(tmp_path / "new", models, True)
    assert make_finder(old, DetectorConfig()).model == "short_range"  # auto: what the bundle has
    assert make_finder(new, DetectorConfig()).model == "full_range"
    assert make_finder(new, DetectorConfig(model="short_range")).model == "short_range"
    finder = make_finder(new, DetectorConfig(tiles=0, roi_scale=0.0, face_like=False, min_score=0.7))
    assert finder.cfg == SearchConfig(tiles=0, roi_scale=0.0, track_frames=5, face_like=False, min_score=0.7)
    assert finder.follower.model.name == "short_range" and finder.detector.min_score == 0.3
    with pytest.raises(DetectorChoiceError, match="ships no full-range detector"):
        make_finder(old, DetectorConfig(model="full_range"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("detector:\n  model: long_range\n", "detector.model"),
        ("detector:\n  tiles: 9\n", "detector.tiles"),
        ("camera:\n  source: x\n  colour: sepia\n", "camera.colour"),
    ],
)
def test_bad_detector_and_colour_settings_are_rejected(text, message):
    with pytest.raises(ConfigError, match=message) as err:
        parse_config(text, "door.yaml")
    assert "door.yaml:" in str(err.value)


def test_grey_camera_gives_equal_channels_before_detection(tmp_path):
    img = np.zeros((48, 64, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 200, 40, 90  # a magenta IR cast
    cv2.imwrite(str(tmp_path / "0.png"), img[..., ::-1])
    cfg = parse_config(f"camera:\n  source: {tmp_path}\n  colour: grey\n").camera
    cam = make_camera(cfg)
    assert isinstance(cam, GreyCamera) and cam.name.endswith("(grey)")
    with cam:
        rgb = cam.read().rgb
    assert rgb.shape == (48, 64, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    assert abs(int(rgb[0, 0, 0]) - round(0.299 * 200 + 0.587 * 40 + 0.114 * 90)) <= 1  # BT.601 luma
    assert not isinstance(make_camera(CameraConfig(source=str(tmp_path))), GreyCamera)  # rgb: untouched
    np.testing.assert_array_equal(to_grey3(rgb), rgb)  # idempotent


def test_grey_astronaut_is_still_found(full):
    from skimage.data import astronaut

    faces = FaceFinder(full).detect(to_grey3(astronaut()))
    assert len(faces) == 1 and 150 < faces[0].center[0] < 300


def test_bench_detect_bands_and_report():
    from train.bench_detect import Outcome, band_of, band_table, format_report

    assert [band_of(d) for d in (250, 300, 499, 500, 1999, 2000, 2100)] == [0, 0, 0, 1, 4, 4, 4]
    outs = [Outcome(400, 0, True, True, 0, 2, 5, None)] * 19 + [Outcome(400, 50, False, False, 1, 2, 5, None)]
    outs += [Outcome(1800, 10, True, False, 0, 2, 5, None)]
    rows = band_table(outs)
    assert (rows[0]["found"], rows[0]["frames"], rows[0]["false_boxes"]) == (19, 20, 1)
    assert (rows[4]["found"], rows[4]["first"]) == (1, 0)
    text = "\n".join(format_report("search", outs, {}, hold=4))
    assert "19/20" in text and "95.0% ok" in text and "1st frame   0.0%" in text
    assert "misses: 1, of which 1 with |yaw| ≥ 40°" in text


def test_bench_detect_samples_one_band(capsys):
    from train.bench_detect import main, render

    frames = render(6, 2, 2000.0, min_distance=1500.0)
    assert all(1400 < f.distance_mm < 2100 for f in frames)  # eye distance: ± the head's own depth
    with pytest.raises(SystemExit) as exit_:
        main(["--min-distance", "2500"])
    assert exit_.value.code == 2 and "--min-distance <" in capsys.readouterr().err
