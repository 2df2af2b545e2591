"""Model catalog, backend selection and the benchmark runner (real ONNX Runtime on the real YuNet)."""

from __future__ import annotations

import math

import pytest

from engines import bench, catalog
from engines.factory import BACKENDS, available_backends, backend_status, resolve_backend
from tracker.core.errors import EngineError


def test_yunet_entries_are_found_through_the_asset_registry():
    dyn = catalog.get_entry("yunet")
    assert dyn.locate() is not None and dyn.locate().name == "yunet_s_dynamic.onnx"
    assert catalog.get_entry("yunet-640").require().name == "face_detection_yunet_2023mar.onnx"


def test_entry_without_a_file_is_skipped_not_fatal(tmp_path):
    entry = catalog.ModelEntry(
        "future-net", weights="does_not_exist_yet.onnx", bench_shapes={"image": (1, 3, 64, 64)}
    )
    assert entry.source == "weights/does_not_exist_yet.onnx"
    assert entry.locate() is None
    with pytest.raises(EngineError, match="does not exist yet"):
        entry.require()
    rows = bench.run_benchmarks([entry], ["onnxruntime"], iters=1, warmup=0)
    assert [(r.status, r.model) for r in rows] == [("skipped", "future-net")]
    assert "no model file yet" in rows[0].note


def test_entry_validation_and_profiles():
    with pytest.raises(EngineError, match="exactly one of asset= or weights="):
        catalog.ModelEntry("x", bench_shapes={"i": (1, 3)})
    dyn = catalog.get_entry("yunet")
    lo, opt, hi = dyn.trt_profile(max_batch=4)["input"]
    assert lo[0] == 1 and hi[0] == 4 and opt == dyn.bench_shapes["input"]
    assert all(a <= b <= c for a, b, c in zip(lo, opt, hi, strict=True))
    fixed = catalog.get_entry("yunet-640")
    assert fixed.trt_profile(8)["input"] == ((1, 3, 640, 640),) * 3
    with pytest.raises(EngineError, match="fixed batch"):
        fixed.shapes_for_batch(2)
    with pytest.raises(EngineError, match="unknown model"):
        catalog.get_entry("nope")


def test_backend_status_here():
    status = backend_status()
    assert set(status) == set(BACKENDS) - {"auto"}
    assert status["onnxruntime"] is None
    assert "onnxruntime" in available_backends()
    assert resolve_backend("auto") in ("onnxruntime", "tensorrt")
    if status["tensorrt"] is not None:
        assert "facetrack[gpu]" in status["tensorrt"]
        assert resolve_backend("auto") == "onnxruntime"


def test_benchmark_rows_and_table():
    entries = [catalog.get_entry("yunet"), catalog.get_entry("yunet-640")]
    rows = bench.run_benchmarks(entries, ["onnxruntime", "torch"], batches=[1, 2], iters=3, warmup=1,
                                options={"intra_op_threads": 1})  # fmt: skip
    ok = [(r.model, r.batch) for r in rows if r.status == "ok"]
    assert ok == [("yunet", 1), ("yunet", 2), ("yunet-640", 1)]
    for r in rows:
        if r.status == "ok":
            assert r.backend == "onnxruntime" and r.iters == 3
            assert 0 < r.p50_ms <= r.p95_ms and math.isclose(r.items_per_s, r.batch * 1000 / r.mean_ms)
            assert "1 threads" in r.note
    skipped = {(r.model, r.backend, r.note.split(":")[0]) for r in rows if r.status == "skipped"}
    assert ("yunet", "torch", "the torch backend runs nn.Modules, not ONNX files") in skipped
    assert any(r.note == "fixed batch of 1" for r in rows)
    table = bench.format_table(rows)
    assert "p50 ms" in table and "yunet-640" in table
