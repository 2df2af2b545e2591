"""The stream publisher: one thread owns one ZeroMQ PUB socket (ARCHITECTURE §7).

Callers hand results over through a small drop-oldest queue and never wait for the network. The thread
encodes, stamps the publish time and sends without blocking; a subscriber that cannot keep up loses
messages (ZeroMQ drops them at its high-water mark) and sees the gap in the sequence numbers. The
socket is an XPUB (a PUB that also reports subscriptions), so metadata goes out as soon as a subscriber
joins, and again every ``metadata_interval_s`` for anyone who missed it. A replaying publisher
(``own_metadata=False``) never makes metadata of its own: it repeats the recorded metadata message it
was given or last replayed, so a subscriber only ever sees the session and metadata of the recording.

One publisher can carry several cameras (``sources``): each is a stream of its own, with its own
metadata (``facetrack.meta/<name>``, its intrinsics), topic (``facetrack.result/<name>``) and sequence
numbers, so a subscriber of one camera sees no gaps where the others' results went.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import zmq

from tracker.core.errors import StreamError
from tracker.core.types import Intrinsics, TrackResult
from tracker.pipeline.handoff import DropOldestQueue
from tracker.pipeline.worker import Worker
from tracker.stream import curve
from tracker.stream.protocol import (
    DEFAULT_MODEL_ID,
    TOPIC_META,
    StreamMetadata,
    encode_metadata,
    encode_result,
    parse_topic,
)

log = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"

#: How often the thread looks at subscriptions and the metadata timer while no result arrives.
_IDLE_POLL_S = 0.02


@dataclasses.dataclass(frozen=True)
class PublisherStats:
    """Counters of a :class:`Publisher` (a snapshot).

    Attributes:
        published: Result messages handed to ZeroMQ.
        raw_sent: Pre-encoded messages handed to ZeroMQ (replay).
        metadata_sent: Metadata messages sent.
        dropped_queue: Items evicted from the handoff queue because the thread was behind.
        dropped_hwm: Result (and replayed) messages ZeroMQ refused at the high-water mark (only with
            ``nodrop=True``).
        metadata_dropped: Metadata messages refused at the high-water mark (sent again on the next interval).
        subscriptions: Subscribe events seen (one per subscriber and topic prefix).
        errors: Messages that could not be encoded or sent (logged).
    """

    published: int = 0
    raw_sent: int = 0
    metadata_sent: int = 0
    dropped_queue: int = 0
    dropped_hwm: int = 0
    metadata_dropped: int = 0
    subscriptions: int = 0
    errors: int = 0


class Publisher:
    """Publishes :class:`TrackResult` objects on a ZeroMQ PUB (XPUB) socket.

    Example::

        with Publisher("tcp://127.0.0.1:5555") as pub:
            pub.publish(result)

    Args:
        endpoint: Where to bind. Default loopback only; ``tcp://127.0.0.1:*`` picks a free port (see
            :attr:`endpoint`). Binding to all interfaces (``tcp://*:PORT``) must be asked for explicitly.
        metadata: Stream metadata. None derives it from the first face (K = its identity length) with
            ``model_id`` and ``intrinsics``.
        model_id: Model id for derived metadata.
        intrinsics: Camera intrinsics for derived metadata.
        sndhwm: ZeroMQ send high-water mark per subscriber, in messages (small: old data is useless).
        queue_size: Handoff queue length; the oldest item is dropped when full.
        metadata_interval_s: Period of the metadata re-send.
        curve_keys_dir: Enable CURVE encryption, accepting only the clients authorised there.
        nodrop: Make ZeroMQ refuse (instead of silently drop) a message when any subscriber is full, so
            that the publisher counts the drop (``dropped_hwm``). The message is then lost for every
            subscriber, so this suits a single consumer; by default each slow subscriber loses only its
            own messages and counts them from sequence gaps.
        sndbuf_bytes: Kernel send buffer size (None = OS default). Smaller means less stale data queued.
        on_sent: Called on the publisher thread after each message went to the socket, with its frames,
            the monotonic send time in ns and the result (None for metadata and raw messages): measures
            capture -> sent latency and records exactly what was streamed. Must be quick.
        own_metadata: False for a replay: send no metadata of this publisher's own, only recorded metadata
            messages (``raw_metadata`` and every metadata message passed to :meth:`publish_raw`, the
            latest of which is repeated on subscription and every ``metadata_interval_s``).
        raw_metadata: The recorded metadata message (frames, topic first) to repeat until a replayed one
            replaces it (``own_metadata=False`` only).
        sources: Several cameras in one stream: source name -> that camera's intrinsics (or None). Each
            name gets its own metadata, topics and sequence numbers, and :meth:`publish` must name the
            source of each result. None (the default): one camera on the plain topics.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        metadata: StreamMetadata | None = None,
        model_id: str = DEFAULT_MODEL_ID,
        intrinsics: Intrinsics | None = None,
        sndhwm: int = 16,
        queue_size: int = 2,
        metadata_interval_s: float = 1.0,
        curve_keys_dir: str | os.PathLike | None = None,
        nodrop: bool = False,
        sndbuf_bytes: int | None = None,
        on_sent: Callable[[list[bytes], int, TrackResult | None], None] | None = None,
        own_metadata: bool = True,
        raw_metadata: Sequence[bytes] | None = None,
        sources: Mapping[str, Intrinsics | None] | None = None,
    ) -> None:
        self._requested_endpoint = endpoint
        # Metadata per stream: key None for a single-camera publisher, else one key per source name.
        if sources is not None:
            if not sources:
                raise StreamError("sources must name at least one camera")
            if metadata is not None:
                raise StreamError("pass either metadata or sources (each source derives its own metadata)")
            self._metas: dict[str | None, StreamMetadata] = {
                name: StreamMetadata(0, model_id, intr, source_name=name) for name, intr in sources.items()
            }
        else:
            self._metas = {None: metadata if metadata is not None else StreamMetadata(0, model_id, intrinsics)}
        self._derive_k = metadata is None
        self._own_metadata = bool(own_metadata)
        if raw_metadata is not None and (own_metadata or not raw_metadata or not _is_meta_topic(raw_metadata[0])):
            raise StreamError("raw_metadata must be a facetrack.meta message and needs own_metadata=False")
        # Recorded metadata to repeat (replay), by topic: a multi-camera recording holds one per camera.
        self._raw_metadata: dict[bytes, list[bytes]] = (
            {} if raw_metadata is None else {bytes(raw_metadata[0]): [bytes(f) for f in raw_metadata]}
        )
        self._meta_dirty = True
        self._sndhwm = int(sndhwm)
        self._nodrop = bool(nodrop)
        self._sndbuf = sndbuf_bytes
        self._on_sent = on_sent
        self._metadata_interval_s = float(metadata_interval_s)
        self._curve_dir = Path(curve_keys_dir) if curve_keys_dir is not None else None
        self._queue: DropOldestQueue[tuple] = DropOldestQueue(queue_size)
        self._session = random.getrandbits(32)
        self._seqs: dict[str | None, int] = dict.fromkeys(self._metas, 0)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._subscribed = threading.Condition()
        self._thread: Worker | None = None
        self._ctx: zmq.Context | None = None
        self._auth = None
        self._error: BaseException | None = None
        self._endpoint: str | None = None
        self._enqueued = 0  # items put into / fully handled from the queue, for flush()
        self._handled = 0
        self._counts = {f.name: 0 for f in dataclasses.fields(PublisherStats)}

    # ------------------------------------------------------------------------------------ lifecycle
    def start(self, timeout_s: float = 5.0) -> Publisher:
        """Creates the socket thread and binds; returns once bound.

        Raises:
            StreamError: if the endpoint cannot be bound (e.g. the port is in use).
        """
        if self._thread is not None:
            return self
        if self._requested_endpoint.startswith("tcp://*") or self._requested_endpoint.startswith(
            "tcp://0.0.0.0"
        ):
            log.warning("publishing on all network interfaces (%s)", self._requested_endpoint)
        keys = curve.load_server_keys(self._curve_dir) if self._curve_dir is not None else None
        self._ctx = zmq.Context()
        if keys is not None:
            self._auth = curve.start_authenticator(self._ctx, keys)
        self._thread = Worker("stream-publisher", lambda _stop: self._run(keys), on_stop=self._queue.wake,
                              stop_event=self._stop).start()  # fmt: skip
        if not self._ready.wait(timeout_s):
            self.close()
            raise StreamError(f"publisher did not bind {self._requested_endpoint} within {timeout_s} s")
        if self._error is not None:
            err = self._error
            self.close()
            raise StreamError(f"cannot bind {self._requested_endpoint}: {err}") from err
        log.info("publishing on %s%s", self._endpoint, " (CURVE)" if keys else "")
        return self

    def __enter__(self) -> Publisher:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self, timeout_s: float = 1.0) -> None:
        """Stops the thread (within ``timeout_s``), closes the socket. Idempotent; never hangs.

        Items still in the handoff queue are not sent: a live stream has no use for them.
        """
        self._stop.set()
        self._queue.wake()
        if self._thread is not None:
            stuck = not self._thread.join(timeout_s)
            self._thread = None
        else:
            stuck = False
        if self._auth is not None:
            self._auth.stop()
            self._auth = None
        if self._ctx is not None:
            if not stuck:  # term() waits for sockets; the thread closed its own with linger 0
                self._ctx.term()
            self._ctx = None

    # ------------------------------------------------------------------------------------ caller API
    @property
    def endpoint(self) -> str:
        """The bound endpoint, with the actual port when a wildcard was asked for."""
        if self._endpoint is None:
            raise StreamError("publisher not started")
        return self._endpoint

    @property
    def session(self) -> int:
        return self._session

    @property
    def metadata(self) -> StreamMetadata:
        """The stream's metadata (a multi-camera publisher's: the first source's; see :meth:`metadata_of`)."""
        with self._lock:
            return next(iter(self._metas.values()))

    def metadata_of(self, source_name: str | None) -> StreamMetadata:
        """One stream's metadata: ``None`` for a single-camera publisher, else a source name."""
        with self._lock:
            return self._metas[source_name]

    @property
    def source_names(self) -> tuple[str, ...]:
        """The camera names of a multi-camera publisher; () for a single-camera one."""
        return tuple(n for n in self._metas if n is not None)

    def publish(self, result: TrackResult, source_name: str | None = None) -> bool:
        """Queues a result for sending; never blocks.

        Args:
            result: What to send.
            source_name: Which camera's stream it belongs to (one of ``sources``); None on a single-camera
                publisher.

        Returns:
            False if the queue was full and its oldest item was dropped.

        Raises:
            StreamError: if the publisher is not running, its thread failed, or it replays recorded
                messages only (``own_metadata=False``).
        """
        self._check_running()
        if not self._own_metadata:
            raise StreamError("a publisher made with own_metadata=False sends recorded messages only (publish_raw)")
        if source_name not in self._metas:
            known = ", ".join(self.source_names) or "none: a single-camera publisher takes source_name=None"
            raise StreamError(f"unknown source_name {source_name!r} (sources: {known})")
        with self._lock:
            seq = self._seqs[source_name]  # numbered here so that queue drops, too, show as gaps to subscribers
            self._seqs[source_name] = seq + 1
            self._enqueued += 1
        return self._queue.put(("result", (result, source_name), seq))

    def publish_raw(self, frames: Sequence[bytes]) -> bool:
        """Queues pre-encoded frames (e.g. a replayed message) to be sent as they are."""
        self._check_running()
        with self._lock:
            self._enqueued += 1
        return self._queue.put(("raw", list(frames), None))

    def wait_for_subscriber(self, timeout_s: float) -> bool:
        """Waits until at least one subscription has arrived; returns whether one did."""
        deadline = time.monotonic() + timeout_s
        with self._subscribed:
            while self._counts["subscriptions"] == 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return False
                self._subscribed.wait(remaining)
            return True

    def flush(self, timeout_s: float = 1.0) -> bool:
        """Waits until the handoff queue is empty (everything handed to ZeroMQ); returns whether it is."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                pending = self._enqueued - self._handled - self._queue.dropped
            if pending <= 0:
                return True
            if time.monotonic() >= deadline or self._thread is None:
                return False
            time.sleep(0.002)

    def stats(self) -> PublisherStats:
        with self._lock:
            counts = dict(self._counts)
        counts["dropped_queue"] = self._queue.dropped
        return PublisherStats(**counts)

    def _check_running(self) -> None:
        if self._error is not None:
            raise StreamError(f"publisher thread failed: {self._error}") from self._error
        if self._thread is None or self._stop.is_set():
            raise StreamError("publisher is not running; call start() (or use it as a context manager)")

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    # ------------------------------------------------------------------------------------ the thread
    def _run(self, keys: curve.ServerKeys | None) -> None:
        try:
            sock = self._ctx.socket(zmq.XPUB)
        except zmq.ZMQError as exc:
            self._error = exc
            self._ready.set()
            return
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, self._sndhwm)
            sock.setsockopt(zmq.XPUB_VERBOSE, 1)  # report every subscriber, not only the first per topic
            if self._nodrop:
                sock.setsockopt(zmq.XPUB_NODROP, 1)
            if self._sndbuf is not None:
                sock.setsockopt(zmq.SNDBUF, int(self._sndbuf))
            if keys is not None:
                curve.make_server(sock, keys)
            try:
                sock.bind(self._requested_endpoint)
            except zmq.ZMQError as exc:
                self._error = exc
                return
            self._endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
            self._ready.set()
            self._loop(sock)
        except BaseException as exc:  # handed to the caller by publish()
            log.exception("publisher thread failed")
            self._error = exc
        finally:
            sock.close(linger=0)
            self._ready.set()

    def _loop(self, sock: zmq.Socket) -> None:
        next_meta = 0.0
        while not self._stop.is_set():
            self._drain_subscriptions(sock)
            now = time.monotonic()
            with self._lock:
                dirty = self._meta_dirty
            if dirty or now >= next_meta:
                self._send_metadata(sock)
                next_meta = now + self._metadata_interval_s
            item = self._queue.get(min(_IDLE_POLL_S, max(0.0, next_meta - now)))
            if item is None or self._stop.is_set():
                continue
            try:
                kind, payload, seq = item
                if kind == "raw":
                    if not self._own_metadata and payload and _is_meta_topic(payload[0]):
                        with self._lock:
                            self._raw_metadata[bytes(payload[0])] = list(payload)  # what to repeat from now on
                    self._send(sock, payload, "raw_sent")
                    continue
                result, source_name = payload
                frames = self._encode(sock, result, seq, source_name)
                if frames is not None:
                    self._send(sock, frames, "published", result)
            finally:
                with self._lock:
                    self._handled += 1

    def _drain_subscriptions(self, sock: zmq.Socket) -> None:
        while True:
            try:
                msg = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if msg[:1] == b"\x01":  # subscribe (\x00 is unsubscribe)
                with self._subscribed:
                    self._count("subscriptions")
                    self._subscribed.notify_all()
                with self._lock:
                    self._meta_dirty = True  # a new subscriber gets metadata at once

    def _send_metadata(self, sock: zmq.Socket) -> None:
        with self._lock:
            metas = list(self._metas.values())
            raws = list(self._raw_metadata.values())
            self._meta_dirty = False
        if not self._own_metadata:
            for raw in raws:
                self._send(sock, raw, "metadata_sent")
            return
        for meta in metas:
            self._send(sock, encode_metadata(meta, session=self._session, t_publish_ns=time.monotonic_ns()),
                       "metadata_sent")  # fmt: skip

    def _encode(self, sock: zmq.Socket, result: TrackResult, seq: int,
                source_name: str | None = None) -> list[bytes] | None:  # fmt: skip
        ks = {f.identity.shape[0] for f in result.faces}
        with self._lock:
            meta = self._metas[source_name]
            derive = self._derive_k
        if len(ks) == 1 and ks != {meta.identity_dim}:
            (k,) = ks
            if not derive:
                log.warning(
                    "faces carry %d identity coefficients, the metadata said %d: updating it",
                    k,
                    meta.identity_dim,
                )
            meta = meta.with_identity_dim(k)
            with self._lock:
                self._metas[source_name] = meta
            self._send_metadata(sock)  # before the result, so every subscriber can decode it
        try:
            mono = time.monotonic_ns()
            return encode_result(result, meta, seq=seq, session=self._session, t_publish_ns=mono,
                                 unix_offset_ns=time.time_ns() - mono)  # fmt: skip
        except StreamError as exc:
            log.error("cannot encode frame %d: %s", result.frame_index, exc)
            self._count("errors")
            return None

    def _send(self, sock: zmq.Socket, frames: list[bytes], counter: str, result: TrackResult | None = None) -> None:
        try:
            sock.send_multipart(frames, flags=zmq.NOBLOCK)
        except zmq.Again:
            self._count("metadata_dropped" if counter == "metadata_sent" else "dropped_hwm")
            return
        except zmq.ZMQError as exc:
            log.error("send failed: %s", exc)
            self._count("errors")
            return
        self._count(counter)
        if self._on_sent is not None:
            try:
                self._on_sent(frames, time.monotonic_ns(), result)
            except Exception:  # a broken tap must not stop the stream
                log.exception("on_sent callback failed")
                self._count("errors")


def _is_meta_topic(topic: bytes) -> bool:
    """Whether ``topic`` is ``facetrack.meta`` or a camera's ``facetrack.meta/<name>``."""
    parsed = parse_topic(bytes(topic))
    return parsed is not None and parsed[0] == TOPIC_META
