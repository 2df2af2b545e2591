"""TensorRT backend: profile, version and precision logic everywhere; engine cache, profiles and YuNet
parity on a CUDA GPU.

The ``gpu`` tests need an NVIDIA GPU, TensorRT 10 or 11 and cuda-python or pycuda (``pip install
'facetrack[gpu]'``): ``pytest --device cuda tests/engines``. Under ``--device cuda`` without TensorRT they
skip with the reason.
"""

from __future__ import annotations

import numpy as np
import pytest

from engines.backends import tensorrt_backend as trtb
from tests.engines.toy_models import toy_models
from tracker.core.errors import EngineError


@pytest.fixture(autouse=True)
def _tensorrt_present_for_gpu_tests(request, require_gpu_backend):
    if request.node.get_closest_marker("gpu"):
        require_gpu_backend("tensorrt")


def test_default_profile_covers_a_dynamic_batch():
    prof = trtb.default_profile({"x": (-1, 3, 8, 8), "fixed": (1, 4)}, max_batch=6)
    assert prof == {"x": ((1, 3, 8, 8), (1, 3, 8, 8), (6, 3, 8, 8))}


def test_default_profile_refuses_other_dynamic_dims():
    with pytest.raises(EngineError, match="dynamic dimensions \\[0, 2, 3\\].*give an optimisation profile"):
        trtb.default_profile({"input": (-1, 3, -1, -1)}, max_batch=4)


def test_profile_checks():
    assert trtb._check_profile("x", (-1, 3), (1, 3), (2, 3), (8, 3)) == ((1, 3), (2, 3), (8, 3))
    with pytest.raises(EngineError, match="does not fit"):
        trtb._check_profile("x", (-1, 3), (1, 4), (2, 3), (8, 3))
    with pytest.raises(EngineError, match="min <= opt <= max"):
        trtb._check_profile("x", (-1, 3), (4, 3), (2, 3), (8, 3))


