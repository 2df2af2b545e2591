"""Engine tests: GPU cases skip with their reason when the library they need is absent.

``pytest --device cuda`` turns the ``gpu`` tests on (tests/conftest.py); on a GPU machine without TensorRT
(or without onnxruntime-gpu, or with a CPU build of torch) those cases must skip and say why, not fail.
"""

from __future__ import annotations

import pytest


def gpu_backend_missing(backend: str, options: dict) -> str | None:
    """Why a GPU case of ``backend`` cannot run here, or None when it can."""
    if backend == "tensorrt":
        from engines.backends import tensorrt_backend

        why = tensorrt_backend.unavailable_reason()
        return None if why is None else f"TensorRT unavailable: {why}"
    if backend == "onnxruntime" and options.get("device") == "cuda":
        from engines.backends import ort_backend

        return None if ort_backend.cuda_provider_available() else "this ONNX Runtime has no CUDA provider"
    if backend == "torch" and str(options.get("device", "")).startswith("cuda"):
        torch = pytest.importorskip("torch")
        return None if torch.cuda.is_available() else "this torch build sees no CUDA device"
    return None


@pytest.fixture
def require_gpu_backend():
    """Call with (backend, options): skips the test with the reason when that GPU path is unavailable."""

    def check(backend: str, options: dict | None = None) -> None:
        why = gpu_backend_missing(backend, dict(options or {}))
        if why is not None:
            pytest.skip(why)

    return check
