"""Benchmarks of catalog models on each backend (library side of ``facetrack engines bench``).

Each (model, backend, batch) runs ``warmup`` untimed calls, then ``iters`` timed ``Engine.infer`` calls
on random inputs of the catalog's representative shape; the table reports p50/p95/mean latency and the
throughput (items per second at the mean latency). Timings are wall clock as a caller sees them,
including the feed check and, for TensorRT, the host<->device copies.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import platform
from collections.abc import Callable, Sequence

import numpy as np

from engines import catalog
from engines.base import Engine
from engines.factory import BACKEND_MODULES, ONNX_BACKENDS, backend_status, create_engine
from engines.options import EngineOptions, OrtOptions, TensorRTOptions, TritonOptions
from tracker.core.errors import TrackerError

log = logging.getLogger(__name__)


@dataclasses.dataclass
class BenchRow:
    """One line of the benchmark table.

    Attributes:
        model: Catalog name.
        backend: Backend name.
        batch: Batch size.
        shapes: Input shapes, e.g. ``"input=1x3x480x640"``.
        status: ``"ok"``, ``"skipped"`` or ``"error"``.
        note: Why skipped/failed, or details (provider, precision, threads).
        p50_ms, p95_ms, mean_ms: Latency of one ``infer`` call.
        items_per_s: ``batch / mean`` latency.
        iters: Timed calls.
    """

    model: str
    backend: str
    batch: int
    shapes: str = ""
    status: str = "ok"
    note: str = ""
    p50_ms: float = float("nan")
    p95_ms: float = float("nan")
    mean_ms: float = float("nan")
    items_per_s: float = float("nan")
    iters: int = 0


def random_feed(
    shapes: dict[str, tuple[int, ...]], dtypes: dict[str, np.dtype], seed: int = 0
) -> dict[str, np.ndarray]:
    """Uniform [0, 255) inputs (image-like) of the given shapes and dtypes."""
    rng = np.random.default_rng(seed)
    return {n: (rng.random(s) * 255).astype(dtypes.get(n, np.float32)) for n, s in shapes.items()}


def time_engine(
    engine: Engine, feed: dict[str, np.ndarray], iters: int, warmup: int
) -> tuple[float, float, float]:
    """(p50, p95, mean) ms of ``iters`` calls after ``warmup`` untimed ones (engine must be active)."""
    for _ in range(max(0, warmup)):
        engine.infer(feed)
    engine.reset_timing()
    for _ in range(max(1, iters)):
        engine.infer(feed)
    st = engine.latency()
    return st.p50_ms, st.p95_ms, st.mean_ms


def _engine_options(backend: str, entry: catalog.ModelEntry, max_batch: int, options: dict) -> EngineOptions:
    """Typed options for one benchmark case: TensorRT's profile covers the largest batch timed."""
    ort = {k: v for k, v in options.items() if k in ("intra_op_threads", "device") and v is not None}
    return EngineOptions(
        onnxruntime=OrtOptions(**ort),
        tensorrt=TensorRTOptions(precision=options.get("precision", "fp16"), max_batch=max_batch,
                                 profile=entry.trt_profile(max_batch), device_index=options.get("device_index", 0)),
        triton=TritonOptions(**({"url": options["triton_url"]} if options.get("triton_url") else {}),
                             model_name=entry.name),
    )  # fmt: skip


def _fmt_shapes(shapes: dict[str, tuple[int, ...]]) -> str:
    return " ".join(f"{n}={'x'.join(map(str, s))}" for n, s in shapes.items())


