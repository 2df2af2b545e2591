"""Live Link Face datagrams, checked with a parser written here from the published byte layout alone."""

from __future__ import annotations

import math
import socket
import struct
import threading

import numpy as np

from tests.tracker.stream.helpers import LOOPBACK_ANY, random_result
from tracker.core.face_model.arkit import ARKIT_NAMES
from tracker.core.geometry import rotation_from_ypr_deg
from tracker.stream import Publisher, Subscriber
from tracker.stream.bridges import LiveLinkFaceEncoder, LiveLinkFaceSender, run_bridge


def parse_live_link_face(packet: bytes) -> dict:
    """Independent decoder: u8 version | i32 len, device id | i32 len, subject | i32 frame, f32 sub-frame,
    i32 fps num, i32 fps den | u8 count | count x f32, all big-endian after the first byte."""
    pos = 0
    (version,) = struct.unpack_from(">B", packet, pos)
    pos += 1
    (n,) = struct.unpack_from(">i", packet, pos)
    pos += 4
    device = packet[pos : pos + n].decode("ascii")
    pos += n
    (n,) = struct.unpack_from(">i", packet, pos)
    pos += 4
    subject = packet[pos : pos + n].decode()
    pos += n
    frame, sub_frame, num, den, count = struct.unpack_from(">ifiiB", packet, pos)
    pos += 17
    values = struct.unpack_from(f">{count}f", packet, pos)
    pos += 4 * count
    assert pos == len(packet), "trailing bytes"
    return {"version": version, "device": device, "subject": subject, "frame": frame, "sub_frame": sub_frame,
            "fps": (num, den), "values": np.array(values)}  # fmt: skip


def test_packet_layout_and_angles():
    enc = LiveLinkFaceEncoder(subject="Performer A", fps=60)
    arkit = np.zeros(52, np.float32)
    arkit[ARKIT_NAMES.index("jawOpen")] = 0.75
    arkit[ARKIT_NAMES.index("eyeLookOutLeft")] = 1.0  # both eyes look to the performer's left
    arkit[ARKIT_NAMES.index("eyeLookInRight")] = 1.0
    arkit[ARKIT_NAMES.index("eyeLookUpLeft")] = 0.5
    t_unix_ns = 1_700_000_000_123_456_789
    p = parse_live_link_face(enc.encode(arkit, rotation_from_ypr_deg(20, -10, 5), t_unix_ns))
    assert p["version"] == 6 and len(p["device"]) == 36 and p["device"] == enc.device_id
    assert p["subject"] == "Performer A" and p["fps"] == (60, 1)
    assert len(p["values"]) == 61
    np.testing.assert_array_equal(p["values"][:52], arkit)
    head = p["values"][52:55]
    # Radians; yaw > 0 = the performer's right (our yaw 20 = nose to image right = their left), pitch > 0 down.
    np.testing.assert_allclose(head, np.radians([-20, 10, 5]), atol=1e-5)
    left_eye, right_eye = p["values"][55:58], p["values"][58:61]
    np.testing.assert_allclose(left_eye, [-math.radians(30), -0.5 * math.radians(25), 0], atol=1e-6)
    np.testing.assert_allclose(right_eye, [-math.radians(30), 0, 0], atol=1e-6)
    frames_per_day = 24 * 3600 * 60
    assert 0 <= p["frame"] < frames_per_day and 0 <= p["sub_frame"] < 1
    later = parse_live_link_face(enc.encode(arkit, np.eye(3), t_unix_ns + 1_000_000_000))
    assert later["frame"] - p["frame"] in (60, 60 - frames_per_day)  # one second later: 60 frames


def test_bridge_end_to_end_over_udp(rng):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5.0)
    sent = [random_result(rng, i, n_faces=2) for i in range(5)]
    for r in sent:
        r.faces[1].confidence = 2.0  # the most confident face drives the subject
        r.faces[1].state = "tracking"
    stop = threading.Event()
    with Publisher(LOOPBACK_ANY, queue_size=16) as pub, Subscriber(pub.endpoint) as sub:
        with LiveLinkFaceSender("127.0.0.1", receiver.getsockname()[1]) as sender:
            th = threading.Thread(target=run_bridge, args=(sub, sender.send), kwargs={"stop": stop})
            th.start()
            try:
                pub.wait_for_subscriber(5.0)
                packets = []
                for r in sent:
                    pub.publish(r)
                    packets.append(parse_live_link_face(receiver.recvfrom(2048)[0]))
            finally:
                stop.set()
                th.join(5.0)
                receiver.close()
    assert len({p["device"] for p in packets}) == 1  # one UUID per bridge
    for r, p in zip(sent, packets, strict=True):
        face = r.faces[1]
        np.testing.assert_array_equal(p["values"][:52], face.arkit)
        yaw, pitch, roll = face.ypr_deg
        np.testing.assert_allclose(p["values"][52:55], np.radians([-yaw, -pitch, roll]), atol=1e-5)
