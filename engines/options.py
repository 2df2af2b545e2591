"""Typed options, one dataclass per inference backend, so every backend gets only what it takes.

Each dataclass's fields are exactly keyword arguments of its engine class's constructor (a test checks
this for every backend), so ``engine_cls(model, **options.engine_kwargs())`` cannot pass an option to the
wrong backend. :class:`EngineOptions` holds one of each; :meth:`EngineOptions.for_backend` hands the
factory the one for the backend that was chosen, which is how ``auto`` stays correct on any machine::

    opts = EngineOptions(onnxruntime=OrtOptions(intra_op_threads=2),
                         tensorrt=TensorRTOptions(precision="fp16", max_batch=4, device_index=0))
    engine = create_engine(path, "auto", opts)  # TensorRT on a GPU machine, ONNX Runtime elsewhere

This module imports no backend library.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit

from engines.engine_cache import PRECISIONS, Profile
from tracker.core.errors import EngineError

ORT_DEVICES = ("auto", "cpu", "cuda")
ORT_GRAPH_OPTIMIZATIONS = ("disable", "basic", "extended", "all")
TRITON_SCHEMES = ("grpc",)
DEFAULT_TRITON_URL = "grpc://127.0.0.1:8001"


class _BackendOptions:
    """Shared behaviour: the backend name and the constructor keyword arguments."""

    #: Backend name as ``create_engine(backend=...)`` spells it.
    backend: ClassVar[str] = ""

    def engine_kwargs(self) -> dict:
        """The engine constructor's keyword arguments (a shallow copy of the fields)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True)
class OrtOptions(_BackendOptions):
    """ONNX Runtime.

    Attributes:
        device: ``"cpu"``, ``"cuda"`` (CUDA execution provider, error when this build lacks it or it does
            not activate) or ``"auto"`` (CUDA when it activates, else CPU with a warning).
        device_index: CUDA device for the CUDA provider.
        intra_op_threads: Threads inside one operator; None: every core up to 4.
        inter_op_threads: Threads across independent operators.
        allow_spinning: Let idle intra-op threads spin (faster calls, busier cores).
        graph_optimization: ``"disable"``, ``"basic"``, ``"extended"`` or ``"all"``.
    """

    backend: ClassVar[str] = "onnxruntime"

    device: str = "auto"
    device_index: int = 0
    intra_op_threads: int | None = None
    inter_op_threads: int = 1
    allow_spinning: bool = False
    graph_optimization: str = "all"

    def __post_init__(self) -> None:
        if self.device not in ORT_DEVICES:
            raise EngineError(f"onnxruntime device must be one of {ORT_DEVICES}, got {self.device!r}")
        if self.graph_optimization not in ORT_GRAPH_OPTIMIZATIONS:
            raise EngineError(
                f"graph_optimization must be one of {ORT_GRAPH_OPTIMIZATIONS}, got {self.graph_optimization!r}"
            )
        if self.intra_op_threads is not None and self.intra_op_threads < 1:
            raise EngineError(f"intra_op_threads must be >= 1, got {self.intra_op_threads}")
        if self.device_index < 0:
            raise EngineError(f"device_index must be >= 0, got {self.device_index}")


@dataclasses.dataclass(frozen=True)
class TensorRTOptions(_BackendOptions):
    """TensorRT.

    Attributes:
        precision: ``"fp16"`` or ``"fp32"``.
        max_batch: Largest batch of the default (batch-only) optimisation profile.
        device_index: CUDA device.
        workspace_mib: Builder scratch memory limit, MiB.
        profile: Input name -> (min, opt, max) shapes; None: batch-only profile up to ``max_batch``. Use
            :func:`engines.catalog.runtime_profile` so that ``facetrack engines build`` and the tracker
            key the engine cache the same way.
        cache_dir: Engine cache folder; None: ``<user cache>/tensorrt``.
        rebuild: Build even if a cached engine exists.
    """

    backend: ClassVar[str] = "tensorrt"

    precision: str = "fp16"
    max_batch: int = 8
    device_index: int = 0
    workspace_mib: int = 1024
    profile: Profile | None = None
    cache_dir: Path | None = None
    rebuild: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise EngineError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.max_batch < 1:
            raise EngineError(f"max_batch must be >= 1, got {self.max_batch}")
        if self.device_index < 0:
            raise EngineError(f"device_index must be >= 0, got {self.device_index}")
        if self.workspace_mib < 16:
            raise EngineError(f"workspace_mib must be >= 16 MiB, got {self.workspace_mib}")


