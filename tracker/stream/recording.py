"""Stream logs: record a stream to disk as it arrived, read it back, replay it with the original timing.

File format (all integers little-endian)::

    magic      8 bytes  b"FTSTRLOG"
    version    u32      1
    info_len   u32      length of the JSON that follows
    info       JSON     UTF-8 object: what wrote it, when, from which endpoint (self-describing)
    records, each:
        length     u32  payload bytes
        crc32      u32  zlib.crc32 of the payload
        payload:
            t_receive_ns  u64  receive time, CLOCK_MONOTONIC of the recording host
            n_frames      u32
            n_frames x (u32 frame length, frame bytes)   the ZeroMQ message exactly as received

Records are only ever appended and each is flushed when written, so a recording that crashes or is
killed loses at most the record being written: a reader stops at the first incomplete or corrupt record
and warns about the ignored tail. Metadata messages are recorded like any other message, so a log
decodes on its own.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import msgpack
import numpy as np

from tracker import __version__
from tracker.core.errors import StreamError
from tracker.stream.bridges.livelink import APP_SIGNS, AngleSigns
from tracker.stream.csv_writer import ARKIT_CSV_COLUMNS, LIVELINK_CSV_COLUMNS, CsvWriter
from tracker.stream.protocol import (
    TOPIC_META,
    TOPIC_RESULT,
    Decoder,
    StreamMetadata,
    StreamResult,
    parse_topic,
)

log = logging.getLogger(__name__)

LOG_MAGIC = b"FTSTRLOG"
LOG_FORMAT_VERSION = 1
_FILE_HEAD = struct.Struct("<8sII")
_RECORD_HEAD = struct.Struct("<II")
_PAYLOAD_HEAD = struct.Struct("<QI")
_FRAME_LEN = struct.Struct("<I")
#: A record larger than this is treated as corruption (the subscriber's own message limit is 16 MiB).
MAX_RECORD_BYTES = 64 << 20
#: Timestamp keys shifted by a replay so that latencies stay as recorded, on the replaying host's clock.
_TIME_KEYS = ("t_capture_ns", "t_done_ns", "t_publish_ns")


@dataclasses.dataclass(frozen=True)
class LogRecord:
    """One recorded message: its ZeroMQ frames (topic first) and when it was received (monotonic ns)."""

    t_receive_ns: int
    frames: list[bytes]

    @property
    def topic(self) -> bytes:
        return self.frames[0] if self.frames else b""

    @property
    def kind(self) -> bytes | None:
        """The base topic (``TOPIC_RESULT`` or ``TOPIC_META``) whatever camera sent it
        (``facetrack.result/cam1`` is a result); None for other messages."""
        parsed = parse_topic(self.topic)
        return parsed[0] if parsed else None


# ----------------------------------------------------------------------------------------------- writing
class LogWriter:
    """Appends records to a new stream log.

    Args:
        path: File to create (an existing file is replaced).
        info: Extra header fields (e.g. the endpoint recorded from).
    """

    def __init__(self, path: str | os.PathLike, info: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StreamError(f"cannot create the folder of {self.path}: {exc.strerror or exc}") from None
        header = {
            "format": "facetrack stream log",
            "format_version": LOG_FORMAT_VERSION,
            "writer": f"facetrack {__version__}",
            "created_unix_ns": time.time_ns(),
            "clock": "t_receive_ns is CLOCK_MONOTONIC ns of the recording host",
            "record_layout": "u32 len | u32 crc32 | u64 t_receive_ns | u32 n_frames | n x (u32 len | bytes)",
            **(info or {}),
        }
        blob = json.dumps(header).encode()
        try:
            self._file: BinaryIO | None = open(self.path, "wb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise StreamError(f"cannot create stream log {self.path}: {exc.strerror or exc}") from None
        self._file.write(_FILE_HEAD.pack(LOG_MAGIC, LOG_FORMAT_VERSION, len(blob)) + blob)
        self._file.flush()
        self.records = 0
        self.bytes = self._file.tell()

    def write(self, frames: Sequence[bytes], t_receive_ns: int) -> None:
        """Appends one message and flushes it to the OS (it survives a crash of this process)."""
        if self._file is None:
            raise StreamError(f"{self.path} is closed")
        parts = [_PAYLOAD_HEAD.pack(int(t_receive_ns), len(frames))]
        for f in frames:
            parts += [_FRAME_LEN.pack(len(f)), bytes(f)]
        payload = b"".join(parts)
        # One write() of head + payload: a kill between two writes cannot leave a head without its data.
        self._file.write(_RECORD_HEAD.pack(len(payload), zlib.crc32(payload)) + payload)
        self._file.flush()
        self.records += 1
        self.bytes += _RECORD_HEAD.size + len(payload)

    def close(self) -> None:
        """Flushes to disk (fsync) and closes. Idempotent."""
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ----------------------------------------------------------------------------------------------- reading
class StreamLog:
    """A stream log opened for reading.

    Iterating yields every complete record; an incomplete or corrupt tail (a recording that was killed)
    ends the iteration, after which :attr:`ignored_tail_bytes` says how much was ignored. The warning
    about it is logged once per opened log, however often the log is iterated.

    Raises:
        StreamError: if the file cannot be read, is not a stream log or is of an unknown format version.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._warned_tail = False
        try:
            with open(self.path, "rb") as f:
                head = f.read(_FILE_HEAD.size)
                if len(head) < _FILE_HEAD.size or head[:8] != LOG_MAGIC:
                    raise StreamError(f"{self.path} is not a facetrack stream log (bad magic)")
                _, version, info_len = _FILE_HEAD.unpack(head)
                if version != LOG_FORMAT_VERSION:
                    raise StreamError(
                        f"{self.path} is stream log format {version}; this version reads {LOG_FORMAT_VERSION}"
                    )
                blob = f.read(info_len)
        except FileNotFoundError:
            raise StreamError(f"stream log {self.path} does not exist") from None
        except IsADirectoryError:
            raise StreamError(f"stream log {self.path} is a directory, not a file") from None
        except OSError as exc:
            raise StreamError(f"cannot read stream log {self.path}: {exc.strerror or exc}") from None
        try:
            self.info: dict[str, Any] = json.loads(blob)
        except ValueError as exc:
            raise StreamError(f"{self.path}: unreadable header: {exc}") from exc
        self._data_start = _FILE_HEAD.size + info_len
        self.ignored_tail_bytes = 0

    def __iter__(self) -> Iterator[LogRecord]:
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            f.seek(self._data_start)
            pos = self._data_start
            while pos < size:
                head = f.read(_RECORD_HEAD.size)
                if len(head) < _RECORD_HEAD.size:
                    break
                length, crc = _RECORD_HEAD.unpack(head)
                if length > MAX_RECORD_BYTES:
                    break
                payload = f.read(length)
                if len(payload) < length or zlib.crc32(payload) != crc:
                    break
                record = _parse_payload(payload)
                if record is None:
                    break
                pos += _RECORD_HEAD.size + length
                yield record
        self.ignored_tail_bytes = size - pos
        if self.ignored_tail_bytes and not self._warned_tail:
            self._warned_tail = True
            log.warning("%s: ignored an incomplete or corrupt tail of %d bytes (the recording was cut off)",
                        self.path, self.ignored_tail_bytes)  # fmt: skip

    def records(self) -> list[LogRecord]:
        return list(self)

    def metadata_records(self) -> list[LogRecord]:
        """The log's metadata messages as recorded (undecoded), in order."""
        return [rec for rec in self if rec.kind == TOPIC_META]

    def metadata(self) -> list[StreamMetadata]:
        """Every metadata message in the log, decoded, in order."""
        out = []
        for rec in self:
            if rec.kind == TOPIC_META:
                m = Decoder().decode(rec.frames)
                if isinstance(m, StreamMetadata):
                    out.append(m)
        return out

    def results(self) -> Iterator[StreamResult]:
        """Every decodable result, using metadata from anywhere in the log (a recording may start
        between two metadata messages)."""
        dec = Decoder()
        for m in self.metadata():
            dec.add_metadata(m)
        for rec in self:
            if rec.kind == TOPIC_RESULT:
                out = dec.decode(rec.frames, rec.t_receive_ns)
                if isinstance(out, StreamResult):
                    yield out


