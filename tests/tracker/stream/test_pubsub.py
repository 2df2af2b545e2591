"""Publisher -> subscriber over real loopback sockets."""

from __future__ import annotations

import time

import msgpack
import pytest
import zmq

from tests.tracker.stream.helpers import LOOPBACK_ANY, assert_exact, random_result
from tracker.core.errors import StreamError
from tracker.stream import Publisher, StreamResult, Subscriber
from tracker.stream.protocol import TOPIC_META, TOPIC_RESULT, StreamMetadata, encode_metadata, encode_result


def _collect(sub: Subscriber, n: int, timeout_s: float = 5.0) -> list[StreamResult]:
    out, deadline = [], time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        msg = sub.recv(100)
        if msg is not None:
            out.append(msg)
    return out


def test_round_trip_every_field_exact(rng):
    sent = [random_result(rng, i, n_faces=i % 4) for i in range(12)]
    with Publisher(LOOPBACK_ANY, queue_size=16) as pub, Subscriber(pub.endpoint) as sub:
        assert pub.endpoint.startswith("tcp://127.0.0.1:")
        assert pub.wait_for_subscriber(5.0)
        for r in sent:
            assert pub.publish(r)
        got = _collect(sub, len(sent))
    assert len(got) == len(sent)
    for s, g in zip(sent, got, strict=True):
        assert_exact(s, g)
        assert g.session == pub.session and g.t_receive_ns >= g.t_publish_ns >= s.t_done_ns
    assert [g.seq for g in got] == list(range(len(sent)))
    assert sub.metadata.identity_dim == sent[1].faces[0].identity.shape[0]
    stats = sub.stats()
    assert stats.results == len(sent) and stats.skipped == 0 and stats.gaps == 0


def test_late_subscriber_decodes_after_next_metadata(rng):
    """A subscriber joining a running stream decodes from the first metadata on, and only from then."""
    with Publisher(LOOPBACK_ANY, metadata_interval_s=0.2) as pub:
        for i in range(5):  # stream already running before anyone listens
            pub.publish(random_result(rng, i))
            time.sleep(0.01)
        with Subscriber(pub.endpoint) as sub:
            kinds, t_end = [], time.monotonic() + 1.0
            frame = 5
            while time.monotonic() < t_end:
                pub.publish(random_result(rng, frame))
                frame += 1
                raw = sub.recv_raw(10)
                while raw is not None:
                    kinds.append(type(sub.handle(raw)).__name__)
                    raw = sub.recv_raw(0)
    assert "StreamMetadata" in kinds
    first_meta = kinds.index("StreamMetadata")
    assert "StreamResult" not in kinds[:first_meta]
    assert kinds[first_meta:].count("StreamResult") >= 20
    assert kinds.count("StreamMetadata") >= 3  # re-sent periodically (interval 0.2 s over ~1 s)


def test_stalled_subscriber_never_blocks_publisher_and_drops_are_counted(rng):
    n = 1000
    results = [random_result(rng, i, n_faces=4) for i in range(8)]  # ~5 KB messages
    pub = Publisher(LOOPBACK_ANY, queue_size=64, sndhwm=16, sndbuf_bytes=32 << 10).start()
    stalled = Subscriber(pub.endpoint, rcvhwm=4, rcvbuf_bytes=32 << 10)
    fast = Subscriber(pub.endpoint)
    try:
        assert pub.wait_for_subscriber(5.0)
        while fast.metadata is None or stalled.metadata is None:  # both connected and subscribed
            fast.recv(10)
            stalled.recv(10)
        # Lock-step with the fast subscriber (each message is published once it has the one before), so
        # the fast one's count does not depend on how busy the machine is; the stalled one never reads.
        worst_call_s, got_fast = 0.0, 0
        for i in range(n):
            t0 = time.perf_counter()
            pub.publish(results[i % len(results)])
            worst_call_s = max(worst_call_s, time.perf_counter() - t0)
            got_fast += fast.recv(2000) is not None
        got_stalled = len(_collect(stalled, n, timeout_s=0.5))  # the stalled one wakes up at last
        pub.publish(results[0])  # the next message it gets shows how many it missed
        got_stalled += len(_collect(stalled, 1, timeout_s=2.0))
        st = stalled.stats()
        fast_stats = fast.stats()
    finally:
        stalled.close()
        fast.close()
        pub.close()
    # A send that waited for the stalled peer would block here for good; a queue append takes microseconds.
    assert worst_call_s < 0.5, f"publish() blocked for {worst_call_s * 1e3:.1f} ms"
    # A stalled peer does not starve the others: the fast one got every message, with no gap.
    assert got_fast == n and fast_stats.gaps == 0, (got_fast, fast_stats)
    assert got_stalled < n / 4, got_stalled
    assert st.results + st.gaps == n + 1, st  # every drop shows as a sequence gap


