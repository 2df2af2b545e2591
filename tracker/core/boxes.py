"""Axis-aligned boxes: the one place that computes a point set's box and the overlap of two boxes.

Boxes are (4,) or (N,4) float64 ``x0, y0, x1, y1`` in pixels (xyxy, ARCHITECTURE §2's pixel convention).
"""

from __future__ import annotations

import numpy as np


def points_box(points: np.ndarray) -> np.ndarray:
    """(4,) float64 xyxy bounding box of (N,2) points."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    return np.concatenate([p.min(axis=0), p.max(axis=0)])


def _area(b: np.ndarray) -> np.ndarray:
    return np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)


def box_iou(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Intersection over union of each (N,4) xyxy box with one (4,) xyxy box -> (N,) float64 (0 for empty)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    one = np.asarray(box, dtype=np.float64)
    ix = np.clip(np.minimum(b[:, 2], one[2]) - np.maximum(b[:, 0], one[0]), 0, None)
    iy = np.clip(np.minimum(b[:, 3], one[3]) - np.maximum(b[:, 1], one[1]), 0, None)
    inter = ix * iy
    union = _area(b) + _area(one) - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (4,) xyxy boxes."""
    return float(box_iou(np.asarray(a)[None], b)[0])


__all__ = ["box_iou", "iou", "points_box"]
