"""The threaded pipeline: source -> track (detect/track + regress + filter) -> sinks (ARCHITECTURE §7).

The track stage reads the source directly: a camera's reader thread keeps a one-slot latest frame, so the
tracker always takes the newest one (latency beats completeness); a file or image folder hands over every
frame in order and waits until it is taken (completeness beats speed). Each sink -- the publisher, the
preview, the recorder, the CSV/JSONL writers -- is a :class:`Stage` on its own :class:`Worker`, fed by the
queue the source calls for: blocking for lossless sources (nothing is dropped, a slow sink slows the run),
drop-oldest for live ones (a slow preview never delays the stream).

Detection and regression share the tracking thread because the next frame's crop depends on this frame's
regression. The engines warm up in :meth:`Pipeline.start`, before the first frame. A worker's exception
stops the pipeline and is re-raised in the caller by :meth:`Pipeline.run`, :meth:`Pipeline.raise_if_failed`
or :meth:`Pipeline.stop`. At the end of a stream (or ``max_frames``, or ``duration_s``) the sinks drain what
they were handed; ``stop()`` stops at once, joins with a timeout and never hangs.
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
from tracker.pipeline.handoff import DropOldestQueue, handoff_for
from tracker.pipeline.worker import Worker

log = logging.getLogger(__name__)

#: A consumer of results: called on its own stage thread with (frame, result). A sink object with a true
#: ``runs_inline`` attribute never blocks (it only hands the result to a thread of its own, as the publisher
#: does) and is called on the track thread instead, which saves a thread hop on the latency path.
Sink = Callable[[Frame, TrackResult], None]

#: Queued after the last result: a sink stage returns once it has handled everything before it.
_END = object()


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
    """One sink on its own worker: takes (frame, result) items from its queue and calls the sink.

    An item is the tuple of the sink's arguments: ``(frame, result)`` here, ``(source name, frame, result)``
    in the multi-camera :class:`~tracker.pipeline.multi.MultiPipeline`.

    Args:
        name: Worker and statistics name.
        sink: ``sink(frame, result)`` (``sink(*item)``).
        queue: Its input queue (:func:`~tracker.pipeline.handoff.handoff_for`).
        on_error: Called with the exception when ``sink`` raises; the stage then ends.
    """

    def __init__(self, name: str, sink: Sink, queue: DropOldestQueue,
                 on_error: Callable[[BaseException], None] | None = None) -> None:  # fmt: skip
        self.name = name
        self._sink = sink
        self.queue = queue
        self.worker = Worker(name, self._loop, on_error=on_error, on_stop=queue.wake)
        self.timings = Timings()
        self.processed = 0

    def _loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            item = self.queue.get(0.05)
            if item is None:
                continue
            if item is _END:
                return
            t0 = time.perf_counter()
            self._sink(*item)
            self.timings.add((time.perf_counter() - t0) * 1e3)
            self.processed += 1

    def put(self, item, stop: threading.Event) -> bool:
        return self.queue.put(item, stop)

    @property
    def dropped(self) -> int:
        return self.queue.dropped


@dataclasses.dataclass
class PipelineStats:
    """What a run measured (all times in ms).

    ``frames_dropped`` counts frames the tracker never saw: a camera (or a file with ``drop_when_behind``)
    moved on while the tracker was busy; a lossless source drops none. ``sink_dropped`` counts results a
    sink skipped to keep up (live sources only). ``latency_ms`` is capture -> tracked.
    """

    frames_captured: int
    frames_tracked: int
    frames_dropped: int
    sink_dropped: dict[str, int]
    fps: float
    stages_ms: dict[str, dict[str, float]]
    latency_ms: dict[str, float]
    faces_per_frame: float
    lossless: bool = False

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


class _StagedPipeline:
    """What every pipeline shares: the track worker, the sink stages (inline or on their own workers), the
    first error, and the stop signal. Subclasses implement ``_track_loop(stop)``."""

    def _init_stages(self, sinks: dict | None, lossless: bool, queue_size: int) -> None:
        self._error: BaseException | None = None
        self._error_lock = threading.Lock()
        self._finish = threading.Event()  # end gracefully: stop reading, let the sinks drain
        sinks = dict(sinks or {})
        self._inline = {name: fn for name, fn in sinks.items() if getattr(fn, "runs_inline", False)}
        self._inline_timings = {name: Timings() for name in self._inline}
        self._sinks = {name: Stage(name, fn, handoff_for(lossless, queue_size), self._fail)
                       for name, fn in sinks.items() if name not in self._inline}  # fmt: skip
        self._track = Worker("track", self._track_loop, on_error=self._fail)
        self._started = False

    def _fail(self, exc: BaseException) -> None:
        with self._error_lock:
            if self._error is None:
                self._error = exc
        self._signal_stop()

    def _signal_stop(self) -> None:
        self._finish.set()
        self._track.stop()
        for stage in self._sinks.values():
            stage.worker.stop()

    def _sources(self) -> dict[str, object]:
        """name -> every source the pipeline reads (closed by :meth:`stop`)."""
        raise NotImplementedError

    def raise_if_failed(self) -> None:
        """Re-raises a worker's exception in the calling thread."""
        if self._error is not None:
            raise self._error

    def _workers(self) -> list[Worker]:
        return [self._track, *(s.worker for s in self._sinks.values())]

    def run(self, max_frames: int | None = None, duration_s: float | None = None,
            progress: Callable[[int], None] | None = None) -> PipelineStats:  # fmt: skip
        """Starts (if needed) and blocks until end of stream, ``max_frames`` tracked (per source),
        ``duration_s`` or a stop. Every result handed to the sinks before the end is handled by them before
        this returns; ``progress`` gets the frames tracked so far.

        Raises:
            The first exception any worker raised.
        """
        self.start(max_frames)
        deadline = time.monotonic() + duration_s if duration_s else float("inf")
        try:
            while any(w.is_alive for w in self._workers()) and self._error is None:
                if time.monotonic() >= deadline:
                    self._finish.set()  # end as at the end of a stream: the sinks drain
                if progress:
                    progress(self.frames_tracked)
                time.sleep(0.01)
            if progress:
                progress(self.frames_tracked)
        finally:
            self.stop()
        self.raise_if_failed()
        return self.stats()

    def stop(self, timeout_s: float = 1.0) -> None:
        """Stops every worker within about ``timeout_s``; never hangs. Idempotent."""
        self._signal_stop()
        deadline = time.monotonic() + timeout_s
        # Closing a source unblocks a reader waiting on the device; do it off-thread so a driver that
        # hangs in close() cannot hang us.
        closers = [Worker(f"source-close-{name}", lambda _stop, s=source: s.close())
                   for name, source in self._sources().items()]  # fmt: skip
        for closer in closers:
            closer.start()
        for worker in [*self._workers(), *closers]:
            worker.join(deadline - time.monotonic())

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class Pipeline(_StagedPipeline):
    """source -> track -> sinks, each on its own :class:`Worker`.

    Args:
        source: A :class:`~tracker.sources.base.FrameSource` (connected by :meth:`start` if needed); its
            ``lossless`` property chooses the hand-off.
        tracker: Anything with ``process(frame) -> TrackResult`` (a :class:`~tracker.tracking.Tracker`);
            its ``warmup()``, if it has one, runs in :meth:`start`.
        sinks: name -> callable(frame, result); each runs on its own worker.
        queue_size: Length of each sink queue; default 8 for lossless sources, 1 for live ones (a live
            sink renders or sends the newest result, never a backlog).
        read_timeout_ms: Source read timeout; the track worker checks for a stop at least this often.
    """

    def __init__(self, source, tracker, sinks: dict[str, Sink] | None = None, queue_size: int | None = None,
                 read_timeout_ms: float = 200.0) -> None:  # fmt: skip
        self.source = source
        self.tracker = tracker
        self.lossless = bool(getattr(source, "lossless", False))
        self._read_timeout_ms = read_timeout_ms
        self._max_frames: int | None = None
        self._tracked = 0
        self._faces = 0
        self._t_first: float | None = None
        self._t_last: float | None = None
        self.latency = Timings()
        self.read_timings = Timings()
        self.track_timings = Timings()
        self._tracker_timings: dict[str, Timings] = {}
        self._init_stages(sinks, self.lossless, queue_size or (8 if self.lossless else 1))

    # ------------------------------------------------------------------ workers
    def _track_loop(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set() and not self._finish.is_set():
                if self._max_frames is not None and self._tracked >= self._max_frames:
                    break
                t0 = time.perf_counter()
                try:
                    frame = self.source.async_read(timeout_ms=self._read_timeout_ms)
                except CameraTimeoutError:
                    continue  # a slow camera: keep waiting (and keep checking for a stop)
                if frame is None:
                    break  # end of stream
                self.read_timings.add((time.perf_counter() - t0) * 1e3)
                self._track_one(frame, stop)
        finally:
            for stage in self._sinks.values():
                stage.put(_END, stop)

    def _track_one(self, frame: Frame, stop: threading.Event) -> None:
        t0 = time.perf_counter()
        result = self.tracker.process(frame)
        self.track_timings.add((time.perf_counter() - t0) * 1e3)
        self.latency.add((time.monotonic_ns() - frame.t_capture_ns) / 1e6)
        for key, ms in result.timings_ms.items():
            self._tracker_timings.setdefault(key, Timings()).add(ms)
        self._faces += sum(1 for f in result.faces if f.state != "lost")
        self._tracked += 1
        t = time.perf_counter()
        self._t_first = self._t_first or t
        self._t_last = t
        for name, sink in self._inline.items():
            t0 = time.perf_counter()
            sink(frame, result)
            self._inline_timings[name].add((time.perf_counter() - t0) * 1e3)
        for stage in self._sinks.values():
            stage.put((frame, result), stop)

    # ------------------------------------------------------------------ control
    def start(self, max_frames: int | None = None) -> Pipeline:
        """Connects the source, warms the engines up and starts every worker (once)."""
        if self._started:
            return self
        self._max_frames = max_frames
        if not self.source.is_connected:
            self.source.connect()
        warmup = getattr(self.tracker, "warmup", None)
        if warmup is not None:
            warmup()
        for stage in self._sinks.values():
            stage.worker.start()
        self._track.start()
        self._started = True
        return self

    @property
    def frames_tracked(self) -> int:
        return self._tracked

    def _sources(self) -> dict[str, object]:
        return {"source": self.source}

    # ------------------------------------------------------------------ results
    def stats(self) -> PipelineStats:
        tracked = self._tracked
        dropped = int(getattr(self.source, "frames_dropped", 0))
        span = (self._t_last - self._t_first) if self._t_first and self._t_last else 0.0
        stages = {"capture": self.read_timings.summary(), "track": self.track_timings.summary()}
        stages.update({f"track.{k.removesuffix('_ms')}": t.summary() for k, t in self._tracker_timings.items()})
        stages.update({n: t.summary() for n, t in self._inline_timings.items()})
        stages.update({n: s.timings.summary() for n, s in self._sinks.items()})
        return PipelineStats(
            frames_captured=tracked + dropped,
            frames_tracked=tracked,
            frames_dropped=dropped,
            sink_dropped={n: s.dropped for n, s in self._sinks.items()} | {n: 0 for n in self._inline},
            fps=(tracked - 1) / span if span > 0 else 0.0,
            stages_ms=stages,
            latency_ms=self.latency.summary(),
            faces_per_frame=self._faces / tracked if tracked else 0.0,
            lossless=self.lossless,
        )


__all__ = ["Pipeline", "PipelineStats", "Sink", "Stage", "Timings"]