def test_nodrop_mode_counts_drops_at_the_publisher(rng):
    result = random_result(rng, 0, n_faces=4)
    pub = Publisher(LOOPBACK_ANY, queue_size=4000, sndhwm=4, sndbuf_bytes=32 << 10, nodrop=True).start()
    stalled = Subscriber(pub.endpoint, rcvhwm=4, rcvbuf_bytes=32 << 10)
    try:
        assert pub.wait_for_subscriber(5.0)
        t0 = time.perf_counter()
        for _ in range(2000):
            pub.publish(result)
        publish_s = time.perf_counter() - t0
        deadline = time.monotonic() + 5.0
        while len(pub._queue) and time.monotonic() < deadline:
            time.sleep(0.01)
        stats = pub.stats()
    finally:
        stalled.close()
        pub.close()
    assert publish_s < 1.0
    # Every result is either sent or counted as dropped (metadata drops are counted apart).
    assert stats.dropped_hwm > 1000 and stats.published + stats.dropped_hwm == 2000, stats


def test_ten_thousand_bad_messages_leave_subscriber_decoding(rng):
    """Random bytes, truncated and wrong-version messages from a rogue publisher, valid ones in between."""
    meta = StreamMetadata(40)
    ctx = zmq.Context()
    rogue = ctx.socket(zmq.PUB)
    rogue.setsockopt(zmq.SNDHWM, 0)
    rogue.setsockopt(zmq.LINGER, 0)
    port = rogue.bind_to_random_port("tcp://127.0.0.1")
    sub = Subscriber(f"tcp://127.0.0.1:{port}", rcvhwm=0)  # 0 = no limit: count every message exactly
    try:
        # Wait for the subscription to arrive (PUB drops everything before that).
        while sub.metadata is None:
            rogue.send_multipart(encode_metadata(meta, session=1, t_publish_ns=0))
            sub.recv(20)
        valid = {}
        good = encode_result(random_result(rng, 0), meta, seq=0, session=1, t_publish_ns=0)
        header = msgpack.unpackb(good[1])
        n_bad = 10_000
        for i in range(n_bad):
            kind = i % 8
            if kind == 0:
                frames = [TOPIC_RESULT, rng.bytes(int(rng.integers(0, 64)))]
            elif kind == 1:
                frames = [TOPIC_RESULT, good[1], rng.bytes(int(rng.integers(0, 2000)))]
            elif kind == 2:
                frames = [TOPIC_META, rng.bytes(int(rng.integers(0, 200)))]
            elif kind == 3:
                frames = [TOPIC_RESULT, msgpack.packb({**header, "schema_major": 2}), good[2]]
            elif kind == 4:
                frames = [b"facetrack." + rng.bytes(4), rng.bytes(8)]
            elif kind == 5:
                frames = [TOPIC_RESULT]
            elif kind == 6:
                corrupt = bytearray(good[1])
                corrupt[int(rng.integers(0, len(corrupt)))] ^= 0xFF
                frames = [TOPIC_RESULT, bytes(corrupt), rng.bytes(len(good[2]))]
            else:
                frames = [TOPIC_RESULT, msgpack.packb({**header, "faces": "x"}), *[rng.bytes(9)] * 3]
            rogue.send_multipart(frames)
            if i % 500 == 250:
                r = random_result(rng, 1000 + i)
                valid[r.frame_index] = r
                rogue.send_multipart(encode_result(r, meta, seq=i, session=1, t_publish_ns=0))
        # Still alive afterwards: a last valid message decodes.
        last = random_result(rng, 99_999)
        rogue.send_multipart(encode_result(last, meta, seq=n_bad, session=1, t_publish_ns=0))
        got, deadline = [], time.monotonic() + 5.0
        while time.monotonic() < deadline and (not got or got[-1].result.frame_index != 99_999):
            msg = sub.recv(100)
            if msg is not None:
                got.append(msg)
        stats = sub.stats()
    finally:
        sub.close()
        rogue.close(0)
        ctx.term()
    decoded = {g.result.frame_index: g for g in got}
    # Corrupted headers can, rarely, still decode (a flipped bit in a float); only valid ones are checked.
    for idx, r in valid.items():
        assert_exact(r, decoded[idx])
    assert got[-1].result.frame_index == 99_999
    assert stats.skipped + (stats.results - len(valid) - 1) == n_bad, stats
    assert stats.malformed > 5000 and stats.wrong_version >= n_bad // 8 and stats.unknown_topic >= n_bad // 8


