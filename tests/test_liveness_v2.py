"""Liveness v2: frame evidence, the per-track sequential decision, its calibration, v1 bundles (motion cue:
test_motion_cue.py; door benchmark: test_door_bench.py)."""

from __future__ import annotations

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest

from firmware_app.config import ConfigError, parse_config
from firmware_app.depth import DepthResult
from firmware_app.evidence import EvidenceError, EvidenceModel, frame_features
from firmware_app.liveness import (
    LIVE,
    SPOOF,
    UNDECIDED,
    DecisionParams,
    LivenessDecider,
    Score,
    TrackEvidence,
)
from firmware_app.motion import MotionEstimate

U, V = np.mgrid[0:80, 0:80].astype(np.float32)[::-1]  # U: column, V: row
FACE_MASK = ((U - 40) ** 2 / 26**2 + (V - 42) ** 2 / 32**2 < 1).astype(np.float32)


def _nose(height=25.0):
    return height * np.exp(-((U - 40) ** 2 + (V - 44) ** 2) / (2 * 6**2))


def _score(llr: float) -> Score:
    return Score(30.0, 40.0, 1500, llr > 0, llr, {"plane_range": llr})


# ---------------------------------------------------------------------------------------- the decision


def test_one_frame_never_decides_live_however_strong():
    ev = TrackEvidence(1, DecisionParams(), t0=0.0)
    big_motion = MotionEstimate(5.0, "", 40, 10.0, 2.0)
    assert ev.add(0.0, _score(1e6), big_motion) is None  # clipped to frame_llr_max, motion capped
    assert ev.llr < DecisionParams().live_bound
    decisions = [ev.add(0.1 * k, _score(1e6)) for k in range(1, 10)]
    first = next(d for d in decisions if d is not None)
    assert first.decision == LIVE and first.frames >= 3 and first.llr >= first.live_bound
    assert decisions.count(None) == len(decisions) - 1  # reported once


def test_config_refuses_a_clip_that_lets_one_frame_decide():
    with pytest.raises(ConfigError, match=r"liveness.frame_llr_max: 4.0 \+ the motion cap .* one frame"):
        parse_config("camera: {source: x}\nliveness: {frame_llr_max: 4.0}\n", "door.yaml")
    with pytest.raises(ConfigError, match=r"liveness.min_frames"):
        parse_config("camera: {source: x}\nliveness: {min_frames: 1}\n", "door.yaml")
    with pytest.raises(ConfigError, match=r"liveness.apcer_target"):
        parse_config("camera: {source: x}\nliveness: {apcer_target: 0.7}\n", "door.yaml")
    cfg = parse_config("camera: {source: x}\nliveness: {apcer_target: 0.001, frame_llr_max: 2}\n")
    assert cfg.liveness.frame_llr_max == 2 and cfg.liveness.motion


def test_decided_track_does_not_flip_and_spoof_comes_from_evidence():
    dec = LivenessDecider(DecisionParams())
    out = [dec.add(1, 0.1 * k, _score(3.0)) for k in range(4)]
    assert out[-1] is not None and out[-1].decision == LIVE
    assert all(dec.add(1, 1.0 + 0.1 * k, _score(-50.0)) is None for k in range(20))  # no flip
    assert dec.track(1, 0).verdict == LIVE
    spoof = [dec.add(2, 0.1 * k, _score(-3.0)) for k in range(4)]
    assert spoof[-1].decision == SPOOF and "spoof bound" in spoof[-1].reason
    assert spoof[-1].contributions["plane_range"] == pytest.approx(spoof[-1].llr)  # clipped shares add up


