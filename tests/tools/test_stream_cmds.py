"""The stream subcommands end to end: keygen, bench (tiny), bridge and export-csv through the CLI."""

from __future__ import annotations

import csv
import json
import socket
import threading

import numpy as np
import pytest

from tests.tracker.stream.helpers import LOOPBACK_ANY, random_result
from tools.cli import main
from tracker.stream import Publisher
from tracker.stream.protocol import StreamMetadata, encode_metadata, encode_result
from tracker.stream.recording import LogWriter


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


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
