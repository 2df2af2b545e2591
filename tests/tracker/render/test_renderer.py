"""Renderer tests on real OpenGL (headless EGL; Mesa's llvmpipe without a GPU)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from tracker.core.errors import ConfigError, RenderError
from tracker.core.face_model.sh import sh_ambient, sh_directional
from tracker.core.geometry import rotation_from_ypr_deg
from tracker.core.types import FaceCoefficients, Intrinsics
from tracker.render import Albedo, procedural_albedo

NOSE_TIP = 30  # iBUG-68 index of the nose tip
LIGHT = sh_ambient((0.5, 0.5, 0.5)) + sh_directional((0.3, -0.5, -1.0), (0.6, 0.6, 0.6))


def _params(face_model, yaw=0.0, pitch=0.0, roll=0.0, z=0.5, expression=None, identity=None):
    e = np.zeros(53, np.float32)
    for name, v in (expression or {}).items():
        e[face_model.expression_names.index(name)] = v
    ident = np.zeros(0, np.float32) if identity is None else identity
    return FaceCoefficients(ident, e, rotation_from_ypr_deg(yaw, pitch, roll), np.array([0.01, -0.005, z]), LIGHT)


def _camera_points(face_model, p: FaceCoefficients, ids=None):
    v = face_model.head_vertices_m(p.identity, p.expression).astype(np.float64)
    if ids is not None:
        v = v[ids]
    return v @ p.rotation.T + p.translation_m


def test_nose_tip_depth(renderer, face_model):
    k = Intrinsics.from_fov(320, 240, 40)
    for yaw in (0.0, 25.0):
        p = _params(face_model, yaw=yaw, z=0.45)
        out = renderer.render(p, k)
        nose = _camera_points(face_model, p, [face_model.landmark_ids[NOSE_TIP]])
        u, v = np.rint(k.project(nose)[0]).astype(int)
        assert out.mask[v, u]
        assert abs(float(out.depth_m[v, u]) - nose[0, 2]) < 0.002, (yaw, out.depth_m[v, u], nose[0, 2])


def test_pixels_lie_on_their_triangles(renderer, face_model):
    """Each pixel centre falls inside the Intrinsics.project()ion of the triangle the GPU drew there, and its
    depth is that triangle's z along the pixel's ray: the GL camera matches OpenCV to a small fraction of
    a pixel (a half-pixel error would put about half of these pixels outside their triangle)."""
    k = Intrinsics(300.0, 310.0, 81.3, 58.6, 160, 120)
    p = _params(face_model, yaw=20.0, pitch=-10.0, roll=5.0, z=0.6)
    out = renderer.render(p, k, triangle_ids=True)
    ids = out.triangle_ids
    vv, uu = np.nonzero(ids >= 0)
    tri = face_model.triangles[ids[vv, uu]]
    cam = _camera_points(face_model, p)
    px = k.project(cam)
    a, b, c = px[tri[:, 0]], px[tri[:, 1]], px[tri[:, 2]]
    q = np.stack([uu, vv], 1).astype(np.float64)
    v0, v1, v2 = b - a, c - a, q - a
    den = v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0]
    w1 = (v2[:, 0] * v1[:, 1] - v2[:, 1] * v1[:, 0]) / den
    w2 = (v0[:, 0] * v2[:, 1] - v0[:, 1] * v2[:, 0]) / den
    w0 = 1 - w1 - w2
    # Barycentric slack in pixels: distance outside the triangle, scaled by its size.
    inside = np.minimum(np.minimum(w0, w1), w2) > -0.02
    assert inside.mean() > 0.995, inside.mean()
    # Depth: intersect each pixel's ray with its triangle's plane.
    pa, pb, pc = cam[tri[:, 0]], cam[tri[:, 1]], cam[tri[:, 2]]
    normal = np.cross(pb - pa, pc - pa)
    ray = k.unproject(q, 1.0)
    z = np.einsum("ij,ij->i", normal, pa) / np.einsum("ij,ij->i", normal, ray)
    err = np.abs(z - out.depth_m[vv, uu])
    assert np.median(err) < 1e-5 and np.percentile(err, 99) < 2e-4, (np.median(err), err.max())


@pytest.mark.parametrize("yaw,pitch", [(0.0, 0.0), (35.0, 10.0), (-30.0, -15.0)])
def test_landmarks_inside_face_mask(renderer, face_model, yaw, pitch):
    """Every projected landmark lies on the rendered face. A landmark exactly on the silhouette (the far
    jaw line or brow of a turned head) can fall up to half a pixel outside the covered pixel centres, so
    the check allows the landmark's 3x3 neighbourhood; most landmarks must hit a face pixel directly."""
    k = Intrinsics.from_fov(200, 160, 45)
    p = _params(face_model, yaw=yaw, pitch=pitch, z=0.55, expression={"jawOpen": 0.4, "mouthSmile_L": 0.5})
    out = renderer.render(p, k)
    lm = k.project(_camera_points(face_model, p, face_model.landmark_ids))
    u, v = np.rint(lm).astype(int).T
    near = np.zeros(68, bool)
    for dv in (-1, 0, 1):
        for du in (-1, 0, 1):
            near |= out.mask[v + dv, u + du]
    assert near.all(), np.flatnonzero(~near)
    assert out.mask[v, u].mean() >= 0.95
    assert out.mask.sum() > 500
    # The background is not face, and depth is zero exactly off the model.
    assert not out.mask[0, 0] and out.depth_m[0, 0] == 0.0
    assert (out.depth_m[out.mask] > 0.3).all()


