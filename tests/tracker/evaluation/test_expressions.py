"""eval expressions: the per-channel scores and the mirror check on known answers, the Left/Right
convention of the face model, and a few real frames through facetrack and the Face Landmarker."""

import numpy as np
import pytest

from tracker.core.errors import TrackerError
from tracker.core.face_model import ARKIT_NAMES, ICT_EXPRESSION_NAMES
from tracker.evaluation.expressions import (
    KEY_CHANNELS,
    MOVE_STD,
    channel_agreement,
    evaluate_expressions,
    lr_pairs,
    mirror_check,
    mirror_permutation_arkit,
)


def test_mirror_permutation_swaps_every_left_right_channel():
    perm = mirror_permutation_arkit()
    assert np.array_equal(perm[perm], np.arange(52))
    for i, name in enumerate(ARKIT_NAMES):
        other = ARKIT_NAMES[perm[i]]
        if name.endswith("Left"):
            assert other == name.replace("Left", "Right")
        elif name.endswith("Right"):
            assert other == name.replace("Right", "Left")
        else:
            assert other == name
    assert ARKIT_NAMES[perm[ARKIT_NAMES.index("jawLeft")]] == "jawRight"
    assert len(lr_pairs()) == 20 and int((perm == np.arange(52)).sum()) == 12  # jawOpen, browInnerUp, ...


def _asymmetric_series(n: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, 1.0, (n, 52)).astype(np.float32)


def test_mirror_check_passes_a_tool_that_swaps_and_fails_one_that_does_not():
    a = _asymmetric_series()
    a[:5] = np.nan  # frames without a face are left out
    swapped = a[:, mirror_permutation_arkit()]
    good = mirror_check(a, swapped)
    assert good["frames"] == 195 and good["passes"] and good["failed"] == [] and good["undecided"] == []
    assert all(p["verdict"] == "pass" for p in good["pairs"].values())
    assert good["channels"]["eyeBlinkLeft"]["r"] == pytest.approx(1.0)
    # A tool that reads the same Left/Right values off the mirrored face (e.g. a fixed left-right bias).
    bad = mirror_check(a, a.copy())
    assert not bad["passes"] and len(bad["failed"]) == 20 and not bad["passes_dynamic"]
    # A tool that sees a face moving both sides alike (+-0.1 asymmetry) but adds 0.3 to every Left channel:
    # its offset stays on the Left of the mirrored face (a failure), while the moving part swaps.
    face = np.repeat(a[:, :1], 52, axis=1)
    wobble = 0.1 * np.sin(np.arange(len(a)) / 5.0)[:, None]
    left = [li for li, _ in lr_pairs()]
    seen, seen_mirrored = face.copy(), face.copy()
    seen[:, left] += wobble + 0.3
    seen_mirrored[:, mirror_permutation_arkit()[left]] += wobble
    seen_mirrored[:, left] += 0.3
    offset = mirror_check(seen, seen_mirrored)
    assert not offset["passes"] and offset["passes_dynamic"] and offset["failed_dynamic"] == []
    # A symmetric face (Left == Right throughout) cannot tell the two apart: undecided, not failed.
    sym = a.copy()
    for li, ri in lr_pairs():
        sym[:, ri] = sym[:, li]
    same = mirror_check(sym, sym.copy())
    assert same["passes"] and len(same["undecided"]) == 20
    assert not mirror_check(np.full((4, 52), np.nan), np.zeros((4, 52)))["passes"]  # no usable frame


def test_channel_agreement_known_answers():
    ref = _asymmetric_series(100, seed=1)
    ref[:, ARKIT_NAMES.index("tongueOut")] = 0.0
    ours = 0.5 * ref + 0.1
    ours[:3] = np.nan
    out = channel_agreement(ours, ref)
    assert out["frames"] == 97
    jaw = out["channels"]["jawOpen"]
    assert jaw["r"] == pytest.approx(1.0) and jaw["moves"] and jaw["ours_moves"]
    assert jaw["mean_abs_diff"] == pytest.approx(np.abs(0.5 * ref[3:, 17] - 0.1).mean(), rel=1e-5)
    tongue = out["channels"]["tongueOut"]
    assert not tongue["moves"] and not tongue["ours_moves"] and np.isnan(tongue["r"]) and tongue["ref_std"] < MOVE_STD
    assert "tongueOut" not in out["moving"] and len(out["moving"]) == 51
    assert out["mean_r_moving"] == pytest.approx(1.0)
    # ...and against the reference's other-side channel, independent noise: no correlation to speak of
    assert abs(out["channels"]["eyeBlinkLeft"]["r_vs_ref_mirror"]) < 0.3


def test_ict_left_channels_move_the_subjects_left(face_model):
    """ARKit's Left is the subject's left; in ICT's model frame that is +x (the subject's right eye is at -x),
    where the iBUG landmarks 42-47 (the left eye) lie."""
    lm = face_model.neutral_cm[face_model.landmark_ids]
    assert (lm[42:48, 0] > 0).all() and (lm[36:42, 0] < 0).all()
    basis = face_model.expression_basis_cm.reshape(len(ICT_EXPRESSION_NAMES), -1, 3)
    for name in ("eyeBlink_L", "mouthSmile_L", "browDown_L"):
        moved = np.linalg.norm(basis[ICT_EXPRESSION_NAMES.index(name)], axis=1)
        x = face_model.neutral_cm[:, 0]
        assert moved[x > 0].sum() > 5 * moved[x < 0].sum(), name


def test_expressions_on_real_frames(teacher_tracker, shared_data, tmp_path):
    npz = tmp_path / "frames.npz"
    r = evaluate_expressions(teacher_tracker, shared_data / "videos" / "liveportrait_d19.mp4", max_frames=6,
                             progress=False, frames_npz=npz)  # fmt: skip
    assert r["frames"] == 6 and r["frames_both"] == 6 and r["fps"] == pytest.approx(30.0)
    assert r["tracked_fraction"] == {"facetrack": 1.0, "mediapipe": 1.0}
    assert set(r["channels"]) == set(ARKIT_NAMES) and list(r["key_channels"]) == list(KEY_CHANNELS)
    assert {m["frames"] for m in r["mirror"].values()} == {6}
    assert all(len(v) == 6 for tool in r["series"].values() for v in tool.values())
    # both tools put the subject's left eye on the image's right (a face seen from the front)
    conv = r["lr_convention"]
    assert conv["facetrack_left_eye_on_image_right"] == 1.0 and conv["mediapipe_left_eye_on_image_right"] == 1.0
    with np.load(npz) as z:
        assert z["original_ft_arkit"].shape == (6, 52) and z["mirrored_mp_landmarks"].shape == (6, 478, 2)
        # on the mirrored frames the subject's left eye (MediaPipe 263) lies where the right one (33) was
        w = 480
        assert np.abs((w - 1 - z["mirrored_mp_landmarks"][:, 263, 0]) - z["original_mp_landmarks"][:, 33, 0]).max() < 3


def test_missing_clip_is_a_tracker_error(teacher_tracker, tmp_path):
    with pytest.raises(TrackerError, match="not found"):
        evaluate_expressions(teacher_tracker, tmp_path / "missing.mp4", progress=False)
