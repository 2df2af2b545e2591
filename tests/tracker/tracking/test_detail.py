"""The shipped eye and mouth detail networks on rendered faces with exact expressions (real ONNX inference)."""

from __future__ import annotations

import numpy as np
import pytest

from tracker.core.face_model.arkit import ICT_EXPRESSION_NAMES
from tracker.core.regions import EYE_CHANNELS_LEFT, EYE_CHANNELS_RIGHT, MOUTH_CHANNELS
from tracker.sources.synthetic import SyntheticSource
from tracker.tracking.detail import EYE_LEFT_ICT, EYE_RIGHT_ICT, MOUTH_ICT, DetailRefiner, ict_indices

ICT = np.asarray(ICT_EXPRESSION_NAMES)


def test_outputs_land_on_their_own_ict_channels():
    assert ICT[EYE_RIGHT_ICT][EYE_CHANNELS_RIGHT.index("eyeBlinkRight")] == "eyeBlink_R"
    assert ICT[EYE_LEFT_ICT][EYE_CHANNELS_LEFT.index("eyeBlinkLeft")] == "eyeBlink_L"
    assert ICT[EYE_RIGHT_ICT][EYE_CHANNELS_RIGHT.index("browInnerUp")] == "browInnerUp_R"
    assert ICT[EYE_LEFT_ICT][EYE_CHANNELS_LEFT.index("browInnerUp")] == "browInnerUp_L"
    assert ICT[MOUTH_ICT][MOUTH_CHANNELS.index("mouthSmileLeft")] == "mouthSmile_L"
    # Every channel is written by exactly one output; cheekPuff, cheekSquint and noseSneer stay CoarseNet's.
    written = np.concatenate([EYE_RIGHT_ICT, EYE_LEFT_ICT, MOUTH_ICT])
    assert len(set(written.tolist())) == len(written) == 47
    assert sorted(set(ICT) - set(ICT[written])) == ["cheekPuff_L", "cheekPuff_R", "cheekSquint_L", "cheekSquint_R",
                                                    "noseSneer_L", "noseSneer_R"]  # fmt: skip
    with pytest.raises(Exception, match="side"):
        ict_indices(("browInnerUp",))


@pytest.fixture(scope="module")
def refiner():
    r = DetailRefiner.create("onnxruntime")
    yield r
    r.close()


@pytest.fixture(scope="module")
def performance(face_model):
    """120 frames of a scripted synthetic performance (seed 4242: not a training seed) with exact labels."""
    with SyntheticSource(4242, 120, model=face_model) as source:
        frames = [source.read() for _ in range(120)]
    return frames


def _truth(frames, name):
    j = ICT_EXPRESSION_NAMES.index(name)
    return np.array([f.ground_truth.expression[j] for f in frames])


def test_blinks_and_jaw_follow_the_rendered_face(refiner, performance):
    eyes, mouth = refiner.infer([f.color for f in performance], [f.ground_truth.landmarks68 for f in performance])
    assert eyes.shape == (120, 2, 10) and mouth.shape == (120, 27)
    blink_r = eyes[:, 0, EYE_CHANNELS_RIGHT.index("eyeBlinkRight")]
    blink_l = eyes[:, 1, EYE_CHANNELS_LEFT.index("eyeBlinkLeft")]
    jaw = mouth[:, MOUTH_CHANNELS.index("jawOpen")]
    for got, name in ((blink_r, "eyeBlink_R"), (blink_l, "eyeBlink_L"), (jaw, "jawOpen")):
        truth = _truth(performance, name)
        assert truth.std() > 0.1, f"the script must move {name}"
        assert np.corrcoef(got, truth)[0, 1] > 0.8, name


def test_batch_of_faces_equals_one_at_a_time(refiner, performance):
    frames = performance[:3]
    eyes, mouth = refiner.infer([f.color for f in frames], [f.ground_truth.landmarks68 for f in frames])
    for k, f in enumerate(frames):
        e1, m1 = refiner.infer([f.color], [f.ground_truth.landmarks68])
        np.testing.assert_allclose(e1[0], eyes[k], atol=1e-5)
        np.testing.assert_allclose(m1[0], mouth[k], atol=1e-5)


def test_a_mirrored_frame_swaps_left_and_right(refiner, performance):
    """The frame flipped left-right, with its landmarks flipped and relabelled (iBUG's mirror map), reads the
    same values with the eyes and the Left/Right mouth channels swapped."""
    from tracker.core.regions import mirror_channels

    f = performance[60]
    w = f.color.shape[1]
    flip68 = np.r_[16:-1:-1, 26:16:-1, 27:31, 35:30:-1, 45:41:-1, 47:45:-1, 39:35:-1, 41:39:-1,
                   54:47:-1, 59:54:-1, 64:59:-1, 67:64:-1]  # fmt: skip
    lm = f.ground_truth.landmarks68.copy()
    lm[:, 0] = w - 1 - lm[:, 0]
    eyes, mouth = refiner.infer([f.color], [f.ground_truth.landmarks68])
    eyes_m, mouth_m = refiner.infer([np.ascontiguousarray(f.color[:, ::-1])], [lm[flip68]])
    np.testing.assert_allclose(eyes_m[0, 0], eyes[0, 1], atol=0.03)
    np.testing.assert_allclose(eyes_m[0, 1], eyes[0, 0], atol=0.03)
    np.testing.assert_allclose(mouth_m[0], mouth[0][mirror_channels(MOUTH_CHANNELS)], atol=0.05)


def test_refine_replaces_only_the_regions_channels(refiner, performance):
    f = performance[10]
    ex = np.full(53, 0.123, np.float32)
    (out,) = refiner.refine([f.color], [f.ground_truth.landmarks68], [ex])
    kept = np.setdiff1d(np.arange(53), np.concatenate([EYE_RIGHT_ICT, EYE_LEFT_ICT, MOUTH_ICT]))
    np.testing.assert_array_equal(out[kept], ex[kept])
    assert not np.allclose(out[EYE_RIGHT_ICT], 0.123) and (ex == np.float32(0.123)).all()  # input untouched