def _publish_until_received(pub, sub, rng, frames, timeout_s=5.0):
    """Publishes ``frames`` one by one, each until it arrives (a reconnecting subscriber misses some)."""
    got, deadline = [], time.monotonic() + timeout_s
    for frame in frames:
        while time.monotonic() < deadline:
            pub.publish(random_result(rng, frame))
            msg = sub.recv(30)  # receiving also lets ZeroMQ finish a reconnect on this socket
            if msg is not None and msg.result.frame_index == frame:
                got.append(msg)
                break
    return got


def test_publisher_restart_is_tolerated(rng):
    pub = Publisher(LOOPBACK_ANY).start()
    endpoint = pub.endpoint
    sub = Subscriber(endpoint)
    try:
        first = _publish_until_received(pub, sub, rng, [0, 1, 2])
        pub.close()
        pub = Publisher(endpoint).start()  # same port, new session, sequence back to 0
        second = _publish_until_received(pub, sub, rng, [100, 101, 102])
    finally:
        sub.close()
        pub.close()
    assert [m.result.frame_index for m in first] == [0, 1, 2]
    assert [m.result.frame_index for m in second] == [100, 101, 102]
    assert first[0].session != second[0].session and second[0].seq < first[-1].seq + 5
    assert sub.stats().restarts == 1


def test_bind_failure_is_a_clear_error_and_close_never_hangs(rng):
    with Publisher(LOOPBACK_ANY) as pub:
        with pytest.raises(StreamError, match="cannot bind"):
            Publisher(pub.endpoint).start()
        for i in range(200):
            pub.publish(random_result(rng, i, n_faces=2))
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 1.5
    with pytest.raises(StreamError, match="not running"):
        pub.publish(random_result(rng, 0))


def test_subscriber_recv_times_out_without_publisher():
    with Subscriber("tcp://127.0.0.1:1") as sub:  # nothing listens there; ZeroMQ keeps retrying quietly
        t0 = time.monotonic()
        assert sub.recv(150) is None
        assert 0.1 <= time.monotonic() - t0 < 1.0
        assert list(sub.results(timeout_ms=50, idle_timeout_ms=100)) == []


def test_skips_before_metadata_are_info_at_start_warning_later_and_counted_at_close(rng, caplog):
    import logging

    from tracker.stream.subscriber import RawMessage

    meta = StreamMetadata(40)
    frames = encode_result(random_result(rng, 0), meta, seq=0, session=1, t_publish_ns=0)
    sub = Subscriber("tcp://127.0.0.1:1")  # nothing listens: handle() is fed by hand
    try:
        with caplog.at_level(logging.INFO, logger="tracker.stream.subscriber"):
            now = time.monotonic_ns()
            sub.handle(RawMessage(frames, now))  # within the first second: the normal race
            sub.handle(RawMessage(frames, now + 2_000_000_000))  # later: worth a warning
            sub.handle(RawMessage([b"facetrack.result", b"\xc1"], now))
    finally:
        with caplog.at_level(logging.INFO, logger="tracker.stream.subscriber"):
            sub.close()
    skips = [r for r in caplog.records if "skipped a no metadata" in r.getMessage()]
    assert [r.levelno for r in skips] == [logging.INFO, logging.WARNING]
    summary = [r.getMessage() for r in caplog.records if "skipped 3 messages" in r.getMessage()]
    assert summary and "malformed 1" in summary[0] and "no metadata 2" in summary[0], caplog.text
