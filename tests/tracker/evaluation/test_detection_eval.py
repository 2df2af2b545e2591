"""Detection evaluation: the matching criterion, .pts reading, and YuNet's detection rate on real faces."""

from __future__ import annotations

import numpy as np
import pytest

from tracker.core.boxes import box_iou, points_box
from tracker.core.errors import ConfigError
from tracker.core.types import Detections
from tracker.detection import YuNetDetector
from tracker.evaluation.detection import (
    evaluate_detection,
    fraction_inside,
    letterbox_into,
    match_face,
    plot_detection_evaluation,
)  # fmt: skip
from tracker.evaluation.ibug import evenly_spaced, find_annotated_images, read_pts


def test_read_pts_converts_one_based(tmp_path):
    p = tmp_path / "a.pts"
    p.write_text("version: 1\nn_points: 3\n{\n1 1\n10.5 20\n3 4\n}\n")
    np.testing.assert_allclose(read_pts(p), [[0, 0], [9.5, 19], [2, 3]])
    np.testing.assert_allclose(read_pts(p, one_based=False)[0], [1, 1])
    p.write_text("version: 1\nn_points: 68\n{\n1 1\n}\n")
    with pytest.raises(ConfigError, match="header says 68 points, found 1"):
        read_pts(p)


def test_iou_containment_and_matching():
    box = np.array([10.0, 10.0, 30.0, 30.0])
    np.testing.assert_allclose(box_iou(np.array([[10, 10, 30, 30], [20, 10, 40, 30], [50, 50, 60, 60]]), box),
                               [1.0, 1 / 3, 0.0])  # fmt: skip
    pts = np.array([[12.0, 12.0], [28.0, 28.0], [35.0, 20.0], [20.0, 20.0]])
    np.testing.assert_allclose(fraction_inside(np.array([[10, 10, 30, 30]]), pts), [0.75])
    np.testing.assert_allclose(points_box(pts), [12, 12, 35, 28])
    # A wide detector box around a narrow (profile) landmark box: low IoU but contains every point.
    narrow = np.array([[50.0, 40.0], [60.0, 90.0], [55.0, 60.0]])
    wide = Detections(np.array([[20.0, 30.0, 110.0, 100.0]]), np.array([0.8]), np.zeros((1, 5, 2)))
    m = match_face(wide, narrow)
    assert m.found and m.best_iou < 0.4 and m.best_inside == 1.0 and m.score == pytest.approx(0.8)
    assert not match_face(Detections.empty(), narrow).found


def test_helpers():
    assert evenly_spaced(list(range(10)), 3) == [0, 4, 9]
    assert evenly_spaced([1, 2], None) == [1, 2]
    frame = letterbox_into(np.full((100, 50, 3), 255, np.uint8), (640, 480))
    assert frame.shape == (480, 640, 3)
    assert frame[240, 320].tolist() == [255, 255, 255] and frame[240, 10].tolist() == [0, 0, 0]


def test_yunet_detection_rate_on_a_subset(shared_data, tmp_path):
    """The full set (674 faces) is measured by `facetrack eval detection`; 60 spread images here."""
    root = shared_data / "landmarks68"
    assert len(find_annotated_images(root)) == 674
    with YuNetDetector.create("yunet", "onnxruntime") as det:
        result = evaluate_detection(
            det.detect, root, limit=60, timing_frames=5, timing_repeats=1, progress=False
        )
    d = result.to_dict()
    assert d["n"] == 60 and set(d["detection_rate_by_subset"]) == {"afw", "helen", "misc"}
    assert d["detection_rate"] >= 0.97, d["missed"]
    assert d["frame_ms"]["count"] == 5 and d["frame_ms"]["width"] == 640
    png = plot_detection_evaluation(result, tmp_path / "det.png")
    assert png.stat().st_size > 10_000
