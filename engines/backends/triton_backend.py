"""Triton Inference Server backend: the same Engine interface, run by a (remote) Triton server over gRPC.

This module is the only importer of ``tritonclient``. The server holds the model (a repository written by
``facetrack engines export-triton``, see :mod:`engines.triton_repo`); this engine asks it for the model's
metadata on :meth:`activate` and sends each :meth:`infer` call as one gRPC request. Requests from many
cameras (many trackers, many processes) meet in the server's dynamic batcher, which is how a studio
serves many cameras with one GPU.

The ``model_path`` argument names the ONNX file the server was given; only its stem is used, as the
default model name.
"""

from __future__ import annotations

import importlib
import logging
import time
from pathlib import Path

import numpy as np

from engines.base import Engine, TensorSpec
from engines.options import DEFAULT_TRITON_URL, parse_triton_url
from tracker.core.errors import EngineError

log = logging.getLogger(__name__)

EXTRA = "pip install 'facetrack[triton]'  (tritonclient[grpc])"

#: Triton datatype names -> numpy dtypes (the subset the tracker's models use, plus the usual ones).
_DTYPES: dict[str, np.dtype] = {
    "FP32": np.dtype(np.float32), "FP16": np.dtype(np.float16), "FP64": np.dtype(np.float64),
    "INT8": np.dtype(np.int8), "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64), "UINT8": np.dtype(np.uint8), "BOOL": np.dtype(np.bool_),
}  # fmt: skip
_NAMES = {v: k for k, v in _DTYPES.items()}


def _import_client():
    """(tritonclient.grpc, tritonclient.utils), or EngineError naming the extra."""
    try:
        grpc = importlib.import_module("tritonclient.grpc")
        utils = importlib.import_module("tritonclient.utils")
    except ImportError as exc:
        raise EngineError(f"the triton backend needs tritonclient: {EXTRA} ({exc})") from exc
    return grpc, utils


def unavailable_reason() -> str | None:
    """None when tritonclient is installed (whether a server is reachable is a per-URL question)."""
    try:
        _import_client()
    except EngineError as exc:
        return str(exc)
    return None


def is_available() -> bool:
    return unavailable_reason() is None


