import numpy as np
import pytest
import torch

from engines.differentiable import (
    axis_angle_to_matrix,
    head_to_camera,
    intrinsics_tensor,
    matrix_to_axis_angle,
    matrix_to_quaternion,
    matrix_to_sixd,
    matrix_to_ypr_deg,
    project,
    rotation_angle_deg,
    sixd_to_matrix,
    ypr_deg_to_matrix,
)
from tracker.core.errors import ConfigError
from tracker.core.geometry import (
    quaternion_from_rotation,
    rotation_from_6d,
    rotation_from_ypr_deg,
    transform_points,
)
from tracker.core.types import Intrinsics


def _random_ypr(n, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform([-85, -60, -90], [85, 60, 90], size=(n, 3))


def test_ypr_matches_numpy_convention():
    ypr = _random_ypr(20)
    r_t = ypr_deg_to_matrix(torch.tensor(ypr, dtype=torch.float64)).numpy()
    for i, a in enumerate(ypr):
        np.testing.assert_allclose(r_t[i], rotation_from_ypr_deg(*a), atol=1e-12)
    back = matrix_to_ypr_deg(torch.from_numpy(r_t)).numpy()
    np.testing.assert_allclose(back, ypr, atol=1e-9)


def test_axis_angle_round_trip_and_identity_gradient():
    r = ypr_deg_to_matrix(torch.tensor(_random_ypr(30, 1), dtype=torch.float64))
    aa = matrix_to_axis_angle(r)
    np.testing.assert_allclose(axis_angle_to_matrix(aa).numpy(), r.numpy(), atol=1e-9)
    # Quaternions agree with tracker.core.geometry's (w >= 0).
    q = matrix_to_quaternion(r).numpy()
    for i in range(len(q)):
        np.testing.assert_allclose(q[i], quaternion_from_rotation(r[i].numpy()), atol=1e-9)
    # At the identity the gradient must be finite (fits start there).
    zero = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    axis_angle_to_matrix(zero)[0, 1].backward()
    assert torch.isfinite(zero.grad).all() and zero.grad.abs().sum() > 0


def test_sixd_matches_numpy_and_round_trips():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(10, 6))
    np.testing.assert_allclose(sixd_to_matrix(torch.from_numpy(x)).numpy(), rotation_from_6d(x), atol=1e-12)
    r = ypr_deg_to_matrix(torch.tensor(_random_ypr(10, 3)))
    np.testing.assert_allclose(sixd_to_matrix(matrix_to_sixd(r)).numpy(), r.numpy(), atol=1e-5)
    assert rotation_angle_deg(r, r).abs().max() < 0.1


def test_projection_matches_intrinsics_project():
    cam = Intrinsics(500.0, 520.0, 319.5, 241.0, 640, 480)
    rng = np.random.default_rng(4)
    pts = rng.uniform([-0.1, -0.1, -0.05], [0.1, 0.1, 0.05], size=(50, 3))
    rot = rotation_from_ypr_deg(20, -10, 5)
    t = np.array([0.02, -0.01, 0.6])
    want = cam.project(transform_points(rot, t, pts))
    got = project(
        head_to_camera(torch.from_numpy(pts)[None], torch.from_numpy(rot)[None], torch.from_numpy(t)[None]),
        intrinsics_tensor(cam, dtype=torch.float64),
    )[0].numpy()
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_assumed_intrinsics_and_distortion_rejected():
    cam = Intrinsics.assumed(640, 480, 50.0)
    assert cam.fx == pytest.approx(640 / (2 * np.tan(np.radians(25))))
    assert (cam.cx, cam.cy) == (319.5, 239.5)
    with pytest.raises(ConfigError, match="pinhole"):
        intrinsics_tensor(Intrinsics(500, 500, 320, 240, 640, 480, (0.1, 0, 0, 0, 0)))
