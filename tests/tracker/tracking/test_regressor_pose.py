"""Head-pose convention of the shipped regressor on real photos (ARCHITECTURE §2): mirrored photos flip the
signs of yaw and roll and keep pitch; a photo rotated clockwise adds that angle to the roll; and on AFW's
most turned faces the yaw's sign is the one the annotated landmarks show."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from tracker.core.boxes import box_iou, points_box
from tracker.core.geometry import ypr_deg_from_rotation
from tracker.evaluation.ibug import find_annotated_images, read_pts
from tracker.evaluation.landmarks import track_still
from tracker.pipeline.runtime import RuntimeOptions, create_tracker


@pytest.fixture(scope="module")
def tracker(face_model):
    with create_tracker(RuntimeOptions(backend="onnxruntime", threads=1), face_model=face_model) as t:
        yield t


def _pose(tracker, rgb: np.ndarray, near_box: np.ndarray | None = None) -> np.ndarray:
    """(yaw, pitch, roll) degrees of the face whose detection best overlaps ``near_box`` (default: the largest)."""
    dets = tracker.detector.detect(rgb)
    assert len(dets), "no face detected"
    if near_box is None:
        best = int(np.argmax((dets.boxes[:, 2] - dets.boxes[:, 0]) * (dets.boxes[:, 3] - dets.boxes[:, 1])))
    else:
        best = int(np.argmax(box_iou(dets.boxes, near_box)))
    return np.array(ypr_deg_from_rotation(track_still(tracker, rgb, dets.boxes[best]).rotation))


def _photos(shared_data: Path, n: int = 6) -> list[np.ndarray]:
    paths = sorted((shared_data / "identity" / "deepface").glob("id0*/*.jpg"))[:: 5][:n]
    return [np.ascontiguousarray(cv2.imread(str(p))[:, :, ::-1]) for p in paths]


def _turned_afw(shared_data: Path, n: int = 8):
    """The ``n`` AFW faces whose annotated nose tip sits furthest off the middle of the jaw line, with their
    landmarks: (item, (68,2) px)."""
    items = find_annotated_images(shared_data / "landmarks68" / "afw")
    gts = [read_pts(it.pts_path) for it in items]
    turn = [(g[30, 0] - (g[:17, 0].min() + g[:17, 0].max()) / 2) / max(np.ptp(g[:17, 0]), 1.0) for g in gts]
    return [(items[i], gts[i]) for i in np.argsort(-np.abs(turn))[:n]]


def _rgb(path: Path) -> np.ndarray:
    return np.ascontiguousarray(cv2.imread(str(path))[:, :, ::-1])


def test_mirrored_photos_flip_yaw_and_roll_and_keep_pitch(tracker, shared_data):
    # Turned faces: every mirror image turns the other way, by about as much on average (one face of the 8
    # may be a harder view on one side: v1h reads 18° and -28° on AFW 3363054468_1); roll flips and pitch
    # stays, up to the few degrees by which profile views are less certain (averaged).
    rest, yaws = [], []
    for it, gt in _turned_afw(shared_data):
        rgb = _rgb(it.image_path)
        w = rgb.shape[1]
        mirrored_box = np.array([w - 1 - gt[:, 0].max(), gt[:, 1].min(), w - 1 - gt[:, 0].min(), gt[:, 1].max()])
        yaw, pitch, roll = _pose(tracker, rgb, points_box(gt))
        m_yaw, m_pitch, m_roll = _pose(tracker, np.ascontiguousarray(rgb[:, ::-1]), mirrored_box)
        assert np.sign(m_yaw) == -np.sign(yaw) and abs(m_yaw + yaw) < 0.6 * abs(yaw), (it.name, yaw, m_yaw)
        yaws.append([abs(yaw), abs(m_yaw + yaw)])
        rest.append([abs(m_pitch - pitch), abs(m_roll + roll)])
    mean_yaw, mean_asymmetry = np.mean(yaws, axis=0)
    assert mean_asymmetry < 0.2 * mean_yaw + 2.0, (mean_yaw, mean_asymmetry)
    assert np.all(np.mean(rest, axis=0) < 6.0), np.mean(rest, axis=0)
    # Near-frontal photos: on average the network is mirror-symmetric to a few degrees.
    diffs = []
    for rgb in _photos(shared_data):
        a = _pose(tracker, rgb)
        b = _pose(tracker, np.ascontiguousarray(rgb[:, ::-1]))
        diffs.append([abs(b[0] + a[0]), abs(b[1] - a[1]), abs(b[2] + a[2])])
    assert np.all(np.mean(diffs, axis=0) < 4.0), np.mean(diffs, axis=0)


def test_a_clockwise_rotated_photo_adds_to_the_roll(tracker, shared_data):
    angle_deg = 20.0
    for rgb in _photos(shared_data, 4):
        h, w = rgb.shape[:2]
        pad = max(h, w) // 3
        canvas = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        ch, cw = canvas.shape[:2]
        # OpenCV's positive angle turns the picture anticlockwise on screen; -angle turns it clockwise.
        m = cv2.getRotationMatrix2D(((cw - 1) / 2, (ch - 1) / 2), -angle_deg, 1.0)
        rotated = cv2.warpAffine(canvas, m, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        roll0 = _pose(tracker, canvas)[2]
        roll1 = _pose(tracker, rotated)[2]
        assert roll1 - roll0 == pytest.approx(angle_deg, abs=4.0)


def test_yaw_sign_on_turned_afw_faces_follows_the_annotation(tracker, shared_data):
    """The most turned AFW faces: the yaw must be large and point the way the annotated nose does (yaw > 0:
    nose towards the image's right)."""
    for it, gt in _turned_afw(shared_data):
        yaw = _pose(tracker, _rgb(it.image_path), points_box(gt))[0]
        nose_right = gt[30, 0] > (gt[:17, 0].min() + gt[:17, 0].max()) / 2
        assert abs(yaw) > 15.0, (it.name, yaw)
        assert (yaw > 0) == nose_right, (it.name, yaw)
