"""The threaded pipeline: clean stop from any state, exception propagation, bounded memory."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tracker.core.errors import CameraError
from tracker.core.types import Frame, Intrinsics
from tracker.pipeline import Pipeline
from tracker.pipeline.runtime import RuntimeOptions, create_tracker
from tracker.sources.base import FrameSource


@pytest.fixture(scope="module")
def tracker(tmp_path_factory, face_model):
    """A real tracker (YuNet + CoarseNet through ONNX Runtime) with untrained weights: the pipeline's
    mechanics do not depend on what the network predicts."""
    from engines.models.coarsenet import CoarseNet
    from engines.train.export import export_onnx

    path = tmp_path_factory.mktemp("weights") / "coarsenet.onnx"
    export_onnx(CoarseNet().eval(), path)
    t = create_tracker(RuntimeOptions(backend="onnxruntime", model=path, threads=1), face_model=face_model)
    yield t
    t.close()


class NoiseSource(FrameSource):
    """Random small frames, as fast as asked (a stand-in camera with no face)."""

    def __init__(self, n_frames: int | None = None, fail_after: int | None = None, block_after: int | None = None,
                 live: bool = True, size: tuple[int, int] = (160, 120)):
        super().__init__("noise")
        self.is_live = live  # a live camera keeps only the newest frame; a file delivers every frame
        self._k = Intrinsics.from_fov(size[0], size[1], 60)
        self._rng = np.random.default_rng(0)
        self._i = 0
        self.n_frames, self.fail_after, self.block_after = n_frames, fail_after, block_after
        self.unblock = threading.Event()

    @property
    def intrinsics(self) -> Intrinsics:
        return self._k

    def _open(self) -> None:
        pass

    def _read_next(self) -> Frame | None:
        if self.n_frames is not None and self._i >= self.n_frames:
            return None
        if self.fail_after is not None and self._i >= self.fail_after:
            raise CameraError("injected: the camera was unplugged")
        if self.block_after is not None and self._i >= self.block_after:
            self.unblock.wait()  # a driver call that never returns
            return None
        self._i += 1
        img = self._rng.integers(0, 255, (self._k.height, self._k.width, 3), dtype=np.uint8)
        return Frame(self._i - 1, time.monotonic_ns(), img, self._k, source_id="noise")


def _stop_time(pipe: Pipeline) -> float:
    t0 = time.perf_counter()
    pipe.stop(timeout_s=1.0)
    return time.perf_counter() - t0


def test_stops_within_a_second_while_running(tracker):
    pipe = Pipeline(NoiseSource(), tracker).start()
    time.sleep(0.5)
    assert _stop_time(pipe) < 1.2
    assert pipe.stats().frames_tracked > 0


def test_stops_within_a_second_when_the_source_blocks(tracker):
    src = NoiseSource(block_after=3)
    pipe = Pipeline(src, tracker).start()
    time.sleep(0.5)
    try:
        assert _stop_time(pipe) < 1.2
    finally:
        src.unblock.set()


def test_stops_before_start_and_twice(tracker):
    pipe = Pipeline(NoiseSource(n_frames=5), tracker)
    assert _stop_time(pipe) < 1.2
    assert _stop_time(pipe) < 1.2


def test_source_failure_is_raised_in_the_caller(tracker):
    pipe = Pipeline(NoiseSource(fail_after=5), tracker)
    with pytest.raises(CameraError, match="unplugged"):
        pipe.run(duration_s=10)


def test_sink_failure_is_raised_in_the_caller(tracker):
    def broken_sink(frame, result):
        raise RuntimeError("injected: disk full")

    pipe = Pipeline(NoiseSource(n_frames=50), tracker, sinks={"writer": broken_sink})
    with pytest.raises(RuntimeError, match="disk full"):
        pipe.run(duration_s=10)


def test_end_of_stream_ends_the_run_with_stats(tracker):
    seen = []
    pipe = Pipeline(NoiseSource(n_frames=20, live=False), tracker,
                    sinks={"count": lambda f, r: seen.append(r.frame_index)})
    stats = pipe.run(duration_s=30)
    assert stats.lossless and stats.frames_captured == stats.frames_tracked == 20 and stats.frames_dropped == 0
    assert stats.stages_ms["track"]["count"] == 20
    assert stats.latency_ms["p50"] > 0 and seen == list(range(20))


def test_a_file_loses_no_frame_to_a_slow_sink(tracker):
    # The sink is far slower than the source and the tracker: the run slows down, nothing is dropped.
    seen = []

    def slow_sink(frame, result):
        time.sleep(0.004)
        seen.append(frame.index)

    stats = Pipeline(NoiseSource(n_frames=120, live=False, size=(64, 48)), tracker,
                     sinks={"slow": slow_sink, "fast": lambda f, r: None}).run(duration_s=120)
    assert seen == list(range(120))
    assert stats.frames_tracked == 120 and stats.sink_dropped == {"slow": 0, "fast": 0}


def test_max_frames_and_duration_end_like_a_stream_and_sinks_drain(tracker):
    seen = []
    stats = Pipeline(NoiseSource(live=False), tracker, sinks={"s": lambda f, r: seen.append(f.index)}).run(max_frames=7)
    assert stats.frames_tracked == 7 and seen == list(range(7))
    seen.clear()
    stats = Pipeline(NoiseSource(live=False), tracker, sinks={"s": lambda f, r: seen.append(f.index)}).run(duration_s=0.3)
    assert stats.frames_tracked > 0 and seen == list(range(stats.frames_tracked))  # every tracked frame drained


def test_a_file_that_behaves_like_a_camera_counts_what_it_drops(tracker):
    # --realtime: the reader keeps only the newest frame. How many are dropped depends on the machine, but
    # every frame is either tracked or counted as dropped, and the tracked ones stay in order.
    src = NoiseSource(n_frames=150, live=False, size=(64, 48))
    src.drop_when_behind = True
    seen = []
    stats = Pipeline(src, tracker, sinks={"s": lambda f, r: seen.append(f.index)}).run(duration_s=120)
    assert not stats.lossless
    assert stats.frames_tracked + stats.frames_dropped == 150 == stats.frames_captured
    assert seen == sorted(seen) and len(set(seen)) == len(seen)


def test_engines_warm_up_before_the_first_frame(tracker):
    tracker.close()  # engines deactivated, as after a previous run
    assert not tracker.regressor.engine.is_active
    src = NoiseSource(block_after=0, live=False)  # no frame arrives until released
    pipe = Pipeline(src, tracker)
    pipe.start()
    # Active and already run (warm-up calls are kept out of the latency statistics) before any frame.
    assert tracker.regressor.engine.is_active and pipe.frames_tracked == 0
    src.unblock.set()
    assert pipe.run().frames_tracked == 0


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


@pytest.mark.slow
def test_memory_does_not_grow_over_5000_frames(tracker):
    pipe = Pipeline(NoiseSource(n_frames=5000, live=False, size=(64, 48)), tracker, sinks={"noop": lambda f, r: None}, queue_size=2)
    pipe.start()
    while pipe.stats().frames_captured < 1000:
        time.sleep(0.05)
    base = _rss_mb()
    stats = pipe.run(duration_s=300)
    grown = _rss_mb() - base
    assert stats.frames_captured == 5000
    assert grown < 25.0, f"resident memory grew by {grown:.1f} MB over 4000 frames"


def test_an_inline_sink_runs_on_the_track_thread(tracker):
    class Inline:
        runs_inline = True

        def __init__(self):
            self.threads = set()
            self.seen = []

        def __call__(self, frame, result):
            self.threads.add(threading.current_thread().name)
            self.seen.append(frame.index)

    sink = Inline()
    stats = Pipeline(NoiseSource(n_frames=6, live=False), tracker, sinks={"pub": sink}).run()
    assert sink.threads == {"worker-track"} and sink.seen == list(range(6))
    assert stats.stages_ms["pub"]["count"] == 6 and stats.sink_dropped == {"pub": 0}
