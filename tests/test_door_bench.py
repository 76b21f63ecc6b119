"""The door benchmark (convert/bench_liveness.py, train/synth/door_clip.py) and the evidence events carry."""

from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest


def test_door_plan_covers_every_kind_and_clips_render(tmp_path):
    from train.synth.door_clip import KINDS, DoorClip, door_plan, render_door_clip

    plan = door_plan(len(KINDS) + 2)
    assert {(c.label, c.motion) for c in plan} == set(KINDS) and len({c.name for c in plan}) == len(plan)
    labels = render_door_clip(tmp_path / "c", DoorClip("replay_phone", "handheld", 3), 0.3, 10, (160, 120))
    assert sorted(labels) == ["frame_0000.png", "frame_0001.png", "frame_0002.png"]
    assert set(labels.values()) == {"replay_phone"}
    meta = json.loads((tmp_path / "c" / "clip.json").read_text())
    assert meta["motion"] == "handheld" and meta["frames"] == 3
    a, b = (cv2.imread(str(tmp_path / "c" / n)) for n in ("frame_0000.png", "frame_0002.png"))
    assert a.shape == (120, 160, 3) and np.abs(a.astype(int) - b.astype(int)).mean() > 0.5  # it moves


def test_door_plan_shows_real_photographs_on_half_the_attack_clips(tmp_path):
    from train.synth.door_clip import ATTACK_CONTENTS, KINDS, RENDER, DoorClip, door_plan, render_door_clip
    from train.synth.photo_sources import SOURCES

    plan = door_plan(len(KINDS) * len(ATTACK_CONTENTS))
    attacks = [c for c in plan if c.label != "bona_fide"]
    photo = [c for c in attacks if c.content != RENDER]
    assert len(photo) * 2 == len(attacks) and {c.content for c in photo} == {s.name for s in SOURCES}
    assert all(c.content == RENDER for c in plan if c.label == "bona_fide")
    assert all(c.name.endswith(c.content) for c in photo) and len({c.name for c in plan}) == len(plan)
    clip = DoorClip("print_flat", "static", 5, SOURCES[0].name)
    render_door_clip(tmp_path / "p", clip, 0.2, 10, (320, 240))
    assert json.loads((tmp_path / "p" / "clip.json").read_text())["content"] == SOURCES[0].name
    shown = cv2.imread(str(tmp_path / "p" / "frame_0000.png"))
    rendered = tmp_path / "r"
    render_door_clip(rendered, DoorClip("print_flat", "static", 5), 0.2, 10, (320, 240))
    assert np.abs(shown.astype(int) - cv2.imread(str(rendered / "frame_0000.png")).astype(int)).mean() > 3


def test_video_replays_turn_a_head_on_a_screen_that_stays_put(tmp_path):
    from convert.bench_liveness import summarise
    from train.synth.door_clip import SCREEN_TYPES, VIDEO, DoorClip, door_plan, render_door_clip, video_plan

    plan = video_plan(8)
    assert {c.label for c in plan} == set(SCREEN_TYPES) and {c.motion for c in plan} == {"handheld", "static"}
    assert {c.content for c in plan} == {VIDEO}
    assert not {c.name for c in plan} & {c.name for c in door_plan(400)}  # identities of their own

    def change(clip, name):  # first to last frame, smoothed past the sensor noise
        render_door_clip(tmp_path / name, clip, 0.5, 10, (320, 240))
        a, b = (cv2.GaussianBlur(cv2.imread(str(tmp_path / name / f"frame_000{k}.png")).astype(np.float32),
                                 (0, 0), 2.0) for k in (0, 4))
        return np.abs(b - a).mean(axis=2)

    still = change(DoorClip("replay_tablet", "static", 9), "still")
    moved = change(DoorClip("replay_tablet", "static", 9, VIDEO), "video") > still.max() + 5
    assert moved.mean() > 0.005  # the head inside the screen turned, past anything a still picture shows ...
    ys, xs = np.nonzero(moved)
    assert xs.max() - xs.min() < 0.3 * 320 and ys.max() - ys.min() < 0.4 * 240  # ... and nothing else moved

    rows = [{"label": "replay_phone", "motion": "static", "content": VIDEO, "outcome": "live", "error": True,
             "time_s": None}]
    assert summarise(rows, 3.0)["attack (video content)"]["errors"] == 1


