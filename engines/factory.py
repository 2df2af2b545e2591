"""``create_engine``: one call that picks and configures a backend.

``backend="auto"`` picks TensorRT when TensorRT, a CUDA binding (cuda-python or pycuda) and a CUDA GPU are
present, else ONNX Runtime; if TensorRT then cannot build or activate the engine, ONNX Runtime runs it
(:class:`AutoEngine`, one warning). Each backend takes its own typed options (:mod:`engines.options`).
Backends are imported only when chosen (or when availability is asked), so a machine without torch or
TensorRT never imports them.
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path

from engines.base import Engine
from engines.options import OPTION_TYPES, BackendOptions, EngineOptions
from tracker.core.errors import EngineError

log = logging.getLogger(__name__)

#: Backend name -> module under engines.backends.
BACKEND_MODULES: dict[str, str] = {
    "onnxruntime": "engines.backends.ort_backend",
    "tensorrt": "engines.backends.tensorrt_backend",
    "torch": "engines.backends.torch_backend",
    "triton": "engines.backends.triton_backend",
}
#: Backend name -> engine class in its module.
ENGINE_CLASSES: dict[str, str] = {
    "onnxruntime": "OnnxRuntimeEngine", "tensorrt": "TensorRTEngine", "torch": "TorchEngine",
    "triton": "TritonEngine",
}  # fmt: skip
BACKENDS: tuple[str, ...] = ("auto", *BACKEND_MODULES)
#: Backends that run ONNX files (Triton: the server runs the file ``engines export-triton`` put there).
ONNX_BACKENDS: tuple[str, ...] = ("onnxruntime", "tensorrt", "triton")


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


def _engine_class(name: str):
    return getattr(_backend_module(name), ENGINE_CLASSES[name])


def _typed_options(chosen: str, requested: str, options) -> BackendOptions | None:
    """The typed options for the ``chosen`` backend out of what the caller gave, or None (use kwargs)."""
    if options is None:
        return None
    if isinstance(options, EngineOptions):
        return options.for_backend(chosen)
    if not isinstance(options, tuple(OPTION_TYPES.values())):
        raise EngineError(
            f"options must be EngineOptions or one backend's options ({', '.join(t.__name__ for t in OPTION_TYPES.values())}), "
            f"got {type(options).__name__}"
        )
    if options.backend == chosen:
        return options
    if requested == "auto":
        # One backend's options and auto chose another: that backend's defaults, never foreign options.
        log.debug("auto backend chose %s; %s are for %s and are not used", chosen, type(options).__name__,
                  options.backend)  # fmt: skip
        return OPTION_TYPES[chosen]()
    raise EngineError(f"backend {chosen!r} takes {OPTION_TYPES[chosen].__name__}, got {type(options).__name__}")


def create_engine(model, backend: str = "auto", options: EngineOptions | BackendOptions | None = None,
                  **kwargs) -> Engine:  # fmt: skip
    """Creates an (inactive) engine for ``model``.

    Args:
        model: An ONNX file (``onnxruntime``/``tensorrt``/``triton``/``auto``), or for ``torch`` an
            ``nn.Module`` or TorchScript file (then ``inputs=[TensorSpec...]`` and ``outputs=[names]`` are
            required keyword arguments).
        backend: ``"auto"``, ``"onnxruntime"``, ``"tensorrt"``, ``"triton"`` or ``"torch"``.
        options: Typed options (:mod:`engines.options`): an :class:`EngineOptions` (the chosen backend's
            part is used), or one backend's options (for another backend: an error, except under ``auto``,
            which then uses the chosen backend's defaults).
        **kwargs: Further keyword arguments of the backend's engine class (``name=``, torch's
            ``inputs``/``outputs``; or untyped options). Under ``auto`` those the chosen class does not
            take are dropped with a debug message.

    Returns:
        The engine; call ``activate()`` or use it as a context manager. Under ``auto`` on a machine where
        TensorRT is present, an :class:`AutoEngine` that falls back to ONNX Runtime (one warning) when
        TensorRT cannot build or activate the engine.

    Raises:
        EngineError: for an unknown backend, options of the wrong type, a missing backend library (naming
            the extra to install), or a model the backend cannot take.
    """
    is_path = isinstance(model, str | os.PathLike)
    if not is_path:
        if backend not in ("auto", "torch"):
            raise EngineError(f"backend {backend!r} takes a model file path, got {type(model).__name__}")
        backend = "torch"
    chosen = resolve_backend(backend)
    if is_path and chosen in ONNX_BACKENDS and Path(model).suffix.lower() != ".onnx":
        log.warning("%s does not end in .onnx; trying it as ONNX anyway", model)
    engine = _make(model, chosen, backend, options, kwargs)
    if backend == "auto" and chosen == "tensorrt":
        fallback = _make(model, "onnxruntime", backend, options, kwargs)
        return AutoEngine(engine, fallback)
    return engine


def _make(model, chosen: str, requested: str, options, kwargs: dict) -> Engine:
    engine_cls = _engine_class(chosen)
    typed = _typed_options(chosen, requested, options)
    extra = dict(kwargs)
    if requested == "auto":
        extra = _filter_options(engine_cls, extra)
    merged = {**(typed.engine_kwargs() if typed is not None else {}), **extra}
    try:
        return engine_cls(model, **merged)
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


class AutoEngine(Engine):
    """``backend="auto"`` where TensorRT is present: TensorRT, or ONNX Runtime when TensorRT fails.

    TensorRT can be importable and see a GPU and still fail to build or activate an engine (an operator
    it does not support, too little GPU memory, a driver too old for this TensorRT). Then the tracker
    should still run, on ONNX Runtime, and say why once.

    Args:
        primary: The TensorRT engine (inactive).
        fallback: The ONNX Runtime engine for the same file (inactive).
    """

    def __init__(self, primary: Engine, fallback: Engine) -> None:
        super().__init__(primary.name)
        self.primary = primary
        self.fallback = fallback
        self.fallback_reason: str | None = None
        self._chosen: Engine = primary

    @property
    def backend(self) -> str:  # type: ignore[override]
        """The backend that runs (TensorRT until a fallback happened)."""
        return self._chosen.backend

    @property
    def delegate(self) -> Engine:
        """The engine that runs the calls."""
        return self._chosen

    def __getattr__(self, name: str):
        # Backend-specific attributes (providers, build_info, precision, intra_op_threads) of the delegate.
        if name in ("primary", "fallback", "_chosen"):
            raise AttributeError(name)
        return getattr(self._chosen, name)

    def _activate(self) -> None:
        try:
            self.primary.activate()
            self._chosen = self.primary
            return
        except EngineError as exc:
            self.fallback_reason = str(exc)
        log.warning("auto backend: TensorRT could not build or activate %s (%s); using ONNX Runtime instead",
                    self.name, self.fallback_reason)  # fmt: skip
        self._chosen = self.fallback
        self.fallback.activate()

    def _deactivate(self) -> None:
        self.primary.deactivate()
        self.fallback.deactivate()

    def _infer(self, feed):
        return self._chosen._infer(feed)

    def _input_specs(self):
        return self._chosen.inputs

    def _output_specs(self):
        return self._chosen.outputs


__all__ = [
    "AutoEngine",
    "BACKENDS",
    "ONNX_BACKENDS",
    "available_backends",
    "backend_status",
    "create_engine",
    "resolve_backend",
]
