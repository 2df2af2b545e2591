"""eval compare: the 478 -> 68 map, mirrored frames, the scores on a known run, and real frames through
facetrack and the Face Landmarker interleaved."""

import numpy as np
import pytest

from tracker.core.errors import TrackerError
from tracker.core.types import Frame, Intrinsics
from tracker.evaluation.compare import (
    PairedRun,
    compare_run,
    evaluate_compare,
    mediapipe_to_ibug68,
    mirror_frame,
)


def test_mediapipe_to_68_map_reproduces_the_ict_landmarks(face_model):
    from engines.teacher.correspondence import load_correspondence

    corr = load_correspondence()
    w = mediapipe_to_ibug68(face_model, corr)
    assert w.shape == (68, 478) and np.allclose(w.sum(1), 1.0) and not w[:, 468:].any()
    # MediaPipe's points where the correspondence puts them on faces of other identities and expressions
    rng = np.random.default_rng(3)
    errors = []
    for _ in range(5):
        v = face_model.vertices(rng.normal(0, 1, 20), rng.uniform(0, 0.6, 53)).astype(np.float64)
        mp = np.zeros((478, 3))
        mp[:468] = corr.points_cm(v)
        errors.append(np.linalg.norm(w @ mp - v[face_model.landmark_ids], axis=1))
    errors = np.array(errors)
    assert errors.mean() < 0.1 and errors.max() < 0.6  # cm; measured 0.05 / 0.37


def test_mirror_frame_maps_pixels_and_intrinsics():
    rng = np.random.default_rng(0)
    color = rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)
    k = Intrinsics(100.0, 100.0, 3.0, 2.5, 8, 6, (0.1, 0.0, 0.01, 0.02, 0.0))
    f = Frame(index=3, t_capture_ns=7, color=color, intrinsics=k)
    m = mirror_frame(f)
    assert np.array_equal(m.color[:, 7 - 2], color[:, 2]) and m.index == 3 and m.t_media_ns == f.t_media_ns
    assert m.intrinsics.cx == 4.0 and m.intrinsics.distortion[2:4] == (0.01, -0.02)
    assert np.array_equal(mirror_frame(m).color, color) and mirror_frame(m).intrinsics == k


def _run(n: int = 8) -> PairedRun:
    """A still face for facetrack, a face moving at constant speed for MediaPipe (both zero jitter)."""
    rng = np.random.default_rng(2)
    ft = np.repeat(rng.uniform(100, 200, (1, 68, 2)), n, axis=0)
    ft[0] = np.nan  # not tracked on the first frame
    mp = np.repeat(rng.uniform(100, 200, (1, 478, 2)), n, axis=0) + np.arange(n)[:, None, None] * 2.0
    nan52 = np.full((n, 52), np.nan, np.float32)
    return PairedRun(fps=30.0, frame_wh=(320, 240), flipped=False, ft_arkit=nan52, ft_landmarks68=ft,
                     ft_ms=np.full(n, 2.0), mp_blendshapes=nan52, mp_landmarks=mp, mp_ms=np.full(n, 10.0))  # fmt: skip


def test_compare_scores_on_a_known_run(face_model):
    r = compare_run(_run(), mediapipe_to_ibug68(face_model))
    assert r["frames"] == 8
    assert r["facetrack"]["tracked_fraction"] == 7 / 8 and r["mediapipe"]["tracked_fraction"] == 1.0
    assert r["speedup"] == {"p50": 5.0, "p95": 5.0}
    assert r["facetrack"]["jitter"] == 0.0 and r["mediapipe"]["jitter"] == pytest.approx(0.0, abs=1e-9)
    # jitter needs frames t, t-1 and t-2 tracked: facetrack's first value is at frame 3
    assert r["facetrack"]["jitter_series"][:3] == [None] * 3 and r["facetrack"]["jitter_series"][3] == 0.0
    assert len(r["mediapipe"]["jitter_series"]) == 8 and np.isfinite(r["landmark_agreement_nme"])


def test_compare_on_real_frames(teacher_tracker, shared_data):
    r = evaluate_compare(teacher_tracker, shared_data / "videos" / "liveportrait_d19.mp4", max_frames=10, progress=False)
    assert r["frames"] == 10 and r["frame_wh"] == [480, 480]
    for tool in ("facetrack", "mediapipe"):
        assert r[tool]["tracked_fraction"] == 1.0 and len(r[tool]["jitter_series"]) == 10
        assert r[tool]["jitter_series"][:2] == [None, None] and r[tool]["jitter"] > 0
    assert r["speedup"]["p50"] == r["mediapipe"]["ms_per_frame"]["p50"] / r["facetrack"]["ms_per_frame"]["p50"]
    assert r["jitter_ratio"] == r["facetrack"]["jitter"] / r["mediapipe"]["jitter"]
    assert r["landmark_agreement_nme"] < 6.0  # the two tools find the same face (measured ~3 %)


def test_compare_rejects_bad_input(teacher_tracker, tmp_path):
    with pytest.raises(TrackerError, match="not found"):
        evaluate_compare(teacher_tracker, tmp_path / "missing.mp4", progress=False)
    with pytest.raises(TrackerError, match="--frames"):
        evaluate_compare(teacher_tracker, tmp_path / "missing.mp4", max_frames=0, progress=False)
