"""Loopback benchmark of the stream: throughput and publish -> receive latency, receiver in another process.

Throughput: the publisher is handed ``messages`` results at once and sends them as fast as it can; the
receiving process decodes every one into typed objects; throughput = messages decoded / time between the
first and the last arrival. Latency: results published at ``rate_hz``; the receiver measures
``t_receive - t_publish`` (ZeroMQ + kernel + decode) and ``t_receive - t_done`` (also the publisher's
handoff queue and encoding; the benchmark stamps ``t_done`` at the ``publish()`` call). Both clocks are
CLOCK_MONOTONIC of the one host.
"""

from __future__ import annotations

import multiprocessing as mp
import time

import numpy as np

from tracker.core.geometry import rotation_from_ypr_deg
from tracker.core.types import FaceCoefficients, FaceState, TrackResult
from tracker.stream.protocol import StreamMetadata, encode_result
from tracker.stream.publisher import Publisher

_SENTINEL_FRAME = -1
_LATENCY_FRAME0 = 1_000_000_000


def _next_row(sub, idle_timeout_ms: float, decode: bool) -> tuple | None:
    """(frame, t_receive, t_publish, t_done, faces) of the next result, or None on timeout."""
    import msgpack

    from tracker.stream.protocol import TOPIC_RESULT

    while True:
        if decode:  # the full client path: typed TrackResult / FaceState objects
            msg = sub.recv(idle_timeout_ms)
            if msg is None:
                return None
            r = msg.result
            return r.frame_index, msg.t_receive_ns, msg.t_publish_ns, r.t_done_ns, len(r.faces)
        raw = sub.recv_raw(idle_timeout_ms)  # transport only: the header is read, the faces are not
        if raw is None:
            return None
        if raw.frames[0] == TOPIC_RESULT:
            h = msgpack.unpackb(raw.frames[1])
            return h["frame"], raw.t_receive_ns, h["t_publish_ns"], h["t_done_ns"], len(h["faces"])


def _receiver(endpoint: str, conn, idle_timeout_ms: float, last_throughput_frame: int, decode: bool) -> None:
    """Runs in the child process: receives everything until the sentinel, sends back the timings."""
    from tracker.stream.subscriber import Subscriber

    rows = []
    with Subscriber(endpoint, rcvhwm=0) as sub:
        conn.send("ready")
        while True:
            row = _next_row(sub, idle_timeout_ms, decode)
            if row is None or row[0] == _SENTINEL_FRAME:
                break
            rows.append(row)
            if row[0] == last_throughput_frame:
                conn.send("caught up")  # the latency phase must not queue behind the throughput backlog
        stats = sub.stats()
    conn.send((np.array(rows, dtype=np.int64).reshape(-1, 5), stats.gaps, stats.skipped))
    conn.close()


def _result(frame: int, faces: list[FaceState]) -> TrackResult:
    t = time.monotonic_ns()
    return TrackResult(frame, t, t, faces, {}, "bench")


def _faces(n: int, k: int = 100) -> list[FaceState]:
    rng = np.random.default_rng(0)
    return [
        FaceState(
            i,
            FaceCoefficients(rng.normal(0, 1, k), rng.uniform(0, 1, 53), rotation_from_ypr_deg(10, 5, -3),
                             [0.01, 0.02, 0.6], rng.normal(0, 0.3, 27)),
            rng.uniform(0, 640, (68, 2)),
            0.9,
        )  # fmt: skip
        for i in range(n)
    ]


def run_benchmark(messages: int = 20_000, faces: int = 1, rate_hz: float = 250.0, latency_s: float = 3.0,
                  decode: bool = True, progress=None) -> dict:  # fmt: skip
    """Runs both phases; returns a dict of figures (see the module docstring).

    Args:
        messages: Results in the throughput phase.
        faces: Faces per result.
        rate_hz: Publish rate of the latency phase.
        latency_s: Duration of the latency phase.
        decode: Decode every message into typed objects (the client library's path); False reads only
            the msgpack header (transport throughput).
        progress: Optional callable(str) told which phase runs.
    """
    face_list = _faces(faces)
    ctx = mp.get_context("spawn")  # a clean interpreter: no shared GIL, no inherited sockets
    parent, child = ctx.Pipe()
    with Publisher("tcp://127.0.0.1:*", queue_size=messages + 16, sndhwm=0) as pub:
        proc = ctx.Process(
            target=_receiver, args=(pub.endpoint, child, 3000.0, messages - 1, decode), daemon=True
        )
        proc.start()
        try:
            if not parent.poll(60) or parent.recv() != "ready" or not pub.wait_for_subscriber(10.0):
                raise RuntimeError("benchmark receiver did not start")
            time.sleep(0.3)  # let the metadata greeting through
            if progress:
                progress(f"throughput: {messages} messages")
            template = _result(0, face_list)
            t0 = time.monotonic_ns()
            for i in range(messages):
                pub.publish(TrackResult(i, template.t_capture_ns, template.t_done_ns, face_list, {}, "bench"))
            pub.flush(120.0)
            send_s = (time.monotonic_ns() - t0) / 1e9
            if parent.poll(120):
                parent.recv()
            time.sleep(0.2)
            if progress:
                progress(f"latency: {rate_hz:g} Hz for {latency_s:g} s")
            n_lat = int(rate_hz * latency_s)
            t_next = time.monotonic()
            for i in range(n_lat):
                t_next += 1.0 / rate_hz
                pub.publish(_result(_LATENCY_FRAME0 + i, face_list))
                time.sleep(max(0.0, t_next - time.monotonic()))
            pub.flush(10.0)
            time.sleep(0.2)
            for _ in range(20):  # the sentinel must arrive; repeat it in case one is dropped
                pub.publish(_result(_SENTINEL_FRAME, []))
                time.sleep(0.01)
            if not parent.poll(60):
                raise RuntimeError("benchmark receiver did not report")
            rows, gaps, skipped = parent.recv()
        finally:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    thr = rows[rows[:, 0] < _LATENCY_FRAME0]
    lat = rows[rows[:, 0] >= _LATENCY_FRAME0]
    thr_s = (thr[-1, 1] - thr[0, 1]) / 1e9 if len(thr) > 1 else float("nan")
    wire_ms = (lat[:, 1] - lat[:, 2]) / 1e6
    call_ms = (lat[:, 1] - lat[:, 3]) / 1e6

    def pct(a: np.ndarray) -> dict:
        return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "max": float(a.max())}

    return {
        "faces_per_message": faces,
        "receiver": "typed decode" if decode else "header only",
        "message_bytes": sum(
            len(f)
            for f in encode_result(
                _result(0, face_list), StreamMetadata(100), seq=0, session=0, t_publish_ns=0
            )
        ),  # fmt: skip
        "throughput": {
            "messages": messages,
            "received": int(len(thr)),
            "msgs_per_s": float(len(thr) / thr_s) if thr_s > 0 else None,
            "publisher_msgs_per_s": messages / send_s,
        },
        "latency": {
            "rate_hz": rate_hz,
            "messages": n_lat,
            "received": int(len(lat)),
            "publish_to_receive_ms": pct(wire_ms) if len(lat) else None,
            "call_to_receive_ms": pct(call_ms) if len(lat) else None,
        },
        "receiver_gaps": int(gaps),
        "receiver_skipped": int(skipped),
    }
