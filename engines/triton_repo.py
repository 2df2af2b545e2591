"""Writes a Triton Inference Server model repository for the tracker's networks.

Layout (what a stock ``tritonserver --model-repository DIR`` loads)::

    DIR/
      coarsenet/config.pbtxt    max_batch_size, dynamic batching, instance groups, inputs and outputs
      coarsenet/1/model.onnx    the ONNX file (version 1)
      yunet/config.pbtxt
      yunet/1/model.onnx

Backends:

- ``onnxruntime`` (default): Triton's ONNX Runtime backend runs ``model.onnx``; with ``accelerator=
  "tensorrt"`` it is asked to compile the graph with TensorRT (ONNX Runtime's TensorRT execution
  provider, fp16 when ``precision="fp16"``) on GPU instances.
- ``tensorrt``: not written here: TensorRT plans are tied to a GPU model and TensorRT version, so a
  studio builds them on the serving machine (``trtexec --onnx=model.onnx``) or uses the accelerator above.
- ``python``: Triton's Python backend runs ``model.py``, which runs ``model.onnx`` with ONNX Runtime in the
  backend's stub process. For servers built without the ONNX Runtime backend (e.g. the ``tritonserver``
  inside the ``nvidia-pytriton`` wheel, which ships only the Python backend).

Requests of many cameras meet in the dynamic batcher: ``max_queue_delay_microseconds`` is how long the
server may hold a request to join others (a fraction of a frame), ``preferred_batch_size`` the batches it
aims for. Requests batch only when their shapes other than the batch agree (all CoarseNet crops do; YuNet
frames do when the cameras have one resolution).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engines.base import TensorSpec
from tracker.core.errors import EngineError

log = logging.getLogger(__name__)

TRITON_BACKENDS = ("onnxruntime", "python")
INSTANCE_KINDS = ("gpu", "cpu")
ACCELERATORS = ("none", "tensorrt")

#: numpy dtypes -> Triton config data types.
_TYPES = {
    np.dtype(np.float32): "TYPE_FP32", np.dtype(np.float16): "TYPE_FP16", np.dtype(np.float64): "TYPE_FP64",
    np.dtype(np.int8): "TYPE_INT8", np.dtype(np.int16): "TYPE_INT16", np.dtype(np.int32): "TYPE_INT32",
    np.dtype(np.int64): "TYPE_INT64", np.dtype(np.uint8): "TYPE_UINT8", np.dtype(np.bool_): "TYPE_BOOL",
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class TritonModelConfig:
    """How Triton serves one model.

    Attributes:
        max_batch_size: Largest batch the server forms (the first dimension of every tensor).
        preferred_batch_sizes: Batches the dynamic batcher aims for.
        max_queue_delay_us: How long a request may wait to join a batch, microseconds.
        instance_count: Model instances per device (parallel executions).
        kind: ``"gpu"`` or ``"cpu"`` instances.
        gpus: GPU indices for ``kind="gpu"`` (empty: every GPU).
        backend: ``"onnxruntime"`` or ``"python"`` (see the module docstring).
        accelerator: ``"tensorrt"``: ONNX Runtime's TensorRT provider on GPU instances; ``"none"``.
        precision: ``"fp16"`` or ``"fp32"`` for the TensorRT accelerator.
        python_path: Python backend only: folders holding numpy and onnxruntime for the stub process
            (e.g. this virtual environment's site-packages).
        threads: Python backend only: ONNX Runtime intra-op threads per instance.
    """

    max_batch_size: int = 64
    preferred_batch_sizes: tuple[int, ...] = (4, 8, 16)
    max_queue_delay_us: int = 2000
    instance_count: int = 1
    kind: str = "gpu"
    gpus: tuple[int, ...] = ()
    backend: str = "onnxruntime"
    accelerator: str = "none"
    precision: str = "fp16"
    python_path: tuple[str, ...] = ()
    threads: int = 1

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise EngineError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if any(b < 1 or b > self.max_batch_size for b in self.preferred_batch_sizes):
            raise EngineError(
                f"preferred batch sizes {self.preferred_batch_sizes} must lie in 1..max_batch_size={self.max_batch_size}"
            )
        if self.max_queue_delay_us < 0 or self.instance_count < 1:
            raise EngineError("max_queue_delay_us must be >= 0 and instance_count >= 1")
        if self.kind not in INSTANCE_KINDS:
            raise EngineError(f"instance kind must be one of {INSTANCE_KINDS}, got {self.kind!r}")
        if self.backend not in TRITON_BACKENDS:
            raise EngineError(f"Triton backend must be one of {TRITON_BACKENDS}, got {self.backend!r}")
        if self.accelerator not in ACCELERATORS:
            raise EngineError(f"accelerator must be one of {ACCELERATORS}, got {self.accelerator!r}")
        if self.accelerator == "tensorrt" and (self.kind != "gpu" or self.backend != "onnxruntime"):
            raise EngineError("the tensorrt accelerator needs GPU instances of the onnxruntime backend")
        if self.precision not in ("fp16", "fp32"):
            raise EngineError(f"precision must be fp16 or fp32, got {self.precision!r}")


def _dims(spec: TensorSpec) -> str:
    if spec.shape is None or len(spec.shape) < 1:
        raise EngineError(f"tensor {spec.name!r}: Triton batching needs a known rank with the batch first")
    return ", ".join(str(d) if isinstance(d, int) else "-1" for d in spec.shape[1:])


def _tensor_block(specs: Sequence[TensorSpec]) -> str:
    items = []
    for s in specs:
        if s.dtype not in _TYPES:
            raise EngineError(f"tensor {s.name!r}: dtype {s.dtype} has no Triton type")
        items.append(f'  {{\n    name: "{s.name}"\n    data_type: {_TYPES[s.dtype]}\n    dims: [ {_dims(s)} ]\n  }}')
    return ",\n".join(items)


def config_pbtxt(name: str, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec],
                 cfg: TritonModelConfig) -> str:  # fmt: skip
    """The ``config.pbtxt`` text (protobuf text format of Triton's ``ModelConfig``)."""
    lines = [f'name: "{name}"', f'backend: "{cfg.backend}"', f"max_batch_size: {cfg.max_batch_size}",
             f"input [\n{_tensor_block(inputs)}\n]", f"output [\n{_tensor_block(outputs)}\n]"]  # fmt: skip
    preferred = ", ".join(str(b) for b in cfg.preferred_batch_sizes)
    lines.append(
        "dynamic_batching {\n"
        + (f"  preferred_batch_size: [ {preferred} ]\n" if preferred else "")
        + f"  max_queue_delay_microseconds: {cfg.max_queue_delay_us}\n}}"
    )
    group = f"  {{\n    count: {cfg.instance_count}\n    kind: KIND_{cfg.kind.upper()}\n"
    if cfg.kind == "gpu" and cfg.gpus:
        group += f"    gpus: [ {', '.join(str(g) for g in cfg.gpus)} ]\n"
    lines.append(f"instance_group [\n{group}  }}\n]")
    if cfg.backend == "python":
        paths = os.pathsep.join(cfg.python_path)
        lines.append(f'parameters {{ key: "python_path" value: {{ string_value: "{paths}" }} }}')
        lines.append(f'parameters {{ key: "threads" value: {{ string_value: "{cfg.threads}" }} }}')
    if cfg.accelerator == "tensorrt":
        mode = "FP16" if cfg.precision == "fp16" else "FP32"
        lines.append(
            "optimization { execution_accelerators {\n  gpu_execution_accelerator : [ {\n"
            '    name : "tensorrt"\n'
            f'    parameters {{ key: "precision_mode" value: "{mode}" }}\n'
            '    parameters { key: "max_workspace_size_bytes" value: "1073741824" }\n'
            "  } ]\n} }"
        )
    return "\n".join(lines) + "\n"


#: model.py of the Python-backend variant: ONNX Runtime inside Triton's Python backend stub.
PYTHON_MODEL = '''"""Triton Python backend model written by `facetrack engines export-triton --triton-backend python`:
runs model.onnx (beside this file) with ONNX Runtime. Inputs and outputs as in config.pbtxt.

The backend's stub process does not see the caller's virtual environment, so numpy and onnxruntime are
imported after the folders in the config parameter ``python_path`` (os.pathsep-separated) join sys.path.
"""

import json
import os
import sys


def _tensor(pb_utils, name, array):
    # The stub reads the array through the numpy C API it was built against (numpy 1): with numpy 2 in the
    # stub's path the response comes back empty, so its python_path must hold numpy < 2.
    return pb_utils.Tensor(name, array)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        extra = config.get("parameters", {}).get("python_path", {}).get("string_value", "")
        for folder in reversed([p for p in extra.split(os.pathsep) if p]):
            if folder not in sys.path:
                sys.path.insert(0, folder)
        global np, pb_utils
        import numpy as np
        import onnxruntime as ort
        import triton_python_backend_utils as pb_utils

        here = os.path.dirname(os.path.abspath(__file__))
        so = ort.SessionOptions()
        so.intra_op_num_threads = int(config.get("parameters", {}).get("threads", {}).get("string_value", "1"))
        self.session = ort.InferenceSession(os.path.join(here, "model.onnx"), sess_options=so,
                                            providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def execute(self, requests):
        # The dynamic batcher hands several requests at once: run them as one batch, then split.
        feeds = [{n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.inputs} for r in requests]
        sizes = [f[self.inputs[0]].shape[0] for f in feeds]
        batch = {n: np.concatenate([f[n] for f in feeds]) for n in self.inputs}
        values = self.session.run(self.outputs, batch)
        responses, start = [], 0
        for size in sizes:
            tensors = [_tensor(pb_utils, n, np.ascontiguousarray(v[start:start + size]))
                       for n, v in zip(self.outputs, values)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start += size
        return responses
'''


@dataclasses.dataclass(frozen=True)
class ExportedModel:
    """One model written into the repository."""

    name: str
    config_path: Path
    model_path: Path
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def export_model(repo: Path | str, name: str, onnx_path: Path | str, cfg: TritonModelConfig) -> ExportedModel:
    """Writes ``repo/name/config.pbtxt`` and ``repo/name/1/model.onnx`` (and ``model.py`` for Python).

    The tensor metadata is read from the ONNX file with ONNX Runtime; every input and output must have the
    batch as its first, dynamic dimension.

    Raises:
        EngineError: for a model without a dynamic batch, or an unreadable file.
    """
    from engines.factory import create_engine
    from engines.options import OrtOptions

    with create_engine(Path(onnx_path), "onnxruntime", OrtOptions(device="cpu", intra_op_threads=1)) as eng:
        inputs, outputs = eng.inputs, eng.outputs
    for spec in (*inputs, *outputs):
        if spec.shape is None or not spec.shape or isinstance(spec.shape[0], int):
            raise EngineError(
                f"{onnx_path}: tensor {spec.describe()} has no dynamic batch dimension first; Triton's batcher "
                f"needs one (export the model with a dynamic batch)"
            )
    folder = Path(repo) / name
    version = folder / "1"
    version.mkdir(parents=True, exist_ok=True)
    model_file = version / "model.onnx"
    shutil.copyfile(onnx_path, model_file)
    if cfg.backend == "python":
        (version / "model.py").write_text(PYTHON_MODEL)
    config = folder / "config.pbtxt"
    config.write_text(config_pbtxt(name, inputs, outputs, cfg))
    log.info("wrote %s", config)
    return ExportedModel(name, config, model_file, tuple(inputs), tuple(outputs))


def export_repository(repo: Path | str, models: Sequence[tuple[str, Path]],
                      cfg: TritonModelConfig) -> list[ExportedModel]:  # fmt: skip
    """Writes every ``(name, onnx_path)`` into the repository ``repo`` (created if needed)."""
    Path(repo).mkdir(parents=True, exist_ok=True)
    return [export_model(repo, name, path, cfg) for name, path in models]


__all__ = ["ExportedModel", "PYTHON_MODEL", "TritonModelConfig", "config_pbtxt", "export_model", "export_repository"]
