"""One tracking session as users run it: source -> pipeline -> ZeroMQ stream (+ preview, + recording).

``facetrack run`` and ``facetrack demo`` are thin wrappers over :func:`run_session`; ``facetrack run`` with
several ``--source`` values over :func:`run_multi_session` (one tracker per camera, one regressor call per
tick, one stream per camera on its own topics).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping
from pathlib import Path

from tracker.pipeline.pipeline import Pipeline, PipelineStats, Sink, Timings

log = logging.getLogger(__name__)


@dataclasses.dataclass
class SessionReport:
    """What a session measured.

    Attributes:
        pipeline: Frame counts, fps, per-stage timings, capture -> hand-off latency.
        sent_latency_ms: Capture -> message sent on the socket (p50/p95), measured in the publisher thread.
        published: Result messages sent; dropped: results the publisher had to drop.
        endpoint: Where the stream was bound.
        recorded: Messages written to the stream log (0 without ``--record``).
        sources: Several cameras only: name -> that camera's frames tracked and dropped, faces per frame
            and fps (:class:`~tracker.pipeline.multi.SourceStats` as a dict); None for one camera.
        regressor_batches: Several cameras only: the regressor calls, the crops they carried (mean and
            largest batch) and their duration (:class:`~tracker.pipeline.multi.BatchStats` as a dict).
    """

    pipeline: PipelineStats
    sent_latency_ms: dict[str, float]
    published: int
    dropped: int
    endpoint: str
    recorded: int = 0
    sources: dict[str, dict] | None = None
    regressor_batches: dict | None = None

    def to_dict(self) -> dict:
        """As plain types; a one-camera report has exactly the keys it always had."""
        d = dataclasses.asdict(self)
        for key in ("sources", "regressor_batches"):
            if d[key] is None:
                del d[key]
        return d


class _SentTap:
    """Publisher callback: records capture -> sent latency and (optionally) writes what was sent to a log."""

    def __init__(self, record_path: Path | None, info: dict) -> None:
        self.latency = Timings()
        self._writer = None
        self._lock = threading.Lock()
        if record_path is not None:
            from tracker.stream.recording import LogWriter

            self._writer = LogWriter(record_path, info)

    def __call__(self, frames, t_sent_ns: int, result) -> None:
        if result is not None:
            self.latency.add((t_sent_ns - result.t_capture_ns) / 1e6)
        if self._writer is not None:
            with self._lock:
                self._writer.write(frames, t_sent_ns)

    @property
    def recorded(self) -> int:
        return self._writer.records if self._writer is not None else 0

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


class _PublisherSink:
    """The stream as a pipeline sink. ``Publisher.publish`` only queues (its own thread sends), so it runs
    inline on the track thread: one thread hop less between capture and the socket."""

    runs_inline = True

    def __init__(self, publisher) -> None:
        self._publisher = publisher

    def __call__(self, frame, result) -> None:
        self._publisher.publish(result)


def _expected_total(sources: list, max_frames: int | None) -> int | None:
    """Frames the run will track over all ``sources`` (each the smaller of ``max_frames`` and what it
    knows it holds), or None when a source does not know its length."""
    totals = []
    for source in sources:
        known = [n for n in (max_frames, getattr(source, "expected_frames", None)) if n is not None]
        totals.append(min(known) if known else None)
    return None if None in totals else sum(totals)


def _stream(pipeline, publisher, bar, lossless: bool, max_frames: int | None, duration_s: float | None):
    """Runs ``pipeline`` with ``publisher`` bound (a Ctrl-C stops it cleanly) and flushes what it queued.

    Returns:
        (pipeline stats, publisher stats, the endpoint bound).
    """
    with publisher:
        log.info("streaming on %s", publisher.endpoint)
        try:
            stats = pipeline.run(max_frames=max_frames, duration_s=duration_s,
                                 progress=lambda n: bar.update(n - bar.n))  # fmt: skip
        except KeyboardInterrupt:
            log.warning("interrupted: stopping the pipeline")
            pipeline.stop()
            stats = pipeline.stats()
        publisher.flush(2.0 if lossless else 1.0)
        return stats, publisher.stats(), publisher.endpoint


def run_session(source, tracker, *, endpoint: str, model_id: str = "coarsenet_v1", preview=None,
                record_path: Path | None = None, max_frames: int | None = None, duration_s: float | None = None,
                curve_keys_dir: Path | None = None, sinks: dict[str, Sink] | None = None,
                progress: bool = True) -> SessionReport:  # fmt: skip
    """Runs ``source`` through ``tracker`` until end of stream, ``max_frames``, ``duration_s`` or Ctrl-C.

    Args:
        source: A :class:`~tracker.sources.base.FrameSource`; a lossless one (a file read as fast as it
            is tracked) has every frame tracked, published and handed to every sink.
        tracker: A :class:`~tracker.tracking.Tracker`.
        endpoint: ZeroMQ endpoint to bind the result stream to.
        model_id: Sent in the stream metadata.
        preview: Optional :class:`~tracker.pipeline.preview.PreviewSink`.
        record_path: Write everything sent into a stream log (``facetrack replay`` plays it back).
        curve_keys_dir: Encrypt the stream with CURVE (``facetrack stream keygen``).
        sinks: More consumers of (frame, result), each on its own worker (e.g. the CSV and JSONL writers).
        progress: Show a progress bar (with a total and an ETA when the source knows its length).

    A Ctrl-C stops the session cleanly: the log keeps every complete message and the stats are returned.
    """
    from tqdm import tqdm

    from tracker.stream.publisher import Publisher

    source.connect()
    lossless = bool(getattr(source, "lossless", False))
    tap = _SentTap(record_path, {"source": source.source_id, "endpoint": endpoint})
    # A lossless run hands the publisher every result; a deep queue keeps the recording complete too.
    publisher = Publisher(endpoint, model_id=model_id, intrinsics=source.intrinsics, curve_keys_dir=curve_keys_dir,
                          on_sent=tap, queue_size=256 if lossless else 2)  # fmt: skip
    all_sinks: dict[str, Sink] = {"publisher": _PublisherSink(publisher)}
    if preview is not None:
        all_sinks["preview"] = preview
    all_sinks.update(sinks or {})
    pipeline = Pipeline(source, tracker, sinks=all_sinks)
    bar = tqdm(total=_expected_total([source], max_frames), desc="tracking", unit="frame", disable=not progress)
    try:
        stats, pub, endpoint_bound = _stream(pipeline, publisher, bar, lossless, max_frames, duration_s)
    finally:
        bar.close()
        tap.close()
        if preview is not None:
            preview.close()
        tracker.close()
    return SessionReport(stats, tap.latency.summary(), pub.published, pub.dropped_queue + pub.dropped_hwm,
                         endpoint_bound, tap.recorded)  # fmt: skip


class _MultiPublisherSink:
    """The stream of several cameras as an inline multi-source sink: each result on its camera's topics."""

    runs_inline = True

    def __init__(self, publisher) -> None:
        self._publisher = publisher

    def __call__(self, name, frame, result) -> None:
        self._publisher.publish(result, source_name=name)


