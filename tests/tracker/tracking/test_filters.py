import numpy as np
import pytest

from tracker.core.errors import ConfigError
from tracker.core.geometry import rotation_angle_deg, rotation_from_ypr_deg
from tracker.tracking.filters import FaceFilter, OneEuroFilter, OneEuroParams, RotationOneEuroFilter


def test_still_noisy_signal_is_smoothed():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(OneEuroParams(min_cutoff_hz=1.0, beta=0.0))
    noisy = 1.0 + rng.normal(0, 0.05, (300, 3))
    out = np.array([f(x, i / 30) for i, x in enumerate(noisy)])
    assert out[30:].std(axis=0).max() < 0.4 * noisy[30:].std(axis=0).min()
    assert np.abs(out[100:].mean(axis=0) - 1.0).max() < 0.02


def test_speed_raises_cutoff_and_cuts_lag():
    ramp = np.arange(120) / 30.0  # 1 unit/s
    slow = OneEuroFilter(OneEuroParams(1.0, beta=0.0))
    fast = OneEuroFilter(OneEuroParams(1.0, beta=5.0))
    lag_slow = ramp[-1] - [slow(np.array([x]), i / 30) for i, x in enumerate(ramp)][-1][0]
    lag_fast = ramp[-1] - [fast(np.array([x]), i / 30) for i, x in enumerate(ramp)][-1][0]
    assert 0 < lag_fast < 0.3 * lag_slow


def test_first_sample_and_repeated_timestamp_pass_through():
    f = OneEuroFilter(OneEuroParams())
    np.testing.assert_allclose(f(np.array([2.0]), 0.0), [2.0])
    np.testing.assert_allclose(f(np.array([5.0]), 0.0), [2.0])  # same timestamp: no division by zero


def test_rotation_filter_stays_on_so3_and_reduces_noise():
    rng = np.random.default_rng(1)
    f = RotationOneEuroFilter(OneEuroParams(1.0, beta=0.5))
    target = rotation_from_ypr_deg(20, -10, 5)
    raw_err, out_err = [], []
    for i in range(300):
        noisy = rotation_from_ypr_deg(*rng.normal(0, 1.0, 3)) @ target
        out = f(noisy, i / 30)
        np.testing.assert_allclose(out @ out.T, np.eye(3), atol=1e-9)
        if i >= 30:
            raw_err.append(rotation_angle_deg(noisy, target))
            out_err.append(rotation_angle_deg(out, target))
    assert np.mean(out_err) < 0.5 * np.mean(raw_err)


def test_face_filter_clips_expressions():
    ff = FaceFilter()
    r, t, e = ff(np.eye(3), np.zeros(3), np.full(53, 1.2), 0.0)
    assert e.max() == 1.0 and e.dtype == np.float32


def test_bad_params():
    with pytest.raises(ConfigError):
        OneEuroParams(min_cutoff_hz=0)
