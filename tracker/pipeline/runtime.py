"""Builds a ready tracker from options: face model, YuNet detector and CoarseNet regressor on one backend.

Each network gets the typed options of every backend (:func:`engines.catalog.engine_options_for`) and the
factory hands the chosen backend only its own, so no option can reach a backend that does not take it.
The engines are activated and warmed here, before any pipeline thread starts: a first TensorRT build on a
new GPU (tens of seconds) happens with a progress line, not inside the track thread on the first frame.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from engines.catalog import engine_options_for, get_entry
from engines.options import DEFAULT_TRITON_URL, EngineOptions
from tracker.core.errors import ConfigError
from tracker.core.face_model import FaceModel
from tracker.tracking import Tracker, TrackerConfig

log = logging.getLogger(__name__)

#: Backends a tracker runs on (``torch`` runs nn.Modules for training and debugging, not the ONNX files).
TRACKER_BACKENDS: tuple[str, ...] = ("auto", "onnxruntime", "tensorrt", "triton")


@dataclasses.dataclass(frozen=True)
class RuntimeOptions:
    """How to run the networks.

    Attributes:
        backend: ``auto`` (TensorRT with a GPU, else ONNX Runtime), ``onnxruntime``, ``tensorrt`` or
            ``triton``.
        model: CoarseNet ONNX file (default: the shipped weights).
        threads: ONNX Runtime intra-op threads per network (2 suits a 2-core machine).
        detector_input_px: Side YuNet's input is fitted into (smaller = faster, misses small faces).
        detector_score: YuNet score threshold.
        precision: TensorRT precision, ``fp16`` or ``fp32``.
        gpu: CUDA device index (TensorRT, and ONNX Runtime's CUDA provider).
        triton_url: ``grpc://HOST:PORT`` of a Triton server (``backend="triton"``).
        max_batch: Largest CoarseNet batch; None: the tracker's ``max_faces`` (one camera).
        warmup: Activate and warm both engines in :func:`create_tracker` (off only for tests that time
            activation themselves).
        detail: Run the eye and mouth detail networks after CoarseNet (when their weights are installed;
            :mod:`tracker.tracking.detail`).
    """

    backend: str = "auto"
    model: Path | None = None
    threads: int = 2
    detector_input_px: int = 320
    detector_score: float = 0.6
    precision: str = "fp16"
    gpu: int = 0
    triton_url: str = DEFAULT_TRITON_URL
    max_batch: int | None = None
    warmup: bool = True
    detail: bool = True

    def __post_init__(self) -> None:
        if self.backend not in TRACKER_BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}; choose one of {', '.join(TRACKER_BACKENDS)}")
        if self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}")
        if self.gpu < 0:
            raise ConfigError(f"gpu must be a CUDA device index >= 0, got {self.gpu}")
        if self.max_batch is not None and self.max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {self.max_batch}")

    def engine_options(self, model_name: str, max_faces: int) -> EngineOptions:
        """Typed options of every backend for one catalog network (``yunet``, ``coarsenet``, ``eyenet``...)."""
        return engine_options_for(get_entry(model_name), self.max_batch or max_faces, threads=self.threads,
                                  precision=self.precision, device_index=self.gpu,
                                  triton_url=self.triton_url)  # fmt: skip


def create_tracker(options: RuntimeOptions | None = None, config: TrackerConfig | None = None,
                   face_model: FaceModel | None = None) -> Tracker:  # fmt: skip
    """A :class:`~tracker.tracking.Tracker` with its detector and regressor created on ``options.backend``.

    With ``options.warmup`` (the default) both engines are activated (a TensorRT engine is found in the
    cache or built, with a log line) and run once on zeros before this returns.
    """
    from tracker.detection.yunet import YuNetDetector
    from tracker.tracking.depth_align import DepthAligner
    from tracker.tracking.depth_align import available as depth_align_available
    from tracker.tracking.detail import DetailRefiner
    from tracker.tracking.detail import available as detail_available
    from tracker.tracking.regressor import Regressor

    o = options or RuntimeOptions()
    config = config or TrackerConfig()
    face_model = face_model or FaceModel.load()
    detector = YuNetDetector.create("yunet", o.backend, engine_options=o.engine_options("yunet", config.max_faces),
                                    input_size=(o.detector_input_px, o.detector_input_px),
                                    score_threshold=o.detector_score)  # fmt: skip
    try:
        detail = None
        if o.detail and detail_available():
            # One ONNX Runtime thread each: a few M multiply-adds per patch, less than waking a second
            # thread costs (and the regressor's two threads are not contended).
            small = dataclasses.replace(o, threads=1)
            detail = DetailRefiner.create(o.backend, small.engine_options("eyenet", config.max_faces),
                                          small.engine_options("mouthnet", config.max_faces))  # fmt: skip
        aligner = None
        if config.use_depth and config.depth_align:
            if depth_align_available():
                aligner = DepthAligner.create(o.backend, o.engine_options("coarsenet_d", config.max_faces))
            else:
                log.info("CoarseNet-D weights not installed: RGB-D frames use the depth scale alone")
        regressor = Regressor.create(face_model, o.model, o.backend, detail=detail, depth_aligner=aligner,
                                     options=o.engine_options("coarsenet", config.max_faces))  # fmt: skip
    except BaseException:
        detector.close()
        raise
    tracker = Tracker(detector, regressor, config)
    if o.warmup:
        try:
            tracker.warmup()
            log.info("networks ready: detector on %s, regressor on %s", tracker.detector.engine.backend,
                     tracker.regressor.engine.backend)  # fmt: skip
        except BaseException:
            tracker.close()
            raise
    return tracker


