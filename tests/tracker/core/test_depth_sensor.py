"""The D4xx-like depth-sensor model and the hand occluder, on exact synthetic depth maps."""

import numpy as np
import pytest

from tracker.core.depth_sensor import DepthSensorModel, Hand, paint_hand

FOCAL_PX = 380.0  # a D435 at 640x480
CLEAN = DepthSensorModel(speckle_fraction=0.0)


def _plane(z_m: float, shape=(240, 320)) -> np.ndarray:
    return np.full(shape, z_m, np.float32)


def _seen_at(angle_deg: float, shape=(64, 32), z0_m: float = 0.5) -> np.ndarray:
    """A surface the camera sees at ``angle_deg`` everywhere: dz/du = tan(angle) * (z / f) per pixel, so
    z = z0 exp(tan(angle) u / f) along the rows."""
    u = np.arange(shape[1], dtype=np.float64)
    row = z0_m * np.exp(np.tan(np.radians(angle_deg)) * u / FOCAL_PX)
    return np.broadcast_to(row, shape).astype(np.float32).copy()


def _rms_mm(measured: np.ndarray, truth: np.ndarray) -> float:
    ok = measured > 0
    return float(np.sqrt(np.mean((measured[ok] - truth[ok]) ** 2)) * 1e3)


def test_noise_grows_with_z_squared():
    near = _rms_mm(CLEAN.apply(np.random.default_rng(1), _plane(0.5), FOCAL_PX), _plane(0.5))
    far = _rms_mm(CLEAN.apply(np.random.default_rng(2), _plane(1.0), FOCAL_PX), _plane(1.0))
    # sigma 1 mm at 0.5 m (1.04 with the 1 mm quantum's 0.29 mm RMS), 4 mm at 1 m
    assert near == pytest.approx(1.04, rel=0.1)
    assert far == pytest.approx(4.0, rel=0.1)
    assert 3.5 < far / near < 4.5


def test_depth_is_quantised_to_one_millimetre():
    out = CLEAN.apply(np.random.default_rng(3), _plane(0.8), FOCAL_PX)
    mm = out.astype(np.float64) * 1e3
    assert np.abs(mm - np.rint(mm)).max() < 1e-3
    assert len(np.unique(mm)) > 5  # noisy, not a constant


def test_grazing_surfaces_lose_their_depth_and_fronto_parallel_ones_keep_it():
    rng = np.random.default_rng(4)
    assert (CLEAN.apply(rng, _plane(0.6), FOCAL_PX) > 0).all()  # no speckle: every pixel
    with_speckle = DepthSensorModel()
    kept = (with_speckle.apply(rng, _plane(0.6), FOCAL_PX) > 0).mean()
    assert 0.97 < kept < 1.0  # only the speckle (~1 %) is lost
    lo, hi = CLEAN.grazing_deg
    assert (CLEAN.apply(rng, _seen_at(lo - 10), FOCAL_PX) > 0).all()
    assert (CLEAN.apply(rng, _seen_at((lo + hi) / 2), FOCAL_PX) > 0).mean() == pytest.approx(0.5, abs=0.1)
    assert (CLEAN.apply(rng, _seen_at(hi + 2), FOCAL_PX) > 0).mean() < 0.02


def test_a_silhouette_leaves_a_hole_band_on_the_far_side():
    z = _plane(1.0, (80, 80))
    z[30:50, 30:50] = 0.6  # a near square in front of a wall
    out = CLEAN.apply(np.random.default_rng(5), z, FOCAL_PX)
    near, wall = z < 0.8, z > 0.8
    ring1 = np.zeros((80, 80), bool)
    ring1[29:51, 29:51] = True
    ring1 &= wall  # the wall's pixels touching the square
    assert (out[ring1] == 0).all()  # the wall's pixels next to the square fall into its shadow
    assert (out[near] > 0).all()  # the nearer surface keeps its depth up to its edge
    far_wall = np.ones((80, 80), bool)
    far_wall[24:56, 24:56] = False
    assert (out[far_wall] > 0).all()  # and so does the wall away from the edge
    # the band is 1 to shadow_px pixels wide, drawn per image
    widths = set()
    for seed in range(12):
        row = CLEAN.apply(np.random.default_rng(seed), z, FOCAL_PX)[40]
        widths.add(int((row[:30] == 0).sum()))
        assert (row[:30] == 0).sum() == (row[50:] == 0).sum() and (row[30 - (row[:30] == 0).sum() : 30] == 0).all()
    assert widths == set(range(1, CLEAN.shadow_px + 1))


def test_misalignment_shifts_the_depth_map():
    z = _plane(0.7, (60, 80))
    z[20:40, 25:55] = 0.5
    base = CLEAN.apply(np.random.default_rng(6), z, FOCAL_PX)
    moved = CLEAN.apply(np.random.default_rng(6), z, FOCAL_PX, shift_px=(2.0, -1.0))
    assert np.array_equal(moved[:-1, 2:], base[1:, :-2])
    assert not moved[:, :2].any() and not moved[-1].any()
    shifts = [DepthSensorModel().shift_px(np.random.default_rng(s)) for s in range(20)]
    assert all(abs(v) <= 1.5 for s in shifts for v in s) and len(set(shifts)) == 20


def test_paint_hand_puts_the_hand_nearer_exactly_where_its_colour_is():
    color = np.zeros((120, 160, 3), np.uint8)
    color[..., 2] = 200  # a blue background no skin tone matches
    depth = np.zeros((120, 160), np.float32)
    depth[20:110, 40:120] = 0.6  # a "face" plane; 0 (no return) around it
    c0, d0 = color.copy(), depth.copy()
    hand = Hand(centre_px=(70.0, 70.0), palm_px=14.0, angle_deg=20.0, depth_m=0.55)
    mask = paint_hand(hand, color, depth)
    assert 0.05 < mask.mean() < 0.3
    assert np.array_equal((color != c0).any(axis=-1), mask)
    assert np.array_equal(depth != d0, mask)  # over the face and over the empty background alike
    assert (depth[mask] <= 0.55 + 1e-6).all() and (depth[mask] >= 0.54 - 1e-6).all()  # fingers curve 1 cm nearer
    # A surface nearer than the hand stays in front of it.
    depth2 = np.full((120, 160), 0.5, np.float32)
    paint_hand(hand, c0.copy(), depth2)
    assert (depth2 == 0.5).all()


def test_random_hands_are_three_to_ten_centimetres_in_front():
    rng = np.random.default_rng(7)
    hands = [Hand.random(rng, (100.0, 80.0), 60.0, 0.7) for _ in range(50)]
    assert all(0.6 - 1e-9 <= h.depth_m <= 0.67 + 1e-9 for h in hands)
    assert all(np.hypot(h.centre_px[0] - 100, h.centre_px[1] - 80) <= 0.45 * 60 + 1e-9 for h in hands)
    third = Hand.random(rng, (100.0, 80.0), 60.0, 0.7, coverage=1 / 3)
    assert third.palm_px == pytest.approx(Hand.palm_px_for(60.0, 1 / 3))