def run_multi_session(sources: Mapping[str, object], trackers: Mapping[str, object], *, endpoint: str,
                      model_id: str = "coarsenet_v1", preview=None, record_path: Path | None = None,
                      max_frames: int | None = None, duration_s: float | None = None,
                      curve_keys_dir: Path | None = None, sinks: Mapping[str, object] | None = None,
                      progress: bool = True) -> SessionReport:  # fmt: skip
    """Runs several cameras through their trackers (one regressor call per tick) into one stream.

    Args:
        sources: name -> :class:`~tracker.sources.base.FrameSource`.
        trackers: name -> :class:`~tracker.tracking.Tracker`, sharing one regressor (``Tracker.sibling``).
        endpoint: ZeroMQ endpoint to bind; camera ``name`` streams on ``facetrack.result/<name>`` and
            ``facetrack.meta/<name>``.
        model_id: Sent in every camera's metadata.
        preview: Optional :class:`~tracker.pipeline.preview.PreviewSink`: shows the first camera.
        record_path: Write everything sent (every camera) into a stream log.
        max_frames: Frames to track per camera.
        duration_s: Stop after this long.
        curve_keys_dir: Encrypt the stream with CURVE.
        sinks: More consumers, ``sink(name, frame, result)``, each on its own worker.
        progress: Show a progress bar over all cameras' frames.

    Returns:
        The report; ``pipeline`` sums the cameras, ``sources`` and ``regressor_batches`` hold the rest.
    """
    from tqdm import tqdm

    from tracker.pipeline.multi import MultiPipeline
    from tracker.stream.publisher import Publisher

    for source in sources.values():
        source.connect()
    lossless = all(bool(getattr(s, "lossless", False)) for s in sources.values())
    ids = {name: s.source_id for name, s in sources.items()}
    tap = _SentTap(record_path, {"source": ",".join(f"{n}={i}" for n, i in ids.items()), "sources": ids,
                                 "endpoint": endpoint})  # fmt: skip
    publisher = Publisher(endpoint, model_id=model_id, curve_keys_dir=curve_keys_dir, on_sent=tap,
                          sources={name: s.intrinsics for name, s in sources.items()},
                          queue_size=(256 if lossless else 2) * len(sources))  # fmt: skip
    all_sinks: dict[str, object] = {"publisher": _MultiPublisherSink(publisher)}
    if preview is not None:
        first = next(iter(sources))
        all_sinks["preview"] = lambda name, frame, result: preview(frame, result) if name == first else None
    all_sinks.update(sinks or {})
    pipeline = MultiPipeline(sources, trackers, sinks=all_sinks)
    bar = tqdm(total=_expected_total(list(sources.values()), max_frames), desc="tracking", unit="frame",
               disable=not progress)  # fmt: skip
    try:
        stats, pub, endpoint_bound = _stream(pipeline, publisher, bar, lossless, max_frames, duration_s)
    finally:
        bar.close()
        tap.close()
        if preview is not None:
            preview.close()
        for tracker in trackers.values():
            tracker.close()
    return SessionReport(stats, tap.latency.summary(), pub.published, pub.dropped_queue + pub.dropped_hwm,
                         endpoint_bound, tap.recorded,
                         {n: dataclasses.asdict(st) for n, st in pipeline.source_stats().items()},
                         dataclasses.asdict(pipeline.batch_stats()))  # fmt: skip