def run_benchmarks(
    entries: Sequence[catalog.ModelEntry],
    backends: Sequence[str],
    batches: Sequence[int] = (1,),
    iters: int = 100,
    warmup: int = 10,
    options: dict | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[BenchRow]:
    """Benchmarks every entry on every backend and batch size; never raises for one failing case.

    Args:
        entries: Catalog models.
        backends: Backend names (from :data:`engines.factory.BACKEND_MODULES`).
        batches: Batch sizes (models with a fixed batch run batch 1 only).
        iters: Timed calls per case.
        warmup: Untimed calls per case.
        options: ``intra_op_threads``/``device`` for ONNX Runtime, ``precision`` for TensorRT.
        progress: Called with a short description before each case.
    """
    options = dict(options or {})
    status = backend_status()
    rows: list[BenchRow] = []
    max_batch = max(batches)
    for entry in entries:
        path = entry.locate()
        if path is None:
            rows.append(
                BenchRow(entry.name, "*", 0, status="skipped", note=f"no model file yet ({entry.source})")
            )
            continue
        for backend in backends:
            if backend not in ONNX_BACKENDS:
                rows.append(BenchRow(entry.name, backend, 0, status="skipped",
                                     note=f"the {backend} backend runs nn.Modules, not ONNX files"))  # fmt: skip
                continue
            if status.get(backend) is not None:
                rows.append(BenchRow(entry.name, backend, 0, status="skipped", note=str(status[backend])))
                continue
            try:
                engine = create_engine(path, backend, _engine_options(backend, entry, max_batch, options))
                with engine:
                    dtypes = {s.name: s.dtype for s in engine.inputs}
                    note = _describe_engine(engine)
                    for batch in batches:
                        if batch != 1 and not entry.dynamic_batch:
                            rows.append(
                                BenchRow(
                                    entry.name, backend, batch, status="skipped", note="fixed batch of 1"
                                )
                            )
                            continue
                        shapes = entry.shapes_for_batch(batch)
                        if progress:
                            progress(f"{entry.name} {backend} batch {batch}")
                        p50, p95, mean = time_engine(engine, random_feed(shapes, dtypes), iters, warmup)
                        rows.append(BenchRow(entry.name, backend, batch, _fmt_shapes(shapes), "ok", note, p50, p95, mean,
                                             batch * 1000.0 / mean, iters))  # fmt: skip
            except TrackerError as exc:
                log.warning("%s on %s: %s", entry.name, backend, exc)
                rows.append(BenchRow(entry.name, backend, 0, status="error", note=str(exc)))
    return rows


def _describe_engine(engine: Engine) -> str:
    if engine.backend == "onnxruntime":
        return f"{engine.providers[0].replace('ExecutionProvider', '')}, {engine.intra_op_threads} threads"
    if engine.backend == "tensorrt":
        return f"{engine.precision}"
    return ""


def machine_info() -> dict:
    """What the numbers were measured on."""
    info = {"machine": platform.machine(), "processor": platform.processor(), "cpu_count": os.cpu_count(),
            "python": platform.python_version()}  # fmt: skip
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return info


def format_table(rows: Sequence[BenchRow]) -> str:
    """A fixed-width text table, grouped by model."""
    head = f"{'model':<16} {'backend':<12} {'batch':>5} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8} {'items/s':>9}  note"
    lines = [head, "-" * len(head)]
    last = None
    for r in rows:
        if last is not None and r.model != last:
            lines.append("")
        last = r.model
        if r.status == "ok":
            lines.append(f"{r.model:<16} {r.backend:<12} {r.batch:>5} {r.p50_ms:>8.2f} {r.p95_ms:>8.2f} {r.mean_ms:>8.2f} "
                         f"{r.items_per_s:>9.1f}  {r.shapes}; {r.note}")  # fmt: skip
        else:
            note = r.note if len(r.note) <= 100 else r.note[:97] + "..."  # the JSON keeps the whole reason
            lines.append(
                f"{r.model:<16} {r.backend:<12} {'-':>5} {'-':>8} {'-':>8} {'-':>8} {'-':>9}  {r.status}: {note}"
            )
    return "\n".join(lines)


def all_backends() -> list[str]:
    """The local backends (a Triton server is timed only when asked for, with its URL)."""
    return [b for b in BACKEND_MODULES if b != "triton"]


__all__ = [
    "BenchRow",
    "all_backends",
    "format_table",
    "machine_info",
    "random_feed",
    "run_benchmarks",
    "time_engine",
]
