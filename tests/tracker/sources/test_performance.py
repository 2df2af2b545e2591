import numpy as np
import pytest

from engines.train.sampling import sample_face_params
from tracker.core.errors import ConfigError
from tracker.core.face_model.arkit import ICT_EXPRESSION_NAMES
from tracker.core.geometry import ypr_deg_from_rotation
from tracker.sources.performance import CYCLE_S, performance_at, performance_frame

IDX = {n: i for i, n in enumerate(ICT_EXPRESSION_NAMES)}


def _script(seed, n, fps=30.0):
    ps = [performance_frame(seed, i, fps) for i in range(n)]
    ypr = np.array([ypr_deg_from_rotation(p.rotation) for p in ps])
    z = np.array([p.translation_m[2] for p in ps])
    e = np.stack([p.expression for p in ps])
    return ps, ypr, z, e


def test_one_cycle_covers_the_brief():
    ps, ypr, z, e = _script(3, int(CYCLE_S * 30))
    assert np.abs(ypr[:, 0]).max() >= 40 and np.abs(ypr[:, 0]).max() <= 45.01
    assert 24 <= np.abs(ypr[:, 1]).max() <= 30.01
    assert 15 <= np.abs(ypr[:, 2]).max() <= 20.01
    assert z.min() < 0.46 and z.max() > 0.94
    for name in ("eyeBlink_L", "jawOpen", "mouthSmile_L", "mouthFrown_L", "browInnerUp_L", "mouthPucker"):
        assert e[:, IDX[name]].max() > 0.55, name
    # Asymmetric moments (one side much more than the other) and speech (jaw moving without a jaw event).
    pairs = [(IDX[n], IDX[n[:-2] + "_R"]) for n in ICT_EXPRESSION_NAMES if n.endswith("_L")]
    pairs += [(IDX["mouthLeft"], IDX["mouthRight"]), (IDX["jawLeft"], IDX["jawRight"])]
    asym = max(np.abs(e[:, a] - e[:, b]).max() for a, b in pairs if "eyeLook" not in ICT_EXPRESSION_NAMES[a])
    assert asym > 0.4
    assert (e >= 0).all() and (e <= 1).all()
    # Holds: runs of frames with an identical pose.
    still = np.all(np.abs(np.diff(ypr, axis=0)) < 1e-9, axis=1) & (np.abs(np.diff(z)) < 1e-12)
    assert still.sum() > 20
    # Identity fixed for the whole performance, lighting changing.
    assert all(np.array_equal(p.identity, ps[0].identity) for p in ps)
    assert np.abs(ps[0].lighting - ps[-1].lighting).max() > 0.01


def test_pure_function_of_seed_and_time():
    a = performance_frame(5, 123)
    b = performance_frame(5, 123)
    for f in ("identity", "expression", "rotation", "translation_m", "lighting"):
        assert np.array_equal(getattr(a, f), getattr(b, f))
    c = performance_frame(6, 123)
    assert not np.array_equal(a.identity, c.identity)
    assert np.array_equal(performance_at(5, 123 / 30.0).rotation, a.rotation)


def test_smooth_and_continuous_across_cycles():
    _, ypr, z, e = _script(9, int(2.2 * CYCLE_S * 30))
    assert np.abs(np.diff(ypr, axis=0)).max() < 8.0  # deg per frame at 30 fps
    assert np.abs(np.diff(z)).max() < 0.03  # the dolly peaks at ~0.75 m/s
    assert np.abs(np.diff(e, axis=0)).max() < 0.7  # blinks close in ~80 ms


def test_bad_time():
    with pytest.raises(ConfigError):
        performance_at(0, -1.0)
    with pytest.raises(ConfigError):
        performance_frame(0, 1, fps=0)


def test_training_sampler_covers_full_range():
    rng = np.random.default_rng(0)
    ps = [sample_face_params(rng) for _ in range(400)]
    yaw = np.array([ypr_deg_from_rotation(p.rotation)[0] for p in ps])
    e = np.stack([p.expression for p in ps])
    assert np.abs(yaw).max() > 80 and np.abs(yaw).max() <= 90.01
    assert (e >= 0).all() and (e <= 1).all()
    closed = (e[:, IDX["eyeBlink_L"]] > 0.9) & (e[:, IDX["eyeBlink_R"]] > 0.9)
    assert closed.mean() > 0.03
    assert (e[:, IDX["jawOpen"]] > 0.9).mean() > 0.03
    assert ps[0].identity.shape == (100,)
    again = sample_face_params(np.random.default_rng(0))
    assert np.array_equal(again.expression, ps[0].expression)