def format_report(report: SessionReport) -> str:
    """A human-readable metrics summary."""
    p = report.pipeline
    lines = [
        f"frames: {p.frames_tracked} tracked of {p.frames_captured} captured "
        + ("(lossless: every frame tracked), " if p.lossless else
           f"({p.frames_dropped} dropped by live pacing; sinks skipped {p.sink_dropped}), ")  # fmt: skip
        + f"{p.fps:.1f} fps, {p.faces_per_frame:.2f} faces/frame",
        "stage times (ms):  " + "  ".join(f"{k} p50 {v['p50']:.2f} / p95 {v['p95']:.2f}" for k, v in p.stages_ms.items()
                                          if v["count"]),  # fmt: skip
        f"end-to-end latency capture -> sent (ms): p50 {report.sent_latency_ms['p50']:.2f}, "
        f"p95 {report.sent_latency_ms['p95']:.2f}",
        f"stream: {report.published} messages on {report.endpoint} ({report.dropped} dropped)",
    ]
    if report.recorded:
        lines.append(f"recorded {report.recorded} messages")
    for name, st in (report.sources or {}).items():
        lines.append(f"source {name} ({st['source_id']}): {st['frames_tracked']} tracked, {st['frames_dropped']} "
                     f"dropped, {st['fps']:.1f} fps, {st['faces_per_frame']:.2f} faces/frame")  # fmt: skip
    if report.regressor_batches is not None:
        b = report.regressor_batches
        lines.append(f"regressor: {b['calls']} calls, {b['mean_crops_per_call']:.2f} crops/call (max "
                     f"{b['max_crops_per_call']}), p50 {b['call_ms']['p50']:.2f} ms/call")  # fmt: skip
    return "\n".join(lines)
