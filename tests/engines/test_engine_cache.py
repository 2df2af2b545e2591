"""The TensorRT engine cache: key, file names, build-once semantics across real processes, timing caches."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from engines.engine_cache import EngineCache, EngineCacheKey, file_lock, profile_signature
from tracker.core.errors import EngineError

KEY = EngineCacheKey(
    onnx_sha256="a" * 64, tensorrt_version="10.3.0", gpu_name="NVIDIA GeForce RTX 3080", compute_capability="8.6",
    precision="fp16", profile=profile_signature({"input": ((1, 3, 32, 32), (1, 3, 256, 320), (4, 3, 1088, 1920))}),
)  # fmt: skip


def test_key_digest_depends_on_every_field():
    variants = [
        {"onnx_sha256": "b" * 64}, {"tensorrt_version": "10.4.0"}, {"gpu_name": "NVIDIA A100"},
        {"compute_capability": "8.0"}, {"precision": "fp32"}, {"profile": profile_signature({"input": ((1,), (2,), (8,))})},
    ]  # fmt: skip
    digests = {KEY.digest} | {dataclasses.replace(KEY, **v).digest for v in variants}
    assert len(digests) == len(variants) + 1
    assert KEY.digest == dataclasses.replace(KEY).digest, "the digest is deterministic"


def test_key_filename_is_readable_and_validated():
    name = KEY.filename("yunet_s_dynamic")
    assert name.startswith("yunet-s-dynamic.fp16.nvidia-geforce-rtx-3080-sm86.trt10-3-0.")
    assert name.endswith(".engine") and KEY.digest[:12] in name
    with pytest.raises(EngineError, match="precision"):
        dataclasses.replace(KEY, precision="int4")
    with pytest.raises(EngineError, match="64 hex"):
        dataclasses.replace(KEY, onnx_sha256="xyz")


def test_profile_signature_is_order_independent():
    a = profile_signature({"a": ((1, 2), (2, 2), (4, 2)), "b": ((1,), (1,), (8,))})
    b = profile_signature({"b": ([1], [1], [8]), "a": ([1, 2], [2, 2], [4, 2])})
    assert a == b


def test_get_or_build_builds_once_then_reads(tmp_path):
    cache = EngineCache(tmp_path)
    calls = []

    def build():
        calls.append(1)
        return b"plan-bytes"

    data, built = cache.get_or_build(KEY, "model", build)
    assert (data, built) == (b"plan-bytes", True)
    data, built = cache.get_or_build(KEY, "model", build)
    assert (data, built) == (b"plan-bytes", False)
    assert len(calls) == 1
    (entry,) = cache.entries()
    assert entry["precision"] == "fp16" and entry["gpu_name"] == KEY.gpu_name
    assert Path(entry["path"]).read_bytes() == b"plan-bytes"
    # rebuild, then invalidate
    assert cache.get_or_build(KEY, "model", lambda: b"new", rebuild=True) == (b"new", True)
    cache.invalidate(KEY, "model")
    assert cache.load(KEY, "model") is None and cache.entries() == []


def test_failed_build_leaves_nothing(tmp_path):
    cache = EngineCache(tmp_path)

    def build():
        raise EngineError("parser failed")

    with pytest.raises(EngineError, match="parser failed"):
        cache.get_or_build(KEY, "model", build)
    assert cache.load(KEY, "model") is None
    assert not list(tmp_path.glob("*.engine")) and not list(tmp_path.glob("*.tmp"))


def _build_in_child(root: str, marker_dir: str, start_at: float) -> bytes:
    cache = EngineCache(root)

    def build() -> bytes:
        (Path(marker_dir) / f"built-by-{os.getpid()}").touch()
        time.sleep(0.5)  # a slow build: the other process must wait, not build again
        return b"engine-from-%d" % os.getpid()

    while time.time() < start_at:  # start both builders together
        time.sleep(0.005)
    return cache.get_or_build(KEY, "model", build)[0]


def test_two_processes_build_once(tmp_path):
    markers = tmp_path / "markers"
    markers.mkdir()
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 1.5
    with ctx.Pool(2) as pool:
        results = pool.starmap(_build_in_child, [(str(tmp_path / "cache"), str(markers), start_at)] * 2)
    assert len(list(markers.iterdir())) == 1, "exactly one process built the engine"
    assert results[0] == results[1], "the other process read the engine the first one wrote"
    assert not list((tmp_path / "cache").glob("*.tmp"))


def test_file_lock_times_out_while_held(tmp_path):
    lock = tmp_path / "x.lock"
    with file_lock(lock):
        # flock conflicts between two open file descriptions even within one process.
        with pytest.raises(EngineError, match="still locked"), file_lock(lock, timeout_s=0.3, poll_s=0.05):
            pass
    with file_lock(lock, timeout_s=0.3):
        pass  # free again


def test_timing_cache_update_merges_under_lock(tmp_path):
    cache = EngineCache(tmp_path)
    path = cache.timing_cache_path("10.3.0", "NVIDIA A100", "8.0")
    assert path.name == "timing.nvidia-a100-sm80.trt10-3-0.cache"
    assert cache.read_timing_cache(path) == b""
    cache.update_timing_cache(path, lambda old: old + b"first;")
    cache.update_timing_cache(path, lambda old: old + b"second;")
    assert cache.read_timing_cache(path) == b"first;second;"
