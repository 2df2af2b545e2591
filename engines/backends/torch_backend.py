"""torch (eager) backend, for training and debugging: the same Engine interface over an ``nn.Module``.

This module is the only importer of ``torch`` among the backends. A module has no declared inputs, so
the caller names them (with shapes and dtypes, as :class:`~engines.base.TensorSpec`) and names the
outputs; the module is called with the inputs positionally in that order and may return a tensor, a
tuple/list of tensors (matched to the output names in order) or a dict of tensors by name. A TorchScript
file (``torch.jit.save``) may be given instead of a module.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engines.base import Engine, TensorSpec
from tracker.core.errors import EngineError

log = logging.getLogger(__name__)

EXTRA = "pip install 'facetrack[train]'"


def _import_torch():
    try:
        return importlib.import_module("torch")
    except ImportError as exc:
        raise EngineError(f"the torch backend needs PyTorch: {EXTRA} ({exc})") from exc


def is_available() -> bool:
    try:
        _import_torch()
    except EngineError:
        return False
    return True


class TorchEngine(Engine):
    """Runs a ``torch.nn.Module`` (eval mode, ``torch.inference_mode``).

    Args:
        module: The module, or a path to a TorchScript file.
        inputs: The module's positional inputs, in call order.
        outputs: Output names (or specs), in the order the module returns them.
        device: torch device string, e.g. ``"cpu"`` or ``"cuda:0"``.
        name: Name for messages; defaults to the module's class name or the file's stem.
        timing_window: See :class:`~engines.base.Engine`.
    """

    backend = "torch"

    def __init__(
        self,
        module,
        inputs: Sequence[TensorSpec],
        outputs: Sequence[str | TensorSpec],
        *,
        device: str = "cpu",
        name: str | None = None,
        timing_window: int = 1000,
    ) -> None:
        if isinstance(module, str | Path):
            default_name = Path(module).stem
        else:
            default_name = type(module).__name__
        super().__init__(name or default_name, timing_window)
        if not inputs or not all(isinstance(s, TensorSpec) for s in inputs):
            raise EngineError(f"{self}: inputs must be a non-empty sequence of TensorSpec")
        if not outputs:
            raise EngineError(f"{self}: give the output names")
        self._module_arg = module
        self._inputs = tuple(inputs)
        self._outputs = tuple(o if isinstance(o, TensorSpec) else TensorSpec(str(o), None) for o in outputs)
        self.device = device
        self._torch = None
        self._module = None

    def _activate(self) -> None:
        torch = _import_torch()
        self._torch = torch
        module = self._module_arg
        if isinstance(module, str | Path):
            path = Path(module)
            if not path.is_file():
                raise EngineError(f"{path}: no such TorchScript file")
            if path.suffix == ".onnx":
                raise EngineError(
                    f"{path}: the torch backend runs nn.Modules and TorchScript, not ONNX; use backend "
                    f"'onnxruntime' or 'tensorrt' for ONNX files"
                )
            try:
                module = torch.jit.load(str(path), map_location=self.device)
            except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError/ValueError on bad archives
                raise EngineError(f"{path}: cannot load the TorchScript file ({exc})") from exc
        if not isinstance(module, torch.nn.Module):
            raise EngineError(f"{self}: expected a torch.nn.Module, got {type(module).__name__}")
        try:
            self._module = module.to(self.device).eval()
        except (RuntimeError, AssertionError) as exc:
            raise EngineError(f"{self}: cannot move the module to {self.device!r}: {exc}") from exc

    def _deactivate(self) -> None:
        self._module = None

    def _input_specs(self) -> tuple[TensorSpec, ...]:
        return self._inputs

    def _output_specs(self) -> tuple[TensorSpec, ...]:
        return self._outputs

    def _infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch = self._torch
        args = [torch.from_numpy(feed[s.name]).to(self.device) for s in self._inputs]
        try:
            with torch.inference_mode():
                result = self._module(*args)
        except Exception as exc:  # noqa: BLE001 - any module error, reported with the shapes
            shapes = ", ".join(f"{s.name}{tuple(feed[s.name].shape)}" for s in self._inputs)
            raise EngineError(f"{self}: the module failed on inputs {shapes}: {exc}") from exc
        names = [s.name for s in self._outputs]
        if isinstance(result, torch.Tensor):
            result = (result,)
        if isinstance(result, dict):
            missing = [n for n in names if n not in result]
            if missing:
                raise EngineError(
                    f"{self}: the module's output dict lacks {missing}; it has {sorted(result)}"
                )
            values = [result[n] for n in names]
        elif isinstance(result, tuple | list):
            if len(result) != len(names):
                raise EngineError(
                    f"{self}: the module returned {len(result)} outputs, expected {len(names)}: {names}"
                )
            values = list(result)
        else:
            raise EngineError(f"{self}: unsupported module output type {type(result).__name__}")
        return {n: v.detach().cpu().numpy() for n, v in zip(names, values, strict=True)}


__all__ = ["EXTRA", "TorchEngine", "is_available"]
