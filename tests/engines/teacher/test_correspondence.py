import numpy as np
import pytest

from engines.teacher.correspondence import (
    ANCHORS,
    compute_correspondence,
    load_canonical_mesh,
    load_correspondence,
)


@pytest.fixture(scope="module")
def computed(face_model):
    return compute_correspondence(face_model)


def test_anchor_ids_agree_with_the_canonical_mesh_geometry():
    v, _ = load_canonical_mesh()
    assert ANCHORS["nose_tip"][0] == int(np.argmax(v[:, 2]))  # most forward vertex
    assert ANCHORS["chin"][0] == int(np.argmin(v[:, 1]))  # lowest vertex
    for right, left in (("right_eye_outer", "left_eye_outer"), ("right_eye_inner", "left_eye_inner"),
                        ("mouth_right", "mouth_left")):  # fmt: skip
        a, b = v[ANCHORS[right][0]], v[ANCHORS[left][0]]
        np.testing.assert_allclose(a * [-1, 1, 1], b, atol=1e-4)  # mirror pairs
        assert a[0] < 0  # the subject's right is at -x, as in ICT
    # Outer eye corners lie further out than inner ones; mouth corners below the nose tip.
    assert abs(v[ANCHORS["right_eye_outer"][0], 0]) > abs(v[ANCHORS["right_eye_inner"][0], 0])
    assert v[ANCHORS["mouth_right"][0], 1] < v[ANCHORS["nose_tip"][0], 1]


def test_geometric_correspondence_quality(computed, face_model):
    corr, report = computed
    assert report["mean_residual_cm"] < 0.1  # aligned MediaPipe vertices lie on the ICT face surface
    assert report["max_residual_cm"] < 0.5
    assert report["residual_history_cm"][-1] < report["residual_history_cm"][0]  # non-rigid step helps
    assert 0.85 < report["scale"] < 1.15  # both meshes are in centimetres
    np.testing.assert_allclose(corr.bary.sum(1), 1.0, atol=1e-5)
    assert (corr.bary >= -1e-6).all()
    face = face_model.region("face")
    assert corr.triangle_ids.max() < face.t1 and corr.triangle_vertices.max() < face.v1
    # Anchor points land next to their ICT iBUG-68 equivalents on the neutral mesh (cm).
    pts = corr.points_cm(face_model.neutral_cm)
    for name, (mp_id, ibug) in ANCHORS.items():
        d = np.linalg.norm(pts[mp_id] - face_model.neutral_cm[face_model.landmark_ids[ibug]])
        assert d < (0.6 if name == "chin" else 0.4), (name, d)
    # Symmetry: MediaPipe's mirror pairs map to mirrored ICT points.
    v, _ = load_canonical_mesh()
    mirror = np.argmin(((v[:, None] * [-1, 1, 1] - v[None]) ** 2).sum(-1), axis=1)
    assert np.median(np.linalg.norm(pts[mirror] * [-1, 1, 1] - pts, axis=1)) < 0.1


def test_committed_correspondence_is_valid_and_beats_the_geometric_one(computed, face_model):
    from engines.teacher.refine import render_samples
    from tracker.render import Renderer

    geometric, _ = computed
    committed = load_correspondence()
    face = face_model.region("face")
    assert committed.triangle_ids.max() < face.t1
    np.testing.assert_allclose(committed.bary.sum(1), 1.0, atol=1e-5)
    assert ((committed.weights >= 0) & (committed.weights <= 1)).all()
    moves = np.linalg.norm(committed.points_cm(face_model.neutral_cm) - geometric.points_cm(face_model.neutral_cm), axis=1)
    assert moves.max() < 2.5 and np.median(moves) < 0.5  # a refinement, not a different mapping
    # On fresh renders (a seed the refinement never saw), MediaPipe's detections lie closer to the
    # committed surface points than to the geometric ones (median over renders, cm on the neutral mesh).
    samples = render_samples(face_model, committed, Renderer, num_renders=6, seed=1000, size_px=256)
    assert len(samples) >= 4
    seen = np.stack([s.neutral_points_cm for s in samples])

    def error_cm(corr):
        d = np.linalg.norm(seen - corr.points_cm(face_model.neutral_cm)[None], axis=-1)
        return float(np.nanmean(np.nanmedian(d, axis=0)))

    assert error_cm(committed) < 0.8 * error_cm(geometric)
