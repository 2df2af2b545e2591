"""The stream subcommands end to end: keygen, bench (tiny), bridge and export-csv through the CLI."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.tracker.stream.helpers import LOOPBACK_ANY, free_tcp_port, random_result, record_demo_stream
from tools.cli import main
from tracker.stream import Publisher, Subscriber
from tracker.stream.protocol import StreamMetadata, encode_metadata, encode_result
from tracker.stream.recording import LogWriter


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.fixture(scope="session")
def demo_log(tmp_path_factory):
    """A stream log of a real `facetrack demo` run (shared with tests/tracker/stream in one session)."""
    return record_demo_stream(tmp_path_factory.getbasetemp() / "demo_stream.ftlog")


def _cli(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    """Runs the real command line in a subprocess, as a user would (stderr shows what they see)."""
    root = Path(__file__).resolve().parents[2]
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=root, capture_output=True, text=True,
                          timeout=timeout_s, env=os.environ.copy())  # fmt: skip


def _assert_one_clear_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("ERROR facetrack:")]
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert all(n in errors[0] for n in needles), errors[0]


@pytest.mark.parametrize(
    "args, needles",
    [
        (["stream", "export-csv", "missing.ftlog", "--out", "x.csv"], ["missing.ftlog", "does not exist"]),
        (["replay", "missing.ftlog", "--wait-s", "0"], ["missing.ftlog", "does not exist"]),
        (["bridge", "vmc", "--to", "nohost.invalid:39539", "--duration", "5"], ["nohost.invalid", "resolve"]),
        (["bridge", "livelink", "--to", "nohost.invalid", "--duration", "5"], ["nohost.invalid", "resolve"]),
        (["bridge", "vmc", "--to", "127.0.0.1:99999", "--duration", "5"], ["out of range"]),
    ],
)
def test_bad_input_exits_2_with_one_error_line(tmp_path, args, needles):
    proc = _cli(*[str(tmp_path / a) if a.endswith((".ftlog", ".csv")) else a for a in args])
    _assert_one_clear_error(proc, *needles)


def test_truncated_log_warns_once_and_exports_what_is_complete(tmp_path, rng):
    meta = StreamMetadata(40)
    path = tmp_path / "cut.ftlog"
    with LogWriter(path) as w:
        w.write(encode_metadata(meta, session=1, t_publish_ns=0), 1)
        for i in range(4):
            w.write(encode_result(random_result(rng, i), meta, seq=i, session=1, t_publish_ns=0), 2 + i)
    path.write_bytes(path.read_bytes()[:-100])  # the recording was killed mid-record
    proc = _cli("stream", "export-csv", str(path), "--out", str(tmp_path / "cut.csv"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("ignored an incomplete or corrupt tail") == 1, proc.stderr
    assert "wrote 3 rows" in proc.stdout


def test_bridge_on_a_dead_endpoint_warns_and_counts_keepalives(tmp_path):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    js = tmp_path / "b.json"
    proc = _cli("bridge", "vmc", "--connect", f"tcp://127.0.0.1:{free_tcp_port()}", "--to",
                f"127.0.0.1:{rx.getsockname()[1]}", "--duration", "2", "--warn-silence-s", "0.5", "--json", str(js))  # fmt: skip
    rx.close()
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("nothing received from tcp://127.0.0.1:") == 1, proc.stderr  # once per silence
    report = json.loads(js.read_text())
    assert report["frames_sent"] == 0 and report["keepalives"] >= 1 and report["messages_received"] == 0
    assert report["silent_warnings"] == 1
    assert "sent 0 tracked frames and" in proc.stdout


def test_export_csv_livelink_of_a_demo_stream(tmp_path, demo_log):
    out = tmp_path / "take.csv"
    proc = _cli("stream", "export-csv", str(demo_log), "--out", str(out), "--format", "livelink", "--invert-yaw")
    assert proc.returncode == 0, proc.stderr
    header = out.read_text().splitlines()[0].split(",")
    assert header[:4] == ["Timecode", "BlendShapeCount", "EyeBlinkLeft", "EyeLookDownLeft"] and len(header) == 63
    assert header.index("JawRight") + 1 == header.index("JawLeft")


def test_replay_of_a_demo_stream_publishes_only_recorded_metadata(tmp_path, demo_log):
    from tracker.stream.recording import StreamLog

    recorded = StreamLog(demo_log)
    results = list(recorded.results())
    sessions = {m.session for m in results}
    needed = {m.meta_id for m in results}
    endpoint = f"tcp://127.0.0.1:{free_tcp_port()}"
    metas, got = [], []
    with Subscriber(endpoint, rcvhwm=10_000) as sub:
        proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "-q", "replay", str(demo_log), "--publish", endpoint,
                                 "--speed", "4", "--wait-s", "10"])  # fmt: skip
        try:
            while len(got) < len(results):
                raw = sub.recv_raw(5000)
                assert raw is not None, "replay stalled"
                out = sub.handle(raw)
                (metas if raw.frames[0] == b"facetrack.meta" else got).append(out)
        finally:
            proc.wait(30)
    assert proc.returncode == 0
    assert metas and isinstance(metas[0], StreamMetadata)
    # The first message is the recorded metadata the results need: no placeholder (K = 0) and no session of
    # the replaying process; every result decodes.
    assert {m.sent_meta_id for m in metas} <= needed and all(m.identity_dim == 40 for m in metas)
    assert {m.extra["session"] for m in metas} <= sessions
    assert sub.stats().no_metadata == 0 and [g.result.frame_index for g in got] == [m.result.frame_index for m in results]


def test_keygen_writes_server_and_client_keys(tmp_path):
    assert (
        main(["-q", "stream", "keygen", str(tmp_path / "k"), "--client", "quest", "--client", "laptop"]) == 0
    )
    names = sorted(p.name for p in (tmp_path / "k").rglob("*") if p.is_file())
    assert names == sorted(["server.key", "server.key_secret", "quest.key", "quest.key_secret", "laptop.key",
                            "laptop.key_secret", "quest.key", "laptop.key"])  # fmt: skip


def test_bench_reports_throughput_and_latency(tmp_path):
    out = tmp_path / "bench.json"
    assert main(["-q", "stream", "bench", "--messages", "300", "--rate-hz", "200", "--latency-s", "0.3",
                 "--json", str(out)]) == 0  # fmt: skip
    res = json.loads(out.read_text())
    assert res["throughput"]["received"] == 300 and res["throughput"]["msgs_per_s"] > 0
    assert res["latency"]["received"] >= 50 and 0 < res["latency"]["publish_to_receive_ms"]["p50"] < 100


def test_bridge_command_sends_live_link_packets(rng):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5.0)
    with Publisher(LOOPBACK_ANY) as pub:
        codes = []
        args = ["-q", "bridge", "livelink", "--connect", pub.endpoint, "--to", f"127.0.0.1:{rx.getsockname()[1]}",
                "--subject", "Tester", "--duration", "1.5"]  # fmt: skip
        th = threading.Thread(target=lambda: codes.append(main(args)))
        th.start()
        pub.wait_for_subscriber(5.0)
        r = random_result(rng, 1)
        pub.publish(r)
        packet = rx.recvfrom(2048)[0]
        th.join(5.0)
    rx.close()
    assert codes == [0]
    assert b"Tester" in packet and np.array_equal(np.frombuffer(packet[-244:-36], ">f4"), r.faces[0].arkit)


def test_export_csv_command(tmp_path, rng):
    meta = StreamMetadata(40)
    with LogWriter(tmp_path / "a.ftlog") as w:
        w.write(encode_metadata(meta, session=1, t_publish_ns=0), 1)
        for i in range(3):
            w.write(
                encode_result(random_result(rng, i, n_faces=2), meta, seq=i, session=1, t_publish_ns=0), 2 + i
            )
    assert (
        main(["-q", "stream", "export-csv", str(tmp_path / "a.ftlog"), "--out", str(tmp_path / "a.csv")]) == 0
    )
    with open(tmp_path / "a.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 6 and "jawOpen" in rows[0] and "tongueOut" in rows[0]


def test_view_command_renders_headless_into_mp4(tmp_path, rng, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["-q", "view", "--connect", "tcp://127.0.0.1:1"]) == 2  # no display, no --out: a clear error
    stop = threading.Event()
    with Publisher(LOOPBACK_ANY) as pub:

        def feed():
            i = 0
            while not stop.is_set():
                pub.publish(random_result(rng, i))
                i += 1
                stop.wait(0.03)

        th = threading.Thread(target=feed)
        th.start()
        try:
            out, js = tmp_path / "v.mp4", tmp_path / "v.json"
            code = main(["-q", "view", "--connect", pub.endpoint, "--out", str(out), "--frames", "3",
                         "--size", "160x120", "--json", str(js)])  # fmt: skip
        finally:
            stop.set()
            th.join(5)
    assert code == 0 and out.stat().st_size > 0
    assert json.loads(js.read_text())["frames"] == 3


@pytest.mark.parametrize("presets", [True, False])
def test_bridge_vmc_command_on_a_demo_stream(tmp_path, demo_log, presets):
    """`facetrack bridge vmc` fed by a demo recording: every datagram fits 1,500 bytes, presets as asked."""
    from pythonosc.osc_bundle import OscBundle

    from tracker.stream.recording import StreamLog, drop_unused_metadata, first_needed_metadata

    records = drop_unused_metadata(StreamLog(demo_log).records())
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    rx.settimeout(0.2)
    js = tmp_path / "vmc.json"
    with Publisher(LOOPBACK_ANY, own_metadata=False, raw_metadata=first_needed_metadata(records).frames) as pub:
        codes = []
        args = ["-q", "bridge", "vmc", "--connect", pub.endpoint, "--to", f"127.0.0.1:{rx.getsockname()[1]}",
                "--duration", "3", "--json", str(js), *([] if presets else ["--no-presets"])]  # fmt: skip
        th = threading.Thread(target=lambda: codes.append(main(args)))
        th.start()
        assert pub.wait_for_subscriber(5.0)
        for rec in records:
            pub.publish_raw(rec.frames)
            threading.Event().wait(0.03)  # about the demo's rate
        th.join(10)  # the bridge has ended: everything it sent waits in the socket buffer (loopback, lossless)
    datagrams = []
    try:
        while True:
            datagrams.append(rx.recvfrom(65536)[0])
    except TimeoutError:
        pass
    rx.close()
    assert codes == [0]
    report = json.loads(js.read_text())
    assert report["frames_sent"] >= 1 and report["bundles"] == len(datagrams)
    assert max(len(d) for d in datagrams) <= 1500
    names = {c.params[0] for d in datagrams for c in OscBundle(d) if c.address == "/VMC/Ext/Blend/Val"}
    assert "JawOpen" in names and ("Blink_L" in names) == presets
