"""The decision panel's headline (predict, saved decisions, the preview): a decision only where the track
decided; one frame on its own only leans, because the door never decides live from one frame."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

from firmware_app.liveness import LIVE, SPOOF, Decision, Score
from firmware_app.panels import VERDICT_COLOURS, verdict_label
from firmware_app.pipeline import LivenessResult

FACE = object()  # verdict_label asks only whether there is a face
LEANS_LIVE = LivenessResult(Score(55.0, 60.0, 2000, True, 4.2), None, llr=1.5)


def _spoof_decision() -> Decision:
    return Decision(1, SPOOF, "the face moved as a plane", -5.0, 4.6, -4.6, 6, 0, 3, 0.6, {}, 55.0, 1.2)


def _label(liveness, face=FACE):
    return verdict_label(SimpleNamespace(face=face, liveness=liveness))


def test_a_frame_that_leans_live_is_not_called_live():
    text, _ = _label(LEANS_LIVE)
    assert text == "leans live"
    assert _label(replace(LEANS_LIVE, llr=-0.4))[0] == "leans spoof"


def test_the_track_decision_wins_over_the_frame_lean():
    # a hand-held print: this frame leans live, but the track decided spoof on it (motion veto)
    assert _label(replace(LEANS_LIVE, decision=_spoof_decision())) == ("SPOOF", VERDICT_COLOURS[SPOOF])
    # a later frame of a track that was decided live earlier
    assert _label(replace(LEANS_LIVE, llr=-0.3, verdict=LIVE))[0] == "LIVE"


def test_no_face_and_too_little_face():
    assert _label(None, face=None)[0] == "no face"
    assert _label(replace(LEANS_LIVE, score=None))[0] == "too little face"
