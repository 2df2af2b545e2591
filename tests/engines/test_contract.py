"""The contract every backend meets, run on the same small models against a float64 numpy reference.

Each case is a backend with its options; the GPU cases (ONNX Runtime's CUDA provider, TensorRT fp32/fp16,
torch on CUDA) are marked ``gpu`` and run with ``pytest --device cuda``; the CPU cases run everywhere.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from engines.base import Engine
from engines.factory import create_engine
from tests.engines.toy_models import ToyModel, toy_models
from tracker.core.errors import EngineError

MODELS = {m.name: m for m in toy_models()}

# (backend, options, tolerance). GPU fp32 tolerances allow TF32 (on by default in TensorRT and cuDNN).
CASES = [
    pytest.param("onnxruntime", {"device": "cpu"}, 1e-4, id="onnxruntime-cpu"),
    pytest.param("onnxruntime", {"device": "cuda"}, 5e-3, id="onnxruntime-cuda", marks=pytest.mark.gpu),
    pytest.param("tensorrt", {"precision": "fp32"}, 5e-3, id="tensorrt-fp32", marks=pytest.mark.gpu),
    pytest.param("tensorrt", {"precision": "fp16"}, 5e-2, id="tensorrt-fp16", marks=pytest.mark.gpu),
    pytest.param("torch", {"device": "cpu"}, 1e-4, id="torch-cpu"),
    pytest.param("torch", {"device": "cuda"}, 5e-3, id="torch-cuda", marks=pytest.mark.gpu),
]


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory) -> dict:
    pytest.importorskip("onnx")
    folder = tmp_path_factory.mktemp("toy_onnx")
    return {name: m.write_onnx(folder) for name, m in MODELS.items()}


@pytest.fixture
def make_engine(onnx_files, tmp_path, require_gpu_backend):
    def make(backend: str, options: dict, model: ToyModel) -> Engine:
        require_gpu_backend(backend, options)
        if backend == "torch":
            pytest.importorskip("torch")
            return create_engine(model.torch_module(model.weights), "torch", inputs=model.inputs,
                                 outputs=model.outputs, **options)  # fmt: skip
        if backend == "tensorrt":
            options = options | {"cache_dir": tmp_path / "trt", "max_batch": 4}
        return create_engine(onnx_files[model.name], backend, **options)

    return make


@pytest.mark.parametrize("model_name", list(MODELS))
@pytest.mark.parametrize("backend, options, tol", CASES)
def test_outputs_match_float64_reference(make_engine, backend, options, tol, model_name):
    model = MODELS[model_name]
    with make_engine(backend, options, model) as engine:
        for batch in (1, 3):
            feed = model.feed(batch, seed=batch)
            got = engine.infer(feed)
            want = model.reference(feed, model.weights)
            assert set(got) == set(model.outputs)
            for name, ref in want.items():
                assert got[name].shape == ref.shape, name
                assert got[name].dtype == np.float32, name
                np.testing.assert_allclose(
                    got[name], ref, atol=tol, rtol=tol, err_msg=f"{backend} {name} batch {batch}"
                )


@pytest.mark.parametrize("backend, options, tol", CASES)
def test_metadata_names_shapes_dtypes(make_engine, backend, options, tol):
    model = MODELS["conv_mlp"]
    with make_engine(backend, options, model) as engine:
        assert engine.backend == backend
        assert engine.input_names == ["x"]
        assert set(engine.output_names) == {"logits", "features"}
        (x,) = engine.inputs
        assert x.dtype == np.float32
        assert x.shape[1:] == (3, 8, 8)
        assert not isinstance(x.shape[0], int), "the batch dimension is dynamic"
        assert x.is_dynamic
        assert "x[" in engine.describe()


@pytest.mark.parametrize("backend, options, tol", CASES)
def test_lifecycle_and_context_manager(make_engine, backend, options, tol):
    model = MODELS["two_inputs"]
    engine = make_engine(backend, options, model)
    assert not engine.is_active
    with pytest.raises(EngineError, match="activate"):
        engine.infer(model.feed(1))
    with engine as active:
        assert active is engine and engine.is_active
        first = engine.infer(model.feed(2))
    assert not engine.is_active
    engine.deactivate()  # a second deactivate is harmless
    engine.activate()
    try:
        again = engine.infer(model.feed(2))
    finally:
        engine.deactivate()
    for name in first:
        np.testing.assert_array_equal(first[name], again[name])


@pytest.mark.parametrize("backend, options, tol", CASES)
def test_warmup_and_timing(make_engine, backend, options, tol):
    model = MODELS["conv_mlp"]
    with make_engine(backend, options, model) as engine:
        assert math.isnan(engine.last_ms)
        engine.warmup(2, shapes={"x": (2, 3, 8, 8)})
        assert engine.latency().count == 0, "warm-up calls are not counted"
        for _ in range(5):
            engine.infer(model.feed(1))
        stats = engine.latency()
        assert stats.count == 5
        assert 0 < stats.min_ms <= stats.p50_ms <= stats.p95_ms <= stats.max_ms
        assert engine.last_ms > 0


@pytest.mark.parametrize("backend, options, tol", CASES)
def test_bad_feeds_give_clear_errors(make_engine, backend, options, tol):
    model = MODELS["two_inputs"]
    good = model.feed(2)
    with make_engine(backend, options, model) as engine:
        with pytest.raises(EngineError, match=r"missing input\(s\) 'b'.*takes: a\[batch,6\] float32, b\["):
            engine.infer({"a": good["a"]})
        with pytest.raises(EngineError, match=r"unknown input\(s\) 'c'"):
            engine.infer(good | {"c": good["a"]})
        with pytest.raises(EngineError, match=r"input 'a' has shape \(2, 6, 1\)"):
            engine.infer(good | {"a": good["a"][..., None]})
        with pytest.raises(EngineError, match=r"input 'b' has shape \(2, 7\), expected \[batch,6\]"):
            engine.infer(good | {"b": np.zeros((2, 7), np.float32)})
        with pytest.raises(EngineError, match="dtype complex64"):
            engine.infer(good | {"a": good["a"].astype(np.complex64)})
        with pytest.raises(EngineError):
            engine.infer(good | {"b": np.zeros((3, 6), np.float32)})  # batch 2 vs 3
        # Same-kind conversions are fine: float64 and integers become float32.
        out = engine.infer({"a": good["a"].astype(np.float64), "b": np.ones((2, 6), dtype=np.int64)})
        np.testing.assert_allclose(out["product"], good["a"], rtol=1e-6)