class TritonEngine(Engine):
    """Runs a model that a Triton Inference Server serves.

    Args:
        model_path: The ONNX file the server's model was made from (its stem is the default model name);
            the file need not exist on this machine.
        url: ``grpc://HOST:PORT`` of the server's gRPC endpoint.
        model_name: Model name in the server's repository; None: ``model_path``'s stem.
        model_version: Version to run; ``""``: the server's version policy (the latest).
        timeout_s: Per-request deadline, and how long :meth:`activate` waits for the model to be ready.
        name: Name for messages; defaults to the model name.
        timing_window: See :class:`~engines.base.Engine`.

    The keyword arguments from ``url`` to ``timeout_s`` are the fields of
    :class:`engines.options.TritonOptions`.
    """

    backend = "triton"

    def __init__(
        self,
        model_path: Path | str,
        *,
        url: str = DEFAULT_TRITON_URL,
        model_name: str | None = None,
        model_version: str = "",
        timeout_s: float = 10.0,
        name: str | None = None,
        timing_window: int = 1000,
    ) -> None:
        self.model_path = Path(model_path)
        self.model_name = model_name or self.model_path.stem
        super().__init__(name or self.model_name, timing_window)
        self.host, self.port = parse_triton_url(url)
        self.url = url
        self.model_version = str(model_version)
        if timeout_s <= 0:
            raise EngineError(f"timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = float(timeout_s)
        self.max_batch_size = 0
        self._client = None
        self._grpc = None
        self._utils = None
        self._inputs: tuple[TensorSpec, ...] = ()
        self._outputs: tuple[TensorSpec, ...] = ()

    def __repr__(self) -> str:
        return f"TritonEngine({self.model_name!r} at {self.host}:{self.port}, {'active' if self.is_active else 'inactive'})"

    @staticmethod
    def _spec(meta: dict) -> TensorSpec:
        dtype = meta.get("datatype", "")
        if dtype not in _DTYPES:
            raise EngineError(f"tensor {meta.get('name')!r} has unsupported Triton datatype {dtype!r}")
        shape = tuple(None if int(d) < 0 else int(d) for d in meta.get("shape", []))
        return TensorSpec(meta["name"], shape, _DTYPES[dtype])

    def _activate(self) -> None:
        grpc, utils = _import_client()
        self._grpc, self._utils = grpc, utils
        where = f"Triton server {self.host}:{self.port}"
        try:
            self._client = grpc.InferenceServerClient(url=f"{self.host}:{self.port}")
        except Exception as exc:  # noqa: BLE001 - InferenceServerException and grpc errors
            raise EngineError(f"{where}: cannot create a client ({exc})") from exc
        deadline = time.monotonic() + self.timeout_s
        last_error = "not ready"
        while True:
            try:
                if self._client.is_model_ready(self.model_name, self.model_version,
                                               client_timeout=self.timeout_s):  # fmt: skip
                    break
                last_error = "the model is not ready (not in the repository, or failed to load; see the server log)"
            except utils.InferenceServerException as exc:
                last_error = f"unreachable ({exc.message() if hasattr(exc, 'message') else exc})"
            if time.monotonic() > deadline:
                raise EngineError(f"{where}, model {self.model_name!r}: {last_error} after {self.timeout_s:.0f} s")
            time.sleep(0.1)
        try:
            meta = self._client.get_model_metadata(self.model_name, self.model_version, as_json=True,
                                                   client_timeout=self.timeout_s)  # fmt: skip
            config = self._client.get_model_config(self.model_name, self.model_version, as_json=True,
                                                   client_timeout=self.timeout_s)  # fmt: skip
        except utils.InferenceServerException as exc:
            raise EngineError(f"{where}: cannot read model {self.model_name!r}'s metadata ({exc})") from exc
        self.max_batch_size = int(config.get("config", {}).get("max_batch_size", 0) or 0)
        self._inputs = tuple(self._spec(m) for m in meta.get("inputs", []))
        self._outputs = tuple(self._spec(m) for m in meta.get("outputs", []))
        log.debug("%s: model %s on %s (max batch %d)", self, self.model_name, where, self.max_batch_size)

    def _deactivate(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # noqa: BLE001 - closing a broken channel must not mask the real error
                log.debug("closing the Triton client failed", exc_info=True)
        self._client = None
        self._inputs = self._outputs = ()

    def _input_specs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    def _output_specs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        grpc, utils = self._grpc, self._utils
        batch = next(iter(feed.values())).shape[0] if feed else 0
        if self.max_batch_size and batch > self.max_batch_size:
            raise EngineError(
                f"{self}: batch {batch} exceeds the model's max_batch_size {self.max_batch_size} "
                f"(re-export with `facetrack engines export-triton --max-batch N`)"
            )
        inputs = []
        for spec in self._inputs:
            arr = feed[spec.name]
            inp = grpc.InferInput(spec.name, list(arr.shape), _NAMES[arr.dtype])
            inp.set_data_from_numpy(arr)
            inputs.append(inp)
        wanted = [grpc.InferRequestedOutput(s.name) for s in self._outputs]
        try:
            result = self._client.infer(self.model_name, inputs, model_version=self.model_version, outputs=wanted,
                                        client_timeout=self.timeout_s)  # fmt: skip
        except utils.InferenceServerException as exc:
            shapes = ", ".join(f"{k}{tuple(v.shape)}" for k, v in feed.items())
            raise EngineError(f"{self}: inference failed on inputs {shapes}: {exc}") from exc
        return {s.name: np.array(result.as_numpy(s.name)) for s in self._outputs}


__all__ = ["EXTRA", "TritonEngine", "is_available", "unavailable_reason"]