def test_panned_photographs_move_as_a_plane_on_a_still_screen(tmp_path, capsys):
    from convert.bench_liveness import main, summarise
    from firmware_app.motion import planarity
    from train.synth.door_clip import PAN, DoorClip, render_door_clip, video_plan
    from train.synth.photo_sources import SOURCES

    plan = video_plan(24, pan=True)
    assert {c.content for c in plan} == {PAN + s.name for s in SOURCES}
    clip = DoorClip("replay_monitor", "static", 4, PAN + SOURCES[0].name)
    render_door_clip(tmp_path / "p", clip, 1.0, 10, (640, 480))
    a, b = (cv2.cvtColor(cv2.imread(str(tmp_path / "p" / f"frame_000{k}.png")), cv2.COLOR_BGR2GRAY)
            for k in (0, 9))
    screen = (cv2.GaussianBlur(np.abs(a.astype(int) - b.astype(int)).astype(np.float32), (0, 0), 3) > 4)
    n, shift, r_hom = planarity(a, b, screen.astype(np.uint8) * 255)
    assert n >= 12 and shift > 2.0 and r_hom < 0.2 * shift  # the picture moved, and as a plane

    panned = PAN + SOURCES[0].name
    rows = [{"label": "replay_phone", "motion": "static", "content": panned, "outcome": "spoof", "error": 0,
             "time_s": None}]
    summary = summarise(rows, 3.0)
    assert summary["attack (panned real-photo content)"]["clips"] == 1
    assert f"attack (photo: {panned})" in summary and "attack (real-photo content)" not in summary
    assert main(["--pan", "--clips", "1", "--out", str(tmp_path / "x")]) == 2
    assert "--pan goes with --video" in capsys.readouterr().err


def test_bench_intervals_and_outcomes():
    from convert.bench_liveness import clip_outcome, quantile_ci
    from convert.liveness import wilson

    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-3)
    assert wilson(5, 10)[0] == pytest.approx(0.2366, abs=1e-3)
    est, lo, hi = quantile_ci(np.arange(1, 101) / 10, 0.5)
    assert lo < est < hi and est == pytest.approx(5.05)
    assert np.isnan(quantile_ci([1.0, 2.0], 0.95)[2])  # two clips cannot bound a p95
    live = {"first_face": 4, "decisions": [{"frame": 9, "decision": "live"}]}
    assert clip_outcome("bona_fide", live, 10, 3.0) == {"error": False, "time_s": pytest.approx(0.6)}
    assert clip_outcome("print_flat", live, 10, 3.0)["error"]
    late = {"first_face": 0, "decisions": [{"frame": 40, "decision": "live"}]}
    assert clip_outcome("bona_fide", late, 10, 3.0)["error"]
    assert clip_outcome("bona_fide", {"first_face": None, "decisions": []}, 10, 3.0)["error"]


def test_daemon_events_carry_the_evidence(tmp_path):
    """The daemon in-process on a replay: every event says why, with per-cue shares and frames used."""
    from firmware_app.bundle import load_bundle
    from firmware_app.config import parse_config
    from firmware_app.daemon import Daemon
    from tests.test_fw_fixtures import synthetic_frames, tiny_bundle

    cfg = parse_config(json.dumps({
        "camera": {"type": "replay", "source": str(synthetic_frames()), "loop": False, "hold_frames": 4},
        # held frames: still pictures in short tracks, so no motion gate and no minimum track age
        "liveness": {"min_frames": 2, "frame_llr_max": 3.0, "min_moved_px": 0, "min_track_s": 0},
        "outbox": {"dir": str(tmp_path / "outbox"), "fsync": False}, "http": {"enabled": False}}))
    daemon = Daemon(cfg, load_bundle(tiny_bundle(), None), [])
    assert daemon.run() == 0
    events = [json.loads(line) for f in sorted((tmp_path / "outbox").glob("events-*.jsonl"))
              for line in f.read_text().splitlines()]
    events = [e for e in events if e.get("type", "decision") == "decision" and "evidence" in e]
    assert events and sum(daemon.decisions.values()) == len(events)
    for e in events:
        ev = e["evidence"]
        assert e["granted"] == (e["decision"] == "live") and e["reason"]
        assert ev["frames"] >= (2 if e["decision"] == "live" else 1) and "motion" in ev["contributions"]
        assert sum(v for k, v in ev["contributions"].items()) == pytest.approx(ev["llr"], abs=0.01)
        assert ev["model"] == "threshold_fallback" and "motion" in e["timing_ms"]
    assert len({e["track_id"] for e in events}) == len(events)  # one decision per track


def _recorded(frames: list[tuple[float, float, float, float, float, str]]) -> dict:
    """A run's recorded evidence for one clip "c": per frame (frame LLR, face px, motion LLR, shift, r_hom,
    medium sides); NaN = none."""
    keys = ("frame_llr", "face_box_px", "motion_llr", "motion_shift_px", "motion_r_hom_px", "medium_sides")
    return {k: {"c": [f[i] for f in frames]} for i, k in enumerate(keys)}