def _parse_payload(payload: bytes) -> LogRecord | None:
    if len(payload) < _PAYLOAD_HEAD.size:
        return None
    t_ns, n = _PAYLOAD_HEAD.unpack_from(payload)
    pos, frames = _PAYLOAD_HEAD.size, []
    for _ in range(n):
        if pos + _FRAME_LEN.size > len(payload):
            return None
        (flen,) = _FRAME_LEN.unpack_from(payload, pos)
        pos += _FRAME_LEN.size
        if pos + flen > len(payload):
            return None
        frames.append(payload[pos : pos + flen])
        pos += flen
    return LogRecord(t_ns, frames)


# --------------------------------------------------------------------------------------------- recording
@dataclasses.dataclass(frozen=True)
class RecordStats:
    messages: int
    results: int
    metadata: int
    bytes: int
    duration_s: float


def record_stream(
    subscriber,
    writer: LogWriter,
    *,
    stop: threading.Event | None = None,
    duration_s: float | None = None,
    max_messages: int | None = None,
    on_message: Callable[[LogRecord], None] | None = None,
) -> RecordStats:
    """Writes every message a subscriber receives to ``writer`` until stopped.

    Args:
        subscriber: A connected :class:`~tracker.stream.subscriber.Subscriber` (its raw messages are used).
        writer: The log to append to.
        stop: Ends the recording when set.
        duration_s: Ends after this long.
        max_messages: Ends after this many messages.
        on_message: Called with each record (e.g. to advance a progress bar).
    """
    t0 = time.monotonic()
    counts = {"results": 0, "metadata": 0}
    while not (stop is not None and stop.is_set()):
        if duration_s is not None and time.monotonic() - t0 >= duration_s:
            break
        if max_messages is not None and writer.records >= max_messages:
            break
        raw = subscriber.recv_raw(100)
        if raw is None:
            continue
        writer.write(raw.frames, raw.t_receive_ns)
        kind = LogRecord(raw.t_receive_ns, raw.frames).kind
        if kind == TOPIC_RESULT:
            counts["results"] += 1
        elif kind == TOPIC_META:
            counts["metadata"] += 1
        if on_message is not None:
            on_message(LogRecord(raw.t_receive_ns, raw.frames))
    return RecordStats(
        writer.records, counts["results"], counts["metadata"], writer.bytes, time.monotonic() - t0
    )


