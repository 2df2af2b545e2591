"""The stream client library: subscribe, decode, yield typed results.

A :class:`Subscriber` connects a ZeroMQ SUB socket (ZeroMQ reconnects by itself when the publisher goes
away and comes back), waits for metadata, and turns each result message into a
:class:`~tracker.stream.protocol.StreamResult`. Bad input never kills it: malformed messages, messages of
another major version and results whose metadata has not arrived yet are skipped, counted and logged
(rate-limited; results that arrive before their metadata during the first second after connecting are
normal and logged at INFO only), and :meth:`Subscriber.close` logs the skip counts by reason. Weights
outside 0..1 and non-unit quaternions are repaired by the decoder and counted. A publisher restart shows as a new session id and a sequence reset; both are handled.

Use from one thread (ZeroMQ sockets are not thread-safe); :meth:`Subscriber.stop` may be called from any
thread to end :meth:`Subscriber.results`.

A multi-camera publisher sends each camera on its own topics (``facetrack.result/<name>``); a subscriber
made with ``source_name="cam1"`` receives that camera only, one made without receives every camera and
tells them apart by :attr:`~tracker.stream.protocol.StreamResult.source_name` (sequence numbers are
followed per camera).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence

import zmq

from tracker.core.errors import StreamError
from tracker.stream import curve
from tracker.stream.protocol import (
    SKIP_REASONS,
    TOPIC_PREFIX,
    Decoder,
    Skipped,
    StreamMetadata,
    StreamResult,
    check_source_name,
    meta_topic,
    result_topic,
)
from tracker.stream.publisher import DEFAULT_ENDPOINT

log = logging.getLogger(__name__)

#: Longest single wait inside recv(), so stop() takes effect quickly.
_POLL_SLICE_MS = 100
#: Log the first few skips of each kind, then one in this many.
_LOG_EVERY = 1000
#: Results skipped for missing metadata this soon after connecting are expected (the publisher sends
#: metadata when it sees the subscription, which can cross results already on the way): INFO, not WARNING.
_STARTUP_GRACE_S = 1.0


@dataclasses.dataclass(frozen=True)
class SubscriberStats:
    """Counters of a :class:`Subscriber` (a snapshot).

    Attributes:
        received: Messages received (everything, including skipped ones).
        results: Result messages decoded.
        metadata: Metadata messages decoded.
        malformed, wrong_version, no_metadata, unknown_topic: Messages skipped, by reason.
        gaps: Result messages missed, from jumps in the sequence numbers (drops anywhere on the way).
        restarts: Times the publisher's session changed or its sequence went backwards.
        clamped_weights: ARKit/ICT values received outside 0..1 and clamped (a publisher bug upstream).
        normalised_quaternions: Face quaternions received with a norm other than 1 and normalised.
    """

    received: int = 0
    results: int = 0
    metadata: int = 0
    malformed: int = 0
    wrong_version: int = 0
    no_metadata: int = 0
    unknown_topic: int = 0
    gaps: int = 0
    restarts: int = 0
    clamped_weights: int = 0
    normalised_quaternions: int = 0

    @property
    def skipped(self) -> int:
        return self.malformed + self.wrong_version + self.no_metadata + self.unknown_topic

    def skipped_by_reason(self) -> dict[str, int]:
        """Skipped messages per reason (``malformed``, ``wrong_version``, ``no_metadata``, ``unknown_topic``)."""
        return {r: getattr(self, r) for r in SKIP_REASONS}


@dataclasses.dataclass(frozen=True)
class RawMessage:
    """An undecoded message as received: its frames (topic first) and local receive time (monotonic ns)."""

    frames: list[bytes]
    t_receive_ns: int


class Subscriber:
    """Receives and decodes a facetrack stream.

    Example::

        with Subscriber("tcp://127.0.0.1:5555") as sub:
            for msg in sub.results(idle_timeout_ms=5000):
                print(msg.result.frame_index, [f.arkit[17] for f in msg.result.faces])

    Args:
        endpoint: Publisher endpoint to connect to.
        curve_keys_dir: Directory with ``server.key`` and this client's keypair, for a CURVE stream.
        curve_client: Name of this client's keypair in ``curve_keys_dir``.
        rcvhwm: Receive high-water mark in messages (small keeps latency low; more are dropped).
        rcvbuf_bytes: Kernel receive buffer size (None = OS default).
        max_message_bytes: Larger messages make ZeroMQ drop the connection (it reconnects); guards memory.
        topics: Topic prefixes to subscribe to.
        source_name: Receive one camera of a multi-camera stream only (subscribes to its
            ``facetrack.result/<name>`` and ``facetrack.meta/<name>`` instead of ``topics``; results of
            other cameras whose names merely start with it are dropped here).

    Raises:
        ConfigError: for a ``source_name`` that cannot name a camera.
    """

    def __init__(
        self,
        endpoint: str = DEFAULT_ENDPOINT,
        *,
        curve_keys_dir: str | os.PathLike | None = None,
        curve_client: str = curve.DEFAULT_CLIENT_NAME,
        rcvhwm: int = 64,
        rcvbuf_bytes: int | None = None,
        max_message_bytes: int = 16 << 20,
        topics: Sequence[bytes] = (TOPIC_PREFIX,),
        source_name: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.source_name = None if source_name is None else check_source_name(source_name)
        if self.source_name is not None:
            topics = (result_topic(self.source_name), meta_topic(self.source_name))
        self._decoder = Decoder()
        self._counts = {f.name: 0 for f in dataclasses.fields(SubscriberStats)}
        # (session, last seq) per camera: each camera of a multi-camera stream numbers its own results.
        self._sequence: dict[str | None, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._t_connect = time.monotonic()
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        try:
            self._sock.setsockopt(zmq.LINGER, 0)
            self._sock.setsockopt(zmq.RCVHWM, int(rcvhwm))
            self._sock.setsockopt(zmq.MAXMSGSIZE, int(max_message_bytes))
            self._sock.setsockopt(zmq.RECONNECT_IVL, 100)
            self._sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
            if rcvbuf_bytes is not None:
                self._sock.setsockopt(zmq.RCVBUF, int(rcvbuf_bytes))
            if curve_keys_dir is not None:
                curve.make_client(self._sock, curve.load_client_keys(curve_keys_dir, curve_client))
            for t in topics:
                self._sock.setsockopt(zmq.SUBSCRIBE, bytes(t))
            self._sock.connect(endpoint)
        except zmq.ZMQError as exc:
            self.close()
            raise StreamError(f"cannot connect to {endpoint}: {exc}") from exc
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def stop(self) -> None:
        """Makes :meth:`results` and pending receives return soon. Thread-safe."""
        self._stop.set()

    def close(self) -> None:
        """Closes the socket and logs what was skipped or repaired, by reason. Idempotent."""
        self._stop.set()
        if self._sock is not None:
            st = self.stats()
            if st.skipped:
                reasons = ", ".join(f"{r.replace('_', ' ')} {n}" for r, n in st.skipped_by_reason().items() if n)
                log.info("%s: skipped %d messages (%s); received %d", self.endpoint, st.skipped, reasons, st.received)
            if st.clamped_weights or st.normalised_quaternions:
                log.warning("%s: clamped %d weights into 0..1 and normalised %d quaternions",
                            self.endpoint, st.clamped_weights, st.normalised_quaternions)  # fmt: skip
            self._sock.close(linger=0)
            self._sock = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    # ------------------------------------------------------------------------------------ state
    @property
    def metadata(self) -> StreamMetadata | None:
        """The newest metadata received, or None before the first."""
        return self._decoder.latest_metadata

    def stats(self) -> SubscriberStats:
        return SubscriberStats(**self._counts)

    # ------------------------------------------------------------------------------------ receiving
    def recv_raw(self, timeout_ms: float = 1000.0) -> RawMessage | None:
        """The next message undecoded, or None after ``timeout_ms`` (or once stopped)."""
        if self._sock is None:
            raise StreamError("subscriber is closed")
        deadline = time.monotonic() + timeout_ms / 1e3
        while not self._stop.is_set():
            remaining_ms = max(0.0, (deadline - time.monotonic()) * 1e3)
            if self._sock.poll(min(remaining_ms, _POLL_SLICE_MS), zmq.POLLIN):
                try:
                    frames = self._sock.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    continue
                self._counts["received"] += 1
                return RawMessage(frames, time.monotonic_ns())
            if remaining_ms <= 0:
                return None
        return None

    def handle(self, raw: RawMessage) -> StreamResult | StreamMetadata | Skipped:
        """Decodes a raw message, updating metadata, counters and sequence tracking."""
        out = self._decoder.decode(raw.frames, raw.t_receive_ns)
        if self.source_name is not None and isinstance(out, StreamResult | StreamMetadata) \
                and out.source_name != self.source_name:
            # ZeroMQ matches topic prefixes: subscribing to cam1 also delivers cam10.
            self._counts["unknown_topic"] += 1
            return Skipped("unknown_topic", f"source {out.source_name!r}, not {self.source_name!r}")
        if isinstance(out, StreamResult):
            self._counts["results"] += 1
            self._track_sequence(out.session, out.seq, out.source_name)
            if out.corrections:
                self._count_corrections(out)
        elif isinstance(out, StreamMetadata):
            self._counts["metadata"] += 1
        else:
            self._counts[out.reason] += 1
            n = self._counts[out.reason]
            if n <= 3 or n % _LOG_EVERY == 0:
                expected = (out.reason == "no_metadata"
                            and raw.t_receive_ns / 1e9 - self._t_connect < _STARTUP_GRACE_S)  # fmt: skip
                log.log(logging.INFO if expected else logging.WARNING, "skipped a %s message (%d so far): %s",
                        out.reason.replace("_", " "), n, out.detail[:200])  # fmt: skip
        return out

    def _count_corrections(self, out: StreamResult) -> None:
        c = out.corrections
        first = not (self._counts["clamped_weights"] or self._counts["normalised_quaternions"])
        self._counts["clamped_weights"] += c.clamped_weights
        self._counts["normalised_quaternions"] += c.normalised_quaternions
        if first:  # once: the totals are logged at close()
            log.warning("frame %d: clamped %d weights outside 0..1, normalised %d non-unit quaternions "
                        "(the publisher sends out-of-range values)", out.result.frame_index, c.clamped_weights,
                        c.normalised_quaternions)  # fmt: skip

    def recv(self, timeout_ms: float = 1000.0) -> StreamResult | None:
        """The next decoded result (metadata and bad messages are consumed on the way), or None on timeout."""
        deadline = time.monotonic() + timeout_ms / 1e3
        while True:
            raw = self.recv_raw(max(0.0, (deadline - time.monotonic()) * 1e3))
            if raw is None:
                return None
            out = self.handle(raw)
            if isinstance(out, StreamResult):
                return out
            if time.monotonic() >= deadline:  # a flood of non-results must not hold the caller forever
                return None

    def recv_latest(self, timeout_ms: float = 1000.0) -> StreamResult | None:
        """Waits for a result, then drains whatever else is queued and returns the newest result.

        For consumers that only care about the present (viewer, bridges): a backlog is skipped at once.
        """
        newest = self.recv(timeout_ms)
        if newest is None:
            return None
        while True:
            raw = self.recv_raw(0.0)
            if raw is None:
                return newest
            out = self.handle(raw)
            if isinstance(out, StreamResult):
                newest = out

    def results(self, timeout_ms: float = 100.0, idle_timeout_ms: float | None = None,
                latest_only: bool = False) -> Iterator[StreamResult]:  # fmt: skip
        """Yields results until :meth:`stop` is called or nothing arrives for ``idle_timeout_ms``.

        Args:
            timeout_ms: Granularity of the stop/idle checks.
            idle_timeout_ms: End after this long without a result (None = never).
            latest_only: Skip backlogs (see :meth:`recv_latest`).
        """
        last = time.monotonic()
        while not self._stop.is_set():
            msg = self.recv_latest(timeout_ms) if latest_only else self.recv(timeout_ms)
            if msg is not None:
                last = time.monotonic()
                yield msg
            elif idle_timeout_ms is not None and (time.monotonic() - last) * 1e3 >= idle_timeout_ms:
                return

    __iter__ = results

    def _track_sequence(self, session: int, seq: int, source_name: str | None = None) -> None:
        last_session, last_seq = self._sequence.get(source_name, (None, None))
        if last_session is not None and session != last_session:
            self._counts["restarts"] += 1
            log.info(
                "publisher restarted (session %08x -> %08x); sequence restarts at %d",
                last_session,
                session,
                seq,
            )
        elif last_seq is not None and seq <= last_seq:
            self._counts["restarts"] += 1
            log.info("sequence went back from %d to %d (publisher reset or replay loop)", last_seq, seq)
        elif last_seq is not None and seq > last_seq + 1:
            self._counts["gaps"] += seq - last_seq - 1
        self._sequence[source_name] = (session, seq)


__all__ = ["RawMessage", "Subscriber", "SubscriberStats", "SKIP_REASONS"]
