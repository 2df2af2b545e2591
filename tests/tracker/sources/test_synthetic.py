"""The synthetic RGB-D source, rendered for real (headless OpenGL)."""

import time

import numpy as np
import pytest

from tracker.core.errors import ConfigError
from tracker.sources.synthetic import SyntheticSource, ground_truth_for

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


MID = {"width": 320, "height": 240}


def _box(landmarks68: np.ndarray) -> tuple[slice, slice]:
    lo, hi = np.floor(landmarks68.min(axis=0)).astype(int), np.ceil(landmarks68.max(axis=0)).astype(int)
    return slice(lo[1], hi[1] + 1), slice(lo[0], hi[0] + 1)


def test_occluder_holds_a_hand_in_front_of_the_face_on_every_frame(face_model, shared_renderer):
    with (
        SyntheticSource(5, None, model=face_model, renderer=shared_renderer, occluder=True, **MID) as occ,
        SyntheticSource(5, None, model=face_model, renderer=shared_renderer, **MID) as clean,
    ):
        for i in range(0, 300, 25):
            f, g = occ.render_frame(i), clean.render_frame(i)
            assert np.array_equal(f.ground_truth.landmarks68, g.ground_truth.landmarks68)  # truth is the face's
            hand = (f.color != g.color).any(axis=-1)
            nearer = f.depth.astype(int) < g.depth.astype(int)
            assert not (f.depth != g.depth)[~hand].any()  # depth changes only under the hand's colour
            box = _box(g.ground_truth.landmarks68)
            assert 0.15 < hand[box].mean() < 0.5, i  # about a third of the landmark box
            face_under_hand = hand[box] & (g.depth[box] > 0)
            assert nearer[box][face_under_hand].mean() > 0.9, i
            gap_mm = g.depth[box][face_under_hand].astype(int) - f.depth[box][face_under_hand]
            assert 20 < np.median(gap_mm) < 110, i  # 3-10 cm in front of the face's median depth


def test_occluding_hand_moves_slowly_and_smoothly(face_model):
    src = SyntheticSource(5, None, model=face_model, occluder=True, **MID)
    assert SyntheticSource(5, None, model=face_model, **MID).hand_at(0, np.zeros((68, 2)), 0.6) is None
    rel = []
    for i in range(300):
        lm = ground_truth_for(face_model, src.params_at(i), src.intrinsics).landmarks68
        lo, hi = lm.min(axis=0), lm.max(axis=0)
        hand = src.hand_at(i, lm, 0.6)
        rel.append((np.array(hand.centre_px) - (lo + hi) / 2) / max(hi - lo))
        assert 0.5 < hand.depth_m < 0.57 + 1e-9
    rel = np.array(rel)
    assert np.abs(rel).max() <= 0.4 + 1e-9  # the palm centre stays over the face
    assert np.linalg.norm(np.diff(rel, axis=0), axis=1).max() < 0.02  # face sizes per frame
    assert np.ptp(rel, axis=0).max() > 0.15  # and it does move over the 10 s


def test_occluder_and_sensor_noise_are_deterministic(face_model, shared_renderer):
    kw = {"occluder": True, "sensor_noise": True, **MID}
    with (
        SyntheticSource(9, None, model=face_model, renderer=shared_renderer, **kw) as a,
        SyntheticSource(9, None, model=face_model, renderer=shared_renderer, **kw) as b,
    ):
        fa = [a.render_frame(i) for i in (3, 77)]
        fb = [b.render_frame(i) for i in (77, 3)][::-1]
    for x, y in zip(fa, fb, strict=True):
        assert np.array_equal(x.color, y.color) and np.array_equal(x.depth, y.depth)
    assert a.depth_shift_px == b.depth_shift_px  # one misalignment per clip, from the seed
    assert SyntheticSource(10, model=face_model).depth_shift_px != a.depth_shift_px
    assert max(abs(v) for v in a.depth_shift_px) <= 1.5


def test_sensor_noise_makes_holes_and_millimetre_noise(face_model, shared_renderer):
    import cv2

    with SyntheticSource(4, None, model=face_model, renderer=shared_renderer, sensor_noise=True, **MID) as s:
        noisy = s.render_frame(10)
        shift = s.depth_shift_px
    with SyntheticSource(4, None, model=face_model, renderer=shared_renderer, **MID) as s:
        clean = s.render_frame(10)
    assert noisy.depth.dtype == np.uint16 and noisy.depth_scale_m == 0.001  # 1 mm steps
    interior = cv2.erode((clean.depth > 0).astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    holes = interior & (noisy.depth == 0)
    assert 0.002 < holes.mean() / interior.mean() < 0.3  # speckle and grazing cheeks, not the whole face
    # The depth is misaligned by the clip's shift (rounded: the sensor model moves it nearest-neighbour):
    # moving it back by exactly that aligns it best with the clean depth, to millimetres of noise.
    err_mm = {}
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            back = np.roll(noisy.depth.astype(int), (-dy, -dx), axis=(0, 1))
            both = interior & (back > 0)
            err_mm[dx, dy] = np.abs(back[both] - clean.depth[both])
    best = min(err_mm, key=lambda d: err_mm[d].mean())
    assert best == tuple(round(v) for v in shift) != (0, 0)
    assert 0 < np.median(err_mm[best]) <= 2 and np.mean(err_mm[best] == 0) < 0.5