def test_unavailable_here_says_why(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert not trtb.is_available()
    assert "facetrack[gpu]" in trtb.unavailable_reason()


def test_version_bounds():
    assert trtb.check_tensorrt_version("10.3.0") == 10
    assert trtb.check_tensorrt_version("11.4.0.106") == 11
    with pytest.raises(EngineError, match="too old"):
        trtb.check_tensorrt_version("8.6.1")
    with pytest.raises(EngineError, match="newer than this backend supports.*tensorrt<12"):
        trtb.check_tensorrt_version("12.0.0")


class _Api:
    """The attributes precision_plan reads, as TensorRT 10 and 11 expose them (enum members by name)."""

    def __init__(self, **members):
        for k, v in members.items():
            setattr(self, k, v)


TRT10 = _Api(BuilderFlag=_Api(FP16=1, TF32=2), NetworkDefinitionCreationFlag=_Api(STRONGLY_TYPED=1))
TRT11 = _Api(BuilderFlag=_Api(TF32=2), NetworkDefinitionCreationFlag=_Api(STRONGLY_TYPED=1))


def test_fp16_is_the_builder_flag_on_tensorrt_10_and_a_strongly_typed_fp16_onnx_on_11():
    assert trtb.precision_plan(TRT10, "fp16") == trtb.PrecisionPlan("fp16", builder_flag=True)
    assert trtb.precision_plan(TRT11, "fp16") == trtb.PrecisionPlan("fp16", fp16_onnx=True, strongly_typed=True)
    assert trtb.precision_plan(TRT10, "fp32") == trtb.PrecisionPlan("fp32")
    assert trtb.precision_plan(TRT11, "fp32") == trtb.PrecisionPlan("fp32", strongly_typed=True)
    with pytest.raises(EngineError, match="precision must be one of"):
        trtb.precision_plan(TRT11, "int8")


def test_no_cuda_binding_names_the_extra(monkeypatch):
    import sys

    from engines.backends import cuda_driver

    for name in ("pycuda.driver", "cuda.bindings.driver", "cuda.cuda"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(EngineError, match=r"no CUDA binding .*pycuda.*cuda-python.*facetrack\[gpu\]"):
        cuda_driver.load_driver()


def test_cuda_python_without_a_driver_is_an_engine_error():
    pytest.importorskip("cuda.bindings.driver")
    from engines.backends import cuda_driver

    try:
        driver = cuda_driver.load_driver(("cuda-python",))
    except EngineError as exc:
        assert "no usable CUDA driver" in str(exc)  # libcuda absent, or no device: never a traceback
    else:
        assert driver.device_count() >= 0  # a machine with a driver


def test_tensorrt_api_errors_become_engine_errors():
    with pytest.raises(EngineError, match=r"TensorRT build of m.onnx failed \(AttributeError: no FP16\)"):
        with trtb._trt_errors("build of m.onnx"):
            raise AttributeError("no FP16")


# ---------------------------------------------------------------------------------------------- GPU
@pytest.fixture
def toy_onnx(tmp_path):
    pytest.importorskip("onnx")
    return toy_models()[0].write_onnx(tmp_path)


@pytest.mark.gpu
def test_engine_is_cached_and_reused(toy_onnx, tmp_path):
    cache_dir = tmp_path / "trt"
    with trtb.TensorRTEngine(toy_onnx, precision="fp32", cache_dir=cache_dir, max_batch=4) as first:
        assert first.build_info.built
        out1 = first.infer({"x": np.ones((2, 3, 8, 8), np.float32)})
    assert first.build_info.path.is_file()
    assert list(cache_dir.glob("timing.*.cache")), "the timing cache was saved"
    with trtb.TensorRTEngine(toy_onnx, precision="fp32", cache_dir=cache_dir, max_batch=4) as second:
        assert not second.build_info.built, "the second activation reads the cached engine"
        out2 = second.infer({"x": np.ones((2, 3, 8, 8), np.float32)})
    np.testing.assert_array_equal(out1["logits"], out2["logits"])
    # A different precision is a different cache entry.
    with trtb.TensorRTEngine(toy_onnx, precision="fp16", cache_dir=cache_dir, max_batch=4) as half:
        assert half.build_info.built and half.build_info.path != first.build_info.path


@pytest.mark.gpu
def test_corrupt_cached_engine_is_rebuilt(toy_onnx, tmp_path):
    cache_dir = tmp_path / "trt"
    with trtb.TensorRTEngine(toy_onnx, precision="fp32", cache_dir=cache_dir) as eng:
        path = eng.build_info.path
    path.write_bytes(b"not an engine")
    with trtb.TensorRTEngine(toy_onnx, precision="fp32", cache_dir=cache_dir) as eng:
        assert eng.build_info.built
        assert eng.infer({"x": np.zeros((1, 3, 8, 8), np.float32)})["logits"].shape == (1, 5)


@pytest.mark.gpu
def test_batch_outside_profile_is_a_clear_error(toy_onnx, tmp_path):
    with trtb.TensorRTEngine(toy_onnx, precision="fp32", cache_dir=tmp_path, max_batch=2) as eng:
        with pytest.raises(EngineError, match="outside the engine's profile"):
            eng.infer({"x": np.zeros((3, 3, 8, 8), np.float32)})


@pytest.mark.gpu
def test_yunet_on_tensorrt_agrees_with_onnxruntime(tmp_path):
    from engines import catalog
    from engines.factory import create_engine

    entry = catalog.get_entry("yunet")
    path = entry.require()
    x = (np.random.default_rng(0).random((1, 3, 256, 320)) * 255).astype(np.float32)
    with create_engine(path, "onnxruntime") as ort_engine:
        want = ort_engine.infer({"input": x})
    with create_engine(
        path, "tensorrt", precision="fp32", profile=entry.trt_profile(1), cache_dir=tmp_path
    ) as eng:
        got = eng.infer({"input": x})
    for name in want:
        np.testing.assert_allclose(got[name], want[name], atol=2e-2, rtol=2e-2, err_msg=name)
