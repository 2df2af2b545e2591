import numpy as np
import pytest

from tracker.core.boxes import box_iou, iou, points_box


def test_iou_of_known_overlaps():
    a = np.array([0.0, 0.0, 10.0, 10.0])
    assert iou(a, a) == 1.0
    assert iou(a, np.array([5.0, 0.0, 15.0, 10.0])) == pytest.approx(50 / 150)
    assert iou(a, np.array([20.0, 20.0, 30.0, 30.0])) == 0.0
    assert iou(np.array([3.0, 3.0, 3.0, 3.0]), np.array([3.0, 3.0, 3.0, 3.0])) == 0.0  # empty boxes: no overlap


def test_vectorised_and_scalar_agree_and_points_box():
    rng = np.random.default_rng(0)
    lo = rng.uniform(0, 50, (20, 2))
    boxes = np.concatenate([lo, lo + rng.uniform(1, 30, (20, 2))], axis=1)
    one = boxes[3]
    np.testing.assert_allclose(box_iou(boxes, one), [iou(b, one) for b in boxes])
    np.testing.assert_array_equal(points_box(np.array([[3, 9], [1, 4], [7, 2]])), [1, 2, 7, 9])
