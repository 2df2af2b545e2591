import numpy as np
import pytest

from tracker.core.errors import ConfigError
from tracker.core.types import (
    Detections,
    FaceCoefficients,
    FaceState,
    Frame,
    GroundTruth,
    Intrinsics,
    TrackResult,
)


def test_project_unproject_round_trip():
    k = Intrinsics(600.0, 610.0, 319.5, 239.5, 640, 480)
    rng = np.random.default_rng(0)
    pts = np.c_[rng.uniform(-0.3, 0.3, (100, 2)), rng.uniform(0.3, 2.0, 100)]
    uv = k.project(pts)
    np.testing.assert_allclose(k.unproject(uv, pts[:, 2]), pts, atol=1e-12)
    # the principal point is where the optical axis lands
    np.testing.assert_allclose(k.project(np.array([[0, 0, 1.0]])), [[319.5, 239.5]])


def test_project_unproject_with_distortion():
    k = Intrinsics(600.0, 600.0, 320.0, 240.0, 640, 480, (0.05, -0.01, 0.001, 0.0005, 0.0))
    pts = np.array([[0.1, -0.05, 1.0], [-0.2, 0.1, 0.8]])
    back = k.unproject(k.project(pts), pts[:, 2])
    np.testing.assert_allclose(back, pts, atol=1e-6)


def test_scaled_intrinsics_keep_pixel_centres():
    k = Intrinsics.from_fov(640, 480, 60)
    half = k.scaled(0.5)
    p = np.array([[0.05, 0.02, 0.7]])
    np.testing.assert_allclose((k.project(p) + 0.5) * 0.5 - 0.5, half.project(p), atol=1e-9)


def test_intrinsics_validation():
    with pytest.raises(ConfigError, match="focal"):
        Intrinsics(0.0, 1.0, 0, 0, 10, 10)


def test_frame_validation_messages():
    k = Intrinsics.from_fov(64, 48, 60)
    Frame(0, 0, np.zeros((48, 64, 3), np.uint8), k)
    with pytest.raises(ConfigError, match=r"expected \(\*,\*,3\) uint8, got \(48, 64\) float32"):
        Frame(0, 0, np.zeros((48, 64), np.float32), k)
    with pytest.raises(ConfigError, match="intrinsics describe"):
        Frame(0, 0, np.zeros((10, 64, 3), np.uint8), k)
    with pytest.raises(ConfigError, match="Frame.depth"):
        Frame(0, 0, np.zeros((48, 64, 3), np.uint8), k, depth=np.zeros((48, 64), np.float32))
    f = Frame(0, 0, np.zeros((48, 64, 3), np.uint8), k, depth=np.full((48, 64), 500, np.uint16))
    assert f.depth_m[0, 0] == pytest.approx(0.5)


def test_detections_indexing():
    d = Detections(np.array([[0, 0, 10, 10], [5, 5, 20, 20]]), np.array([0.9, 0.5]), np.zeros((2, 5, 2)))
    assert len(d) == 2 and len(d[d.scores > 0.6]) == 1 and len(Detections.empty()) == 0
    assert d[1].boxes[0, 2] == 20
    with pytest.raises(ConfigError, match="scores"):
        Detections(np.zeros((2, 4)), np.zeros(3), np.zeros((2, 5, 2)))


def _face(**kw):
    coeffs = dict(identity=np.zeros(40), expression=np.zeros(53), rotation=np.eye(3),
                  translation_m=np.array([0, 0, 0.6]), lighting=np.zeros(27))
    args = dict(track_id=1, landmarks68=np.zeros((68, 2)), confidence=0.9)
    coeffs.update({k: v for k, v in kw.items() if k in coeffs})
    args.update({k: v for k, v in kw.items() if k not in coeffs})
    return FaceState(coefficients=FaceCoefficients(**coeffs), **args)


def test_face_state_derived_values_and_validation():
    e = np.zeros(53)
    e[2] = 1.0  # browInnerUp_L
    f = _face(expression=e)
    assert f.arkit.shape == (52,) and f.arkit[43] == pytest.approx(0.5)  # browInnerUp = mean of halves
    np.testing.assert_allclose(f.quaternion, [1, 0, 0, 0])
    with pytest.raises(ConfigError, match=r"expected \(53,\)"):
        _face(expression=np.zeros(40))
    with pytest.raises(ConfigError, match="orthonormal"):
        _face(rotation=np.eye(3) * 2)
    with pytest.raises(ConfigError, match="state"):
        _face(state="frozen")
    with pytest.raises(ConfigError, match="NaN"):
        _face(translation_m=np.array([0, np.nan, 1]))
    with pytest.raises(ConfigError, match="FaceState"):
        TrackResult(0, 0, 0, faces=[{"track_id": 1}])
    with pytest.raises(ConfigError, match="FaceCoefficients"):
        FaceState(1, {"identity": np.zeros(3)}, np.zeros((68, 2)), 0.9)


def test_ground_truth_arkit():
    gt = GroundTruth(FaceCoefficients(np.zeros(10), np.ones(53), np.eye(3), np.zeros(3)), np.zeros((68, 2)))
    assert gt.arkit[-1] == 0.0 and gt.arkit[0] == 1.0


def test_the_primary_face_is_the_most_confident_one_not_lost():
    faces = [_face(track_id=1, confidence=0.5), _face(track_id=2, confidence=0.99, state="lost"),
             _face(track_id=3, confidence=0.8)]  # fmt: skip
    r = TrackResult(0, 0, 0, faces=faces)
    assert r.primary_index() == 2 and r.primary_face().track_id == 3
    assert TrackResult(0, 0, 0, faces=[faces[1]]).primary_face() is None
