"""Typed per-backend options: every backend gets only its own, by construction, on every path.

The bug this guards against: ``create_tracker`` passed ``intra_op_threads`` to both networks whatever the
backend, so on a GPU machine ``TensorRTEngine.__init__() got an unexpected keyword argument
'intra_op_threads'`` for ``auto`` and ``--backend tensorrt``. Building a tracker (engines created, not
activated) needs no GPU, so every backend name is built here with its real option types.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import sys

import numpy as np
import pytest

from engines import catalog
from engines.backends import ort_backend, tensorrt_backend
from engines.factory import ENGINE_CLASSES, AutoEngine, _engine_class, create_engine, resolve_backend
from engines.options import (
    OPTION_TYPES,
    EngineOptions,
    OrtOptions,
    TensorRTOptions,
    TritonOptions,
    parse_triton_url,
)
from tests.engines.toy_models import toy_models
from tracker.core.errors import EngineError
from tracker.pipeline.runtime import TRACKER_BACKENDS, RuntimeOptions, create_tracker
from tracker.tracking import TrackerConfig


@pytest.fixture(scope="module")
def toy_onnx(tmp_path_factory):
    pytest.importorskip("onnx")
    return toy_models()[0].write_onnx(tmp_path_factory.mktemp("toy"))


@pytest.mark.parametrize("backend", list(OPTION_TYPES))
def test_every_option_field_is_a_keyword_of_its_engine_class(backend):
    params = inspect.signature(_engine_class(backend).__init__).parameters
    fields = [f.name for f in dataclasses.fields(OPTION_TYPES[backend])]
    missing = [f for f in fields if f not in params or params[f].kind is not inspect.Parameter.KEYWORD_ONLY]
    assert not missing, f"{ENGINE_CLASSES[backend]} does not take {missing} as keyword-only arguments"
    assert OPTION_TYPES[backend]().engine_kwargs().keys() == set(fields)


@pytest.mark.parametrize("backend", TRACKER_BACKENDS)
def test_create_tracker_builds_on_every_backend_with_only_its_options(backend, face_model):
    options = RuntimeOptions(backend=backend, threads=1, precision="fp32", gpu=0, triton_url="grpc://127.0.0.1:8701",
                             warmup=False)  # fmt: skip
    tracker = create_tracker(options, TrackerConfig(max_faces=3), face_model)
    try:
        det, reg = tracker.detector.engine, tracker.regressor.engine
        chosen = resolve_backend(backend)
        for engine in (det, reg):
            inner = engine.primary if isinstance(engine, AutoEngine) else engine
            assert inner.backend == chosen
            assert not engine.is_active, "building a tracker with warmup=False activates nothing"
        if chosen == "onnxruntime":
            assert det.intra_op_threads == reg.intra_op_threads == 1
        if chosen == "tensorrt":
            trt_det = det.primary if isinstance(det, AutoEngine) else det
            trt_reg = reg.primary if isinstance(reg, AutoEngine) else reg
            assert (trt_det.precision, trt_det.max_batch) == ("fp32", 1)
            assert trt_reg.max_batch == 3, "CoarseNet's max batch follows --max-faces"
            assert trt_reg.profile == catalog.runtime_profile("coarsenet", 3), "the profile `engines build` uses"
            assert trt_det.profile == catalog.runtime_profile("yunet", 3)
        if chosen == "triton":
            assert (det.model_name, reg.model_name) == ("yunet", "coarsenet")
            assert det.port == reg.port == 8701
    finally:
        tracker.close()


def test_foreign_options_are_refused_for_an_explicit_backend(toy_onnx):
    with pytest.raises(EngineError, match="backend 'tensorrt' takes TensorRTOptions, got OrtOptions"):
        create_engine(toy_onnx, "tensorrt", OrtOptions(intra_op_threads=2))
    with pytest.raises(EngineError, match="bad options for the tensorrt backend.*intra_op_threads"):
        create_engine(toy_onnx, "tensorrt", intra_op_threads=2)
    engine = create_engine(toy_onnx, "onnxruntime", EngineOptions(onnxruntime=OrtOptions(intra_op_threads=1)))
    assert engine.intra_op_threads == 1


def test_auto_with_one_backends_options_uses_the_chosen_backends_defaults(monkeypatch, toy_onnx):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    engine = create_engine(toy_onnx, "auto", TensorRTOptions(precision="fp32"))
    assert engine.backend == "onnxruntime"


def test_auto_falls_back_to_onnxruntime_when_tensorrt_cannot_activate(monkeypatch, toy_onnx, caplog):
    # Injected: "TensorRT is present and sees a GPU" on a machine where activation then really fails.
    monkeypatch.setattr(tensorrt_backend, "unavailable_reason", lambda device_index=0: None)
    opts = EngineOptions(onnxruntime=OrtOptions(intra_op_threads=1), tensorrt=TensorRTOptions(precision="fp16"))
    engine = create_engine(toy_onnx, "auto", opts)
    assert isinstance(engine, AutoEngine) and engine.backend == "tensorrt"
    with caplog.at_level(logging.WARNING, logger="engines.factory"), engine:
        out = engine.infer({"x": np.zeros((2, 3, 8, 8), np.float32)})
        assert engine.backend == "onnxruntime" and engine.intra_op_threads == 1
    assert out["logits"].shape == (2, 5)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "TensorRT could not build or activate" in warnings[0]
    assert "using ONNX Runtime instead" in warnings[0] and "needs TensorRT" in engine.fallback_reason


def test_onnxruntime_checks_the_providers_the_session_really_uses(monkeypatch, toy_onnx, caplog):
    import onnxruntime

    if ort_backend.cuda_provider_available():
        pytest.skip("this ONNX Runtime really has CUDA")
    # Injected: a build that *lists* CUDA, whose session then cannot activate it (missing CUDA libraries).
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    with caplog.at_level(logging.WARNING, logger="engines.backends.ort_backend"):
        with create_engine(toy_onnx, "onnxruntime", OrtOptions(device="auto", intra_op_threads=1)) as engine:
            assert engine.providers == ["CPUExecutionProvider"]
    assert any("did not activate" in r.getMessage() for r in caplog.records)
    with pytest.raises(EngineError, match="did not activate it"):
        create_engine(toy_onnx, "onnxruntime", OrtOptions(device="cuda")).activate()


def test_option_validation():
    with pytest.raises(EngineError, match="precision must be one of"):
        TensorRTOptions(precision="int8")
    with pytest.raises(EngineError, match="max_batch must be >= 1"):
        TensorRTOptions(max_batch=0)
    with pytest.raises(EngineError, match="onnxruntime device must be one of"):
        OrtOptions(device="tpu")
    with pytest.raises(EngineError, match="EngineOptions.tensorrt must be TensorRTOptions"):
        EngineOptions(tensorrt=OrtOptions())
    assert parse_triton_url("grpc://10.0.0.5:8001") == ("10.0.0.5", 8001)
    for bad in ("http://h:8000", "grpc://h", "grpc://:8001", "grpc://h:8001/models", "h:8001"):
        with pytest.raises(EngineError, match="Triton URL"):
            TritonOptions(url=bad)


def test_runtime_options_validate():
    from tracker.core.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown backend 'torch'"):
        RuntimeOptions(backend="torch")
    with pytest.raises(ConfigError, match="gpu must be"):
        RuntimeOptions(gpu=-1)


def test_engines_build_and_the_tracker_key_the_engine_cache_alike(tmp_path):
    # The key is a pure function of file, TensorRT version, GPU, precision and profile: no GPU needed.
    from engines.backends.tensorrt_backend import GpuInfo, engine_key

    gpu = GpuInfo(0, "NVIDIA H100", "9.0", 80 << 30)
    for name, max_faces in (("coarsenet", 4), ("yunet", 4), ("coarsenet", 7)):
        entry = catalog.get_entry(name)
        path = entry.require()
        built = engine_key(path, "fp16", catalog.runtime_profile(entry, max_faces),
                           catalog.runtime_max_batch(entry, max_faces), gpu, "11.4.0")  # fmt: skip
        opts = catalog.engine_options_for(entry, max_faces).tensorrt
        runtime = engine_key(path, opts.precision, opts.profile, opts.max_batch, gpu, "11.4.0")
        assert built == runtime
    lo, opt, hi = catalog.runtime_profile("coarsenet", 4)["image"]
    assert (lo[0], opt[0], hi[0]) == (1, 1, 4)
    assert catalog.runtime_profile("yunet", 4)["input"][2][0] == 1, "YuNet sees one frame at a time"
