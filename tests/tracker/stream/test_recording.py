"""Stream logs: crash-safe recording, exact replay of every complete message, replay timing, CSV export."""

from __future__ import annotations

import csv
import dataclasses
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.tracker.stream.helpers import LOOPBACK_ANY, assert_exact, random_result
from tools.cli import main as cli_main
from tracker.core.errors import StreamError
from tracker.core.face_model.arkit import ARKIT_NAMES
from tracker.core.geometry import ypr_deg_from_rotation
from tracker.stream import Decoder, Publisher, StreamMetadata, StreamResult, Subscriber
from tracker.stream.protocol import encode_metadata, encode_result
from tracker.stream.recording import LogWriter, StreamLog, export_csv, replay_log

REPO = Path(__file__).resolve().parents[3]


def _write_log(path: Path, rng, n: int = 30, interval_ms: float = 10.0):
    meta = StreamMetadata(40)
    sent = [random_result(rng, i, n_faces=1 + i % 2) for i in range(n)]
    t0 = 1_000_000_000
    with LogWriter(path, info={"endpoint": "test"}) as w:
        w.write(encode_metadata(meta, session=5, t_publish_ns=t0), t0)
        for i, r in enumerate(sent):
            frames = encode_result(r, meta, seq=i, session=5, t_publish_ns=r.t_done_ns)
            w.write(frames, t0 + round((i + 1) * interval_ms * 1e6))
    return sent


def _replay_and_receive(records, speed: float = 1.0, restamp: bool = True):
    """Replays records through a real publisher into a real subscriber; returns (stats, received raw)."""
    # Room for the whole burst at every hop: a fast replay on a loaded machine must not hit a high-water mark.
    with Publisher(LOOPBACK_ANY, queue_size=len(records) + 8, sndhwm=len(records) + 8, metadata_interval_s=60) as pub:
        with Subscriber(pub.endpoint, rcvhwm=0) as sub:
            assert pub.wait_for_subscriber(5.0)
            while sub.recv_raw(50) is not None:  # the publisher's own greeting metadata
                pass
            received = []
            done = threading.Event()

            def receive():
                while not done.is_set() or len(received) < len(records):
                    raw = sub.recv_raw(200)
                    if raw is None and done.is_set():
                        return
                    if raw is not None:
                        received.append(raw)

            t = threading.Thread(target=receive)
            t.start()
            stats = replay_log(records, pub.publish_raw, speed=speed, restamp_times=restamp)
            pub.flush(2.0)
            done.set()
            t.join(5.0)
    return stats, received


def test_truncated_log_replays_every_complete_message(tmp_path, rng):
    path = tmp_path / "s.ftlog"
    sent = _write_log(path, rng, n=20)
    full = StreamLog(path).records()
    assert len(full) == 21 and StreamLog(path).info["endpoint"] == "test"
    data = path.read_bytes()
    record_ends = np.cumsum([8 + 12 + sum(4 + len(f) for f in r.frames) for r in full])
    start = len(data) - int(record_ends[-1])
    for cut in (record_ends[9] + 3, record_ends[9] + 40, record_ends[14] - 1):  # head, payload, last byte
        cut_path = tmp_path / f"cut{cut}.ftlog"
        cut_path.write_bytes(data[: start + int(cut)])
        log = StreamLog(cut_path)
        recs = log.records()
        complete = int(np.searchsorted(record_ends, cut, side="right"))
        assert len(recs) == complete and log.ignored_tail_bytes > 0
        _, received = _replay_and_receive(recs, speed=20.0, restamp=False)
        assert len(received) == complete
        dec = Decoder()
        got = [m for m in (dec.decode(r.frames) for r in received) if isinstance(m, StreamResult)]
        assert len(got) == complete - 1
        for s, g in zip(sent, got, strict=False):
            assert_exact(s, g)
    corrupt = bytearray(data)
    corrupt[start + int(record_ends[4]) + 30] ^= 0x55  # a flipped byte inside record 5: CRC stops there
    (tmp_path / "bad.ftlog").write_bytes(bytes(corrupt))
    assert len(StreamLog(tmp_path / "bad.ftlog").records()) == 5
    (tmp_path / "junk").write_bytes(b"not a log at all")
    with pytest.raises(StreamError, match="not a facetrack stream log"):
        StreamLog(tmp_path / "junk")