def test_an_attack_that_leans_a_little_live_waits_into_undecided():
    """Correlated frames: +0.3 per frame would pass the bound by patience; the mean rule stops it."""
    dec = LivenessDecider(DecisionParams(timeout_s=3.0))
    out = [dec.add(7, 0.1 * k, _score(0.3), MotionEstimate(None, "motion too small")) for k in range(31)]
    decided = [d for d in out if d is not None]
    assert len(decided) == 1 and decided[0].decision == UNDECIDED and decided[0].elapsed_s >= 3.0
    reason = decided[0].reason
    assert "no decision within 3 s" in reason and "but the mean frame LLR 0.30 < 1" in reason
    unscored = LivenessDecider(DecisionParams(timeout_s=0.5))
    res = [unscored.add(1, 0.1 * k, None) for k in range(6)]  # too little face: never helps
    assert res[-1].decision == UNDECIDED and res[-1].unscored == 6 and res[-1].frames == 0


def test_a_face_walking_up_is_judged_by_its_recent_frames_a_leaning_attack_still_is_not():
    """Far, small faces score weakly: 20 frames at +0.3, then near ones at +1.5. The whole track's mean
    stays below 1 for 2 s; the last 0.5 s's mean does not, and the sum has long passed the bound."""
    walk = [0.3] * 20 + [1.5] * 15
    whole = LivenessDecider(DecisionParams(timeout_s=3.0))
    out = [whole.add(1, 0.1 * k, _score(v)) for k, v in enumerate(walk)]
    assert not any(d is not None and d.decision == LIVE for d in out)
    recent = LivenessDecider(DecisionParams(timeout_s=3.0, mean_window_s=0.5))
    out = [recent.add(1, 0.1 * k, _score(v)) for k, v in enumerate(walk)]
    live = next(d for d in out if d is not None)
    assert live.decision == LIVE and live.mean_frame_llr >= 1.0
    assert 22 <= out.index(live) <= 25  # once min_frames strong frames fill the window (not before)
    # an attack that leans a little live on every frame gains nothing from the window
    lean = LivenessDecider(DecisionParams(timeout_s=3.0, mean_window_s=0.5))
    res = [lean.add(2, 0.1 * k, _score(0.6)) for k in range(31)]
    assert [d.decision for d in res if d is not None] == [UNDECIDED]
    # and a border on those near frames counts inside the window as it does over the track
    framed = LivenessDecider(DecisionParams(timeout_s=3.0, mean_window_s=0.5))
    res = [framed.add(3, 0.1 * k, _score(v), None, -1.6 if k >= 20 else 0.0) for k, v in enumerate(walk)]
    assert not any(d is not None and d.decision == LIVE for d in res)


def test_negative_motion_alone_can_close_but_positive_cannot_open():
    ev = TrackEvidence(1, DecisionParams(), 0.0)
    for k in range(10):
        ev.add(0.1 * k, _score(0.0), MotionEstimate(0.5, "", 40, 10, 1))
    assert ev.verdict is None and ev.llr == pytest.approx(1.0)  # motion's positive total is capped
    ev2 = TrackEvidence(2, DecisionParams(), 0.0)
    out = [ev2.add(0.1 * k, _score(0.0), MotionEstimate(-2.0, "", 40, 10, 0.01)) for k in range(3)]
    assert out[-1].decision == SPOOF and out[-1].contributions["motion"] == pytest.approx(-6.0)


def ev_reason(decisions) -> str:
    return next(d.reason for d in decisions if d is not None)


