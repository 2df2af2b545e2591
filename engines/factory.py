"""``create_engine``: one call that picks and configures a backend.

``backend="auto"`` picks TensorRT when TensorRT, pycuda and a CUDA GPU are present, else ONNX Runtime.
Backends are imported only when chosen (or when availability is asked), so a machine without torch or
TensorRT never imports them.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path

from engines.base import Engine
from tracker.core.errors import EngineError

log = logging.getLogger(__name__)

#: Backend name -> module under engines.backends.
BACKEND_MODULES: dict[str, str] = {
    "onnxruntime": "engines.backends.ort_backend",
    "tensorrt": "engines.backends.tensorrt_backend",
    "torch": "engines.backends.torch_backend",
}
BACKENDS: tuple[str, ...] = ("auto", *BACKEND_MODULES)
#: Backends that run ONNX files.
ONNX_BACKENDS: tuple[str, ...] = ("onnxruntime", "tensorrt")


def _backend_module(name: str):
    return importlib.import_module(BACKEND_MODULES[name])


def backend_status() -> dict[str, str | None]:
    """Backend name -> None when usable here, else the reason (one line, naming what to install)."""
    status: dict[str, str | None] = {}
    for name in BACKEND_MODULES:
        mod = _backend_module(name)
        if hasattr(mod, "unavailable_reason"):
            status[name] = mod.unavailable_reason()
        else:
            status[name] = None if mod.is_available() else f"not installed: {mod.EXTRA}"
    return status


def available_backends() -> list[str]:
    """Backends usable on this machine, in :data:`BACKEND_MODULES` order."""
    return [name for name, why in backend_status().items() if why is None]


def resolve_backend(backend: str = "auto") -> str:
    """The concrete backend ``backend`` stands for on this machine.

    Raises:
        EngineError: for an unknown name.
    """
    if backend not in BACKENDS:
        raise EngineError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    trt = _backend_module("tensorrt")
    why = trt.unavailable_reason()
    if why is None:
        return "tensorrt"
    log.debug("auto backend: not TensorRT (%s)", why)
    return "onnxruntime"


def create_engine(model, backend: str = "auto", **options) -> Engine:
    """Creates an (inactive) engine for ``model``.

    Args:
        model: An ONNX file (``onnxruntime``/``tensorrt``/``auto``), or for ``torch`` an ``nn.Module`` or
            TorchScript file (then ``inputs=[TensorSpec...]`` and ``outputs=[names]`` are required).
        backend: ``"auto"``, ``"onnxruntime"``, ``"tensorrt"`` or ``"torch"``.
        **options: Passed to the backend's engine class (e.g. ``intra_op_threads`` for ONNX Runtime,
            ``precision``/``profile`` for TensorRT, ``device`` for torch). Options meant for another
            backend are dropped with a debug message when ``backend="auto"``.

    Returns:
        The engine; call ``activate()`` or use it as a context manager.

    Raises:
        EngineError: for an unknown backend, a missing backend library (naming the extra to install), or
            a model the backend cannot take.
    """
    is_path = isinstance(model, str | os.PathLike)
    if not is_path:
        if backend not in ("auto", "torch"):
            raise EngineError(f"backend {backend!r} takes a model file path, got {type(model).__name__}")
        backend = "torch"
    chosen = resolve_backend(backend)
    if is_path and chosen in ONNX_BACKENDS and Path(model).suffix.lower() != ".onnx":
        log.warning("%s does not end in .onnx; trying it as ONNX anyway", model)
    mod = _backend_module(chosen)
    cls = {"onnxruntime": "OnnxRuntimeEngine", "tensorrt": "TensorRTEngine", "torch": "TorchEngine"}[chosen]
    engine_cls = getattr(mod, cls)
    if backend == "auto":
        options = _filter_options(engine_cls, options)
    try:
        return engine_cls(model, **options)
    except TypeError as exc:
        raise EngineError(f"bad options for the {chosen} backend: {exc}") from exc


def _filter_options(engine_cls, options: dict) -> dict:
    import inspect

    params = inspect.signature(engine_cls.__init__).parameters
    kept = {k: v for k, v in options.items() if k in params}
    dropped = sorted(set(options) - set(kept))
    if dropped:
        log.debug("auto backend %s ignores options %s", engine_cls.backend, dropped)
    return kept


__all__ = [
    "BACKENDS",
    "ONNX_BACKENDS",
    "available_backends",
    "backend_status",
    "create_engine",
    "resolve_backend",
]
