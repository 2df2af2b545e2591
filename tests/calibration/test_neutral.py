"""The neutral profile: mapping, eyelid rule, JSON round trip, validation (pure computation)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from calibration.neutral import (
    EYELID_CHANNELS,
    MIN_RANGE,
    NeutralProfile,
    NeutralRecorder,
    build_profile,
    load_profile,
    save_profile,
)
from tracker.core.errors import CalibrationError
from tracker.core.face_model.arkit import ARKIT_NAMES, ICT_EXPRESSION_NAMES, arkit_to_ict, ict_to_arkit
from tracker.core.types import FaceCoefficients, FaceState

A = {n: i for i, n in enumerate(ARKIT_NAMES)}
ICT = {n: i for i, n in enumerate(ICT_EXPRESSION_NAMES)}


def _rest_readings(n: int = 60, seed: int = 0) -> np.ndarray:
    """A resting face as a tracker reads it: offsets on a few channels, jitter, and one blink in the middle."""
    rng = np.random.default_rng(seed)
    base = np.zeros(52)
    base[[A["mouthSmileLeft"], A["mouthSmileRight"]]] = 0.2
    base[A["browDownLeft"]] = 0.15
    base[A["jawOpen"]] = 0.1
    base[[A["eyeBlinkLeft"], A["eyeBlinkRight"]]] = 0.08
    readings = np.clip(base + rng.normal(0, 0.01, (n, 52)), 0, 1)
    readings[n // 2 : n // 2 + 4, [A["eyeBlinkLeft"], A["eyeBlinkRight"]]] = 0.9  # a blink during the rest
    return readings


def _mapped_arkit(profile: NeutralProfile, arkit: np.ndarray) -> np.ndarray:
    return ict_to_arkit(profile.apply(arkit_to_ict(arkit.astype(np.float32))))


def test_rest_reads_zero_and_a_full_blink_saturates():
    readings = _rest_readings()
    profile = build_profile(np.zeros(40), readings)
    assert profile.rest[A["mouthSmileLeft"]] == pytest.approx(0.2, abs=0.01)
    assert profile.rest[A["eyeBlinkLeft"]] == pytest.approx(0.08, abs=0.01)  # the median ignores the blink
    rest_frames = np.delete(readings, range(30, 34), axis=0)
    assert max(_mapped_arkit(profile, r).max() for r in rest_frames) <= 0.05
    closed = readings[0].copy()
    closed[[A["eyeBlinkLeft"], A["eyeBlinkRight"]]] = 0.9  # a tracker rarely reads a closed eye as 1.0
    out = _mapped_arkit(profile, closed)
    assert out[A["eyeBlinkLeft"]] >= 0.9 and out[A["eyeBlinkRight"]] >= 0.9
    # Without a sweep the other channels keep full = 1: a full smile still reads 1, half of it reads less.
    smile = readings[0].copy()
    smile[A["mouthSmileLeft"]] = 1.0
    assert _mapped_arkit(profile, smile)[A["mouthSmileLeft"]] == pytest.approx(1.0)
    smile[A["mouthSmileLeft"]] = 0.6
    assert _mapped_arkit(profile, smile)[A["mouthSmileLeft"]] == pytest.approx(0.4 / 0.8, abs=0.02)


def test_a_sweep_sets_each_channels_full_range():
    readings = _rest_readings()
    sweep = np.repeat(readings[:1], 50, axis=0)
    sweep[10:20, A["mouthSmileLeft"]] = 0.55  # this person's widest smile reads 0.55
    sweep[25:28, [A["eyeBlinkLeft"], A["eyeBlinkRight"]]] = 0.5  # and their blink 0.5
    sweep[30:40, A["jawOpen"]] = 0.1 + MIN_RANGE / 2  # moved less than MIN_RANGE: noise, full stays 1
    profile = build_profile(np.zeros(40), readings, sweep)
    assert profile.full[A["mouthSmileLeft"]] == pytest.approx(0.55, abs=1e-6)
    assert profile.full[A["jawOpen"]] == 1.0 and profile.sweep_frames == 50
    frame = readings[0].copy()
    frame[A["mouthSmileLeft"]] = 0.55
    frame[[A["eyeBlinkLeft"], A["eyeBlinkRight"]]] = 0.5
    out = _mapped_arkit(profile, frame)
    assert out[A["mouthSmileLeft"]] == pytest.approx(1.0)
    assert out[A["eyeBlinkLeft"]] >= 0.9 and out[A["eyeBlinkRight"]] >= 0.9
    # The eyelids' dead zone: a flicker just above rest reads open.
    frame = readings[0].copy()
    frame[A["eyeBlinkLeft"]] = profile.rest[A["eyeBlinkLeft"]] + 0.02
    assert _mapped_arkit(profile, frame)[A["eyeBlinkLeft"]] == 0.0


def test_json_round_trip(tmp_path):
    profile = build_profile(np.linspace(-1, 1, 40), _rest_readings(), name="ada")
    path = save_profile(profile, tmp_path / "p" / "me.json")
    data = json.loads(path.read_text())
    assert set(data["channels"]) == set(ARKIT_NAMES) and data["name"] == "ada"
    back = load_profile(path)
    np.testing.assert_allclose(back.identity, profile.identity, atol=1e-6)
    np.testing.assert_allclose(back.rest, profile.rest, atol=1e-5)
    np.testing.assert_allclose(back.full, profile.full, atol=1e-5)
    assert back.rest_frames == 60 and EYELID_CHANNELS[0] in data["channels"]


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d.update(format="other"), "not a facetrack neutral profile"),
        (lambda d: d.update(version=99), "version 99"),
        (lambda d: d["channels"].pop("jawOpen"), "missing channel.*jawOpen"),
        (lambda d: d["channels"]["jawOpen"].update(rest=0.9, full=0.5), "jawOpen"),
        (lambda d: d.update(identity=[1.0, "x"]), "identity"),
        (lambda d: d.update(identity=[float("nan")]), "NaN"),
        (lambda d: d.pop("rest_frames"), "rest_frames"),
    ],
)
def test_bad_profiles_are_calibration_errors(tmp_path, edit, match):
    data = build_profile(np.zeros(40), _rest_readings()).to_dict()
    edit(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match=match):
        load_profile(path)


def test_unreadable_files_are_calibration_errors(tmp_path):
    with pytest.raises(CalibrationError, match="not found"):
        load_profile(tmp_path / "none.json")
    (tmp_path / "x.json").write_text("{nope")
    with pytest.raises(CalibrationError, match="not readable JSON"):
        load_profile(tmp_path / "x.json")


def _face(track_id: int, confidence: float, jaw: float) -> FaceState:
    e = np.zeros(53, np.float32)
    e[ICT["jawOpen"]] = jaw
    coefficients = FaceCoefficients(np.zeros(40), e, np.eye(3), np.array([0, 0, 0.6]), np.zeros(27))
    return FaceState(track_id, coefficients, np.zeros((68, 2)), confidence)


def test_the_recorder_follows_one_face_and_needs_enough_tracked_frames():
    rec = NeutralRecorder()
    rec.add([_face(1, 0.9, 0.1)], "rest")
    rec.add([_face(2, 0.99, 0.7), _face(1, 0.8, 0.12)], "rest")  # a second, more confident face: not followed
    assert [r[A["jawOpen"]] for r in rec.rest] == pytest.approx([0.1, 0.12])
    rec.add([], "rest")
    rec.add([], "rest")
    rec.add([], "rest")
    with pytest.raises(CalibrationError, match="tracked in 2 of 5 rest frames"):
        rec.profile(np.zeros(40))
    with pytest.raises(CalibrationError, match="phase"):
        rec.add([], "warmup")
