"""Fitting recovers known coefficients: landmark-only from projected model points, and with the
photometric term on a real render from tracker.render."""

import numpy as np
import pytest
import torch

from engines.differentiable import head_to_camera, intrinsics_tensor, project
from engines.fitting.fit import FitConfig, Fitter
from tracker.core.errors import ConfigError
from tracker.core.geometry import rotation_angle_deg, rotation_from_ypr_deg
from tracker.core.types import Intrinsics

CAM = Intrinsics.from_fov(256, 256, 30.0)


@pytest.fixture(scope="module")
def fitter(face_model):
    return Fitter(face_model)


def _truth(face_model, seed):
    """Random identity, a sparse expression (gaze channels excluded: ICT's eyeballs do not move with
    them, so no image can show them) and a pose."""
    rng = np.random.default_rng(seed)
    ident = rng.normal(0.0, 0.7, 50).astype(np.float32)
    expr = np.zeros(53, np.float32)
    allowed = [i for i, n in enumerate(face_model.expression_names) if not n.startswith("eyeLook")]
    idx = rng.choice(allowed, 6, replace=False)
    expr[idx] = rng.uniform(0.2, 0.8, 6)
    ypr = rng.uniform([-25, -15, -10], [25, 15, 10])
    trans = np.array([0.01, -0.01, rng.uniform(0.5, 0.6)])
    return ident, expr, rotation_from_ypr_deg(*ypr), trans


def _mapped_points_px(fitter, ident, expr, rot, trans):
    with torch.no_grad():
        pts = fitter.points(torch.from_numpy(ident), torch.from_numpy(expr)[None])
        cam = head_to_camera(pts, torch.from_numpy(rot).float()[None], torch.from_numpy(trans).float()[None])
        return project(cam, intrinsics_tensor(CAM))[0].numpy()


@pytest.mark.parametrize("seed", [0, 1])
def test_landmark_fit_recovers_pose_and_expression(fitter, face_model, seed):
    ident, expr, rot, trans = _truth(face_model, seed)
    target = _mapped_points_px(fitter, ident, expr, rot, trans)
    blank = np.zeros((CAM.height, CAM.width, 3), np.uint8)
    fit = fitter.fit([blank], target[None], [CAM], photometric=False)
    assert rotation_angle_deg(fit.rotation[0], rot) < 1.0
    assert np.abs(fit.expression[0] - expr).mean() <= 0.05
    assert fit.landmark_error_px[0] < 0.5
    assert fit.albedo is None and np.isnan(fit.photometric_error[0])
    assert ((fit.expression >= 0) & (fit.expression <= 1)).all()


def test_photometric_fit_on_a_render_recovers_coefficients_and_light(fitter, face_model):
    import tracker.render as render
    from tracker.core.face_model.sh import sh_ambient, sh_directional
    from tracker.core.types import FaceCoefficients

    ident, expr, rot, trans = _truth(face_model, 2)
    light = sh_ambient((0.6, 0.6, 0.6)) + sh_directional((0.6, -0.4, -1.0), (0.5, 0.5, 0.5))
    with render.Renderer(face_model) as renderer:
        out = renderer.render(FaceCoefficients(ident, expr, rot, trans, light), CAM,
                              albedo=render.procedural_albedo(face_model, seed=4), background=(60, 90, 120))  # fmt: skip
    target = _mapped_points_px(fitter, ident, expr, rot, trans)
    fit = fitter.fit([out.rgb], target[None], [CAM])
    assert rotation_angle_deg(fit.rotation[0], rot) < 1.0
    assert np.abs(fit.expression[0] - expr).mean() <= 0.05
    # The fitted albedo x SH shading reproduces the rendered skin closely ...
    assert fit.photometric_error[0] < 0.03
    # ... and the light comes from the right side: the fitted shading is brighter on the lit (+x, -y) side.
    from engines.differentiable import sh_irradiance

    n = torch.tensor([[[0.6, -0.4, -0.7], [-0.6, 0.4, -0.7]]])
    lit, dark = sh_irradiance(torch.nn.functional.normalize(n, dim=-1), torch.from_numpy(fit.sh[:1]))[0].mean(-1)
    assert lit > dark + 0.1


def test_clip_fit_shares_identity(fitter, face_model):
    ident, _, _, _ = _truth(face_model, 3)
    targets, truths = [], []
    for s in (4, 5, 6):
        _, expr, rot, trans = _truth(face_model, s)
        targets.append(_mapped_points_px(fitter, ident, expr, rot, trans))
        truths.append((expr, rot))
    blank = np.zeros((CAM.height, CAM.width, 3), np.uint8)
    fit = fitter.fit([blank] * 3, np.stack(targets), [CAM] * 3, photometric=False)
    assert fit.identity.shape == (50,) and fit.expression.shape == (3, 53)
    for i, (expr, rot) in enumerate(truths):
        assert rotation_angle_deg(fit.rotation[i], rot) < 1.0
        assert np.abs(fit.expression[i] - expr).mean() <= 0.05


def test_bad_inputs_are_rejected(fitter):
    blank = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(ConfigError, match="landmarks_px"):
        fitter.fit([blank], np.zeros((1, 10, 2)))
    with pytest.raises(ConfigError, match="num_identity"):
        FitConfig(num_identity=200)
