"""Builds a ready tracker from options: face model, YuNet detector and CoarseNet regressor on one backend."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tracker.core.face_model import FaceModel
from tracker.tracking import Tracker, TrackerConfig


@dataclasses.dataclass(frozen=True)
class RuntimeOptions:
    """How to run the networks.

    Attributes:
        backend: ``auto`` (TensorRT with a GPU, else ONNX Runtime), ``onnxruntime`` or ``tensorrt``.
        model: CoarseNet ONNX file (default: the shipped weights).
        threads: ONNX Runtime intra-op threads per network (2 suits a 2-core machine).
        detector_input_px: Side YuNet's input is fitted into (smaller = faster, misses small faces).
        detector_score: YuNet score threshold.
    """

    backend: str = "auto"
    model: Path | None = None
    threads: int = 2
    detector_input_px: int = 320
    detector_score: float = 0.6


def create_tracker(options: RuntimeOptions | None = None, config: TrackerConfig | None = None,
                   face_model: FaceModel | None = None) -> Tracker:  # fmt: skip
    """A :class:`~tracker.tracking.Tracker` with its detector and regressor created on ``options.backend``."""
    from tracker.detection.yunet import YuNetDetector
    from tracker.tracking.regressor import Regressor

    o = options or RuntimeOptions()
    face_model = face_model or FaceModel.load()
    engine_options = {"intra_op_threads": o.threads}
    detector = YuNetDetector.create("yunet", o.backend, engine_options=engine_options,
                                    input_size=(o.detector_input_px, o.detector_input_px),
                                    score_threshold=o.detector_score)  # fmt: skip
    regressor = Regressor.create(face_model, o.model, o.backend, **engine_options)
    return Tracker(detector, regressor, config)
