"""Checks an ONNX file before a runtime sees it, so a bad file fails with its name and a fix.

A truncated download or a file of the wrong kind otherwise surfaces as a protobuf error deep inside
ONNX Runtime or the TensorRT parser. :func:`check_onnx_file` reads the file with the ``onnx`` package when
it is installed (it is in the ``train`` and ``dev`` extras, not the runtime's dependencies) and runs the
structural checker; without it, the backends still wrap their own load errors with the file name.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path

import numpy as np

from tracker.core.errors import EngineError

log = logging.getLogger(__name__)

_FIX = "the file is truncated, corrupt or not an ONNX model: restore or re-export it"


def check_onnx_file(path: Path | str) -> Path:
    """Validates that ``path`` holds a loadable ONNX model.

    Args:
        path: The ``.onnx`` file.

    Returns:
        The path, as a :class:`~pathlib.Path`.

    Raises:
        EngineError: naming the file when it is missing, empty, unparsable or structurally invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"{path}: no such model file")
    size = path.stat().st_size
    if size == 0:
        raise EngineError(f"{path}: the model file is empty; {_FIX}")
    try:
        onnx = importlib.import_module("onnx")
    except ImportError:
        log.debug("onnx is not installed; %s is checked by the runtime only", path)
        return path
    try:
        # External data (weights in side files) is not needed for a structural check.
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several unrelated types on bad bytes
        raise EngineError(
            f"{path}: cannot parse the ONNX model ({type(exc).__name__}: {exc}); {_FIX}"
        ) from exc
    if not model.graph.node or not model.graph.output:
        raise EngineError(f"{path}: the ONNX graph has no nodes or no outputs; {_FIX}")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:  # noqa: BLE001 - ValidationError and friends
        raise EngineError(f"{path}: the ONNX model is invalid ({exc}); {_FIX}") from exc
    return path


__all__ = ["check_onnx_file"]


#: ONNX metadata key of the head-frame point (metres, "x,y,z") a model's offset and scale refer to.
POSE_ANCHOR_KEY = "pose_anchor_head_m"


def pose_anchor_of(path: Path) -> np.ndarray:
    """(3,) float64: the pose anchor an exported CoarseNet was trained with (tracker.core.crop.POSE_ANCHOR_HEAD_M).

    Read from the ONNX file's metadata; a file without the key predates the anchor and refers its offset
    and scale to the head origin, (0, 0, 0).

    Raises:
        EngineError: if the file cannot be read or the value is malformed.
    """
    import onnxruntime as ort

    try:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        meta = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]).get_modelmeta()
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise EngineError(f"{path}: cannot read the model's metadata ({exc}); restore or re-export it") from exc
    text = meta.custom_metadata_map.get(POSE_ANCHOR_KEY)
    if text is None:
        return np.zeros(3)
    try:
        anchor = np.array([float(v) for v in text.split(",")])
    except ValueError:
        anchor = np.zeros(0)
    if anchor.shape != (3,) or not np.isfinite(anchor).all() or np.abs(anchor).max() > 0.5:
        raise EngineError(f"{path}: metadata {POSE_ANCHOR_KEY}={text!r} is not 'x,y,z' in metres; re-export the model")
    return anchor
