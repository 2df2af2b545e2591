"""The ICP baseline (`--depth icp`) on rendered RGB-D frames with exact ground truth."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tracker.core.geometry import rotation_from_ypr_deg
from tracker.sources.synthetic import SyntheticSource
from tracker.tracking.depth_icp import DepthIcp


def _rotation_err_deg(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip((np.trace(a.T @ b) - 1) / 2, -1, 1))))


@pytest.mark.parametrize("noise", [False, True])
def test_icp_pulls_a_perturbed_pose_onto_the_depth(face_model, noise):
    with SyntheticSource(seed=1001, n_frames=1, sensor_noise=noise, model=face_model) as src:
        icp = DepthIcp(face_model)
        for index in (0, 60):  # frontal, and in the middle of the yaw sweep
            f = src.render_frame(index)
            g = f.ground_truth
            r0 = rotation_from_ypr_deg(3, -2, 1) @ g.rotation  # 3.7 deg and 12 mm off
            t0 = g.translation_m + np.array([0.005, -0.004, 0.01])
            fit = icp.refine(f, g.identity, g.expression, r0, t0)
            assert _rotation_err_deg(fit.rotation, g.rotation) < 0.5
            # A noisy clip's depth is misaligned against colour by the seed's shift (a calibration error):
            # ICP follows the depth, so it lands that many pixels' worth of metres off.
            shift_m = np.hypot(*src.depth_shift_px) * g.translation_m[2] / f.intrinsics.fx if noise else 0.0
            assert np.linalg.norm(fit.translation_m - g.translation_m) < 0.001 + shift_m
            assert fit.points >= 300 and np.allclose(fit.rotation @ fit.rotation.T, np.eye(3), atol=1e-9)


def test_without_depth_the_pose_is_returned_unchanged(face_model):
    with SyntheticSource(seed=1001, n_frames=1, model=face_model) as src:
        f = src.render_frame(0)
    g = f.ground_truth
    bare = dataclasses.replace(f, depth=None)
    fit = DepthIcp(face_model).refine(bare, g.identity, g.expression, g.rotation, g.translation_m)
    assert fit.iterations == 0 and np.array_equal(fit.rotation, g.rotation)
    # Depth of something else entirely (a wall at 1 m, well behind the face): no pairs, pose unchanged.
    wall = dataclasses.replace(f, depth=np.full_like(f.depth, 1000))
    fit = DepthIcp(face_model).refine(wall, g.identity, g.expression, g.rotation, g.translation_m)
    assert fit.points == 0 and np.allclose(fit.translation_m, g.translation_m)


def test_eval_synthetic_with_depth_icp(tmp_path):
    import json

    from tools.cli import main
    from tracker.tracking.regressor import DEFAULT_MODEL

    if not DEFAULT_MODEL.exists():
        pytest.skip("needs engines/weights/coarsenet_v1.onnx")
    errors = {}
    for depth in ("scale", "icp"):
        out = tmp_path / f"{depth}.json"
        assert main(["eval", "synthetic", "--frames", "12", "--seed", "2000", "--depth", depth, "--json", str(out)]) == 0
        d = json.loads(out.read_text())
        assert d["tracked_fraction"] == 1.0
        errors[depth] = (d["rotation_err_deg"], d["translation_err_mm"])
    # The refinement against the depth image lowers both errors of the depth-scaled colour pose.
    assert errors["icp"][0] < errors["scale"][0] and errors["icp"][1] < errors["scale"][1], errors
