"""Render timings: a full 640x480 frame of the whole head, a 128x128 face crop, and crops in batch mode.

Wall-clock times depend on what else the machine runs (llvmpipe rasterises on the CPU), so each figure also
has the process CPU time per render (all threads, llvmpipe's included) and the load average is reported.
"""

from __future__ import annotations

import os
import time

import numpy as np
from tqdm import tqdm

from engines.train.background import procedural_background
from tracker.core.face_model.albedo import procedural_albedo
from tracker.core.types import FaceCoefficients, Intrinsics
from tracker.render.renderer import Renderer
from tracker.sources.performance import performance_frame


def _stats(wall: list[float], cpu: list[float]) -> dict:
    w, c = np.asarray(wall) * 1e3, np.asarray(cpu) * 1e3
    return {
        "p50_ms": float(np.median(w)),
        "p95_ms": float(np.percentile(w, 95)),
        "cpu_p50_ms": float(np.median(c)),
    }


def _timed(fn, items, desc: str, progress: bool) -> dict:
    fn(items[0])  # warm-up: shader compile, texture upload, framebuffer allocation
    wall, cpu = [], []
    for it in tqdm(items, desc=desc, disable=not progress, leave=False):
        t0, c0 = time.perf_counter(), time.process_time()
        fn(it)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return _stats(wall, cpu)


def benchmark_renderer(
    renderer: Renderer | None = None, frames: int = 60, batch: int = 64, seed: int = 0, progress: bool = True
) -> dict:
    """Times the renderer on the synthetic performance.

    Args:
        renderer: Renderer to time (one is made and closed when None).
        frames: Renders per measurement.
        batch: Crops per :meth:`Renderer.render_batch` call.
        seed: Performance, albedo and background seed.
        progress: Show progress bars.

    Returns:
        ``{"full_640x480": {p50_ms, p95_ms, cpu_p50_ms}, "crop_128": {...}, "batch_128": {crops_per_s, ms_per_crop},
        "cpu_geometry_ms": numpy vertices + normals per frame, "gl_renderer", "cpu_count", "load_average"}``.
    """
    own = renderer is None
    r = renderer if renderer is not None else Renderer()
    try:
        model = r.model
        albedo = procedural_albedo(model, seed)
        full_k = Intrinsics.from_fov(640, 480, 60.0)
        background = procedural_background(seed, 640, 480)
        params = [performance_frame(seed, (i * 7) % 390) for i in range(frames)]
        out = {
            "full_640x480": _timed(
                lambda p: r.render(p, full_k, albedo, background), params, "640x480", progress
            )
        }
        # A crop as training renders it: a narrow virtual camera looking at the face, which fills the crop.
        crop_k = Intrinsics.from_fov(128, 128, 24.0)
        crops = [
            FaceCoefficients(p.identity, p.expression, p.rotation, np.array([0.0, 0.0, 0.6]), p.lighting)
            for p in params
        ]
        out["crop_128"] = _timed(
            lambda p: r.render(p, crop_k, albedo, (90, 90, 90)), crops, "128x128", progress
        )
        reps = max(1, frames // batch) + 1
        items = [crops[i % len(crops)] for i in range(batch)]
        r.render_batch(items, crop_k, albedo)  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in tqdm(range(reps), desc="batch", disable=not progress, leave=False):
            r.render_batch(items, crop_k, albedo, (90, 90, 90))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        out["batch_128"] = {
            "batch": batch,
            "crops_per_s": reps * batch / wall,
            "ms_per_crop": wall / (reps * batch) * 1e3,
            "cpu_ms_per_crop": cpu / (reps * batch) * 1e3,
        }
        geo = _timed(
            lambda p: r.layout.vertex_normals(r.model_vertices_cm(p.identity, p.expression)),
            params,
            "geometry",
            False,
        )
        out["cpu_geometry_ms"] = geo["cpu_p50_ms"]
        out["gl_renderer"] = r.gl_renderer
        out["cpu_count"] = os.cpu_count()
        out["load_average"] = list(os.getloadavg())
        return out
    finally:
        if own:
            r.close()