def test_region_masks(renderer, face_model):
    k = Intrinsics.from_fov(160, 120, 40)
    out = renderer.render(
        _params(face_model, z=0.5, expression={"jawOpen": 0.7, "mouthSmile_L": 1.0}), k, triangle_ids=True
    )
    narrow = renderer.region_mask(out.triangle_ids, "narrow_face")
    teeth = renderer.region_mask(out.triangle_ids, ("teeth",))
    eyes = renderer.region_mask(out.triangle_ids, ("eyeball_left", "eyeball_right"))
    assert narrow.sum() > 1000 and teeth.sum() > 5 and eyes.sum() > 5
    assert not (narrow & out.mask != narrow).any()  # the narrow face is part of the face mask
    assert not (teeth & narrow).any()
    with pytest.raises(ConfigError, match="unknown region"):
        renderer.region_mask(out.triangle_ids, "hair")


def test_same_input_gives_identical_output(renderer, face_model):
    k = Intrinsics.from_fov(96, 96, 30)
    alb = procedural_albedo(face_model, 4, texture_px=128)
    p = _params(face_model, yaw=10.0, expression={"eyeBlink_L": 1.0})
    a = renderer.render(p, k, alb, triangle_ids=True)
    renderer.render(_params(face_model, yaw=-40.0), k)  # something else in between
    b = renderer.render(p, k, alb, triangle_ids=True)
    assert np.array_equal(a.rgb, b.rgb) and np.array_equal(a.depth_m, b.depth_m)
    assert np.array_equal(a.triangle_ids, b.triangle_ids)


def test_identity_and_expression_change_the_image(renderer, face_model):
    k = Intrinsics.from_fov(96, 96, 30)
    base = renderer.render(_params(face_model), k)
    jaw = renderer.render(_params(face_model, expression={"jawOpen": 1.0}), k)
    ident = renderer.render(_params(face_model, identity=np.full(10, 1.5, np.float32)), k)
    assert np.abs(base.depth_m - jaw.depth_m).max() > 0.005
    assert np.abs(base.depth_m - ident.depth_m).max() > 0.002


def test_texture_and_vertex_colours_agree(renderer, face_model):
    """The procedural albedo's per-vertex colours sample its texture, so both paths give similar images."""
    k = Intrinsics.from_fov(128, 128, 30)
    alb = procedural_albedo(face_model, 9, texture_px=256)
    p = _params(face_model, z=0.6)
    tex = renderer.render(p, k, alb)
    vert = renderer.render(p, k, Albedo(alb.vertex_rgb))
    diff = np.abs(tex.rgb.astype(int) - vert.rgb.astype(int))[tex.mask]
    assert diff.mean() < 8


def test_background_image_and_colour(renderer, face_model):
    k = Intrinsics.from_fov(80, 60, 40)
    bg = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    out = renderer.render(_params(face_model), k, background=bg)
    off = out.depth_m == 0
    assert off.any() and np.array_equal(out.rgb[off], bg[off])
    out = renderer.render(_params(face_model), k, background=(10, 20, 30))
    assert (out.rgb[out.depth_m == 0] == (10, 20, 30)).all()


