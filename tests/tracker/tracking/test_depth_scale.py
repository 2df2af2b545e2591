"""Metric head scale from aligned depth: the ratio measurement on rendered RGB-D frames and the identity
that re-expresses a scaled head."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tracker.core.geometry import transform_points
from tracker.sources.synthetic import SyntheticSource
from tracker.tracking.depth_scale import INNER_LANDMARKS, HeadScaler, depth_scale


@pytest.fixture(scope="module")
def frame(face_model):
    with SyntheticSource(seed=77, n_frames=1, model=face_model) as src:
        return src.read()


def _inner_points_cam(face_model, frame, scale: float = 1.0) -> np.ndarray:
    """The true face's inner landmarks, camera frame, with the whole head scaled about the camera centre."""
    gt = frame.ground_truth
    lm = face_model.landmarks68(gt.identity, gt.expression)[INNER_LANDMARKS].astype(np.float64)
    return scale * transform_points(gt.rotation, gt.translation_m, lm)


@pytest.mark.parametrize("true_over_predicted", [0.94, 1.0, 1.07])
def test_scale_is_the_ratio_of_the_true_to_the_predicted_head(face_model, frame, true_over_predicted):
    # A head predicted 1/k the true size at 1/k the distance projects to the same pixels; the depth
    # image tells them apart.
    predicted = _inner_points_cam(face_model, frame, 1.0 / true_over_predicted)
    assert depth_scale(frame, predicted) == pytest.approx(true_over_predicted, rel=3e-3)


def test_scale_ignores_an_occluder_and_unmeasured_pixels(face_model, frame):
    pts = _inner_points_cam(face_model, frame, 1 / 1.05)
    uv = np.rint(frame.intrinsics.project(pts)).astype(int)
    depth = frame.depth.copy()
    lower = uv[:, 1] > np.percentile(uv[:, 1], 40)  # a hand over the lower 60 % of the face's points...
    for (u, v), hand in zip(uv, lower, strict=True):
        if hand:
            depth[v - 1 : v + 2, u - 1 : u + 2] = 250  # ...25 cm from the camera
    depth[uv[:5, 1], uv[:5, 0]] = 0  # and a few holes, as a stereo sensor leaves
    occluded = dataclasses.replace(frame, depth=depth)
    assert depth_scale(occluded, pts) == pytest.approx(1.05, rel=5e-3)


def test_no_scale_without_depth_or_measured_points(face_model, frame):
    pts = _inner_points_cam(face_model, frame)
    assert depth_scale(dataclasses.replace(frame, depth=None), pts) is None
    assert depth_scale(dataclasses.replace(frame, depth=np.zeros_like(frame.depth)), pts) is None
    off_image = pts + np.array([5.0, 0.0, 0.0])  # 5 m to the side
    assert depth_scale(frame, off_image) is None
    # depth of something else entirely (a wall 3 m away) is not a head size
    wall = dataclasses.replace(frame, depth=np.full_like(frame.depth, 3000))
    assert depth_scale(wall, pts) is None


@pytest.mark.parametrize("scale", [0.93, 1.06])
def test_scaled_identity_reproduces_the_scaled_head(face_model, scale):
    scaler = HeadScaler(face_model, 40)
    identity = np.random.default_rng(3).normal(0, 0.8, 40).astype(np.float32)
    new, offset = scaler.scaled(identity, scale)
    target = scale * face_model.head_vertices_m(identity, region="face")
    got = face_model.head_vertices_m(new, region="face") + offset
    err_mm = np.linalg.norm(got - target, axis=1).mean() * 1e3
    change_mm = np.linalg.norm(target - face_model.head_vertices_m(identity, region="face"), axis=1).mean() * 1e3
    assert change_mm > 3.0 and err_mm < 0.1 * change_mm
    same, zero = scaler.scaled(identity, 1.0)
    np.testing.assert_allclose(same, identity, atol=1e-6)
    np.testing.assert_allclose(zero, 0.0, atol=1e-9)
