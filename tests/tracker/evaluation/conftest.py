import pytest

from tracker.pipeline.runtime import RuntimeOptions, create_tracker
from tracker.tracking.regressor import DEFAULT_MODEL


@pytest.fixture(scope="module")
def tracker(face_model):
    """The shipped tracker (YuNet + CoarseNet v1 on ONNX Runtime, one thread), one per test module."""
    if not DEFAULT_MODEL.exists():
        pytest.skip("needs engines/weights/coarsenet_v1.onnx")
    with create_tracker(RuntimeOptions(backend="onnxruntime", threads=1), face_model=face_model) as t:
        yield t


@pytest.fixture(scope="module")
def teacher_tracker(tracker):
    """The shipped tracker, for tests that also run MediaPipe's Face Landmarker (extra `teacher`)."""
    pytest.importorskip("mediapipe")
    return tracker
