"""ONNX Runtime backend: the CPU path (and CUDA when onnxruntime-gpu provides it).

This module is the only importer of ``onnxruntime``. The file is named ``ort_backend`` so that it never
shadows the ``onnxruntime`` package itself.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engines.base import Engine, TensorSpec
from engines.onnx_file import check_onnx_file
from tracker.core.errors import EngineError

log = logging.getLogger(__name__)

EXTRA = (
    "pip install 'facetrack[cpu]'  (ONNX Runtime; scripts/bootstrap.sh installs it. On an NVIDIA GPU machine "
    "'facetrack[gpu]' brings onnxruntime-gpu instead: never both in one environment)"
)

#: ONNX Runtime's type strings -> numpy dtypes.
_DTYPES: dict[str, np.dtype] = {
    "tensor(float)": np.dtype(np.float32),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(double)": np.dtype(np.float64),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(bool)": np.dtype(np.bool_),
}

_OPT_LEVELS = ("disable", "basic", "extended", "all")
DEVICES = ("auto", "cpu", "cuda")


def _import_ort():
    try:
        return importlib.import_module("onnxruntime")
    except ImportError as exc:
        raise EngineError(f"the onnxruntime backend needs ONNX Runtime: {EXTRA} ({exc})") from exc


def is_available() -> bool:
    """True when ONNX Runtime can be imported."""
    try:
        _import_ort()
    except EngineError:
        return False
    return True


def cuda_provider_available() -> bool:
    """True when this ONNX Runtime build offers the CUDA execution provider."""
    try:
        return "CUDAExecutionProvider" in _import_ort().get_available_providers()
    except EngineError:
        return False


def default_intra_op_threads() -> int:
    """Threads for one session: every core up to 4.

    On the 2-core development machine that is 2 (YuNet at 640x480: ~4.5 ms with 2 threads vs ~8.8 ms
    with 1). Above 4 threads these small models gain little while the pipeline's other stages lose cores.
    """
    return max(1, min(4, os.cpu_count() or 1))


class OnnxRuntimeEngine(Engine):
    """Runs an ONNX file with ONNX Runtime.

    Args:
        model_path: The ``.onnx`` file.
        device: ``"cpu"``, ``"cuda"`` (CUDA execution provider; error when this build lacks it or the
            session does not activate it) or ``"auto"`` (CUDA when it activates, else CPU with a warning).
        device_index: CUDA device the CUDA provider runs on.
        intra_op_threads: Threads inside one operator; None for :func:`default_intra_op_threads`.
        inter_op_threads: Threads across independent operators (1: run the graph sequentially).
        allow_spinning: Let idle intra-op threads spin. Off by default: spinning saves ~0.1 ms per call but
            burns the cores that the pipeline's capture and regression threads need.
        graph_optimization: ``"disable"``, ``"basic"``, ``"extended"`` or ``"all"`` (default).
        providers: Explicit ONNX Runtime provider list; overrides ``device``.
        name: Name for messages; defaults to the file's stem.
        timing_window: See :class:`~engines.base.Engine`.
    """

    backend = "onnxruntime"

    def __init__(
        self,
        model_path: Path | str,
        *,
        device: str = "auto",
        device_index: int = 0,
        intra_op_threads: int | None = None,
        inter_op_threads: int = 1,
        allow_spinning: bool = False,
        graph_optimization: str = "all",
        providers: Sequence[str] | None = None,
        name: str | None = None,
        timing_window: int = 1000,
    ) -> None:
        self.model_path = Path(model_path)
        super().__init__(name or self.model_path.stem, timing_window)
        if device not in DEVICES:
            raise EngineError(f"onnxruntime device must be one of {DEVICES}, got {device!r}")
        if graph_optimization not in _OPT_LEVELS:
            raise EngineError(f"graph_optimization must be one of {_OPT_LEVELS}, got {graph_optimization!r}")
        if intra_op_threads is not None and intra_op_threads < 1:
            raise EngineError(f"intra_op_threads must be >= 1, got {intra_op_threads}")
        if device_index < 0:
            raise EngineError(f"device_index must be >= 0, got {device_index}")
        self.device = device
        self.device_index = int(device_index)
        self.intra_op_threads = intra_op_threads or default_intra_op_threads()
        self.inter_op_threads = max(1, int(inter_op_threads))
        self.allow_spinning = allow_spinning
        self.graph_optimization = graph_optimization
        self._providers_requested = list(providers) if providers else None
        self._session = None
        self._inputs: tuple[TensorSpec, ...] = ()
        self._outputs: tuple[TensorSpec, ...] = ()

    # ------------------------------------------------------------------ helpers
    def _providers(self, ort) -> list:
        if self._providers_requested:
            return self._providers_requested
        available = ort.get_available_providers()
        has_cuda = "CUDAExecutionProvider" in available
        if self.device == "cuda" and not has_cuda:
            raise EngineError(
                f"{self}: device 'cuda' asked for, but this ONNX Runtime build has no CUDAExecutionProvider "
                f"(available: {', '.join(available)}); install onnxruntime-gpu or use device='cpu'"
            )
        if self.device in ("cuda", "auto") and has_cuda:
            return [("CUDAExecutionProvider", {"device_id": self.device_index}), "CPUExecutionProvider"]
        return ["CPUExecutionProvider"]

    def _check_active_providers(self, requested: list) -> None:
        """The provider list is a wish: a CUDA provider whose libraries (CUDA, cuDNN) do not load is
        silently dropped by ONNX Runtime, so ask the session what it really runs on."""
        wanted = [p[0] if isinstance(p, tuple) else p for p in requested]
        active = list(self._session.get_providers())
        if "CUDAExecutionProvider" in wanted and "CUDAExecutionProvider" not in active:
            msg = (f"{self}: ONNX Runtime offers the CUDA provider but the session did not activate it "
                   f"(running on {', '.join(active)}); check the CUDA/cuDNN libraries onnxruntime-gpu needs")  # fmt: skip
            if self.device == "cuda":
                raise EngineError(msg)
            log.warning("%s; using the CPU", msg)

    @staticmethod
    def _spec(arg) -> TensorSpec:
        if arg.type not in _DTYPES:
            raise EngineError(f"tensor {arg.name!r} has unsupported type {arg.type}")
        # ONNX Runtime reports a dynamic dim as its symbolic name (str) or None; fixed dims as int.
        shape = tuple(d if isinstance(d, int | str) and d != "" else None for d in arg.shape)
        return TensorSpec(arg.name, shape, _DTYPES[arg.type])

    @property
    def providers(self) -> list[str]:
        """Execution providers the active session uses."""
        self._require_active("providers")
        return list(self._session.get_providers())

    # ------------------------------------------------------------------ Engine hooks
    def _activate(self) -> None:
        ort = _import_ort()
        check_onnx_file(self.model_path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.intra_op_threads
        so.inter_op_num_threads = self.inter_op_threads
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.graph_optimization]
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.allow_spinning else "0")
        so.log_severity_level = 3  # errors only: ORT's warnings go to stderr, not our logger
        providers = self._providers(ort)
        try:
            self._session = ort.InferenceSession(str(self.model_path), sess_options=so, providers=providers)
        except Exception as exc:  # noqa: BLE001 - ORT raises pybind types (InvalidProtobuf, Fail, ...)
            raise EngineError(
                f"{self.model_path}: ONNX Runtime cannot load the model ({type(exc).__name__}: {exc}); the file "
                f"may be truncated, corrupt, or use operators this ONNX Runtime does not support"
            ) from exc
        self._check_active_providers(providers)
        self._inputs = tuple(self._spec(a) for a in self._session.get_inputs())
        self._outputs = tuple(self._spec(a) for a in self._session.get_outputs())
        log.debug("%s: ONNX Runtime %s on %s, %d intra-op threads", self.model_path.name, ort.__version__,
                 self._session.get_providers()[0], self.intra_op_threads)  # fmt: skip

    def _deactivate(self) -> None:
        self._session = None
        self._inputs = self._outputs = ()

    def _input_specs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    def _output_specs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [s.name for s in self._outputs]
        try:
            values = self._session.run(names, feed)
        except Exception as exc:  # noqa: BLE001 - ORT's InvalidArgument/Fail/RuntimeException
            shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in feed.items())
            raise EngineError(f"{self}: ONNX Runtime failed on inputs {shapes}: {exc}") from exc
        return dict(zip(names, values, strict=True))


__all__ = ["OnnxRuntimeEngine", "cuda_provider_available", "default_intra_op_threads", "is_available"]
