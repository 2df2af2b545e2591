"""The few CUDA driver calls the TensorRT backend needs, through pycuda or cuda-python.

pycuda has no wheels on PyPI (it compiles against a CUDA toolkit), so a driver-only GPU machine gets
NVIDIA's ``cuda-python`` (wheels; ``cuda.bindings.driver``) from the ``gpu`` extra. The design's pycuda
path stays: when pycuda is installed it is used. Both give the same :class:`CudaDriver` interface:
devices, the primary context, a stream, page-locked host buffers, device buffers and asynchronous
copies. Only :mod:`engines.backends.tensorrt_backend` imports this module, and it imports the binding
only when a method is first called, so nothing here needs a GPU at import time.

Every driver error becomes an :class:`~tracker.core.errors.EngineError` naming the call.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
import logging
from typing import Any

import numpy as np

from tracker.core.errors import EngineError

log = logging.getLogger(__name__)

#: The bindings, in the order they are tried.
BINDINGS = ("pycuda", "cuda-python")
EXTRA = "pip install 'facetrack[gpu]'  (cuda-python wheels; or build pycuda against a CUDA toolkit)"


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """One CUDA device."""

    index: int
    name: str
    compute_capability: tuple[int, int]
    total_memory_bytes: int


@dataclasses.dataclass
class HostBuffer:
    """Page-locked host memory seen as a flat numpy array (``array``) and the binding's handle."""

    array: np.ndarray
    handle: Any


@dataclasses.dataclass
class DeviceBuffer:
    """Device memory: its address (what TensorRT binds) and the binding's handle."""

    address: int
    nbytes: int
    handle: Any


class CudaDriver:
    """Interface of a CUDA binding. Methods raise EngineError on any driver error."""

    name = ""

    def device_count(self) -> int:
        raise NotImplementedError

    def device_info(self, index: int) -> DeviceInfo:
        raise NotImplementedError

    def retain_primary_context(self, index: int) -> Any:
        """Retains device ``index``'s primary context (the one TensorRT's runtime API uses too)."""
        raise NotImplementedError

    def release_primary_context(self, index: int, ctx: Any) -> None:
        raise NotImplementedError

    def push(self, ctx: Any) -> None:
        """Makes ``ctx`` current in the calling thread."""
        raise NotImplementedError

    def pop(self) -> None:
        raise NotImplementedError

    def stream_create(self) -> Any:
        raise NotImplementedError

    def stream_handle(self, stream: Any) -> int:
        """The ``cudaStream_t`` as an int (``execute_async_v3``'s argument)."""
        raise NotImplementedError

    def stream_synchronize(self, stream: Any) -> None:
        raise NotImplementedError

    def stream_destroy(self, stream: Any) -> None:
        raise NotImplementedError

    def host_empty(self, size: int, dtype: np.dtype) -> HostBuffer:
        """Page-locked (pinned) memory for ``size`` elements of ``dtype``: asynchronous copies need it."""
        raise NotImplementedError

    def host_free(self, buf: HostBuffer) -> None:
        raise NotImplementedError

    def device_alloc(self, nbytes: int) -> DeviceBuffer:
        raise NotImplementedError

    def device_free(self, buf: DeviceBuffer) -> None:
        raise NotImplementedError

    def htod_async(self, dst: DeviceBuffer, src: np.ndarray, stream: Any) -> None:
        """Copies a contiguous, page-locked host array to ``dst`` on ``stream``."""
        raise NotImplementedError

    def dtoh_async(self, dst: np.ndarray, src: DeviceBuffer, stream: Any) -> None:
        """Copies ``dst.nbytes`` from ``src`` into a contiguous, page-locked host array on ``stream``."""
        raise NotImplementedError


