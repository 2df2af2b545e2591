"""Failure paths: missing backend libraries, damaged model files, wrong model kinds, bad options.

Library absence is injected with ``monkeypatch.setitem(sys.modules, name, None)``, which makes ``import
name`` fail exactly as on a machine without it (mocks only inject failures; everything else is real).
"""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

from engines.backends import ort_backend
from engines.factory import create_engine, resolve_backend
from engines.onnx_file import check_onnx_file
from tests.engines.toy_models import toy_models
from tracker.core.errors import EngineError


@pytest.fixture(scope="module")
def good_onnx(tmp_path_factory):
    pytest.importorskip("onnx")
    return toy_models()[0].write_onnx(tmp_path_factory.mktemp("good"))


@pytest.mark.parametrize(
    "module, backend, extra",
    [
        ("tensorrt", "tensorrt", "facetrack[gpu]"),
        ("torch", "torch", "facetrack[train]"),
        ("onnxruntime", "onnxruntime", "facetrack[cpu]"),
        ("tritonclient.grpc", "triton", "facetrack[triton]"),
    ],
)
def test_missing_backend_library_names_the_extra(monkeypatch, good_onnx, module, backend, extra):
    monkeypatch.setitem(sys.modules, module, None)
    if backend == "torch":
        from engines.backends.torch_backend import TorchEngine
        from engines.base import TensorSpec

        engine = TorchEngine(object(), [TensorSpec("x", (1,))], ["y"])
    else:
        engine = create_engine(good_onnx, backend)
    with pytest.raises(EngineError, match=rf"the {backend} backend needs .*{re.escape(extra)}"):
        engine.activate()
    assert not engine.is_active


def test_auto_falls_back_to_onnxruntime_without_tensorrt(monkeypatch, good_onnx):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert resolve_backend("auto") == "onnxruntime"
    # Options meant for TensorRT are dropped when auto lands on ONNX Runtime.
    engine = create_engine(good_onnx, "auto", precision="fp16", intra_op_threads=1)
    assert engine.backend == "onnxruntime"
    with engine:
        out = engine.infer({"x": np.zeros((1, 3, 8, 8), np.float32)})
    assert out["logits"].shape == (1, 5)


def _damage(good: bytes, how: str) -> bytes:
    if how == "truncated":
        return good[: len(good) // 2]
    if how == "truncated-end":
        return good[:-7]
    if how == "garbage":
        return np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    if how == "text":
        return b"<html>404 Not Found</html>\n"
    return b""


@pytest.mark.parametrize("how", ["truncated", "truncated-end", "garbage", "text", "empty"])
@pytest.mark.parametrize("with_onnx_package", [True, False], ids=["onnx-checker", "runtime-only"])
def test_damaged_onnx_names_the_file(monkeypatch, good_onnx, tmp_path, how, with_onnx_package):
    bad = tmp_path / f"model_{how}.onnx"
    bad.write_bytes(_damage(good_onnx.read_bytes(), how))
    if not with_onnx_package:
        # Without the onnx package (it is not a runtime dependency) the runtime's own error is wrapped.
        monkeypatch.setitem(sys.modules, "onnx", None)
    engine = create_engine(bad, "onnxruntime")
    with pytest.raises(EngineError) as info:
        engine.activate()
    assert str(bad) in str(info.value)
    assert not engine.is_active


def test_missing_model_file(tmp_path):
    with pytest.raises(EngineError, match="no such model file"):
        check_onnx_file(tmp_path / "nope.onnx")
    with pytest.raises(EngineError, match="nope.onnx: no such model file"):
        create_engine(tmp_path / "nope.onnx", "onnxruntime").activate()


def test_unknown_backend_and_bad_options(good_onnx):
    with pytest.raises(EngineError, match="unknown backend 'tflite'"):
        create_engine(good_onnx, "tflite")
    with pytest.raises(EngineError, match="bad options for the onnxruntime backend"):
        create_engine(good_onnx, "onnxruntime", precision="fp16")
    with pytest.raises(EngineError, match="device must be one of"):
        create_engine(good_onnx, "onnxruntime", device="tpu")
    with pytest.raises(EngineError, match="takes a model file path"):
        create_engine(object(), "onnxruntime")


def test_torch_backend_refuses_onnx_files(good_onnx):
    pytest.importorskip("torch")
    from engines.base import TensorSpec

    engine = create_engine(
        good_onnx, "torch", inputs=[TensorSpec("x", ("batch", 3, 8, 8))], outputs=["logits"]
    )
    with pytest.raises(EngineError, match="runs nn.Modules and TorchScript, not ONNX"):
        engine.activate()


def test_torch_module_output_mismatch():
    torch = pytest.importorskip("torch")
    from engines.base import TensorSpec

    engine = create_engine(torch.nn.Identity(), inputs=[TensorSpec("x", (None, 2))], outputs=["y", "z"])
    assert engine.backend == "torch"
    with engine, pytest.raises(EngineError, match="returned 1 outputs, expected 2"):
        engine.infer({"x": np.zeros((1, 2), np.float32)})


@pytest.mark.skipif(ort_backend.cuda_provider_available(), reason="this ONNX Runtime has CUDA")
def test_onnxruntime_cuda_without_provider(good_onnx):
    with pytest.raises(EngineError, match="onnxruntime-gpu"):
        create_engine(good_onnx, "onnxruntime", device="cuda").activate()
