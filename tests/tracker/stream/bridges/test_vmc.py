"""VMC over OSC: a python-osc server on loopback receives the right addresses, names and values."""

from __future__ import annotations

import threading
import time

import numpy as np
from pythonosc import dispatcher, osc_server

from tests.tracker.stream.helpers import LOOPBACK_ANY, random_result
from tracker.core.face_model.arkit import ARKIT_NAMES
from tracker.core.geometry import rotation_from_quaternion, rotation_from_ypr_deg
from tracker.stream import Publisher, Subscriber
from tracker.stream.bridges import VmcSender, run_bridge
from tracker.stream.bridges.vmc import PERFECT_SYNC_NAMES


class _Receiver:
    def __init__(self) -> None:
        self.messages: list[tuple] = []
        self._lock = threading.Lock()
        d = dispatcher.Dispatcher()
        d.set_default_handler(self._on)
        self.server = osc_server.ThreadingOSCUDPServer(("127.0.0.1", 0), d)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05})

    def _on(self, address, *args):
        with self._lock:
            self.messages.append((address, *args))

    def wait_for(self, address: str, count: int, timeout_s: float = 5.0) -> list[tuple]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                got = [m for m in self.messages if m[0] == address]
            if len(got) >= count:
                return got
            time.sleep(0.01)
        return got

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5.0)


def test_perfect_sync_names():
    assert PERFECT_SYNC_NAMES[0] == "EyeBlinkLeft" and "JawOpen" in PERFECT_SYNC_NAMES
    assert [n[0].lower() + n[1:] for n in PERFECT_SYNC_NAMES] == list(ARKIT_NAMES)


def test_vmc_bridge_end_to_end(rng):
    sent = [random_result(rng, i) for i in range(3)]
    sent[-1].faces[0].rotation = rotation_from_ypr_deg(25, 0, 0)  # performer turns to their own left
    stop = threading.Event()
    with _Receiver() as rx, Publisher(LOOPBACK_ANY, queue_size=16) as pub, Subscriber(pub.endpoint) as sub:
        with VmcSender("127.0.0.1", rx.port, head_offset_m=(0, 0.08, 0.01)) as sender:
            th = threading.Thread(target=run_bridge, args=(sub, sender.send),
                                  kwargs={"stop": stop, "on_idle": sender.send_idle, "idle_after_ms": 300})  # fmt: skip
            th.start()
            try:
                pub.wait_for_subscriber(5.0)
                for r in sent:
                    pub.publish(r)
                    rx.wait_for("/VMC/Ext/Blend/Apply", sent.index(r) + 1)
                idle = rx.wait_for("/VMC/Ext/OK", len(sent) + 1)  # nothing published: tracking lost
            finally:
                stop.set()
                th.join(5.0)
    blends = rx.wait_for("/VMC/Ext/Blend/Val", 52 * len(sent))
    heads = rx.wait_for("/VMC/Ext/Bone/Pos", len(sent))
    roots = rx.wait_for("/VMC/Ext/Root/Pos", len(sent))
    assert len(blends) == 52 * len(sent) and len(heads) == len(sent) and len(roots) == len(sent)
    assert rx.wait_for("/VMC/Ext/T", len(sent))
    assert [m[1:] for m in idle[: len(sent)]] == [(1, 3, 0, 1)] * len(sent) and idle[-1][1:] == (1, 3, 0, 0)
    # Bundles can arrive out of order across datagrams; each bundle's 52 values are in order.
    by_frame = {}
    for k in range(len(sent)):
        chunk = blends[52 * k : 52 * (k + 1)]
        assert [m[1] for m in chunk] == list(PERFECT_SYNC_NAMES)
        values = np.array([m[2] for m in chunk], np.float32)
        match = [i for i, r in enumerate(sent) if np.array_equal(values, r.faces[0].arkit)]
        assert len(match) == 1
        by_frame[match[0]] = heads[k]
    for i, r in enumerate(sent):
        name, px, py, pz, qx, qy, qz, qw = by_frame[i][1:]
        assert name == "Head" and (px, py, pz) == (0.0, np.float32(0.08), np.float32(0.01))
        np.testing.assert_allclose(
            rotation_from_quaternion(np.array([qw, qx, qy, qz])), r.faces[0].rotation, atol=1e-5
        )
    # Our yaw 25 (performer's left) is the Unity avatar's left: its forward +z turns toward -x.
    _, *_, qx, qy, qz, qw = by_frame[2]
    forward = rotation_from_quaternion(np.array([qw, qx, qy, qz])) @ [0, 0, 1]
    np.testing.assert_allclose(forward, [-np.sin(np.radians(25)), 0, np.cos(np.radians(25))], atol=1e-5)
    assert all(m[1] == "root" and m[5:] == (0.0, 0.0, 0.0, 1.0) for m in roots)
