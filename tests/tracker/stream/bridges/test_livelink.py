"""Live Link Face datagrams, checked with a parser written here from the published byte layout alone."""

from __future__ import annotations

import math
import socket
import struct
import threading

import numpy as np
import pytest

from tests.tracker.stream.helpers import LOOPBACK_ANY, random_result
from tracker.core.errors import ConfigError
from tracker.core.face_model.arkit import ARKIT_NAMES
from tracker.core.geometry import rotation_from_ypr_deg
from tracker.stream import Publisher, Subscriber
from tracker.stream.bridges import LiveLinkFaceEncoder, LiveLinkFaceSender, run_bridge
from tracker.stream.bridges.livelink import (
    EYE_PITCH_RAD_PER_UNIT,
    EYE_YAW_RAD_PER_UNIT,
    AngleSigns,
    eye_angles_rad,
    head_angles_rad,
)
from tracker.stream.recording import StreamLog


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


def _nose(rotation):  # where the nose points, in the camera frame (head -z)
    return rotation @ np.array([0.0, 0.0, -1.0])


def _head_up(rotation):  # the top of the head, in the camera frame (head -y)
    return rotation @ np.array([0.0, -1.0, 0.0])


def test_head_signs_from_synthetic_turns_of_known_direction():
    # Each motion is checked physically first (camera frame: x right in the image, y down), so the test
    # does not lean on facetrack's angle convention: only on ARKit's face anchor (right-handed, +x the face's
    # left, +y up, +z toward the camera) and the right-hand rule.
    to_left = rotation_from_ypr_deg(20, 0, 0)  # performer turns toward their own left = nose to image right
    assert _nose(to_left)[0] > 0.3
    nod_down = rotation_from_ypr_deg(0, -15, 0)
    assert _nose(nod_down)[1] > 0.2  # nose toward image bottom
    tilt_right = rotation_from_ypr_deg(0, 0, -10)  # top of the head toward the performer's right = image left
    assert _head_up(tilt_right)[0] < -0.1
    np.testing.assert_allclose(head_angles_rad(to_left), [math.radians(20), 0, 0], atol=1e-9)
    np.testing.assert_allclose(head_angles_rad(nod_down), [0, math.radians(15), 0], atol=1e-9)
    np.testing.assert_allclose(head_angles_rad(tilt_right), [0, 0, math.radians(10)], atol=1e-9)
    # A combined pose follows R_arkit = Ry(yaw) Rx(pitch) Rz(roll) about the anchor's axes.
    yaw, pitch, roll = 0.3, -0.2, 0.1
    c, s_ = math.cos, math.sin
    ry = np.array([[c(yaw), 0, s_(yaw)], [0, 1, 0], [-s_(yaw), 0, c(yaw)]])
    rx = np.array([[1, 0, 0], [0, c(pitch), -s_(pitch)], [0, s_(pitch), c(pitch)]])
    rz = np.array([[c(roll), -s_(roll), 0], [s_(roll), c(roll), 0], [0, 0, 1]])
    flip = np.diag([1.0, -1.0, -1.0])  # ARKit axes <-> facetrack axes (y and z reversed)
    np.testing.assert_allclose(head_angles_rad(flip @ ry @ rx @ rz @ flip), [yaw, pitch, roll], atol=1e-9)
    inverted = head_angles_rad(to_left @ nod_down, AngleSigns(invert_yaw=True, invert_pitch=True, invert_roll=True))
    np.testing.assert_allclose(inverted, -np.array(head_angles_rad(to_left @ nod_down)), atol=1e-12)


def test_eye_angles_use_the_measured_scale():
    arkit = np.zeros(52, np.float32)
    arkit[ARKIT_NAMES.index("eyeLookOutLeft")] = 1.0  # both eyes look to the performer's left
    arkit[ARKIT_NAMES.index("eyeLookInRight")] = 1.0
    arkit[ARKIT_NAMES.index("eyeLookUpLeft")] = 0.5
    arkit[ARKIT_NAMES.index("eyeLookDownRight")] = 0.25
    ly, lp, lr, ry, rp, rr = eye_angles_rad(arkit)
    assert math.isclose(EYE_YAW_RAD_PER_UNIT, math.radians(35)) and math.isclose(EYE_PITCH_RAD_PER_UNIT, math.radians(33))
    np.testing.assert_allclose([ly, lp, lr], [math.radians(35), -0.5 * math.radians(33), 0], atol=1e-7)
    np.testing.assert_allclose([ry, rp, rr], [math.radians(35), 0.25 * math.radians(33), 0], atol=1e-7)
    assert eye_angles_rad(arkit, AngleSigns(invert_yaw=True))[0] == -ly


def test_packet_layout_and_angles():
    enc = LiveLinkFaceEncoder(subject="Performer A", fps=60)
    arkit = np.zeros(52, np.float32)
    arkit[ARKIT_NAMES.index("jawOpen")] = 0.75
    arkit[ARKIT_NAMES.index("eyeLookOutLeft")] = 1.0
    t_unix_ns = 1_700_000_000_123_456_789
    rotation = rotation_from_ypr_deg(20, 0, 0)
    p = parse_live_link_face(enc.encode(arkit, rotation, t_unix_ns))
    assert p["version"] == 6 and len(p["device"]) == 36 and p["device"] == enc.device_id
    assert p["subject"] == "Performer A" and p["fps"] == (60, 1)
    assert len(p["values"]) == 61
    np.testing.assert_array_equal(p["values"][:52], arkit)
    np.testing.assert_allclose(p["values"][52:55], [math.radians(20), 0, 0], atol=1e-6)  # radians, to their left
    np.testing.assert_allclose(p["values"][55:58], [math.radians(35), 0, 0], atol=1e-6)
    frames_per_day = 24 * 3600 * 60
    assert 0 <= p["frame"] < frames_per_day and 0 <= p["sub_frame"] < 1
    later = parse_live_link_face(enc.encode(arkit, np.eye(3), t_unix_ns + 1_000_000_000))
    assert later["frame"] - p["frame"] in (60, 60 - frames_per_day)  # one second later: 60 frames


def test_unknown_host_is_a_clear_error_at_start():
    with pytest.raises(ConfigError, match="cannot resolve the destination host 'nohost.invalid'"):
        LiveLinkFaceSender("nohost.invalid", 11111)


def test_demo_stream_drives_live_link(demo_log):
    """Every result of a real demo run becomes one datagram whose curves match the stream's values."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5.0)
    results = list(StreamLog(demo_log).results())
    tracked = [m for m in results if any(f.state != "lost" for f in m.result.faces)]
    assert len(tracked) >= 10
    with LiveLinkFaceSender("127.0.0.1", receiver.getsockname()[1]) as sender:
        packets = []
        for msg in results:
            if sender.send(msg):
                packets.append(parse_live_link_face(receiver.recvfrom(2048)[0]))
    receiver.close()
    assert len(packets) == len(tracked) == sender.sent
    for msg, p in zip(tracked, packets, strict=True):
        i = max(range(len(msg.result.faces)), key=lambda k: msg.result.faces[k].confidence)
        np.testing.assert_array_equal(p["values"][:52], msg.arkit[i])
        np.testing.assert_allclose(p["values"][52:55], head_angles_rad(msg.result.faces[i].rotation), atol=1e-6)
    # The demo's head moves: the yaw curve is not constant.
    assert np.ptp([p["values"][52] for p in packets]) > 0.01


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
        np.testing.assert_allclose(p["values"][52:55], head_angles_rad(face.rotation), atol=1e-5)
