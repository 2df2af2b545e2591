import numpy as np
import pytest
import torch

from engines.differentiable import (
    FaceLayer,
    SurfacePoints,
    ambient_sh,
    facing_camera,
    sample_image,
    sh_basis,
    sh_irradiance,
    vertex_normals,
)
from tracker.core.errors import ConfigError


def test_face_layer_matches_numpy_model(face_model):
    layer = FaceLayer(face_model, num_identity=20, region="narrow_face")
    rng = np.random.default_rng(0)
    ident = rng.normal(size=(2, 20)).astype(np.float32)
    expr = rng.uniform(0, 1, size=(2, 53)).astype(np.float32)
    got = layer(torch.from_numpy(ident), torch.from_numpy(expr)).numpy()
    want = face_model.head_vertices_m(ident, expr, region="narrow_face")
    np.testing.assert_allclose(got, want, atol=2e-6)
    # A shared (K,) identity broadcasts over a batch of expressions; fewer modes than K are allowed.
    shared = layer(torch.from_numpy(ident[0, :5]), torch.from_numpy(expr)).numpy()
    np.testing.assert_allclose(
        shared[1], face_model.head_vertices_m(ident[0, :5], expr[1], region="narrow_face"), atol=2e-6
    )
    with pytest.raises(ConfigError, match="identity has 30"):
        layer(torch.zeros(30), None)


def test_surface_points_interpolate(face_model):
    ids = face_model.landmark_ids[:4]
    tv = np.stack([ids, np.roll(ids, 1), np.roll(ids, 2)], 1)
    w = np.array([[1, 0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5], [0, 0, 1]], np.float32)
    pts = SurfacePoints(face_model, tv, w, num_identity=0)(None, None)[0].numpy()
    v = face_model.head_vertices_m()
    np.testing.assert_allclose(pts, (v[tv] * w[..., None]).sum(1), atol=1e-6)


def test_normals_point_out_of_the_face(face_model):
    layer = FaceLayer(face_model, 0, region="face")
    v = layer(None, None)
    n = vertex_normals(v, layer.triangles)
    np.testing.assert_allclose(n.norm(dim=-1).numpy(), 1.0, atol=1e-5)
    tip = int(face_model.landmark_ids[30])
    assert n[0, tip, 2] < -0.9  # nose tip faces the camera of a frontal head (-z)
    # Placed 0.6 m in front of the camera, the nose tip faces it.
    cam = v + torch.tensor([0, 0, 0.6])
    assert bool(facing_camera(n, cam)[0, tip])


def test_sh_shading_equals_the_renderers_numpy_convention():
    from tracker.core.face_model import sh as render_sh

    rng = np.random.default_rng(0)
    normals = rng.normal(size=(2, 40, 3))
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    lighting = rng.normal(size=(2, 27)) * 0.3
    got = sh_irradiance(torch.from_numpy(normals), torch.from_numpy(lighting)).numpy()
    for i in range(2):
        np.testing.assert_allclose(got[i], render_sh.shading(normals[i], lighting[i]), atol=1e-12)
    # The basis is the renderer's, constant term 1; uniform light of intensity 0.7 shades by 0.7.
    np.testing.assert_allclose(sh_basis(torch.from_numpy(normals[0]))[:, 0].numpy(), 1.0)
    np.testing.assert_allclose(
        sh_irradiance(torch.from_numpy(normals), ambient_sh(0.7, dtype=torch.float64)).numpy(), 0.7
    )
    # A directional light from the camera shades a camera-facing normal more than a sideways one.
    light = torch.from_numpy(render_sh.sh_directional((0, 0, -1))[None].astype(np.float64))
    front, side = sh_irradiance(torch.tensor([[[0.0, 0, -1], [1.0, 0, 0]]], dtype=torch.float64), light)[
        0, :, 0
    ]
    assert front > side


def test_sample_image_pixel_centres():
    img = torch.arange(12, dtype=torch.float32).reshape(1, 1, 3, 4)  # value = 4*row + col
    px = torch.tensor([[[0.0, 0.0], [3.0, 2.0], [1.5, 1.0], [2.0, 0.5]]])
    got = sample_image(img, px)[0, :, 0].numpy()
    np.testing.assert_allclose(got, [0.0, 11.0, 5.5, 4.0], atol=1e-5)
