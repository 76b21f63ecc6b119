"""What the live page is served (console.LiveView) around one real pipeline result: the overlay registered on
the face, images per frame id, the track's state, decisions read from the outbox, thumbnails kept inside
liveness.save_depth_dir."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from firmware_app.config import Config
from firmware_app.console import LiveView, track_view
from firmware_app.events import new_event
from tests.test_fw_fixtures import synthetic_frames, tiny_bundle


@pytest.fixture(scope="module")
def pipeline_result():
    from firmware_app.bundle import load_bundle
    from firmware_app.camera import Frame
    from firmware_app.pipeline import Pipeline
    from firmware_app.profiling import Profiler
    from tests.test_fw_fixtures import DEV_PUB

    bundle = load_bundle(tiny_bundle(), (DEV_PUB,))
    pipeline = Pipeline.from_bundle(bundle, Config(), Profiler())
    rgb = cv2.cvtColor(cv2.imread(str(synthetic_frames() / "000_bona_fide.png")), cv2.COLOR_BGR2RGB)
    result = pipeline.process(Frame(rgb, time.monotonic(), 7))
    assert result.face is not None and result.depth is not None
    return pipeline, result


def _daemon(pipeline, result, tmp_path):
    cfg = SimpleNamespace(outbox=SimpleNamespace(dir=str(tmp_path / "outbox")),
                          liveness=SimpleNamespace(save_depth_dir=str(tmp_path / "png")))
    status = {"fps": 9.0, "frames": 3, "camera": {"open": True}, "stages": {"depth": {"p95_ms": 5.0}},
              "hooks": {"door": {"pending": True, "failures": 2, "last_error": "refused"}}}
    return SimpleNamespace(last_result=result, pipeline=pipeline, cfg=cfg, threshold_mm=4.0,
                           status=lambda: status)


def test_the_overlay_matrix_puts_the_depth_map_on_the_crop(pipeline_result, tmp_path):
    pipeline, result = pipeline_result
    snap = LiveView(_daemon(pipeline, result, tmp_path)).snapshot()
    a, b, c, d, e, f = snap["face"]["overlay"]
    # CSS matrix on the 80×80 image: its centre (40, 40) lands on the crop's centre in the frame,
    # its corner (0, 0) on the crop square's corner, a side of 80 on the crop's side
    cx, cy = result.crop.transform.center
    assert np.allclose([a * 40 + c * 40 + e, b * 40 + d * 40 + f], [cx + 0.5, cy + 0.5], atol=0.05)
    assert abs(np.hypot(a, b) * 80 - result.crop.transform.side) < 0.01
    box = snap["face"]["box"]
    assert box[0] < cx < box[2] and box[1] < cy < box[3]
    assert snap["frame"] == {"id": 7, "width": result.frame.rgb.shape[1], "height": result.frame.rgb.shape[0]}
    assert snap["health"]["hooks"]["door"] == {"pending": True, "failures": 2, "last_error": "refused"}
    json.dumps(snap, allow_nan=False)  # what the page parses: strict JSON


def test_images_are_served_for_the_frame_the_snapshot_named(pipeline_result, tmp_path):
    pipeline, result = pipeline_result
    view = LiveView(_daemon(pipeline, result, tmp_path))
    assert view.frame_jpeg(7) is None  # not shown yet: nothing is encoded for a frame no page asked for
    view.snapshot()
    jpeg = cv2.imdecode(np.frombuffer(view.frame_jpeg(7), np.uint8), cv2.IMREAD_COLOR)
    assert jpeg.shape == result.frame.rgb.shape
    assert view.frame_jpeg(7) is view.frame_jpeg(7)  # encoded once
    png = cv2.imdecode(np.frombuffer(view.depth_png(7), np.uint8), cv2.IMREAD_UNCHANGED)
    assert png.shape == (80, 80, 4) and set(np.unique(png[..., 3])) <= {0, 255}
    assert view.frame_jpeg(8) is None


def test_track_state_comes_from_the_liveness_stage(pipeline_result, tmp_path):
    pipeline, result = pipeline_result
    tv = track_view(_daemon(pipeline, result, tmp_path), result)
    assert tv.track_id == result.face.track_id and tv.state in ("collecting", "live", "spoof", "undecided")
    assert tv.value is not None
    assert track_view(None, SimpleNamespace(face=None)) is None


def test_decisions_newest_first_and_thumbnails_only_from_the_decisions_folder(pipeline_result, tmp_path):
    pipeline, result = pipeline_result
    (tmp_path / "outbox").mkdir()
    (tmp_path / "png").mkdir()
    inside = tmp_path / "png" / "a.png"
    inside.write_bytes(b"\x89PNG inside")
    outside = tmp_path / "secret.png"
    outside.write_bytes(b"\x89PNG outside")
    dotdot = tmp_path / "png/../secret.png"
    events = [new_event("decision", decision="live", track_id=1, depth_png=str(inside)),
              new_event("decision", decision="spoof", track_id=2, depth_png=str(outside)),
              new_event("decision", decision="spoof", track_id=3, depth_png=str(dotdot))]
    lines = [json.dumps(e) for e in events]
    (tmp_path / "outbox" / "events-00000001.jsonl").write_text("\n".join(lines) + '\n{"torn')
    view = LiveView(_daemon(pipeline, result, tmp_path))
    rows = view.snapshot()["decisions"]
    assert [r["track_id"] for r in rows] == [3, 2, 1] and all("_png" not in r for r in rows)
    assert view.thumbnail(events[0]["id"]) == b"\x89PNG inside"
    assert view.thumbnail(events[1]["id"]) is None and view.thumbnail(events[2]["id"]) is None
    assert view.thumbnail("0" * 32) is None


def test_a_decision_seen_by_the_page_keeps_its_thumbnail_without_a_file(pipeline_result, tmp_path):
    pipeline, result = pipeline_result
    (tmp_path / "outbox").mkdir()
    event = new_event("decision", decision="live", track_id=result.face.track_id, frame_id=7)
    (tmp_path / "outbox" / "events-00000001.jsonl").write_text(json.dumps(event) + "\n")
    fields = ("frame", "face", "crop", "depth", "liveness")
    decided = SimpleNamespace(**{f: getattr(result, f) for f in fields}, decision=object())
    daemon = _daemon(pipeline, decided, tmp_path)
    daemon.last_decision = event  # what Daemon._publish leaves for the deciding frame
    view = LiveView(daemon)
    rows = view.snapshot()["decisions"]
    assert rows[0]["id"] == event["id"] and rows[0]["thumb"] is True
    png = cv2.imdecode(np.frombuffer(view.thumbnail(event["id"]), np.uint8), cv2.IMREAD_COLOR)
    assert png.shape[0] == 160 and png.shape[1] >= 320  # input | depth colour map | verdict