def test_a_still_picture_is_never_live_however_live_its_frames_look():
    """A print on a stand: the depth network may be fooled on every frame, but the face never moves."""
    params = DecisionParams(min_moved_px=0.3)
    still = MotionEstimate(None, "motion too small", 40, 0.05, 0.01)
    dec = LivenessDecider(params)
    out = [dec.add(1, 0.1 * k, _score(5.0), still) for k in range(31)]
    decided = [d for d in out if d is not None]
    assert len(decided) == 1 and decided[0].decision == UNDECIDED and "never moved" in decided[0].reason
    jitter = MotionEstimate(None, "motion too small", 40, 0.7, 0.9)  # a phone on a stand: corners scatter
    ev = TrackEvidence(8, params, 0.0)
    assert all(ev.add(0.1 * k, _score(5.0), jitter) is None for k in range(10)) and not ev.moved
    swaying = MotionEstimate(None, "motion too small", 40, 0.4, 0.02)  # a person standing still sways
    out = [dec.add(2, 0.1 * k, _score(5.0), still if k < 5 else swaying) for k in range(31)]
    live = next(d for d in out if d is not None)
    assert live.decision == LIVE and live.elapsed_s == pytest.approx(0.5)
    assert LivenessDecider(DecisionParams()).add(3, 0.0, _score(1.0)) is None  # gate off by default
    planar = MotionEstimate(-0.9, "", 40, 3.0, 0.05)  # a hand-held print: it moved, as a plane
    ev = TrackEvidence(5, DecisionParams(min_moved_px=0.3, planar_veto_llr=-0.5), 0.0)
    out = [ev.add(0.1 * k, _score(5.0), planar if k == 1 else swaying) for k in range(31)]
    assert [d.decision for d in out if d] == [UNDECIDED] and "moved as a plane" in ev_reason(out)
    young = TrackEvidence(6, DecisionParams(min_track_s=0.6), 0.0)
    first = next(d for d in (young.add(0.1 * k, _score(5.0)) for k in range(10)) if d)
    assert first.decision == LIVE and first.elapsed_s == pytest.approx(0.6)
    with pytest.raises(ConfigError, match="liveness.min_track_s"):
        parse_config("camera: {source: x}\nliveness: {min_track_s: 3, timeout_s: 3}\n")
    tracking_lost = MotionEstimate(None, "too few consistent tracks")  # NaN shift: not movement
    ev = TrackEvidence(4, params, 0.0)
    assert all(ev.add(0.1 * k, _score(5.0), tracking_lost) is None for k in range(10)) and not ev.moved


def test_a_face_too_small_to_judge_adds_nothing_and_its_weak_frames_do_not_count_against_it():
    """min_face_px: a distant face's frames neither open the door nor drag the mean of a person walking up."""
    params = DecisionParams(min_face_px=60.0)
    far = TrackEvidence(1, params, 0.0)
    out = [far.add(0.1 * k, _score(5.0), face_px=55.0) for k in range(31)]
    decided = [d for d in out if d is not None]
    assert [d.decision for d in decided] == [UNDECIDED] and "come closer" in decided[0].reason
    assert far.frames == 0 and decided[0].unscored == 31 and far.llr == 0.0
    # walking up: weak far frames, then a face large enough whose frames lean live (clipped 1.5, mean 1.1)
    frames = [(-0.5, 45.0)] * 6 + [(1.1, 90.0)] * 25
    plain, sized = TrackEvidence(2, DecisionParams(), 0.0), TrackEvidence(3, params, 0.0)
    out_plain = [plain.add(0.1 * k, _score(llr), face_px=px) for k, (llr, px) in enumerate(frames)]
    out_sized = [sized.add(0.1 * k, _score(llr), face_px=px) for k, (llr, px) in enumerate(frames)]
    plain_decided = [d for d in out_plain if d]  # the far frames pull the whole track's mean under 1.0
    assert [d.decision for d in plain_decided] == [UNDECIDED] and "mean frame LLR" in plain_decided[0].reason
    live = next(d for d in out_sized if d)
    assert live.decision == LIVE and live.frames >= 3 and live.elapsed_s >= 0.6 + 0.2
    with pytest.raises(ConfigError, match="liveness.min_face_px"):
        parse_config("camera: {source: x}\nliveness: {min_face_px: -1}\n")


# ---------------------------------------------------------------------------------------- frame evidence