class PyCudaDriver(CudaDriver):
    """pycuda (``pycuda.driver``)."""

    name = "pycuda"

    def __init__(self, module) -> None:
        self.cuda = module
        try:
            module.init()
        except Exception as exc:  # noqa: BLE001 - pycuda.driver.Error and driver load failures
            raise EngineError(f"no usable CUDA driver ({exc}); the tensorrt backend needs an NVIDIA GPU") from exc

    def _call(self, what: str, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - pycuda.driver.Error subclasses
            raise EngineError(f"CUDA {what} failed: {exc}") from exc

    def device_count(self) -> int:
        return int(self._call("device count", self.cuda.Device.count))

    def device_info(self, index: int) -> DeviceInfo:
        dev = self._call("device", self.cuda.Device, index)
        major, minor = dev.compute_capability()
        return DeviceInfo(index, str(dev.name()), (int(major), int(minor)), int(dev.total_memory()))

    def retain_primary_context(self, index: int) -> Any:
        return self._call("primary context", lambda: self.cuda.Device(index).retain_primary_context())

    def release_primary_context(self, index: int, ctx: Any) -> None:
        self._call("context release", ctx.detach)

    def push(self, ctx: Any) -> None:
        self._call("context push", ctx.push)

    def pop(self) -> None:
        self._call("context pop", self.cuda.Context.pop)

    def stream_create(self) -> Any:
        return self._call("stream", self.cuda.Stream)

    def stream_handle(self, stream: Any) -> int:
        return int(stream.handle)

    def stream_synchronize(self, stream: Any) -> None:
        self._call("stream synchronize", stream.synchronize)

    def stream_destroy(self, stream: Any) -> None:
        """pycuda frees a stream when it is garbage collected."""

    def host_empty(self, size: int, dtype: np.dtype) -> HostBuffer:
        arr = self._call("page-locked allocation", self.cuda.pagelocked_empty, max(1, int(size)), np.dtype(dtype))
        return HostBuffer(arr, arr)

    def host_free(self, buf: HostBuffer) -> None:
        self._call("page-locked free", buf.handle.base.free)

    def device_alloc(self, nbytes: int) -> DeviceBuffer:
        mem = self._call("device allocation", self.cuda.mem_alloc, max(1, int(nbytes)))
        return DeviceBuffer(int(mem), int(nbytes), mem)

    def device_free(self, buf: DeviceBuffer) -> None:
        self._call("device free", buf.handle.free)

    def htod_async(self, dst: DeviceBuffer, src: np.ndarray, stream: Any) -> None:
        self._call("host-to-device copy", self.cuda.memcpy_htod_async, dst.handle, src, stream)

    def dtoh_async(self, dst: np.ndarray, src: DeviceBuffer, stream: Any) -> None:
        self._call("device-to-host copy", self.cuda.memcpy_dtoh_async, dst, src.handle, stream)


class CudaPythonDriver(CudaDriver):
    """NVIDIA cuda-python (``cuda.bindings.driver``; ``cuda.cuda`` in releases before 12.6).

    Its calls return ``(CUresult, value...)`` tuples instead of raising: :meth:`_check` turns a
    non-success result into an EngineError with the driver's error name.
    """

    name = "cuda-python"

    def __init__(self, module) -> None:
        self.drv = module
        try:
            result = module.cuInit(0)
        except Exception as exc:  # noqa: BLE001 - e.g. DynamicLibNotFoundError when libcuda.so is absent
            raise EngineError(f"no usable CUDA driver ({type(exc).__name__}: {exc}); the tensorrt backend needs an "
                              f"NVIDIA GPU and its driver") from exc  # fmt: skip
        self._check("cuInit", result)

    def _check(self, what: str, result):
        err, *values = result if isinstance(result, tuple) else (result,)
        if err != self.drv.CUresult.CUDA_SUCCESS:
            try:
                _, name = self.drv.cuGetErrorName(err)
                label = name.decode() if isinstance(name, bytes) else str(err)
            except Exception:  # noqa: BLE001 - naming the error must not hide it
                label = str(err)
            if what == "cuInit":
                raise EngineError(f"no usable CUDA driver ({label}); the tensorrt backend needs an NVIDIA GPU")
            raise EngineError(f"CUDA {what} failed: {label}")
        if not values:
            return None
        return values[0] if len(values) == 1 else tuple(values)

    def _device(self, index: int):
        return self._check("cuDeviceGet", self.drv.cuDeviceGet(int(index)))

    def device_count(self) -> int:
        return int(self._check("cuDeviceGetCount", self.drv.cuDeviceGetCount()))

    def device_info(self, index: int) -> DeviceInfo:
        drv = self.drv
        dev = self._device(index)
        raw = self._check("cuDeviceGetName", drv.cuDeviceGetName(256, dev))
        name = bytes(raw).split(b"\0", 1)[0].decode(errors="replace")
        attr = drv.CUdevice_attribute
        major = self._check("cuDeviceGetAttribute", drv.cuDeviceGetAttribute(
            attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev))  # fmt: skip
        minor = self._check("cuDeviceGetAttribute", drv.cuDeviceGetAttribute(
            attr.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev))  # fmt: skip
        total = self._check("cuDeviceTotalMem", drv.cuDeviceTotalMem(dev))
        return DeviceInfo(index, name, (int(major), int(minor)), int(total))

    def retain_primary_context(self, index: int) -> Any:
        return self._check("cuDevicePrimaryCtxRetain", self.drv.cuDevicePrimaryCtxRetain(self._device(index)))

    def release_primary_context(self, index: int, ctx: Any) -> None:
        self._check("cuDevicePrimaryCtxRelease", self.drv.cuDevicePrimaryCtxRelease(self._device(index)))

    def push(self, ctx: Any) -> None:
        self._check("cuCtxPushCurrent", self.drv.cuCtxPushCurrent(ctx))

    def pop(self) -> None:
        self._check("cuCtxPopCurrent", self.drv.cuCtxPopCurrent())

    def stream_create(self) -> Any:
        return self._check("cuStreamCreate", self.drv.cuStreamCreate(0))

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def stream_synchronize(self, stream: Any) -> None:
        self._check("cuStreamSynchronize", self.drv.cuStreamSynchronize(stream))

    def stream_destroy(self, stream: Any) -> None:
        self._check("cuStreamDestroy", self.drv.cuStreamDestroy(stream))

    def host_empty(self, size: int, dtype: np.dtype) -> HostBuffer:
        dtype = np.dtype(dtype)
        nbytes = max(1, int(size)) * dtype.itemsize
        ptr = int(self._check("cuMemHostAlloc", self.drv.cuMemHostAlloc(nbytes, 0)))
        raw = (ctypes.c_byte * nbytes).from_address(ptr)
        return HostBuffer(np.frombuffer(raw, dtype=dtype, count=max(1, int(size))), ptr)

    def host_free(self, buf: HostBuffer) -> None:
        self._check("cuMemFreeHost", self.drv.cuMemFreeHost(buf.handle))

    def device_alloc(self, nbytes: int) -> DeviceBuffer:
        ptr = self._check("cuMemAlloc", self.drv.cuMemAlloc(max(1, int(nbytes))))
        return DeviceBuffer(int(ptr), int(nbytes), ptr)

    def device_free(self, buf: DeviceBuffer) -> None:
        self._check("cuMemFree", self.drv.cuMemFree(buf.handle))

    def htod_async(self, dst: DeviceBuffer, src: np.ndarray, stream: Any) -> None:
        self._check("cuMemcpyHtoDAsync", self.drv.cuMemcpyHtoDAsync(dst.handle, src.ctypes.data, src.nbytes, stream))

    def dtoh_async(self, dst: np.ndarray, src: DeviceBuffer, stream: Any) -> None:
        self._check("cuMemcpyDtoHAsync", self.drv.cuMemcpyDtoHAsync(dst.ctypes.data, src.handle, dst.nbytes, stream))


def _import_binding(name: str):
    if name == "pycuda":
        return importlib.import_module("pycuda.driver")
    try:
        return importlib.import_module("cuda.bindings.driver")
    except ImportError:
        return importlib.import_module("cuda.cuda")  # cuda-python < 12.6


def load_driver(prefer: tuple[str, ...] = BINDINGS) -> CudaDriver:
    """The first binding of ``prefer`` that imports, initialised.

    Raises:
        EngineError: when none imports (naming the extra to install) or the driver does not initialise.
    """
    errors = []
    for name in prefer:
        try:
            module = _import_binding(name)
        except ImportError as exc:
            errors.append(f"{name}: {exc}")
            continue
        driver = PyCudaDriver(module) if name == "pycuda" else CudaPythonDriver(module)
        log.debug("CUDA through %s", name)
        return driver
    raise EngineError(f"no CUDA binding for the tensorrt backend ({'; '.join(errors)}): {EXTRA}")


__all__ = ["BINDINGS", "CudaDriver", "CudaPythonDriver", "DeviceBuffer", "DeviceInfo", "HostBuffer",
           "PyCudaDriver", "load_driver"]  # fmt: skip