def test_killed_recording_process_keeps_every_complete_message(tmp_path, rng):
    out = tmp_path / "killed.ftlog"
    results = [random_result(rng, i) for i in range(50)]
    with Publisher(LOOPBACK_ANY, queue_size=64) as pub:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "-q", "record", "--connect", pub.endpoint,
                                 "--out", str(out)], cwd=REPO, env=env)  # fmt: skip
        try:
            deadline, i = time.monotonic() + 30.0, 0
            while time.monotonic() < deadline:
                pub.publish(results[i % len(results)])
                i += 1
                time.sleep(0.004)
                if out.exists() and out.stat().st_size > 40_000:
                    break
            os.kill(proc.pid, signal.SIGKILL)  # mid-stream, no chance to clean up
        finally:
            proc.wait(10)
    log = StreamLog(out)
    recs = log.records()
    assert len(recs) >= 20
    metas = log.metadata()
    assert metas and metas[0].identity_dim == 40  # the publisher greets a new subscriber with metadata
    assert len(list(log.results())) == len(recs) - len(metas)  # every complete record decodes
    _, received = _replay_and_receive(recs, speed=50.0)
    assert [r.frames for r in received] != [] and len(received) == len(recs)


def test_replay_keeps_original_intervals_within_5ms(tmp_path, rng):
    intervals_ms = [25, 5, 40, 15, 60, 10, 30, 20, 50, 35]
    meta = StreamMetadata(40)
    t = 5_000_000_000
    with LogWriter(tmp_path / "t.ftlog") as w:
        for i, dt in enumerate(intervals_ms):
            t += int(dt * 1e6)
            r = dataclasses.replace(
                random_result(rng, i), t_capture_ns=t - 5_000_000, t_done_ns=t - 1_000_000
            )
            w.write(encode_result(r, meta, seq=i, session=1, t_publish_ns=t - 500_000), t)
    recs = StreamLog(tmp_path / "t.ftlog").records()
    for speed in (1.0, 2.0):
        want = np.diff([r.t_receive_ns for r in recs]) / speed / 1e6
        # Up to three tries: on this shared 2-core machine a noisy neighbour can preempt the replay thread
        # for several ms; the replay schedules against absolute times, so one late message never drifts
        # the rest.
        for _attempt in range(3):
            stats, received = _replay_and_receive(recs, speed=speed)
            assert len(received) == len(recs)
            got = np.diff([r.t_receive_ns for r in received]) / 1e6
            if np.abs(got - want).max() < 5.0:
                break
        assert np.abs(got - want).max() < 5.0, (got, want)
    # Replayed headers are moved onto this clock: capture -> receive latency stays as recorded (5 ms).
    dec = Decoder()
    dec.add_metadata(meta)
    msg = dec.decode(received[-1].frames)
    assert abs((received[-1].t_receive_ns - msg.result.t_capture_ns) / 1e6 - 5.0) < 5.0


def test_csv_export_one_row_per_face_per_frame(tmp_path, rng):
    sent = _write_log(tmp_path / "c.ftlog", rng, n=6)
    rows = export_csv(tmp_path / "c.ftlog", tmp_path / "c.csv")
    assert rows == sum(len(r.faces) for r in sent) == 9
    with open(tmp_path / "c.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0])[:12] == ["frame_index", "time_s", "t_capture_ns", "track_id", "state", "confidence",
                                   "yaw_deg", "pitch_deg", "roll_deg", "tx_m", "ty_m", "tz_m"]  # fmt: skip
    row, face = table[2], sent[1].faces[1]
    assert (
        int(row["frame_index"]) == 1 and int(row["track_id"]) == face.track_id and row["state"] == face.state
    )
    assert np.allclose(
        [float(row[k]) for k in ("yaw_deg", "pitch_deg", "roll_deg")],
        ypr_deg_from_rotation(face.rotation),
        atol=1e-3,
    )
    assert np.allclose([float(row[n]) for n in ARKIT_NAMES], face.arkit, atol=1e-5)
    assert float(table[0]["time_s"]) == 0.0


def test_replay_command_publishes_a_log(tmp_path, rng):
    sent = _write_log(tmp_path / "r.ftlog", rng, n=10, interval_ms=5)
    with socket.socket() as s:  # a free port for the command to bind
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"tcp://127.0.0.1:{port}"
    codes = []
    th = threading.Thread(target=lambda: codes.append(cli_main(["-q", "replay", str(tmp_path / "r.ftlog"), "--publish",
                                                                endpoint, "--json", str(tmp_path / "r.json")])))  # fmt: skip
    got = []
    with Subscriber(endpoint) as sub:
        th.start()
        for msg in sub.results(timeout_ms=100, idle_timeout_ms=3000):
            got.append(msg)
            if len(got) == len(sent):
                break
    th.join(10)
    assert codes == [0] and [g.result.frame_index for g in got] == list(range(10))
    assert (tmp_path / "r.json").exists()
