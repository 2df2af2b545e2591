"""The threaded pipeline: capture -> track (detect/track + regress + filter) -> outputs (ARCHITECTURE §7).

Each stage is a :class:`Stage`: a thread that owns a stop event and a bounded drop-oldest input queue
(latency beats completeness: a stage that falls behind loses old frames, never grows a backlog). The
capture stage reads the source with a timeout so it notices a stop even when the camera hangs. Detection
and regression share the tracking thread because the next frame's crop depends on this frame's
regression; the publisher (its own thread, :class:`~tracker.stream.publisher.Publisher`) and the preview
renderer consume results from their own queues, so a slow preview never delays the stream.

A stage's exception stops the pipeline and is re-raised in the caller by :meth:`Pipeline.run`,
:meth:`Pipeline.raise_if_failed` or :meth:`Pipeline.stop`. ``stop()`` sets every stop event, wakes the
queues, joins with a timeout and never hangs; a thread stuck in a driver call is left behind (daemon) and
reported in the log.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable

import numpy as np

from tracker.core.errors import CameraTimeoutError
from tracker.core.types import Frame, TrackResult
from tracker.pipeline.handoff import DropOldestQueue

log = logging.getLogger(__name__)

#: A consumer of results: called on its own stage thread with (frame, result).
Sink = Callable[[Frame, TrackResult], None]


class Timings:
    """A bounded window of durations (ms) with percentiles; thread-safe."""

    def __init__(self, window: int = 2000) -> None:
        self._lock = threading.Lock()
        self._ms: np.ndarray = np.zeros(window)
        self._n = 0

    def add(self, ms: float) -> None:
        with self._lock:
            self._ms[self._n % len(self._ms)] = ms
            self._n += 1

    def summary(self) -> dict[str, float]:
        with self._lock:
            a = self._ms[: min(self._n, len(self._ms))].copy()
        if a.size == 0:
            return {"count": 0, "p50": float("nan"), "p95": float("nan"), "mean": float("nan")}
        p50, p95 = np.percentile(a, [50, 95])
        return {"count": int(self._n), "p50": float(p50), "p95": float(p95), "mean": float(a.mean())}


class Stage:
    """One pipeline thread: takes items from its queue, processes them, hands results on.

    Args:
        name: Thread and statistics name.
        fn: ``fn(item)``; its return value goes to ``emit`` (None emits nothing).
        emit: Where results go (another stage's :meth:`put`), or None.
        queue_size: Input queue length (drop-oldest).
        on_error: Called with the exception when ``fn`` raises; the stage then stops.
    """

    def __init__(self, name: str, fn: Callable, emit: Callable | None = None, queue_size: int = 2,
                 on_error: Callable[[BaseException], None] | None = None) -> None:  # fmt: skip
        self.name = name
        self._fn = fn
        self._emit = emit
        self.queue: DropOldestQueue = DropOldestQueue(queue_size)
        self._on_error = on_error
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"stage-{name}", daemon=True)
        self.timings = Timings()
        self.processed = 0
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def put(self, item) -> bool:
        return self.queue.put(item)

    @property
    def dropped(self) -> int:
        return self.queue.dropped

    def _run(self) -> None:
        while not self._stop.is_set():
            item = self.queue.get(0.05)
            if item is None:
                continue
            t0 = time.perf_counter()
            try:
                out = self._fn(item)
            except BaseException as exc:  # handed to the pipeline's caller
                self.error = exc
                if self._on_error:
                    self._on_error(exc)
                return
            self.timings.add((time.perf_counter() - t0) * 1e3)
            self.processed += 1
            if out is not None and self._emit is not None:
                self._emit(out)

    def stop(self) -> None:
        self._stop.set()
        self.queue.wake()

    def join(self, timeout_s: float) -> bool:
        if self._thread.is_alive():
            self._thread.join(timeout_s)
        return not self._thread.is_alive()


def _unpacking(sink: Sink) -> Callable:
    """Adapts ``sink(frame, result)`` to a stage function taking one ``(frame, result)`` item."""
    return lambda item: sink(*item)


@dataclasses.dataclass
class PipelineStats:
    """What a run measured (all times in ms).

    ``frames_dropped`` counts frames the tracker never saw (it fell behind the source); ``sink_dropped``
    counts results a sink (e.g. the preview) skipped to keep up.
    """

    frames_captured: int
    frames_tracked: int
    frames_dropped: int
    sink_dropped: dict[str, int]
    fps: float
    stages_ms: dict[str, dict[str, float]]
    latency_ms: dict[str, float]
    faces_per_frame: float

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class Pipeline:
    """capture -> track -> sinks, each on its own thread.

    Args:
        source: A :class:`~tracker.sources.base.FrameSource` (connected by :meth:`start` if needed).
        tracker: Anything with ``process(frame) -> TrackResult`` (a :class:`~tracker.tracking.Tracker`).
        sinks: name -> callable(frame, result); each runs on its own thread with a drop-oldest queue.
        on_result: Called on the tracking thread after each result (cheap work only, e.g. publishing).
        queue_size: Length of every stage queue (1-2 keeps latency low).
        read_timeout_ms: Capture read timeout; the capture thread checks for a stop at least this often.
    """

    def __init__(self, source, tracker, sinks: dict[str, Sink] | None = None,
                 on_result: Callable[[Frame, TrackResult], None] | None = None,
                 queue_size: int = 2, read_timeout_ms: float = 200.0) -> None:  # fmt: skip
        self.source = source
        self.tracker = tracker
        self._on_result = on_result
        self._read_timeout_ms = read_timeout_ms
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()
        self._frames_captured = 0
        self._faces = 0
        self._t_first: float | None = None
        self._t_last: float | None = None
        self.latency = Timings()
        self.capture_timings = Timings()
        self._tracker_timings: dict[str, Timings] = {}
        self._sinks = {
            name: Stage(name, _unpacking(fn), queue_size=queue_size, on_error=self._fail)
            for name, fn in (sinks or {}).items()
        }
        self._track = Stage("track", self._track_one, self._fan_out, queue_size, self._fail)
        self._capture_thread = threading.Thread(target=self._capture, name="stage-capture", daemon=True)
        self._started = False

    # ------------------------------------------------------------------ stages
    def _fail(self, exc: BaseException) -> None:
        with self._error_lock:
            if self._error is None:
                self._error = exc
        self._stop.set()

    def _capture(self) -> None:
        try:
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    frame = self.source.async_read(timeout_ms=self._read_timeout_ms)
                except CameraTimeoutError:
                    continue  # a slow camera: keep waiting (and keep checking for a stop)
                if frame is None:
                    break  # end of stream
                self.capture_timings.add((time.perf_counter() - t0) * 1e3)
                self._frames_captured += 1
                self._track.put(frame)
        except BaseException as exc:
            self._fail(exc)
        finally:
            self._ended.set()

    def _track_one(self, frame: Frame):
        result = self.tracker.process(frame)
        for key, ms in result.timings_ms.items():
            self._tracker_timings.setdefault(key, Timings()).add(ms)
        if self._on_result is not None:
            self._on_result(frame, result)
        now = time.monotonic_ns()
        self.latency.add((now - frame.t_capture_ns) / 1e6)
        self._faces += sum(1 for f in result.faces if f.state != "lost")
        t = time.perf_counter()
        self._t_first = self._t_first or t
        self._t_last = t
        return frame, result

    def _fan_out(self, item) -> None:
        for stage in self._sinks.values():
            stage.put(item)

    # ------------------------------------------------------------------ control
    def start(self) -> Pipeline:
        if self._started:
            return self
        if not self.source.is_connected:
            self.source.connect()
        for stage in self._sinks.values():
            stage.start()
        self._track.start()
        self._capture_thread.start()
        self._started = True
        return self

    def raise_if_failed(self) -> None:
        """Re-raises a stage's exception in the calling thread."""
        if self._error is not None:
            raise self._error

    def run(self, max_frames: int | None = None, duration_s: float | None = None,
            progress: Callable[[int], None] | None = None) -> PipelineStats:  # fmt: skip
        """Starts (if needed) and blocks until end of stream, ``max_frames`` tracked, ``duration_s`` or a stop.

        Raises:
            The first exception any stage raised.
        """
        self.start()
        deadline = time.monotonic() + duration_s if duration_s else float("inf")
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                if max_frames is not None and self._track.processed >= max_frames:
                    break
                if self._ended.is_set() and len(self._track.queue) == 0 and self._idle():
                    break
                if progress:
                    progress(self._track.processed)
                time.sleep(0.01)
        finally:
            self.stop()
        self.raise_if_failed()
        return self.stats()

    def _idle(self) -> bool:
        # Let the track stage finish the frame it holds before declaring the end of stream.
        time.sleep(0.05)
        return len(self._track.queue) == 0

    def stop(self, timeout_s: float = 1.0) -> None:
        """Stops every stage within about ``timeout_s``; never hangs. Idempotent."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        self._track.stop()
        for stage in self._sinks.values():
            stage.stop()
        # Closing the source unblocks a reader waiting on the device; do it off-thread so a driver that
        # hangs in close() cannot hang us.
        closer = threading.Thread(target=self.source.close, name="source-close", daemon=True)
        closer.start()
        for name, joiner in [("capture", lambda t: self._capture_thread.join(t) or not self._capture_thread.is_alive()),
                             ("track", self._track.join),
                             *[(n, s.join) for n, s in self._sinks.items()],
                             ("source-close", lambda t: closer.join(t) or not closer.is_alive())]:  # fmt: skip
            if self._started or name == "source-close":
                if not joiner(max(0.0, deadline - time.monotonic())):
                    log.warning("pipeline: %s did not stop within %.1f s; left behind", name, timeout_s)

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ results
    def stats(self) -> PipelineStats:
        tracked = self._track.processed
        span = (self._t_last - self._t_first) if self._t_first and self._t_last else 0.0
        stages = {"capture": self.capture_timings.summary(), "track": self._track.timings.summary()}
        stages.update({f"track.{k.removesuffix('_ms')}": t.summary() for k, t in self._tracker_timings.items()})
        stages.update({n: s.timings.summary() for n, s in self._sinks.items()})
        return PipelineStats(
            frames_captured=self._frames_captured,
            frames_tracked=tracked,
            frames_dropped=self._track.dropped,
            sink_dropped={n: s.dropped for n, s in self._sinks.items()},
            fps=(tracked - 1) / span if span > 0 else 0.0,
            stages_ms=stages,
            latency_ms=self.latency.summary(),
            faces_per_frame=self._faces / tracked if tracked else 0.0,
        )


__all__ = ["Pipeline", "PipelineStats", "Sink", "Stage", "Timings"]