@dataclasses.dataclass(frozen=True)
class TritonOptions(_BackendOptions):
    """A Triton Inference Server (gRPC).

    Attributes:
        url: ``grpc://HOST:PORT`` of the server (its gRPC port, 8001 by default).
        model_name: Model name in the server's repository; None: the ONNX file's stem, or the catalog name
            that ``facetrack engines export-triton`` gave it (``yunet``, ``coarsenet``).
        model_version: Version to run; ``""``: the server's policy (the latest).
        timeout_s: Per-request deadline and the wait for the server to be ready, seconds.
    """

    backend: ClassVar[str] = "triton"

    url: str = DEFAULT_TRITON_URL
    model_name: str | None = None
    model_version: str = ""
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        parse_triton_url(self.url)
        if self.timeout_s <= 0:
            raise EngineError(f"timeout_s must be > 0, got {self.timeout_s}")


@dataclasses.dataclass(frozen=True)
class TorchOptions(_BackendOptions):
    """torch (training and debugging).

    Attributes:
        device: torch device string, e.g. ``"cpu"`` or ``"cuda:0"``.
    """

    backend: ClassVar[str] = "torch"

    device: str = "cpu"


BackendOptions = OrtOptions | TensorRTOptions | TritonOptions | TorchOptions

#: Backend name -> its options type.
OPTION_TYPES: dict[str, type] = {cls.backend: cls for cls in (OrtOptions, TensorRTOptions, TritonOptions, TorchOptions)}


@dataclasses.dataclass(frozen=True)
class EngineOptions:
    """One set of options per backend; the factory uses the chosen backend's set and ignores the rest."""

    onnxruntime: OrtOptions = dataclasses.field(default_factory=OrtOptions)
    tensorrt: TensorRTOptions = dataclasses.field(default_factory=TensorRTOptions)
    triton: TritonOptions = dataclasses.field(default_factory=TritonOptions)
    torch: TorchOptions = dataclasses.field(default_factory=TorchOptions)

    def __post_init__(self) -> None:
        for name, cls in OPTION_TYPES.items():
            if not isinstance(getattr(self, name), cls):
                raise EngineError(
                    f"EngineOptions.{name} must be {cls.__name__}, got {type(getattr(self, name)).__name__}"
                )

    def for_backend(self, backend: str) -> BackendOptions:
        """The options of a concrete backend.

        Raises:
            EngineError: for a name that is not a concrete backend (``auto`` must be resolved first).
        """
        if backend not in OPTION_TYPES:
            raise EngineError(f"no options for backend {backend!r}; one of {', '.join(OPTION_TYPES)}")
        return getattr(self, backend)

    def replace(self, **changes) -> EngineOptions:
        """A copy with some backends' options replaced (``replace(tensorrt=TensorRTOptions(...))``)."""
        return dataclasses.replace(self, **changes)


def parse_triton_url(url: str) -> tuple[str, int]:
    """``grpc://HOST:PORT`` -> (host, port).

    Raises:
        EngineError: for another scheme, a missing host or port, or a path.
    """
    parts = urlsplit(url)
    if parts.scheme not in TRITON_SCHEMES:
        raise EngineError(f"Triton URL must look like grpc://HOST:8001, got {url!r} (scheme {parts.scheme!r})")
    try:
        port = parts.port
    except ValueError as exc:
        raise EngineError(f"Triton URL {url!r}: bad port ({exc})") from exc
    if not parts.hostname or port is None:
        raise EngineError(f"Triton URL must look like grpc://HOST:8001 (host and port), got {url!r}")
    if parts.path not in ("", "/") or parts.query:
        raise EngineError(f"Triton URL {url!r} must not have a path or query")
    return parts.hostname, port


__all__ = [
    "DEFAULT_TRITON_URL",
    "OPTION_TYPES",
    "BackendOptions",
    "EngineOptions",
    "OrtOptions",
    "TensorRTOptions",
    "TorchOptions",
    "TritonOptions",
    "parse_triton_url",
]
