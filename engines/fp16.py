"""Half-precision copies of ONNX models, for TensorRT's strongly typed networks.

TensorRT 11 builds only strongly typed networks: every tensor runs in the type the ONNX file gives it,
and the ``BuilderFlag.FP16`` switch of TensorRT 10 is gone. An fp16 engine therefore starts from an fp16
ONNX file. :func:`fp16_onnx` writes one (weights and activations float16, inputs and outputs kept
float32 so that callers feed and read the same arrays on every backend, numerically sensitive ops left in
float32), with the converter that ships inside ONNX Runtime (``onnxruntime.transformers.float16``, so no
further dependency), and caches it by the source file's sha256.

The converted file is itself an ordinary ONNX model: ONNX Runtime runs it too, which is how the CPU tests
check it (tests/engines/test_fp16.py).
"""

from __future__ import annotations

import importlib
import logging
import os
from pathlib import Path

from engines.engine_cache import atomic_write_bytes, file_lock
from engines.onnx_file import check_onnx_file
from tracker.core.assets import file_sha256
from tracker.core.errors import EngineError

log = logging.getLogger(__name__)

EXTRA = "pip install onnx  (in the 'gpu' and 'dev' extras; needed to convert a model to fp16)"


def convert_to_fp16_bytes(onnx_path: Path | str) -> bytes:
    """The serialised fp16 version of an fp32 ONNX file (float32 inputs and outputs kept).

    Raises:
        EngineError: when ``onnx`` is missing or the conversion fails.
    """
    try:
        onnx = importlib.import_module("onnx")
        float16 = importlib.import_module("onnxruntime.transformers.float16")
    except ImportError as exc:
        raise EngineError(f"converting {onnx_path} to fp16 needs onnx and onnxruntime: {EXTRA} ({exc})") from exc
    try:
        model = onnx.load(str(onnx_path))
        converted = float16.convert_float_to_float16(model, keep_io_types=True)
        _sort_topologically(converted.graph)
        return converted.SerializeToString()
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError, ValidationError, ...
        raise EngineError(f"{onnx_path}: conversion to fp16 failed ({type(exc).__name__}: {exc})") from exc


def _sort_topologically(graph) -> None:
    """Reorders ``graph.node`` so every node comes after the producers of its inputs.

    The converter appends its input casts at the end of the graph; ONNX requires (and TensorRT's parser
    reads nodes in) topological order.
    """
    known = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:
            raise EngineError(f"the fp16 graph has a cycle or a missing input near node {pending[0].name!r}")
        for n in ready:
            known.update(n.output)
        ordered += ready
        ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ids]
    copies = [type(n)() for n in ordered]
    for c, n in zip(copies, ordered, strict=True):
        c.CopyFrom(n)
    del graph.node[:]
    graph.node.extend(copies)


def fp16_onnx(onnx_path: Path | str, cache_root: Path | str) -> Path:
    """An fp16 copy of ``onnx_path`` under ``cache_root``, made once per source file content.

    Args:
        onnx_path: The fp32 model.
        cache_root: Folder for the copies (the TensorRT engine cache's ``onnx16/``).

    Returns:
        ``<cache_root>/<stem>.<sha12>.fp16.onnx``.
    """
    src = check_onnx_file(onnx_path)
    root = Path(cache_root)
    root.mkdir(parents=True, exist_ok=True)
    out = root / f"{src.stem}.{file_sha256(src)[:12]}.fp16.onnx"
    if out.is_file() and out.stat().st_size > 0:
        return out
    with file_lock(out.with_suffix(".lock")):
        if not out.is_file():  # another process may have written it while this one waited
            log.info("converting %s to fp16 for TensorRT (once)", src.name)
            atomic_write_bytes(out, convert_to_fp16_bytes(src))
    os.utime(out)
    return out


__all__ = ["convert_to_fp16_bytes", "fp16_onnx"]
