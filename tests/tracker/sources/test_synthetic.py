"""The synthetic RGB-D source, rendered for real (headless OpenGL)."""

import time

import numpy as np
import pytest

from tracker.core.errors import ConfigError
from tracker.sources.synthetic import SyntheticSource

SMALL = {"width": 160, "height": 120}


@pytest.fixture(scope="module")
def shared_renderer(face_model):
    from tracker.render import Renderer

    r = Renderer(face_model)
    yield r
    r.close()


def _frames(seed, n, face_model, renderer=None, **kw):
    with SyntheticSource(seed, n, model=face_model, renderer=renderer, **SMALL, **kw) as src:
        return list(src)


def test_same_seed_gives_bit_identical_frames(face_model):
    # Two sources, each with its own OpenGL context.
    idx = [0, 45, 100]
    with (
        SyntheticSource(7, None, model=face_model, **SMALL) as a,
        SyntheticSource(7, None, model=face_model, **SMALL) as b,
    ):
        fa = [a.render_frame(i) for i in idx]
        fb = [b.render_frame(i) for i in reversed(idx)][::-1]  # any order
    for x, y in zip(fa, fb, strict=True):
        assert np.array_equal(x.color, y.color) and np.array_equal(x.depth, y.depth)
        assert np.array_equal(x.ground_truth.landmarks68, y.ground_truth.landmarks68)
    with SyntheticSource(8, 1, model=face_model, **SMALL) as c:
        assert not np.array_equal(c.render_frame(0).color, fa[0].color)


def test_frames_carry_rgbd_and_exact_ground_truth(face_model, shared_renderer):
    frames = _frames(2, 3, face_model, shared_renderer)
    assert [f.index for f in frames] == [0, 1, 2]
    for f in frames:
        assert f.color.shape == (120, 160, 3) and f.color.dtype == np.uint8
        assert f.depth.dtype == np.uint16 and f.depth_scale_m == 0.001
        gt = f.ground_truth
        assert gt.expression.shape == (53,) and gt.lighting.shape == (27,) and gt.arkit.shape == (52,)
        assert f.intrinsics.width == 160
        # Nose tip: depth (1 mm steps) equals the model's z within 2 mm.
        nose_head = face_model.landmarks68(gt.identity, gt.expression)[30].astype(np.float64)
        nose = gt.rotation @ nose_head + gt.translation_m
        u, v = np.rint(gt.landmarks68[30]).astype(int)
        assert abs(f.depth_m[v, u] - nose[2]) < 0.002
        np.testing.assert_allclose(gt.landmarks68[30], f.intrinsics.project(nose[None])[0], atol=1e-3)
        # Every landmark on the rendered head (3x3 slack for landmarks on the silhouette).
        lu, lv = np.rint(gt.landmarks68).astype(int).T
        on = np.zeros(68, bool)
        for dv in (-1, 0, 1):
            for du in (-1, 0, 1):
                on |= f.depth[np.clip(lv + dv, 0, 119), np.clip(lu + du, 0, 159)] > 0
        assert on.all()


def test_end_of_stream_and_async_read(face_model, shared_renderer):
    src = SyntheticSource(1, 2, model=face_model, renderer=shared_renderer, **SMALL)
    src.connect()
    try:
        got = [src.async_read(timeout_ms=20000), src.async_read(timeout_ms=20000)]
        assert [f.index for f in got] == [0, 1]
        assert src.async_read(timeout_ms=20000) is None
    finally:
        src.close()
    assert not shared_renderer._closed  # a shared renderer is the caller's to close


def test_noise_and_motion_blur_are_deterministic(face_model, shared_renderer):
    kw = {"sensor_noise": True, "motion_blur_samples": 3}
    with SyntheticSource(4, None, model=face_model, renderer=shared_renderer, **SMALL, **kw) as s:
        a, b = s.render_frame(40), s.render_frame(40)
    with SyntheticSource(4, None, model=face_model, renderer=shared_renderer, **SMALL) as s:
        clean = s.render_frame(40)
    assert np.array_equal(a.color, b.color) and np.array_equal(a.depth, b.depth)
    assert not np.array_equal(a.color, clean.color)
    assert np.array_equal(a.ground_truth.landmarks68, clean.ground_truth.landmarks68)
    valid = (a.depth > 0) & (clean.depth > 0)
    assert 0 < np.abs(a.depth[valid].astype(int) - clean.depth[valid]).mean() < 5


def test_realtime_pacing(face_model, shared_renderer):
    t0 = time.monotonic()
    frames = _frames(0, 4, face_model, shared_renderer, realtime=True, fps=20.0)
    assert len(frames) == 4 and time.monotonic() - t0 >= 0.15


@pytest.mark.parametrize(
    "kw",
    [{"n_frames": -1}, {"fps": 0}, {"motion_blur_samples": 0}, {"background": "plasma"}, {"fov_y_deg": 200}],
)
def test_bad_configuration(kw):
    with pytest.raises(ConfigError):
        SyntheticSource(0, **kw)
