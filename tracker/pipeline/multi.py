"""Several cameras in one pipeline: one tracker per source, one regressor call per tick for every crop.

Each source keeps a :class:`~tracker.tracking.Tracker` of its own (tracks, ids, identity hold, filters,
optical-flow state), made with :meth:`Tracker.sibling` so that every tracker shares one detector and one
regressor: the networks load once. One track thread runs ticks; a tick takes a frame from every source --
the next frame of each lossless source (files, image folders, the synthetic source: in lockstep, every
frame tracked) and the newest frame of each live one (a camera with no new frame sits the tick out) --
prepares each tracker's crops (:meth:`Tracker.prepare`: flow, detection when due), runs the regressor
**once** on the crops of all sources (:meth:`Regressor.regress_many`: one batch on the CPU, one GPU
launch, or one request that Triton's dynamic batcher sees whole) and hands each tracker its share
(:meth:`Tracker.finish`). The sinks -- the publisher, the writers -- get ``(source name, frame, result)``
on their own :class:`~tracker.pipeline.pipeline.Stage` workers, as in the one-camera
:class:`~tracker.pipeline.pipeline.Pipeline`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from tracker.core.errors import CameraTimeoutError, ConfigError
from tracker.core.types import Frame, TrackResult
from tracker.pipeline.pipeline import _END, PipelineStats, Timings, _StagedPipeline
from tracker.stream.protocol import check_source_name

log = logging.getLogger(__name__)

#: A consumer of one camera's results: ``sink(source name, frame, result)`` on its own stage thread (or,
#: with a true ``runs_inline`` attribute, on the track thread: it must only hand the result on).
MultiSink = Callable[[str, Frame, TrackResult], None]

#: How long a tick with only live cameras and no new frame waits before looking again (s).
_LIVE_POLL_S = 0.002


def split_source_arg(arg: str) -> tuple[str | None, str]:
    """``"cam1=webcam:0"`` -> ``("cam1", "webcam:0")``; ``"webcam:0"`` -> ``(None, "webcam:0")``.

    A ``NAME=`` prefix is one whose part before the first ``=`` holds no ``:`` (so ``video:a=b.mp4`` is
    a path, not a name).

    Raises:
        ConfigError: for a prefix that is not a valid source name (:func:`check_source_name`).
    """
    head, sep, tail = arg.partition("=")
    if not sep or ":" in head:
        return None, arg
    try:
        return check_source_name(head), tail
    except ConfigError as exc:
        raise ConfigError(f"--source {arg!r}: {exc}") from None


def name_sources(args: Sequence[str]) -> list[tuple[str, str]]:
    """(name, source string) per ``--source`` value; an unnamed source at position i is ``s<i>``.

    Raises:
        ConfigError: for a bad or duplicate name, or no source at all.
    """
    if not args:
        raise ConfigError("no source given; pass --source SRC (several for several cameras)")
    named = []
    for i, arg in enumerate(args):
        name, spec = split_source_arg(arg)
        named.append((name if name is not None else f"s{i}", spec))
    seen: set[str] = set()
    for name, _ in named:
        if name in seen:
            raise ConfigError(f"duplicate source name {name!r}; give each --source its own NAME= prefix")
        seen.add(name)
    return named


@dataclasses.dataclass
class SourceStats:
    """One camera's share of a multi-source run.

    Attributes:
        source_id: The source's id (e.g. ``synthetic:3``).
        frames_tracked: Its frames that were tracked.
        frames_dropped: Its frames the tracker never saw (a camera moved on; 0 for lossless sources).
        frames_captured: tracked + dropped.
        faces_per_frame: Mean faces (not lost) per tracked frame.
        fps: Its tracked frames per second (first to last).
        lossless: Whether every frame of it was tracked.
    """

    source_id: str
    frames_tracked: int
    frames_dropped: int
    frames_captured: int
    faces_per_frame: float
    fps: float
    lossless: bool


@dataclasses.dataclass
class BatchStats:
    """The regressor calls of a multi-source run: one per tick that had crops.

    Attributes:
        calls: Regressor calls (``regress_many`` with at least one crop).
        crops: Crops regressed in all of them.
        mean_crops_per_call: crops / calls (``sources x faces`` when every camera sees its faces).
        max_crops_per_call: The largest batch.
        call_ms: Duration of one call (count, p50, p95, mean), ms.
    """

    calls: int
    crops: int
    mean_crops_per_call: float
    max_crops_per_call: int
    call_ms: dict[str, float]


class _PerSource:
    """Counters of one source inside the track thread."""

    def __init__(self) -> None:
        self.tracked = 0
        self.faces = 0
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.ended = False


class MultiPipeline(_StagedPipeline):
    """sources -> one track thread (one regressor call per tick) -> sinks, each on its own worker.

    Args:
        sources: name -> :class:`~tracker.sources.base.FrameSource` (connected by :meth:`start` if needed).
        trackers: name -> :class:`~tracker.tracking.Tracker`, one per source, all over one regressor
            (:meth:`Tracker.sibling`).
        sinks: name -> ``sink(source name, frame, result)``; each runs on its own worker.
        queue_size: Length of each sink queue; default 8 per source when every source is lossless, else 1
            per source.
        read_timeout_ms: How long a lossless source is waited for before the thread checks for a stop
            (and waits again: lossless sources stay in lockstep).

    Raises:
        ConfigError: when the names of sources and trackers differ or the trackers do not share one
            regressor.
    """

    def __init__(self, sources: Mapping[str, object], trackers: Mapping[str, object],
                 sinks: Mapping[str, MultiSink] | None = None, queue_size: int | None = None,
                 read_timeout_ms: float = 200.0) -> None:  # fmt: skip
        if not sources:
            raise ConfigError("a multi-source pipeline needs at least one source")
        if list(sources) != list(trackers):
            raise ConfigError(f"sources {list(sources)} and trackers {list(trackers)} must have the same names")
        for name in sources:
            check_source_name(name)
        regressors = {id(t.regressor) for t in trackers.values()}
        if len(regressors) != 1:
            raise ConfigError("the trackers of a multi-source pipeline must share one regressor (Tracker.sibling)")
        self.sources = dict(sources)
        self.trackers = dict(trackers)
        self.regressor = next(iter(self.trackers.values())).regressor
        self.lossless = all(bool(getattr(s, "lossless", False)) for s in self.sources.values())
        self._read_timeout_ms = read_timeout_ms
        self._max_frames: int | None = None
        self._per = {name: _PerSource() for name in self.sources}
        self._t_first: float | None = None
        self._t_last: float | None = None
        self.latency = Timings()
        self.read_timings = Timings()
        self.tick_timings = Timings()
        self.call_timings = Timings()
        self._calls = 0
        self._crops = 0
        self._max_crops = 0
        self._tracker_timings: dict[str, Timings] = {}
        self._init_stages(sinks, self.lossless, queue_size or (8 if self.lossless else 1) * len(self.sources))

    # ------------------------------------------------------------------ workers
    def _active(self) -> list[str]:
        return [n for n, p in self._per.items()
                if not p.ended and (self._max_frames is None or p.tracked < self._max_frames)]  # fmt: skip

    def _read(self, name: str, stop: threading.Event) -> Frame | None:
        """The next frame of a lossless source (waiting for it), or a live source's new frame if it has one."""
        source = self.sources[name]
        lossless = bool(getattr(source, "lossless", False))
        while not stop.is_set() and not self._finish.is_set():
            t0 = time.perf_counter()
            try:
                frame = source.async_read(timeout_ms=self._read_timeout_ms if lossless else 0.0)
            except CameraTimeoutError:
                if lossless:
                    continue  # keep the lockstep: every lossless source gives a frame each tick
                return None  # a camera without a new frame sits this tick out
            if frame is None:
                self._per[name].ended = True  # end of this stream; the others go on
                return None
            self.read_timings.add((time.perf_counter() - t0) * 1e3)
            return frame
        return None

    def _track_loop(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set() and not self._finish.is_set():
                active = self._active()
                if not active:
                    break
                frames = {}
                for name in active:
                    frame = self._read(name, stop)
                    if frame is not None:
                        frames[name] = frame
                if frames:
                    self._tick(frames, stop)
                elif any(not getattr(self.sources[n], "lossless", False) for n in active):
                    stop.wait(_LIVE_POLL_S)
        finally:
            for stage in self._sinks.values():
                stage.put(_END, stop)

    def _tick(self, frames: dict[str, Frame], stop: threading.Event) -> None:
        """Tracks one frame of each source, with one regressor call for all their crops."""
        t_tick = time.perf_counter()
        plans = {name: self.trackers[name].prepare(frame) for name, frame in frames.items()}
        n_crops = sum(len(p.crops) for p in plans.values())
        t = time.perf_counter()
        regs = self.regressor.regress_many([(p.frame, p.crops) for p in plans.values()])
        call_ms = (time.perf_counter() - t) * 1e3
        if n_crops:
            self._calls += 1
            self._crops += n_crops
            self._max_crops = max(self._max_crops, n_crops)
            self.call_timings.add(call_ms)
        results = {name: self.trackers[name].finish(plan, r, call_ms, n_crops)
                   for (name, plan), r in zip(plans.items(), regs, strict=True)}  # fmt: skip
        self.tick_timings.add((time.perf_counter() - t_tick) * 1e3)
        now = time.perf_counter()
        self._t_first = self._t_first or now
        self._t_last = now
        for name, result in results.items():
            frame = frames[name]
            per = self._per[name]
            per.tracked += 1
            per.faces += sum(1 for f in result.faces if f.state != "lost")
            per.t_first = per.t_first or now
            per.t_last = now
            self.latency.add((time.monotonic_ns() - frame.t_capture_ns) / 1e6)
            for key, ms in result.timings_ms.items():
                self._tracker_timings.setdefault(key, Timings()).add(ms)
            for sink_name, sink in self._inline.items():
                t0 = time.perf_counter()
                sink(name, frame, result)
                self._inline_timings[sink_name].add((time.perf_counter() - t0) * 1e3)
            for stage in self._sinks.values():
                stage.put((name, frame, result), stop)

    # ------------------------------------------------------------------ control
    def start(self, max_frames: int | None = None) -> MultiPipeline:
        """Connects the sources, warms the (shared) engines up and starts every worker (once).

        Args:
            max_frames: Frames to track **per source**, or None for all.
        """
        if self._started:
            return self
        self._max_frames = max_frames
        for source in self.sources.values():
            if not source.is_connected:
                source.connect()
        for tracker in self.trackers.values():
            warmup = getattr(tracker, "warmup", None)
            if warmup is not None:
                warmup()
        for stage in self._sinks.values():
            stage.worker.start()
        self._track.start()
        self._started = True
        return self

    @property
    def frames_tracked(self) -> int:
        """Frames tracked over all sources."""
        return sum(p.tracked for p in self._per.values())

    def _sources(self) -> dict[str, object]:
        return self.sources

    # ------------------------------------------------------------------ results
    def stats(self) -> PipelineStats:
        """The run over all sources together (frames summed; ``track`` is one tick of every source)."""
        tracked = self.frames_tracked
        dropped = sum(int(getattr(s, "frames_dropped", 0)) for s in self.sources.values())
        span = (self._t_last - self._t_first) if self._t_first and self._t_last else 0.0
        ticks = self.tick_timings.summary()["count"]
        stages = {"capture": self.read_timings.summary(), "track": self.tick_timings.summary(),
                  "regress_call": self.call_timings.summary()}  # fmt: skip
        stages.update({f"track.{k.removesuffix('_ms')}": t.summary() for k, t in self._tracker_timings.items()})
        stages.update({n: t.summary() for n, t in self._inline_timings.items()})
        stages.update({n: s.timings.summary() for n, s in self._sinks.items()})
        return PipelineStats(
            frames_captured=tracked + dropped,
            frames_tracked=tracked,
            frames_dropped=dropped,
            sink_dropped={n: s.dropped for n, s in self._sinks.items()} | {n: 0 for n in self._inline},
            fps=(tracked - len(self.sources)) / span if span > 0 and ticks > 1 else 0.0,
            stages_ms=stages,
            latency_ms=self.latency.summary(),
            faces_per_frame=sum(p.faces for p in self._per.values()) / tracked if tracked else 0.0,
            lossless=self.lossless,
        )

    def source_stats(self) -> dict[str, SourceStats]:
        """Each source's frames tracked and dropped, faces per frame and fps."""
        out = {}
        for name, per in self._per.items():
            source = self.sources[name]
            dropped = int(getattr(source, "frames_dropped", 0))
            span = (per.t_last - per.t_first) if per.t_first and per.t_last else 0.0
            out[name] = SourceStats(
                source_id=str(getattr(source, "source_id", name)),
                frames_tracked=per.tracked,
                frames_dropped=dropped,
                frames_captured=per.tracked + dropped,
                faces_per_frame=per.faces / per.tracked if per.tracked else 0.0,
                fps=(per.tracked - 1) / span if span > 0 else 0.0,
                lossless=bool(getattr(source, "lossless", False)),
            )
        return out

    def batch_stats(self) -> BatchStats:
        """The regressor calls: how many, how many crops each carried, how long each took."""
        return BatchStats(self._calls, self._crops, self._crops / self._calls if self._calls else 0.0,
                          self._max_crops, self.call_timings.summary())  # fmt: skip


__all__ = ["BatchStats", "MultiPipeline", "MultiSink", "SourceStats", "name_sources", "split_source_arg"]
