"""The medium-edge cue: a print's or screen's straight edges around the face lower a track's evidence."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from convert.liveness import MEDIUM_FLOOR, fit_medium
from firmware_app.liveness import SPOOF, DecisionParams, Score, TrackEvidence
from firmware_app.medium import MediumEdges, MediumError, MediumModel, find_edges

BOX = (280, 200, 360, 280)  # an 80 px face box in a 640×480 frame


def _frame(seed=0) -> np.ndarray:
    """A textured wall with a face-like blob in BOX."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(90, 160, (480, 640, 3), dtype=np.uint8), (0, 0), 6)
    cv2.ellipse(img, (320, 240), (38, 48), 0, 0, 360, (200, 160, 140), -1)
    cv2.circle(img, (305, 228), 5, (40, 30, 30), -1)
    cv2.circle(img, (335, 228), 5, (40, 30, 30), -1)
    return img


def _medium(img, half_w, half_h, angle_deg=0.0, colour=(15, 15, 15), thickness=8):
    """Draw a rectangle's outline (a bezel) centred on the face, rotated by angle_deg."""
    pts = cv2.boxPoints(((320.0, 240.0), (2.0 * half_w, 2.0 * half_h), angle_deg)).astype(np.int32)
    cv2.polylines(img, [pts], True, colour, thickness)
    return img


def test_a_frame_around_the_face_is_found_on_every_side_and_a_bare_face_has_none():
    bare = find_edges(_frame(), BOX)
    assert bare.count == 0, bare
    framed = find_edges(_medium(_frame(), 100, 130), BOX)
    assert framed.sides == "LRTB"
    assert find_edges(_medium(_frame(), 100, 130, angle_deg=15.0), BOX).count == 4  # a tilted print
    grey = cv2.cvtColor(_medium(_frame(), 100, 130), cv2.COLOR_RGB2GRAY)
    assert find_edges(grey, BOX).sides == "LRTB"  # a mono camera's frame


def test_edges_far_from_the_face_or_through_it_are_not_a_medium():
    far = find_edges(_medium(_frame(), 260, 230), BOX)  # a door frame 3+ face widths away
    assert far.count == 0, far
    img = _frame()
    cv2.line(img, (0, 240), (639, 240), (10, 10, 10), 6)  # a line across the face itself
    assert find_edges(img, BOX).count == 0
    img = _frame()
    cv2.line(img, (150, 60), (230, 60), (10, 10, 10), 6)  # a short shelf edge off the corner
    assert find_edges(img, BOX).count == 0


def test_a_box_at_the_frame_edge_or_degenerate_does_not_fail():
    assert find_edges(_frame(), (600, 440, 700, 540)).count >= 0
    assert find_edges(_frame(), (700, 500, 710, 510)) == MediumEdges("", 0)


def test_rendered_attacks_show_their_medium_and_rendered_faces_mostly_do_not():
    """The synthetic world's own frames: prints and screens in a room vs heads in the same rooms."""
    from train.synth.face_render import make_identity
    from train.synth.generator import GeneratorConfig, generate_sample

    cfg = GeneratorConfig()
    counts = {"bona_fide": [], "attack": []}
    for i in range(12):
        identity = make_identity(500 + i, np.random.default_rng([3, i, 1]))
        attack = "replay_tablet" if i % 2 else "print_flat"
        for label, key in (("bona_fide", "bona_fide"), (attack, "attack")):
            s = generate_sample(cfg, identity, label, np.random.default_rng([3, i, 2, len(counts[key])]))
            x0, y0 = s.landmarks_2d.min(axis=0)
            x1, y1 = s.landmarks_2d.max(axis=0)
            counts[key].append(find_edges(s.rgb, (x0, y0, x1, y1)).count)
    attack, bona = np.array(counts["attack"]), np.array(counts["bona_fide"])
    assert (attack >= 3).mean() >= 0.75, attack
    assert (bona >= 3).mean() <= 0.25, bona


def test_fitted_table_only_lowers_never_rises_with_sides_and_has_a_floor():
    counts = [0] * 300 + [1] * 150 + [2] * 40 + [3] * 8 + [4] * 2 + [4] * 150 + [3] * 40 + [0] * 10
    labels = ["bona_fide"] * 500 + ["print_flat"] * 200
    m = fit_medium(counts, labels)
    v = m.llr_by_count
    assert v[0] == 0.0 and max(v) <= 0 and all(b <= a for a, b in zip(v, v[1:]))
    assert v[4] == MEDIUM_FLOOR and v[3] < 0
    assert m.calibration["attack_by_count"] == [10, 0, 0, 40, 150]
    round_trip = MediumModel.from_manifest(json.loads(json.dumps({"medium": m.to_manifest()})))
    assert round_trip.llr_by_count == pytest.approx(v, abs=1e-4)
    assert MediumModel.from_manifest({}) is None  # a bundle from before this cue


def test_calibration_refuses_too_few_attacks():
    with pytest.raises(ValueError, match=r"too few validation samples to calibrate the medium-edge cue: 10 "
                                         r"attacks"):
        fit_medium([0] * 200 + [4] * 10, ["bona_fide"] * 200 + ["replay_phone"] * 10)


