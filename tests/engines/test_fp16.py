"""The fp16 ONNX copy TensorRT 11 builds fp16 engines from, checked with ONNX Runtime on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

from engines import catalog
from engines.factory import create_engine
from engines.fp16 import fp16_onnx
from engines.options import OrtOptions
from tracker.core.errors import EngineError

pytest.importorskip("onnx")


def _run(path, name, x):
    with create_engine(path, "onnxruntime", OrtOptions(device="cpu", intra_op_threads=1)) as eng:
        return eng.infer({name: x}), eng.inputs, eng.outputs


@pytest.mark.parametrize("model, name, shape, scale, atol", [
    ("coarsenet", "image", (3, 3, 128, 128), 1.0, 5e-3),
    ("yunet", "input", (1, 3, 256, 320), 255.0, 2e-2),
])  # fmt: skip
def test_fp16_copy_keeps_float32_io_and_agrees_with_fp32(tmp_path, model, name, shape, scale, atol):
    src = catalog.get_entry(model).require()
    half = fp16_onnx(src, tmp_path)
    x = (np.random.default_rng(0).random(shape) * scale).astype(np.float32)
    want, _, _ = _run(src, name, x)
    got, inputs, outputs = _run(half, name, x)
    assert all(s.dtype == np.float32 for s in (*inputs, *outputs)), "callers feed and read float32 on every backend"
    assert half.stat().st_size < 0.7 * src.stat().st_size, "the weights are half precision"
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=atol, rtol=2e-2, err_msg=k)
    assert fp16_onnx(src, tmp_path) == half, "made once per source content"


def test_broken_source_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx at all")
    with pytest.raises(EngineError, match="bad.onnx"):
        fp16_onnx(bad, tmp_path / "out")