def test_shape_features_tell_a_face_from_a_tilted_and_a_bent_print():
    tilted = 0.8 * U - 0.5 * V
    bent = 40.0 * ((U - 40) / 26) ** 2  # a print bent around a vertical cylinder: curved, no nose
    face = tilted + 0.01 * ((U - 40) ** 2) + _nose()
    f_tilt, f_bent, f_face = (frame_features(z, FACE_MASK) for z in (tilted, bent, face))
    assert f_tilt.plane_range_mm < 0.1 and f_face.plane_range_mm > 20
    assert f_bent.plane_range_mm > 10  # the v1 score is fooled by the bend ...
    assert f_bent.values["quadric_range"] < 0.1 < 2.5 < f_face.values["quadric_range"]  # ... a quadric is not
    assert f_face.values["nose_prominence"] > 2.5 and f_bent.values["nose_prominence"] < 0.1
    assert "live_logit" not in f_face.values
    assert frame_features(face, FACE_MASK, live_logit=40.0).values["live_logit"] == 12.0  # clipped
    assert frame_features(face, np.zeros_like(FACE_MASK)) is None


def test_evidence_model_round_trips_through_the_manifest_and_checks_it():
    m = EvidenceModel(("plane_range", "live_logit"), (3.0, 0.0), (1.0, 2.0), (2.0, 1.0), -0.5)
    f = frame_features(_nose(), FACE_MASK, live_logit=2.0)
    again = EvidenceModel.from_manifest(json.loads(json.dumps({"evidence": m.to_manifest()})), 10.0)
    assert again.llr(f) == pytest.approx(m.llr(f), abs=1e-5) and again.uses_logit
    parts = m.contributions(f)
    assert parts["live_logit"] == pytest.approx(1.0) and sum(parts.values()) == pytest.approx(m.llr(f))
    with pytest.raises(EvidenceError, match="needs the network's liveness output"):
        m.llr(frame_features(_nose(), FACE_MASK))  # a v1 depth model under a v2 evidence model
    with pytest.raises(EvidenceError, match="unknown feature.*update the firmware"):
        EvidenceModel.from_manifest({"evidence": {**m.to_manifest(), "features": ["moire", "live_logit"]}}, 1)
    with pytest.raises(EvidenceError, match="incomplete"):
        EvidenceModel.from_manifest({"evidence": {"features": ["plane_range"]}}, 1)
    v1 = EvidenceModel.from_manifest({"threshold_mm": 30.0}, 30.0)  # a bundle from before the evidence model
    assert v1.source == "threshold_fallback" and not v1.uses_logit
    at = frame_features(_nose(30.0), FACE_MASK)
    assert v1.llr(at) == pytest.approx(4.0 * (np.log1p(at.plane_range_mm) - np.log1p(30.0)))


# ---------------------------------------------------------------------------------------- calibration


def _results(rng, n, live: bool, logit: bool):
    out = []
    for _ in range(n):
        h = rng.uniform(18, 35) if live else rng.uniform(0, 8)
        z = 0.5 * U - 0.2 * V + _nose(h) + rng.normal(0, 0.5, U.shape)
        out.append(DepthResult(z.astype(np.float32), FACE_MASK, float(rng.normal(2 if live else -2, 1.5))
                               if logit else None))
    return out


@pytest.mark.parametrize("logit", [False, True])
def test_calibration_fits_an_llr_and_records_it(logit):
    from convert.liveness import calibrate

    rng = np.random.default_rng(0)
    val = _results(rng, 120, True, logit) + _results(rng, 60, False, logit)
    test = _results(rng, 60, True, logit) + _results(rng, 40, False, logit)
    labels = lambda b, a: ["bona_fide"] * b + ["print_flat"] * a  # noqa: E731
    c = calibrate(val, labels(120, 60), test, labels(60, 40))
    m = c.to_manifest()
    ev = m["evidence"]
    assert ev["features"][-1] == ("live_logit" if logit else "nose_prominence")
    assert ev["calibration"]["bona_fide"] == 120 and ev["calibration"]["attack"] == 60
    model = EvidenceModel.from_manifest(m, m["threshold_mm"])  # what the device will read
    assert model.llr(frame_features(val[0].relief_mm, FACE_MASK, val[0].live_logit)) > 2
    assert model.llr(frame_features(val[-1].relief_mm, FACE_MASK, val[-1].live_logit)) < -2
    assert c.val_bpcer <= 0.01 and c.test_apcer == 0.0
    by_type = m["test_apcer_by_type"]["print_flat"]
    assert by_type["attacks"] == 40 and by_type["apcer"] == 0.0 and by_type["wilson95"][1] > 0.05
    assert m["n_val"] == {"bona_fide": 120, "attack": 60, "unscored": 0} and m["notes"]