# ------------------------------------------------------------------------------------------------ replay
def restamp(frames: Sequence[bytes], shift_ns: int) -> list[bytes]:
    """Shifts the timestamps in a result or metadata message by ``shift_ns``; other messages pass unchanged.

    Replays move the recorded monotonic times onto the replaying host's clock, so that a viewer's
    capture-to-receive latency stays what it was when recorded.
    """
    frames = list(frames)
    if len(frames) < 2 or parse_topic(frames[0]) is None:
        return frames
    try:
        m = msgpack.unpackb(frames[1], raw=False, strict_map_key=True)
    except Exception:  # noqa: BLE001 - malformed messages are replayed as recorded
        return frames
    if not isinstance(m, dict):
        return frames
    for k in _TIME_KEYS:
        if isinstance(m.get(k), int) and not isinstance(m.get(k), bool):
            m[k] += shift_ns
    frames[1] = msgpack.packb(m, use_bin_type=True)
    return frames


def _meta_id_of(rec: LogRecord) -> int | None:
    """The ``meta_id`` a recorded result or metadata message carries (None when unreadable)."""
    if len(rec.frames) < 2:
        return None
    try:
        m = msgpack.unpackb(rec.frames[1], raw=False, strict_map_key=True)
    except Exception:  # noqa: BLE001 - a malformed record names nothing
        return None
    meta_id = m.get("meta_id") if isinstance(m, dict) else None
    return meta_id if isinstance(meta_id, int) and not isinstance(meta_id, bool) else None


def drop_unused_metadata(records: Sequence[LogRecord]) -> list[LogRecord]:
    """The records without metadata messages that no recorded result names.

    A live publisher that derives K from the first face sends a placeholder (K = 0) until a face
    arrives; a replay need not repeat metadata that nothing in the recording decodes with.
    """
    used = {_meta_id_of(r) for r in records if r.kind == TOPIC_RESULT}
    return [r for r in records if r.kind != TOPIC_META or _meta_id_of(r) in used]


def first_needed_metadata(records: Sequence[LogRecord]) -> LogRecord | None:
    """The recorded metadata message that the log's first decodable result names (else the first one).

    A replay repeats it from the start, so a subscriber decodes from the first replayed result on, with
    nothing but what was recorded (its session, its K).
    """
    metas: dict[int, LogRecord] = {}
    for rec in records:
        if rec.kind == TOPIC_META:
            m = Decoder().decode(rec.frames)
            if isinstance(m, StreamMetadata):
                metas.setdefault(m.wire_meta_id, rec)
    if not metas:
        return None
    for rec in records:
        if rec.kind == TOPIC_RESULT and (meta_id := _meta_id_of(rec)) in metas:
            return metas[meta_id]
    return next(iter(metas.values()))