@pytest.mark.parametrize("table, match", [
    ([0, 0, 0, -1], "needs 5 finite numbers"),
    ([0, 0, 0.5, -1, -2], "must be ≤ 0"),
    ([0, -2, -1, -1, -3], "not rise"),
    ([0, 0, 0, float("nan"), -3], "finite"),
])
def test_a_bad_table_in_a_manifest_is_refused_with_one_line(table, match):
    with pytest.raises(MediumError, match=match):
        MediumModel.from_manifest({"medium": {"llr_by_count": table}})
    with pytest.raises(MediumError, match="incomplete"):
        MediumModel.from_manifest({"medium": {"llr": []}})


def test_a_border_closes_a_track_whose_frames_look_live_and_cannot_open_one():
    """A print whose face the depth network finds convincing (+1.5 a frame, the clip) but whose border is
    seen on every frame goes to spoof; a positive medium value is ignored."""
    live_score = Score(40.0, 50.0, 1500, True, 5.0, {"live_logit": 5.0})
    ev = TrackEvidence(1, DecisionParams(), 0.0)
    out = [ev.add(0.1 * k, live_score, None, -3.0) for k in range(4)]
    decided = [d for d in out if d is not None]
    assert decided and decided[0].decision == SPOOF and decided[0].contributions["medium"] < -4
    assert sum(decided[0].contributions.values()) == pytest.approx(decided[0].llr, abs=0.01)
    flat = Score(5.0, 6.0, 1500, False, 0.0, {"live_logit": 0.0})
    ev2 = TrackEvidence(2, DecisionParams(), 0.0)
    for k in range(10):
        ev2.add(0.1 * k, flat, None, +5.0)
    assert ev2.verdict is None and ev2.llr == 0.0


def test_the_pipeline_adds_the_bundle_medium_table_to_the_track_and_times_it(tmp_path):
    """A bundle with a medium table: the same face with a bezel drawn around it loses evidence each frame,
    the bare face does not; the event's contributions and the profile name the cue."""
    from firmware_app.bundle import load_bundle
    from firmware_app.camera import Frame
    from firmware_app.config import Config, parse_config
    from firmware_app.pipeline import Pipeline
    from firmware_app.profiling import Profiler
    from tests.test_fw_fixtures import copy_bundle, synthetic_frames

    root = copy_bundle(tmp_path / "b")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["liveness"]["medium"] = MediumModel((0.0, 0.0, 0.0, -1.0, -2.0)).to_manifest()
    (root / "manifest.json").write_text(json.dumps(manifest))
    bundle = load_bundle(root, None)
    rgb = cv2.cvtColor(cv2.imread(str(sorted(synthetic_frames().glob("*.png"))[0])), cv2.COLOR_BGR2RGB)
    probe = Pipeline.from_bundle(bundle, Config(), Profiler()).process(Frame(rgb, 0.0, 0))
    x0, y0, x1, y1 = probe.face.box
    w = x1 - x0
    framed = rgb.copy()
    cv2.rectangle(framed, (int(x0 - 0.9 * w), int(y0 - 1.1 * w)), (int(x1 + 0.9 * w), int(y1 + 1.3 * w)),
                  (10, 10, 10), 8)

    def track(img, cfg=None):
        pipe = Pipeline.from_bundle(bundle, cfg or Config(), Profiler())
        results = [pipe.process(Frame(img, 0.1 * k, k)) for k in range(3)]
        return pipe, results[-1].liveness

    pipe, bare = track(rgb)
    assert bare.medium is not None and bare.medium.llr == 0.0
    assert "medium" in pipe.profiler.summary()["stages"]
    _, boxed = track(framed)
    assert boxed.medium.edges.count >= 3 and boxed.medium.llr <= -1.0
    assert boxed.llr <= bare.llr - 3 * 1.0 + 1e-6  # one medium LLR per frame, outside the frame clip
    off = parse_config(json.dumps({"camera": {"source": "x"}, "liveness": {"medium": False}}))
    _, unused = track(framed, off)
    assert unused.medium is None and unused.llr == pytest.approx(bare.llr, abs=1e-6)


def test_a_three_sided_border_on_every_frame_keeps_a_live_looking_picture_out():
    """+1.5 a frame (clipped) against −1.33 a frame: the sum creeps past the live bound by patience, but
    the frames' mean evidence, the medium's included, stays under min_mean_llr: undecided, never live."""
    live_score = Score(40.0, 50.0, 1500, True, 5.0, {"live_logit": 5.0})
    ev = TrackEvidence(1, DecisionParams(timeout_s=6.0), 0.0)
    out = [ev.add(0.1 * k, live_score, None, -1.33) for k in range(61)]
    decided = [d for d in out if d is not None]
    assert len(decided) == 1 and decided[0].decision == "undecided", decided
    assert decided[0].llr > DecisionParams().live_bound and "mean frame LLR" in decided[0].reason
