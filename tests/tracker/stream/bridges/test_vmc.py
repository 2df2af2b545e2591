"""VMC over OSC: a python-osc server on loopback receives the right addresses, names and values."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time

import numpy as np
import pytest
from pythonosc import dispatcher, osc_server
from pythonosc.osc_bundle import OscBundle
from pythonosc.osc_message import OscMessage

from tests.tracker.stream.helpers import LOOPBACK_ANY, random_result
from tracker.core.errors import ConfigError
from tracker.core.face_model.arkit import ARKIT_NAMES
from tracker.core.geometry import rotation_from_quaternion, rotation_from_ypr_deg
from tracker.stream import Publisher, Subscriber
from tracker.stream.bridges import VmcSender, run_bridge
from tracker.stream.bridges.vmc import (
    MAX_BUNDLE_BYTES,
    PERFECT_SYNC_NAMES,
    VRM_PRESET_NAMES,
    eye_rotations_xyzw,
    vrm_presets,
)
from tracker.stream.recording import StreamLog


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
    face = sent[-1].faces[0]
    face.coefficients = dataclasses.replace(face.coefficients, rotation=rotation_from_ypr_deg(25, 0, 0))  # turns to their own left
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
    n_blend = len(PERFECT_SYNC_NAMES) + len(VRM_PRESET_NAMES)
    blends = [m for m in rx.wait_for("/VMC/Ext/Blend/Val", n_blend * len(sent)) if m[1] in PERFECT_SYNC_NAMES]
    heads = [m for m in rx.wait_for("/VMC/Ext/Bone/Pos", 3 * len(sent)) if m[1] == "Head"]
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


def _receive_frames(sock: socket.socket, n_frames: int) -> list[list[tuple[int, list]]]:
    """Reads datagrams until ``n_frames`` frames ended with Blend/Apply or OK(tracking=0); parses them with
    pythonosc's own parser. Returns per frame its bundles as (datagram bytes, [(address, *args), ...])."""
    frames, current = [], []
    while len(frames) < n_frames:
        dgram = sock.recvfrom(65536)[0]
        assert OscBundle.dgram_is_bundle(dgram)
        msgs = []
        for content in OscBundle(dgram):
            assert isinstance(content, OscMessage)
            msgs.append((content.address, *content.params))
        current.append((len(dgram), msgs))
        addresses = [m[0] for m in msgs]
        if "/VMC/Ext/Blend/Apply" in addresses or ("/VMC/Ext/OK" in addresses and msgs[0][4] == 0):
            frames.append(current)
            current = []
    return frames


@pytest.mark.parametrize("presets", [True, False])
def test_demo_stream_bundles_fit_the_mtu_with_apply_last(demo_log, presets):
    results = list(StreamLog(demo_log).results())
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5.0)
    with VmcSender("127.0.0.1", rx.getsockname()[1], presets=presets) as sender:
        frames = []
        for msg in results:  # one at a time: UDP on loopback is lossless while the buffer is not full
            sender.send(msg)
            frames += _receive_frames(rx, 1)
    rx.close()
    tracked = [m for m in results if any(f.state != "lost" for f in m.result.faces)]
    assert len(frames) == len(results) and sender.sent == len(tracked) >= 10
    assert sender.keepalives == len(results) - len(tracked)
    for bundles in frames:
        assert all(size <= MAX_BUNDLE_BYTES for size, _ in bundles)
        msgs = [m for _, ms in bundles for m in ms]
        if msgs[0][4] == 0:  # tracking lost: OK and the time only
            assert [m[0] for m in msgs] == ["/VMC/Ext/OK", "/VMC/Ext/T"]
            continue
        assert len(bundles) >= 2  # 52 + 12 blendshapes do not fit one 1500-byte bundle
        addresses = [m[0] for m in msgs]
        assert addresses.count("/VMC/Ext/Blend/Apply") == 1 and addresses[-1] == "/VMC/Ext/Blend/Apply"
        assert "/VMC/Ext/Blend/Apply" in [m[0] for m in bundles[-1][1]]
        names = [m[1] for m in msgs if m[0] == "/VMC/Ext/Blend/Val"]
        assert names[:52] == list(PERFECT_SYNC_NAMES)
        assert names[52:] == (list(VRM_PRESET_NAMES) if presets else [])
        assert all(0.0 <= m[2] <= 1.0 for m in msgs if m[0] == "/VMC/Ext/Blend/Val")
        bones = [m[1] for m in msgs if m[0] == "/VMC/Ext/Bone/Pos"]
        assert bones == ["Head", "LeftEye", "RightEye"]


def test_vrm_presets_from_arkit():
    a = np.zeros(52, np.float32)
    a[ARKIT_NAMES.index("eyeBlinkLeft")], a[ARKIT_NAMES.index("eyeBlinkRight")] = 1.0, 0.4
    a[ARKIT_NAMES.index("jawOpen")] = 0.8
    p = vrm_presets(a)
    assert list(p) == list(VRM_PRESET_NAMES)
    # Receivers add presets: both-eye Blink plus each eye's remainder closes each eye by its own weight.
    assert p["Blink"] == pytest.approx(0.4) and p["Blink_L"] == pytest.approx(0.6) and p["Blink_R"] == 0.0
    assert p["A"] == pytest.approx(0.8) and p["O"] == 0.0 and p["Joy"] == 0.0
    a[ARKIT_NAMES.index("mouthSmileLeft")] = a[ARKIT_NAMES.index("mouthSmileRight")] = 1.0
    assert vrm_presets(a)["Joy"] == 1.0 and vrm_presets(np.full(52, 7.0))["A"] <= 1.0


def test_eye_bones_turn_with_the_gaze():
    a = np.zeros(52, np.float32)
    a[ARKIT_NAMES.index("eyeLookOutLeft")] = a[ARKIT_NAMES.index("eyeLookInRight")] = 1.0  # to the performer's left
    a[ARKIT_NAMES.index("eyeLookDownLeft")] = a[ARKIT_NAMES.index("eyeLookDownRight")] = 0.5
    for bone, (qx, qy, qz, qw) in eye_rotations_xyzw(a).items():
        # Unity's Quaternion * Vector3 is the usual matrix of the components (its axes are left-handed, which
        # changes what a sign looks like on screen, not the arithmetic).
        forward = rotation_from_quaternion(np.array([qw, qx, qy, qz])) @ [0, 0, 1]
        assert forward[0] < -0.5, bone  # toward the avatar's left (-x): the mirrored-anatomy avatar
        assert forward[1] < -0.2, bone  # and down
        assert abs(np.linalg.norm([qx, qy, qz, qw]) - 1) < 1e-9


def test_unknown_host_is_a_clear_error_at_start():
    with pytest.raises(ConfigError, match="nohost.invalid"):
        VmcSender("nohost.invalid", 39539)