def test_replay_decides_again_from_recorded_evidence():
    from convert.bench_liveness import replay_clip
    from firmware_app.liveness import DecisionParams
    from firmware_app.medium import MediumModel

    nan = float("nan")
    door = DecisionParams(min_moved_px=0.7, planar_veto_llr=-0.5, min_track_s=0.6, min_face_px=60)
    # a person walking up: weak far frames, then near ones that lean live; the face moves coherently
    walk = _recorded([(-0.5, 45.0, nan, 1.0, 0.1, "")] * 6 + [(1.1, 90.0, nan, 1.0, 0.1, "")] * 25)
    live = replay_clip(walk, "c", door, None, 10.0)
    assert live["first_face"] == 0 and [d["decision"] for d in live["decisions"]] == ["live"]
    assert live["decisions"][0]["frame"] == 10  # 5 near frames (sum 5.5), 0.6 s old: frames 6..10
    every_frame = replay_clip(walk, "c", replace(door, min_face_px=0), None, 10.0)
    assert [d["decision"] for d in every_frame["decisions"]] == ["undecided"]  # far frames drag the mean
    # a hand-held picture: live-looking frames, one frame pair that moved as a plane, a border around it
    held = _recorded([(2.0, 80.0, -0.9 if k == 3 else nan, 3.0 if k == 3 else 1.0, 0.1, "LRTB")
                      for k in range(31)])
    assert replay_clip(held, "c", door, None, 10.0)["decisions"][0]["decision"] == "undecided"
    no_motion = replace(door, min_moved_px=0.0, planar_veto_llr=None)
    assert replay_clip(held, "c", no_motion, None, 10.0)["decisions"][0]["decision"] == "live"
    table = MediumModel((0.0, 0.0, 0.0, -1.6, -4.5))
    assert replay_clip(held, "c", no_motion, table, 10.0)["decisions"][0]["decision"] == "spoof"
    unseen = _recorded([(nan, nan, nan, nan, nan, None)] * 5)
    assert replay_clip(unseen, "c", door, table, 10.0) == {"first_face": None, "decisions": []}


def test_replay_without_a_recorded_run_says_what_to_do(tmp_path, capsys):
    from convert.bench_liveness import main

    assert main(["--replay", str(tmp_path / "summary.json")]) == 2
    assert "no recorded run" in capsys.readouterr().err
    (tmp_path / "summary.json").write_text('{"fps": 10}')  # something else, or a run of an older format
    assert main(["--replay", str(tmp_path / "summary.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a door benchmark summary.json (no clips_detail" in err


def test_a_clip_encoded_as_a_recording_replays_through_the_pipeline(tmp_path):
    """--encode: the clip's frames written with a lossy codec (a file, not the PNGs) reach the pipeline
    frame for frame, changed by the codec; an unknown codec or an empty folder is one clear error."""
    from convert.bench_liveness import run_clip
    from convert.clip_video import EncodeError, encode_clip
    from firmware_app.bundle import load_bundle
    from firmware_app.camera.replay import ReplayCamera
    from firmware_app.config import CameraConfig, Config
    from tests.test_fw_fixtures import tiny_bundle
    from train.synth.door_clip import DoorClip, render_door_clip

    clip = tmp_path / "c"
    render_door_clip(clip, DoorClip("bona_fide", "walk", 3), 0.4, 10, (320, 240))
    video = encode_clip(clip, "mp4v", 10.0)
    assert video.name == "clip_mp4v.mp4" and encode_clip(clip, "mp4v", 10.0) == video  # reused
    cam = ReplayCamera(video, loop=False)
    cam.open()
    decoded = [cam.read().rgb for _ in range(4)]
    png = [cv2.cvtColor(cv2.imread(str(clip / f"frame_{k:04d}.png")), cv2.COLOR_BGR2RGB) for k in range(4)]
    diffs = np.array([[np.abs(a.astype(int) - b.astype(int)).mean() for b in png] for a in decoded])
    # lossy, but the same frames in the same order
    assert (np.diag(diffs) > 0.1).all() and (diffs.argmin(axis=1) == np.arange(4)).all(), diffs
    res = run_clip(video, load_bundle(tiny_bundle(), None), Config(camera=CameraConfig(source="-")), 10.0)
    assert len(res["frame_llr"]) == 4
    with pytest.raises(EncodeError, match="unknown codec"):
        encode_clip(clip, "H265", 10.0)
    (clip / "frame_0002.png").write_bytes(b"not a png")
    with pytest.raises(EncodeError, match="frame_0002.png: unreadable"):
        encode_clip(clip, "MJPG", 10.0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(EncodeError, match="no frame_"):
        encode_clip(tmp_path / "empty", "mp4v", 10.0)