def test_batch_matches_single_renders(renderer, face_model):
    k = Intrinsics.from_fov(64, 64, 25)
    ps = [_params(face_model, yaw=y, z=0.6) for y in (-50.0, 0.0, 20.0, 70.0, 5.0)]
    bgs = [(i * 40, 0, 0) for i in range(5)]
    batch = renderer.render_batch(ps, k, backgrounds=bgs, triangle_ids=True)
    assert len(batch) == 5
    for p, bg, b in zip(ps, bgs, batch, strict=True):
        single = renderer.render(p, k, background=bg, triangle_ids=True)
        assert np.abs(single.rgb.astype(int) - b.rgb.astype(int)).mean() < 1.0
        assert (single.triangle_ids == b.triangle_ids).mean() > 0.98
        assert (b.rgb[b.depth_m == 0] == bg).all()


def test_batch_with_one_albedo_per_view(renderer, face_model):
    k = Intrinsics.from_fov(48, 48, 25)
    albs = [procedural_albedo(face_model, s, texture_px=64) for s in (1, 2)]
    ps = [_params(face_model, z=0.6)] * 2
    a, b = renderer.render_batch(ps, k, albs)
    assert np.array_equal(a.rgb, renderer.render(ps[0], k, albs[0]).rgb)
    assert np.array_equal(b.rgb, renderer.render(ps[1], k, albs[1]).rgb)
    assert not np.array_equal(a.rgb, b.rgb)
    with pytest.raises(ConfigError, match="albedos"):
        renderer.render_batch(ps, k, albs[:1])


def test_overlay(renderer, face_model):
    k = Intrinsics.from_fov(160, 120, 40)
    img = np.full((120, 160, 3), 40, np.uint8)
    p = _params(face_model, z=0.5)
    mask = renderer.render(p, k).mask
    for mode in ("wireframe", "shaded"):
        out = renderer.overlay(img, p, k, mode=mode, opacity=0.8, color=(0, 255, 0))
        changed = (out != img).any(axis=2)
        assert changed.sum() > 50 and out[changed][:, 1].mean() > 100
        # Drawn only over the head (a pixel of slack for line rasterisation).
        near = np.zeros_like(mask)
        vv, uu = np.nonzero(renderer.render(p, k).depth_m > 0)
        near[vv, uu] = True
        assert changed[~near].mean() < 0.01
    assert np.array_equal(renderer.overlay(img, p, k, opacity=0.0), img)
    assert img.max() == 40  # the input is not modified


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda fm: FaceCoefficients(np.zeros(0), np.zeros(40), np.eye(3), [0, 0, 0.5]), "53"),
        (lambda fm: FaceCoefficients(np.zeros(0), np.zeros(53), np.eye(3), [0, 0, 0.5], np.zeros(26)), "27"),
        (lambda fm: FaceCoefficients(np.zeros(0), np.zeros(53), np.eye(3) * 2, [0, 0, 0.5]), "rotation"),
        (lambda fm: FaceCoefficients(np.zeros(0), np.zeros(53), np.eye(3), [0, 0]), "translation"),
        (lambda fm: Albedo(np.full((10, 3), 2.0)), r"\[0, 1\]"),
        (lambda fm: Albedo(np.zeros((10, 3)), np.zeros((8, 8), np.uint8)), "face_texture"),
    ],
)
def test_bad_inputs_raise_config_error(face_model, make, match):
    with pytest.raises(ConfigError, match=match):
        make(face_model)


def test_bad_render_arguments(renderer, face_model):
    k = Intrinsics.from_fov(32, 32, 40)
    p = _params(face_model)
    with pytest.raises(ConfigError, match="26719"):
        renderer.render(p, k, Albedo(np.zeros((100, 3), np.float32)))
    with pytest.raises(ConfigError, match="background"):
        renderer.render(p, k, background=np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ConfigError, match="identity"):
        renderer.render(FaceCoefficients(np.zeros(101), np.zeros(53), np.eye(3), [0, 0, 0.5]), k)
    with pytest.raises(ConfigError):
        renderer.overlay(np.zeros((32, 32, 3), np.uint8), p, k, mode="points")


def test_usable_from_another_thread_and_closed_cleanly(face_model):
    from tracker.render import Renderer

    k = Intrinsics.from_fov(48, 48, 40)
    r = Renderer(face_model)
    result = {}
    t = threading.Thread(target=lambda: result.update(out=r.render(_params(face_model), k)))
    t.start()
    t.join()
    assert result["out"].mask.any()
    assert r.render(_params(face_model), k).mask.any()  # and back on this thread
    r.close()
    r.close()
    with pytest.raises(RenderError, match="closed"):
        r.render(_params(face_model), k)