def test_calibration_refuses_too_few_attacks():
    from convert.liveness import MIN_ATTACKS, calibrate

    rng = np.random.default_rng(1)
    val = _results(rng, 200, True, False) + _results(rng, MIN_ATTACKS - 1, False, False)
    labels = ["bona_fide"] * 200 + ["replay_phone"] * (MIN_ATTACKS - 1)
    with pytest.raises(ValueError, match=rf"too few .*: {MIN_ATTACKS - 1} attacks .*need ≥ {MIN_ATTACKS}"):
        calibrate(val, labels, val, labels)
    unscored = [replace(r, face_prob=np.zeros_like(FACE_MASK)) for r in val[200:]] * 3  # no face: no evidence
    with pytest.raises(ValueError, match="too few scored"):
        calibrate(val[:200] + unscored, ["bona_fide"] * 200 + ["print_flat"] * len(unscored), val, labels)


# ---------------------------------------------------------------------------------------- the daemon


def test_v1_bundle_runs_with_the_threshold_fallback(tmp_path):
    """A bundle without liveness.evidence (every bundle before v2) decides through the fallback model."""
    import inspect

    from firmware_app.bundle import load_bundle
    from firmware_app.camera import Frame
    from firmware_app.config import Config
    from firmware_app.pipeline import Pipeline
    from firmware_app.profiling import Profiler
    from tests.test_fw_fixtures import copy_bundle, synthetic_frames

    kw = {"trusted_keys": None} if "trusted_keys" in inspect.signature(load_bundle).parameters else {}
    bundle = load_bundle(copy_bundle(tmp_path / "b"), **kw)
    assert "evidence" not in bundle.liveness
    pipe = Pipeline.from_bundle(bundle, Config(), Profiler())
    assert pipe.liveness.scorer.model.source == "threshold_fallback"
    rgb = cv2.cvtColor(cv2.imread(str(sorted(synthetic_frames().glob("*.png"))[0])), cv2.COLOR_BGR2RGB)
    results = [pipe.process(Frame(rgb, 0.1 * k, k)) for k in range(6)]
    scored = [r.liveness for r in results if r.liveness and r.liveness.score]
    assert len(scored) == 6 and scored[0].decision is None  # never from one frame
    assert {"plane_range", "bias"} == set(scored[0].score.contributions)
    assert sum(r.liveness.decision is not None for r in results) <= 1
    assert {"detect", "motion", "liveness"} <= set(pipe.profiler.summary()["stages"])


def test_a_face_cut_by_the_frame_edge_has_no_say():
    """max_outside: when most of the crop is fill past the frame edge, the fill would decide, not the face."""
    from firmware_app.preprocess import crop_transform, outside_share

    assert outside_share(crop_transform((200, 150, 300, 250)), (480, 640)) == 0.0  # inside the frame
    half = outside_share(crop_transform((590, 150, 690, 250)), (480, 640))  # centred on the right edge
    assert 0.45 < half < 0.55
    params = DecisionParams(max_outside=0.25)
    cut = TrackEvidence(1, params, 0.0)
    out = [cut.add(0.1 * k, _score(-5.0), outside=0.5) for k in range(31)]  # a close face scored as a print
    decided = [d for d in out if d is not None]
    assert [d.decision for d in decided] == [UNDECIDED] and "frame edge" in decided[0].reason
    assert cut.frames == 0 and cut.llr == 0.0  # neither spoof nor live: it never counted
    seen = TrackEvidence(2, params, 0.0)
    assert next(d for d in (seen.add(0.1 * k, _score(-5.0), outside=0.2) for k in range(31)) if d).decision \
        == SPOOF
    with pytest.raises(ConfigError, match="liveness.max_outside"):
        parse_config("camera: {source: x}\nliveness: {max_outside: 1.5}\n")
