"""Benchmark: capture -> tracked latency of the pipeline with a live 60 fps source and a slow tracker.

A camera-like source (``is_live``: one-slot latest frame) produces a frame every 1/60 s; the tracker takes
``--tracker-ms`` per frame (a sleep: the benchmark measures the hand-off, not a network). The pipeline's
latency is capture -> tracked; the bound the design promises is one frame interval plus the tracker time
(a frame waits at most for the tracker to finish the one before).

    .venv/bin/python scripts/pipeline_latency.py --seconds 10 --tracker-ms 25
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from tracker.core.types import Frame, Intrinsics, TrackResult
from tracker.pipeline import Pipeline
from tracker.sources.base import FrameSource


class Camera60(FrameSource):
    """A live source at ``fps``: frames are stamped when they are "exposed", on the source's own clock."""

    is_live = True

    def __init__(self, fps: float = 60.0) -> None:
        super().__init__("bench-camera")
        self.fps = fps
        self._k = Intrinsics.from_fov(64, 48, 60)
        self._i = 0
        self._t0 = 0.0

    def _open(self) -> None:
        self._intrinsics = self._k
        self._t0 = time.monotonic()

    def _read_next(self) -> Frame | None:
        wait = self._t0 + self._i / self.fps - time.monotonic()
        if wait > 0 and self._stop.wait(wait):
            return None
        self._i += 1
        return Frame(self._i - 1, time.monotonic_ns(), np.zeros((48, 64, 3), np.uint8), self._k,
                     t_media_ns=round((self._i - 1) * 1e9 / self.fps))  # fmt: skip


class SlowTracker:
    def __init__(self, ms: float) -> None:
        self.ms = ms

    def process(self, frame: Frame) -> TrackResult:
        time.sleep(self.ms / 1e3)
        return TrackResult(frame.index, frame.t_capture_ns, time.monotonic_ns(), [], {}, frame.source_id)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--tracker-ms", type=float, default=25.0)
    ap.add_argument("--fps", type=float, default=60.0)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    src = Camera60(args.fps)
    stats = Pipeline(src, SlowTracker(args.tracker_ms), sinks={"publisher": lambda f, r: None}).run(duration_s=args.seconds)
    bound = 1e3 / args.fps + args.tracker_ms
    out = {"fps": args.fps, "tracker_ms": args.tracker_ms, "frames_tracked": stats.frames_tracked,
           "frames_dropped": stats.frames_dropped, "capture_to_tracked_ms": stats.latency_ms,
           "bound_ms": bound, "within_bound": stats.latency_ms["p50"] <= bound}  # fmt: skip
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