@dataclasses.dataclass(frozen=True)
class ReplayStats:
    """What a replay sent and when (``send_times_ns``: monotonic ns at each hand-off to the publisher)."""

    messages: int
    duration_s: float
    send_times_ns: list[int]
    record_times_ns: list[int]


def _sleep_until(t_ns: int, stop: threading.Event | None) -> None:
    # Coarse sleep, then a short spin: time.sleep alone can overshoot by a scheduler tick.
    while True:
        remaining = (t_ns - time.monotonic_ns()) / 1e9
        if remaining <= 0 or (stop is not None and stop.is_set()):
            return
        if remaining <= 0.002:
            time.sleep(0)
        elif stop is None:
            time.sleep(remaining - 0.001)
        else:
            stop.wait(remaining - 0.001)


def replay_log(
    records: Sequence[LogRecord],
    send: Callable[[list[bytes]], Any],
    *,
    speed: float = 1.0,
    stop: threading.Event | None = None,
    restamp_times: bool = True,
    on_message: Callable[[LogRecord], None] | None = None,
) -> ReplayStats:
    """Sends recorded messages with their recorded spacing.

    Args:
        records: The log's records, in order.
        send: Called with each message's frames (e.g. ``Publisher.publish_raw``).
        speed: Playback rate: 2.0 plays twice as fast.
        stop: Ends the replay when set.
        restamp_times: Shift header timestamps onto this host's clock (see :func:`restamp`).
        on_message: Called after each message is sent.
    """
    if not speed > 0:
        raise StreamError(f"replay speed must be > 0, got {speed}")
    sent, rec_times = [], []
    if not records:
        return ReplayStats(0, 0.0, [], [])
    t_first = records[0].t_receive_ns
    t0 = time.monotonic_ns() + 1_000_000  # a millisecond of slack to start on time
    for rec in records:
        if stop is not None and stop.is_set():
            break
        target = t0 + round((rec.t_receive_ns - t_first) / speed)
        _sleep_until(target, stop)
        frames = restamp(rec.frames, target - rec.t_receive_ns) if restamp_times else list(rec.frames)
        sent.append(time.monotonic_ns())
        send(frames)
        rec_times.append(rec.t_receive_ns)
        if on_message is not None:
            on_message(rec)
    return ReplayStats(len(sent), (time.monotonic_ns() - t0) / 1e9, sent, rec_times)


# ------------------------------------------------------------------------------------------------ export
def csv_columns(format: str = "arkit") -> list[str]:  # noqa: A002
    """The header of an exported CSV (see :mod:`tracker.stream.csv_writer`)."""
    return list(ARKIT_CSV_COLUMNS if format == "arkit" else LIVELINK_CSV_COLUMNS)


def _estimate_fps(capture_ns: list[int], default: float = 60.0) -> float:
    """The take's frame rate from capture times: 1 / median spacing, rounded to a whole rate."""
    dt = np.diff(np.asarray(capture_ns, dtype=np.int64))
    dt = dt[dt > 0]
    if not dt.size:
        return default
    fps = round(1e9 / float(np.median(dt)))
    return float(fps) if 1 <= fps <= 240 else default  # not a camera rate (e.g. synthetic timestamps)


def export_csv(log_path: str | os.PathLike, csv_path: str | os.PathLike, *, format: str = "arkit",  # noqa: A002
               fps: float | None = None, signs: AngleSigns = APP_SIGNS) -> int:  # fmt: skip
    """Writes a stream log as CSV (:class:`~tracker.stream.csv_writer.CsvWriter` formats).

    Args:
        log_path: Log written by ``facetrack record``.
        csv_path: CSV to write.
        format: ``"arkit"`` (one row per face per frame) or ``"livelink"`` (a Live Link Face take).
        fps: The take's rate for Live Link timecodes; None estimates it from the capture times.
        signs: Live Link angle axes to invert.

    Returns:
        The number of rows written.

    Raises:
        StreamError: if the log cannot be read or the CSV written.
    """
    stream_log = StreamLog(log_path)
    messages = list(stream_log.results())
    if fps is None:
        fps = 60.0 if format != "livelink" else _estimate_fps([m.result.t_capture_ns for m in messages])
    with CsvWriter(csv_path, format, fps, signs=signs) as w:
        for msg in messages:
            w.write(msg.result, arkit=msg.arkit, unix_offset_ns=msg.unix_offset_ns)
        return w.rows
