import numpy as np
import pytest

from tracker.core.errors import ConfigError
from tracker.core.geometry import (
    quaternion_from_rotation,
    rotation_angle_deg,
    rotation_from_6d,
    rotation_from_quaternion,
    rotation_from_ypr_deg,
    ypr_deg_from_rotation,
)

NOSE = np.array([0.0, 0.0, -1.0])  # the head frame's nose direction (ARCHITECTURE §2)
UP = np.array([0.0, -1.0, 0.0])  # the face's up-vector in the head frame (y down)


def test_yaw_30_turns_nose_toward_image_right():
    r = rotation_from_ypr_deg(30, 0, 0)
    nose = r @ NOSE
    assert nose[0] == pytest.approx(np.sin(np.deg2rad(30)))
    assert nose[1] == pytest.approx(0.0)
    assert ypr_deg_from_rotation(r) == pytest.approx((30.0, 0.0, 0.0))


def test_pitch_positive_turns_nose_up():
    nose = rotation_from_ypr_deg(0, 20, 0) @ NOSE
    assert nose[1] == pytest.approx(-np.sin(np.deg2rad(20)))  # -y is up in the image


def test_roll_positive_turns_up_vector_clockwise_in_image():
    up = rotation_from_ypr_deg(0, 0, 15) @ UP
    # clockwise on screen (y down) from straight up means toward +x
    assert up[0] == pytest.approx(np.sin(np.deg2rad(15)))
    assert up[1] == pytest.approx(-np.cos(np.deg2rad(15)))


def test_frontal_is_identity():
    np.testing.assert_allclose(rotation_from_ypr_deg(0, 0, 0), np.eye(3))


def test_ypr_round_trip_random():
    rng = np.random.default_rng(0)
    for _ in range(500):
        ypr = rng.uniform([-89, -179, -179], [89, 179, 179])
        back = ypr_deg_from_rotation(rotation_from_ypr_deg(*ypr))
        np.testing.assert_allclose(back, ypr, atol=1e-7)


def test_quaternion_round_trip_and_sign():
    rng = np.random.default_rng(1)
    for _ in range(200):
        r = rotation_from_ypr_deg(*rng.uniform(-170, 170, 3) * [0.5, 1, 1])
        q = quaternion_from_rotation(r)
        assert q[0] >= 0 and np.linalg.norm(q) == pytest.approx(1.0)
        np.testing.assert_allclose(rotation_from_quaternion(q), r, atol=1e-9)
    # 180 degrees about x: the branch for a non-positive trace
    r = rotation_from_ypr_deg(0, 180, 0)
    np.testing.assert_allclose(rotation_from_quaternion(quaternion_from_rotation(r)), r, atol=1e-9)


def test_angle_and_6d():
    a = rotation_from_ypr_deg(10, 0, 0)
    b = rotation_from_ypr_deg(40, 0, 0)
    assert rotation_angle_deg(a, b) == pytest.approx(30.0)
    sixd = np.concatenate([b[:, 0], b[:, 1]]) * 3.0
    np.testing.assert_allclose(rotation_from_6d(sixd), b, atol=1e-12)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ConfigError, match=r"\(3,3\)"):
        ypr_deg_from_rotation(np.eye(4))
    with pytest.raises(ConfigError, match="quaternion"):
        rotation_from_quaternion(np.zeros(4))
