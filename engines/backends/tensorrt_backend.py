"""TensorRT backend (TensorRT 10 and 11 Python API; CUDA memory through pycuda or cuda-python).

This module is the only importer of ``tensorrt``; the CUDA binding lives behind
:mod:`engines.backends.cuda_driver` (pycuda when installed, else NVIDIA's ``cuda-python`` wheels). Both are
imported when an engine is activated (or availability is asked), never at import time, so ``import
engines`` works without them.

What happens on :meth:`TensorRTEngine.activate`:

1. The ONNX file is checked (:func:`engines.onnx_file.check_onnx_file`) and hashed.
2. The CUDA device's primary context is retained (the context TensorRT's runtime API also uses).
3. The engine is looked up in the engine cache (:mod:`engines.engine_cache`), keyed by ONNX sha256 +
   TensorRT version + GPU name + compute capability + precision + optimisation profile. If absent it is
   built from the ONNX file (precision chosen in one place, :func:`precision_plan`; one optimisation
   profile covering the dynamic dimensions; the shared timing cache) under a file lock, so concurrent
   processes build it once. ``facetrack engines build`` and the tracker use the same profile
   (:func:`engines.catalog.runtime_profile`), so an engine built ahead of time is found, not rebuilt.
4. The engine is deserialised; page-locked host buffers and device buffers are allocated once for the
   profile's largest shapes, and one CUDA stream is created.

:meth:`infer` sets the input shapes, copies inputs host->device asynchronously, enqueues the engine
(``execute_async_v3``), copies outputs device->host asynchronously and synchronises the stream once.

Precision: on TensorRT 10, fp16 is the builder flag ``BuilderFlag.FP16`` (weak typing: TensorRT may
pick fp16 kernels). TensorRT 11 removed weak typing: every network is strongly typed, so an fp16 engine is
built from an fp16 copy of the ONNX file (:mod:`engines.fp16`, float32 inputs and outputs kept).

Every exception from the TensorRT API is turned into an :class:`~tracker.core.errors.EngineError`.

No machine in the project's CI has a GPU; the tests for this module that need one are marked ``gpu`` and
run with ``pytest --device cuda`` (they skip with the reason when TensorRT is absent).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from engines.backends import cuda_driver
from engines.base import Engine, TensorSpec
from engines.engine_cache import PRECISIONS, EngineCache, EngineCacheKey, Profile, profile_signature
from engines.onnx_file import check_onnx_file
from tracker.core.assets import file_sha256
from tracker.core.errors import EngineError

log = logging.getLogger(__name__)

EXTRA = ("pip install 'facetrack[gpu]'  (TensorRT 10 or 11 and cuda-python; needs an NVIDIA GPU and driver; "
         "see README 'On an NVIDIA GPU')")  # fmt: skip
#: TensorRT major versions whose Python API this backend is written against: [min, max].
MIN_TENSORRT_MAJOR = 10
MAX_TENSORRT_MAJOR = 11


def check_tensorrt_version(version: str) -> int:
    """The major version, or EngineError when it is outside [MIN_TENSORRT_MAJOR, MAX_TENSORRT_MAJOR]."""
    try:
        major = int(str(version).split(".")[0])
    except ValueError:
        raise EngineError(f"cannot read the TensorRT version {version!r}") from None
    if major < MIN_TENSORRT_MAJOR:
        raise EngineError(f"TensorRT {version} is too old: this backend uses the TensorRT 10/11 API; {EXTRA}")
    if major > MAX_TENSORRT_MAJOR:
        raise EngineError(
            f"TensorRT {version} is newer than this backend supports ({MIN_TENSORRT_MAJOR}.x-{MAX_TENSORRT_MAJOR}.x); "
            f"install 'tensorrt<{MAX_TENSORRT_MAJOR + 1}' (the 'gpu' extra pins it)"
        )
    return major


def _import_trt():
    """The tensorrt module, or EngineError naming the extra to install."""
    try:
        trt = importlib.import_module("tensorrt")
    except ImportError as exc:
        raise EngineError(f"the tensorrt backend needs TensorRT: {EXTRA} ({exc})") from exc
    check_tensorrt_version(getattr(trt, "__version__", "0"))
    return trt


def _load_cuda() -> cuda_driver.CudaDriver:
    try:
        return cuda_driver.load_driver()
    except EngineError as exc:
        raise EngineError(f"the tensorrt backend needs a CUDA binding: {exc}") from exc


def _check_device(cuda: cuda_driver.CudaDriver, device_index: int) -> None:
    count = cuda.device_count()
    if count == 0:
        raise EngineError("the CUDA driver reports no GPU; the tensorrt backend needs an NVIDIA GPU")
    if not 0 <= device_index < count:
        raise EngineError(f"CUDA device {device_index} does not exist ({count} device(s) present)")


@contextlib.contextmanager
def _trt_errors(what: str) -> Iterator[None]:
    """Turns anything the TensorRT bindings raise (RuntimeError, TypeError, AttributeError on an API that a
    version lacks) into one EngineError naming the step."""
    try:
        yield
    except EngineError:
        raise
    except Exception as exc:  # noqa: BLE001 - pybind11 raises many types
        raise EngineError(f"TensorRT {what} failed ({type(exc).__name__}: {exc})") from exc


@dataclasses.dataclass(frozen=True)
class GpuInfo:
    """The CUDA device an engine is built for."""

    index: int
    name: str
    compute_capability: str
    total_memory_bytes: int


def gpu_info(device_index: int = 0) -> GpuInfo:
    """Name, compute capability and memory of a CUDA device (needs a CUDA binding and a driver)."""
    cuda = _load_cuda()
    _check_device(cuda, device_index)
    info = cuda.device_info(device_index)
    major, minor = info.compute_capability
    return GpuInfo(device_index, info.name, f"{major}.{minor}", info.total_memory_bytes)


def unavailable_reason(device_index: int = 0) -> str | None:
    """None when TensorRT, a CUDA binding and a CUDA GPU are all present; else why not (one line)."""
    try:
        _import_trt()
        _check_device(_load_cuda(), device_index)
    except EngineError as exc:
        return str(exc)
    return None


def is_available(device_index: int = 0) -> bool:
    """True when this machine can run the tensorrt backend."""
    return unavailable_reason(device_index) is None


def tensorrt_version() -> str:
    return str(_import_trt().__version__)


@dataclasses.dataclass(frozen=True)
class PrecisionPlan:
    """How a precision is asked of this TensorRT (see :func:`precision_plan`).

    Attributes:
        precision: ``"fp16"`` or ``"fp32"``.
        builder_flag: Set ``BuilderFlag.FP16`` (TensorRT 10, weakly typed network).
        fp16_onnx: Build from an fp16 copy of the ONNX file (TensorRT 11).
        strongly_typed: Create the network with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``.
    """

    precision: str
    builder_flag: bool = False
    fp16_onnx: bool = False
    strongly_typed: bool = False


def precision_plan(trt, precision: str) -> PrecisionPlan:
    """The one place that decides how fp16 is asked for, from what the TensorRT module offers.

    TensorRT 10 has ``BuilderFlag.FP16``; TensorRT 11 removed it (and all weak typing): there the
    network is strongly typed and fp16 comes from the ONNX file's own types.
    """
    if precision not in PRECISIONS:
        raise EngineError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    creation = getattr(trt, "NetworkDefinitionCreationFlag", None)
    can_type = creation is not None and hasattr(creation, "STRONGLY_TYPED")
    has_flag = hasattr(getattr(trt, "BuilderFlag", None), "FP16")
    if precision == "fp32":
        return PrecisionPlan("fp32", strongly_typed=can_type and not has_flag)
    if has_flag:
        return PrecisionPlan("fp16", builder_flag=True)
    return PrecisionPlan("fp16", fp16_onnx=True, strongly_typed=can_type)


# ---------------------------------------------------------------------------------------------- build
def _check_profile(name: str, shape: tuple[int, ...], lo, opt, hi) -> tuple[tuple[int, ...], ...]:
    shapes = tuple(tuple(int(d) for d in s) for s in (lo, opt, hi))
    for s in shapes:
        if len(s) != len(shape) or any(d >= 0 and d != x for d, x in zip(shape, s, strict=True)):
            raise EngineError(
                f"profile shape {s} for input {name!r} does not fit the network's shape {shape}"
            )
    if not all(a <= b <= c for a, b, c in zip(*shapes, strict=True)):
        raise EngineError(f"profile for input {name!r} needs min <= opt <= max per dimension, got {shapes}")
    return shapes


def default_profile(network_inputs: Mapping[str, tuple[int, ...]], max_batch: int) -> dict:
    """A profile for networks whose only dynamic dimension is the batch: (1, 1, max_batch).

    Raises:
        EngineError: when another dimension is dynamic (then the caller must give the ranges).
    """
    profile = {}
    for name, shape in network_inputs.items():
        dyn = [i for i, d in enumerate(shape) if d < 0]
        if not dyn:
            continue
        if dyn != [0]:
            raise EngineError(
                f"input {name!r} has dynamic dimensions {dyn} of shape {shape}; give an optimisation profile "
                f"(min/opt/max shapes) for it, e.g. in the model catalog"
            )
        rest = tuple(shape[1:])
        profile[name] = ((1, *rest), (1, *rest), (max(1, max_batch), *rest))
    return profile


def build_serialized_engine(
    onnx_path: Path,
    precision: str = "fp16",
    profile: Profile | None = None,
    max_batch: int = 8,
    workspace_mib: int = 1024,
    timing_cache: bytes = b"",
    fp16_cache_dir: Path | None = None,
) -> tuple[bytes, bytes, dict]:
    """Builds a TensorRT engine from an ONNX file.

    Args:
        onnx_path: The (fp32) model.
        precision: ``"fp16"`` or ``"fp32"``; how it is asked of this TensorRT: :func:`precision_plan`.
            Inputs and outputs stay float32 either way.
        profile: Input name -> (min, opt, max) shapes for the dynamic dimensions; when None, inputs whose
            only dynamic dimension is the batch get (1, 1, ``max_batch``).
        max_batch: Largest batch of the default profile.
        workspace_mib: Builder scratch memory limit.
        timing_cache: A serialised timing cache to start from (b"" for none).
        fp16_cache_dir: Where the fp16 ONNX copy goes when this TensorRT needs one (default: beside the
            engine cache).

    Returns:
        (serialised engine, updated timing cache, the profile actually used).

    Raises:
        EngineError: when parsing or building fails (with the parser's messages), for any TensorRT error.
    """
    trt = _import_trt()
    plan = precision_plan(trt, precision)
    source = Path(onnx_path)
    if plan.fp16_onnx:
        from engines.fp16 import fp16_onnx

        source = fp16_onnx(onnx_path, fp16_cache_dir or EngineCache().root / "onnx16")
    with _trt_errors("network definition"):
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        flags = 0
        if plan.strongly_typed:
            flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)  # explicit batch is the only mode since TensorRT 10
        parser = trt.OnnxParser(network, logger)
        parsed = parser.parse_from_file(str(source))
    if not parsed:
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"{source}: TensorRT's ONNX parser failed: {errors or 'no details'}")

    inputs = {network.get_input(i).name: tuple(network.get_input(i).shape) for i in range(network.num_inputs)}
    if profile is None:
        profile = default_profile(inputs, max_batch)
    unknown = set(profile) - set(inputs)
    if unknown:
        raise EngineError(
            f"profile names unknown input(s) {sorted(unknown)}; the network has {sorted(inputs)}"
        )
    used: dict = {}
    with _trt_errors("builder configuration"):
        opt_profile = builder.create_optimization_profile()
        for name, shape in inputs.items():
            if name in profile:
                lo, opt, hi = _check_profile(name, shape, *profile[name])
            elif any(d < 0 for d in shape):
                raise EngineError(f"input {name!r} of shape {shape} is dynamic but the profile does not cover it")
            else:
                lo = opt = hi = shape
            opt_profile.set_shape(name, lo, opt, hi)
            used[name] = (lo, opt, hi)
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
        if plan.builder_flag:
            config.set_flag(trt.BuilderFlag.FP16)
        cache = config.create_timing_cache(bytes(timing_cache))
        if not config.set_timing_cache(cache, False):
            # A timing cache from another TensorRT/GPU is refused; start from an empty one instead.
            log.warning("the stored timing cache does not match this TensorRT/GPU; starting a new one")
            config.set_timing_cache(config.create_timing_cache(b""), False)
        config.add_optimization_profile(opt_profile)

    t0 = time.monotonic()
    with _trt_errors(f"build of {Path(onnx_path).name}"):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"{onnx_path}: TensorRT could not build an engine ({precision}); see the log above")
    log.info("built %s (%s) in %.1f s", Path(onnx_path).name, precision, time.monotonic() - t0)
    with _trt_errors("timing cache serialisation"):
        new_cache = bytes(config.get_timing_cache().serialize())
    return bytes(serialized), new_cache, used


def _merge_timing_caches(existing: bytes, new: bytes) -> bytes:
    """Combines two serialised timing caches (both from this TensorRT and GPU)."""
    if not existing:
        return new
    trt = _import_trt()
    with _trt_errors("timing cache merge"):
        builder = trt.Builder(trt.Logger(trt.Logger.WARNING))
        config = builder.create_builder_config()
        merged = config.create_timing_cache(existing)
        if not merged.combine(config.create_timing_cache(new), False):
            return new
        return bytes(merged.serialize())


@dataclasses.dataclass(frozen=True)
class EngineBuild:
    """Result of :func:`ensure_engine`."""

    path: Path
    key: EngineCacheKey
    built: bool
    seconds: float
    profile: dict


def engine_key(onnx_path: Path, precision: str, profile: Profile | None, max_batch: int, gpu: GpuInfo,
               version: str) -> EngineCacheKey:  # fmt: skip
    """The cache key of an engine (pure: no TensorRT call)."""
    return EngineCacheKey(
        onnx_sha256=file_sha256(onnx_path), tensorrt_version=version, gpu_name=gpu.name,
        compute_capability=gpu.compute_capability, precision=precision,
        # Without an explicit profile the engine gets the batch-only default, which depends on max_batch.
        profile=profile_signature(profile) if profile else (("*", (1,), (1,), (int(max_batch),)),),
    )  # fmt: skip


def ensure_engine(
    onnx_path: Path | str,
    precision: str = "fp16",
    profile: Profile | None = None,
    max_batch: int = 8,
    workspace_mib: int = 1024,
    device_index: int = 0,
    cache: EngineCache | None = None,
    rebuild: bool = False,
) -> tuple[EngineBuild, bytes]:
    """Returns the cached engine for ``onnx_path`` on this GPU, building it first when needed.

    The arguments are those of :func:`build_serialized_engine`; ``cache`` defaults to the user cache. A
    build (the first run on a GPU: tens of seconds) is announced with one INFO line first.
    """
    trt = _import_trt()
    onnx_path = check_onnx_file(onnx_path)
    cache = cache or EngineCache()
    gpu = gpu_info(device_index)
    key = engine_key(onnx_path, precision, profile, max_batch, gpu, str(trt.__version__))
    timing_path = cache.timing_cache_path(key.tensorrt_version, gpu.name, gpu.compute_capability)
    used_profile: dict = dict(profile or {})

    def build() -> bytes:
        nonlocal used_profile
        log.info("building the TensorRT engine for %s (%s, %s) - first run on this GPU, this takes a while; "
                 "`facetrack engines build` does it ahead of time", onnx_path.name, precision, gpu.name)  # fmt: skip
        plan, timing, used_profile = build_serialized_engine(
            onnx_path, precision, profile, max_batch, workspace_mib, cache.read_timing_cache(timing_path),
            cache.root / "onnx16",
        )  # fmt: skip
        cache.update_timing_cache(timing_path, lambda existing: _merge_timing_caches(existing, timing))
        return plan

    t0 = time.monotonic()
    data, built = cache.get_or_build(key, onnx_path.stem, build, rebuild=rebuild)
    return EngineBuild(
        cache.path_for(key, onnx_path.stem), key, built, time.monotonic() - t0, used_profile
    ), data


# ---------------------------------------------------------------------------------------------- runtime
class TensorRTEngine(Engine):
    """Runs an ONNX model through a (cached) TensorRT engine.

    Args:
        model_path: The ``.onnx`` file the engine is built from.
        precision: ``"fp16"`` (default) or ``"fp32"``.
        max_batch: Largest batch of the default (batch-only) profile.
        device_index: CUDA device.
        workspace_mib: Builder scratch memory limit.
        profile: Input name -> (min, opt, max) shapes; see :func:`build_serialized_engine`.
        cache_dir: Engine cache folder; defaults to ``<user cache>/tensorrt``.
        rebuild: Build even if a cached engine exists.
        name: Name for messages; defaults to the file's stem.
        timing_window: See :class:`~engines.base.Engine`.

    The keyword arguments from ``precision`` to ``rebuild`` are the fields of
    :class:`engines.options.TensorRTOptions`.
    """

    backend = "tensorrt"

    def __init__(
        self,
        model_path: Path | str,
        *,
        precision: str = "fp16",
        max_batch: int = 8,
        device_index: int = 0,
        workspace_mib: int = 1024,
        profile: Profile | None = None,
        cache_dir: Path | str | None = None,
        rebuild: bool = False,
        name: str | None = None,
        timing_window: int = 1000,
    ) -> None:
        self.model_path = Path(model_path)
        super().__init__(name or self.model_path.stem, timing_window)
        if precision not in PRECISIONS:
            raise EngineError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.precision = precision
        self.profile = dict(profile) if profile else None
        self.max_batch = int(max_batch)
        self.workspace_mib = int(workspace_mib)
        self.device_index = int(device_index)
        self.cache = EngineCache(cache_dir)
        self.rebuild = rebuild
        self.build_info: EngineBuild | None = None
        self._lock = threading.Lock()  # one stream and one execution context: calls run one at a time
        self._reset_state()

    def _reset_state(self) -> None:
        self._cuda: cuda_driver.CudaDriver | None = None
        self._cuda_ctx = None
        self._logger = None
        self._runtime = None
        self._engine = None
        self._context = None
        self._stream = None
        self._host: dict[str, cuda_driver.HostBuffer] = {}
        self._device: dict[str, cuda_driver.DeviceBuffer] = {}
        self._ranges: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        self._inputs: tuple[TensorSpec, ...] = ()
        self._outputs: tuple[TensorSpec, ...] = ()

    @contextlib.contextmanager
    def _pushed(self):
        """Makes this engine's CUDA context current in the calling thread (contexts are per thread)."""
        self._cuda.push(self._cuda_ctx)
        try:
            yield
        finally:
            self._cuda.pop()

    def _deserialize(self, data: bytes):
        with _trt_errors("engine deserialisation"):
            return self._runtime.deserialize_cuda_engine(data)

    def _activate(self) -> None:
        trt = _import_trt()
        cuda = _load_cuda()
        _check_device(cuda, self.device_index)
        self._cuda = cuda
        self._cuda_ctx = cuda.retain_primary_context(self.device_index)
        with self._pushed():
            build, data = ensure_engine(
                self.model_path, self.precision, self.profile, self.max_batch, self.workspace_mib,
                self.device_index, self.cache, self.rebuild,
            )  # fmt: skip
            with _trt_errors("runtime creation"):
                # TensorRT needs its logger to outlive the runtime and engine: keep it on the instance.
                self._logger = trt.Logger(trt.Logger.WARNING)
                self._runtime = trt.Runtime(self._logger)
            self._engine = self._deserialize(data)
            if self._engine is None and not build.built:
                # A cached file from an interrupted or incompatible build: replace it once.
                log.warning("cached engine %s does not deserialise; rebuilding", build.path.name)
                self.cache.invalidate(build.key, self.model_path.stem)
                build, data = ensure_engine(
                    self.model_path, self.precision, self.profile, self.max_batch, self.workspace_mib,
                    self.device_index, self.cache, rebuild=True,
                )  # fmt: skip
                self._engine = self._deserialize(data)
            if self._engine is None:
                raise EngineError(f"{build.path}: TensorRT cannot deserialise the engine it built")
            self.build_info = build
            with _trt_errors("execution context creation"):
                self._context = self._engine.create_execution_context()
            if self._context is None:
                raise EngineError(f"{self}: TensorRT could not create an execution context (GPU memory?)")
            self._stream = cuda.stream_create()
            with _trt_errors("buffer binding"):
                self._allocate(trt, cuda)

    def _allocate(self, trt, cuda: cuda_driver.CudaDriver) -> None:
        eng, ctx = self._engine, self._context
        inputs, outputs = [], []
        for i in range(eng.num_io_tensors):
            name = eng.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(eng.get_tensor_dtype(name)))
            shape = tuple(int(d) for d in eng.get_tensor_shape(name))
            spec = TensorSpec(name, tuple(None if d < 0 else d for d in shape), dtype)
            if eng.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                inputs.append(spec)
                if any(d < 0 for d in shape):
                    lo, _, hi = (tuple(int(d) for d in s) for s in eng.get_tensor_profile_shape(name, 0))
                else:
                    lo = hi = shape
                self._ranges[name] = (lo, hi)
                if not ctx.set_input_shape(name, hi):
                    raise EngineError(f"{self}: cannot set input {name!r} to its profile maximum {hi}")
            else:
                outputs.append(spec)
        self._inputs, self._outputs = tuple(inputs), tuple(outputs)
        # With every input at its maximum, each output has its largest shape: allocate once for that.
        for spec in (*self._inputs, *self._outputs):
            if spec.name in self._ranges:
                shape = self._ranges[spec.name][1]
            else:
                shape = tuple(int(d) for d in ctx.get_tensor_shape(spec.name))
                if any(d < 0 for d in shape):
                    raise EngineError(
                        f"{self}: output {spec.name!r} has a data-dependent shape {shape}; unsupported"
                    )
            size = int(np.prod(shape, dtype=np.int64))
            host = cuda.host_empty(size, spec.dtype)
            self._host[spec.name] = host
            device = cuda.device_alloc(host.array.nbytes)
            self._device[spec.name] = device
            if not ctx.set_tensor_address(spec.name, device.address):
                raise EngineError(f"{self}: cannot bind the device buffer of {spec.name!r}")

    def _deactivate(self) -> None:
        if self._cuda_ctx is None:
            self._reset_state()
            return
        cuda = self._cuda
        try:
            with self._pushed():
                if self._stream is not None:
                    with contextlib.suppress(EngineError):
                        cuda.stream_synchronize(self._stream)
                # Drop TensorRT objects while the context is current: they free device memory.
                self._context = self._engine = self._runtime = None
                for buf in self._device.values():
                    with contextlib.suppress(EngineError):
                        cuda.device_free(buf)
                for host in self._host.values():
                    with contextlib.suppress(EngineError):
                        cuda.host_free(host)  # page-locked memory: free while its context is current
                if self._stream is not None:
                    with contextlib.suppress(EngineError):
                        cuda.stream_destroy(self._stream)
                self._stream = None
                self._host.clear()
                self._device.clear()
        finally:
            with contextlib.suppress(EngineError):
                cuda.release_primary_context(self.device_index, self._cuda_ctx)
            self._reset_state()

    def _input_specs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    def _output_specs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cuda = self._cuda
        with self._lock, self._pushed(), _trt_errors(f"inference of {self.name}"):
            for spec in self._inputs:
                arr = feed[spec.name]
                lo, hi = self._ranges[spec.name]
                if any(not (a <= n <= b) for a, n, b in zip(lo, arr.shape, hi, strict=True)):
                    raise EngineError(
                        f"{self}: input {spec.name!r} shape {arr.shape} is outside the engine's profile "
                        f"{lo}..{hi}; rebuild with a wider profile (`facetrack engines build --max-faces N`)"
                    )
                if not self._context.set_input_shape(spec.name, arr.shape):
                    raise EngineError(f"{self}: TensorRT refused shape {arr.shape} for input {spec.name!r}")
                host = self._host[spec.name].array[: arr.size].reshape(arr.shape)
                np.copyto(host, arr)
                if arr.size:
                    cuda.htod_async(self._device[spec.name], host, self._stream)
            views = {}
            for spec in self._outputs:
                shape = tuple(int(d) for d in self._context.get_tensor_shape(spec.name))
                if any(d < 0 for d in shape):
                    shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in feed.items())
                    raise EngineError(
                        f"{self}: TensorRT cannot infer output {spec.name!r} for inputs {shapes}"
                    )
                n = int(np.prod(shape, dtype=np.int64))
                views[spec.name] = self._host[spec.name].array[:n].reshape(shape)
            if not self._context.execute_async_v3(cuda.stream_handle(self._stream)):
                raise EngineError(f"{self}: TensorRT execution failed; see the log above")
            for name, view in views.items():
                if view.size:
                    cuda.dtoh_async(view, self._device[name], self._stream)
            cuda.stream_synchronize(self._stream)
            # The page-locked buffers are reused by the next call: hand out copies.
            return {name: view.copy() for name, view in views.items()}


def build_engines(
    models: Sequence[tuple[Path, Profile | None]],
    precision: str = "fp16",
    max_batch: int = 8,
    device_index: int = 0,
    rebuild: bool = False,
    cache_dir: Path | None = None,
) -> list[EngineBuild]:
    """Builds (or finds cached) engines for several ONNX files; see :func:`ensure_engine`."""
    cuda = _load_cuda()
    _check_device(cuda, device_index)
    ctx = cuda.retain_primary_context(device_index)
    cuda.push(ctx)
    try:
        cache = EngineCache(cache_dir)
        return [
            ensure_engine(path, precision, profile, max_batch, device_index=device_index, cache=cache,
                          rebuild=rebuild)[0]
            for path, profile in models
        ]  # fmt: skip
    finally:
        cuda.pop()
        cuda.release_primary_context(device_index, ctx)


__all__ = [
    "EXTRA", "EngineBuild", "GpuInfo", "PrecisionPlan", "TensorRTEngine", "build_engines", "build_serialized_engine",
    "check_tensorrt_version", "default_profile", "engine_key", "ensure_engine", "gpu_info", "is_available",
    "precision_plan", "tensorrt_version", "unavailable_reason",
]  # fmt: skip
