"""Unreal Live Link Face bridge: one UDP datagram per frame in the Live Link Face app's format.

Datagram (packet version 6; every field after the first byte is big-endian)::

    u8   version = 6
    i32  device-id length (36)      | device id, 36 ASCII characters (a UUID, fixed per bridge)
    i32  subject-name length N      | subject name, N bytes UTF-8
    i32  frame number               | f32 sub-frame | i32 fps numerator | i32 fps denominator
    u8   curve count = 61
    61 x f32: the 52 ARKit weights in Apple order, then HeadYaw HeadPitch HeadRoll LeftEyeYaw
              LeftEyePitch LeftEyeRoll RightEyeYaw RightEyePitch RightEyeRoll

The frame time is the capture time as a timecode: frames since local midnight at the given rate, the
fraction in the sub-frame (the app stamps its own frames the same way, from the phone's clock).

Angles are **radians**, as the app sends them (its CSV exports hold head angles of a few tenths). Signs
follow the widely used open-source Live Link Face senders (MeFaMo / PyLiveLinkFace): HeadYaw > 0 when
the performer turns to their own right, HeadPitch > 0 when the nose goes down, HeadRoll > 0 when the head
tilts toward the performer's left shoulder (clockwise in the camera image). In facetrack's convention
(tracker.core.geometry) that is HeadYaw = -yaw, HeadPitch = -pitch, HeadRoll = +roll.

Eye angles are an approximation: the model has no eyeball rotation, so they come from the eyeLook*
weights, a full weight (1.0) taken as 30 degrees sideways or 25 degrees up/down (about where ARKit's
weights saturate), with the same signs as the head; eye roll is 0.
"""

from __future__ import annotations

import datetime
import logging
import math
import socket
import struct
import uuid

import numpy as np

from tracker.core.errors import ConfigError
from tracker.core.face_model.arkit import ARKIT_NAMES, NUM_ARKIT
from tracker.core.geometry import ypr_deg_from_rotation
from tracker.stream.bridges.base import primary_face
from tracker.stream.protocol import StreamResult

log = logging.getLogger(__name__)

LIVELINK_DEFAULT_PORT = 11111
PACKET_VERSION = 6
DEVICE_ID_LENGTH = 36
EXTRA_CURVES = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                "RightEyeYaw", "RightEyePitch", "RightEyeRoll")  # fmt: skip
NUM_CURVES = NUM_ARKIT + len(EXTRA_CURVES)  # 61
#: Eye rotation at a full eyeLook* weight (approximation, see the module docstring).
EYE_YAW_AT_FULL_DEG = 30.0
EYE_PITCH_AT_FULL_DEG = 25.0

_A = {n: i for i, n in enumerate(ARKIT_NAMES)}


def head_angles_rad(rotation: np.ndarray) -> tuple[float, float, float]:
    """(HeadYaw, HeadPitch, HeadRoll) in radians, Live Link Face signs, from a head-to-camera rotation."""
    yaw, pitch, roll = ypr_deg_from_rotation(rotation)
    return -math.radians(yaw), -math.radians(pitch), math.radians(roll)


def eye_angles_rad(arkit: np.ndarray) -> tuple[float, ...]:
    """(LeftEyeYaw, LeftEyePitch, LeftEyeRoll, RightEyeYaw, RightEyePitch, RightEyeRoll) from eyeLook weights.

    Yaw > 0 looks toward the performer's right (left eye: inward; right eye: outward), pitch > 0 down.
    """
    a = np.asarray(arkit, dtype=np.float64)
    yaw_k, pitch_k = math.radians(EYE_YAW_AT_FULL_DEG), math.radians(EYE_PITCH_AT_FULL_DEG)
    left_yaw = (a[_A["eyeLookInLeft"]] - a[_A["eyeLookOutLeft"]]) * yaw_k
    right_yaw = (a[_A["eyeLookOutRight"]] - a[_A["eyeLookInRight"]]) * yaw_k
    left_pitch = (a[_A["eyeLookDownLeft"]] - a[_A["eyeLookUpLeft"]]) * pitch_k
    right_pitch = (a[_A["eyeLookDownRight"]] - a[_A["eyeLookUpRight"]]) * pitch_k
    return float(left_yaw), float(left_pitch), 0.0, float(right_yaw), float(right_pitch), 0.0


class LiveLinkFaceEncoder:
    """Builds Live Link Face datagrams.

    Args:
        subject: Subject name shown in Unreal's Live Link panel.
        device_id: 36-character device id; a new UUID when None (kept for the encoder's life, so Unreal
            sees one source).
        fps: Frame rate written into the frame time (numerator; denominator 1).
    """

    def __init__(self, subject: str = "facetrack", device_id: str | None = None, fps: int = 60) -> None:
        self.device_id = str(uuid.uuid4()) if device_id is None else device_id
        if len(self.device_id) != DEVICE_ID_LENGTH or not self.device_id.isascii():
            raise ConfigError(
                f"device id must be {DEVICE_ID_LENGTH} ASCII characters, got {self.device_id!r}"
            )
        self.subject = subject.encode()
        if not 0 < len(self.subject) < 256:
            raise ConfigError("subject name must be 1..255 bytes")
        if not 0 < int(fps) < 1000:
            raise ConfigError(f"fps must be 1..999, got {fps}")
        self.fps = int(fps)

    def frame_time(self, t_unix_ns: int) -> tuple[int, float]:
        """(frame number, sub-frame) of a Unix time: frames since local midnight at :attr:`fps`."""
        t = datetime.datetime.fromtimestamp(t_unix_ns / 1e9)
        midnight = t.replace(hour=0, minute=0, second=0, microsecond=0)
        frames = (t - midnight).total_seconds() * self.fps
        return int(frames), float(frames - int(frames))

    def curves(self, arkit: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        """(61,) float32: the 52 ARKit weights then head and eye angles (radians)."""
        out = np.zeros(NUM_CURVES, dtype=np.float32)
        out[:NUM_ARKIT] = arkit
        out[NUM_ARKIT : NUM_ARKIT + 3] = head_angles_rad(rotation)
        out[NUM_ARKIT + 3 :] = eye_angles_rad(arkit)
        return out

    def encode(self, arkit: np.ndarray, rotation: np.ndarray, t_unix_ns: int) -> bytes:
        """One datagram for one face."""
        frame, sub_frame = self.frame_time(t_unix_ns)
        return b"".join((
            struct.pack(">Bi", PACKET_VERSION, DEVICE_ID_LENGTH),
            self.device_id.encode("ascii"),
            struct.pack(">i", len(self.subject)),
            self.subject,
            struct.pack(">ifiiB", frame, sub_frame, self.fps, 1, NUM_CURVES),
            self.curves(arkit, rotation).astype(">f4").tobytes(),
        ))  # fmt: skip

    def encode_result(self, msg: StreamResult) -> bytes | None:
        """The datagram for a stream result's primary face, or None when no face is tracked."""
        chosen = primary_face(msg)
        if chosen is None:
            return None
        i, face = chosen
        return self.encode(msg.arkit[i], face.rotation, msg.result.t_capture_ns + msg.unix_offset_ns)


class LiveLinkFaceSender:
    """Sends a stream's results to Unreal as a Live Link Face source (UDP).

    When no face is tracked nothing is sent, so Unreal holds the last pose (as with the app).
    """

    def __init__(self, host: str = "127.0.0.1", port: int = LIVELINK_DEFAULT_PORT,
                 encoder: LiveLinkFaceEncoder | None = None) -> None:  # fmt: skip
        self.address = (host, int(port))
        self.encoder = encoder or LiveLinkFaceEncoder()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sent = 0

    def send(self, msg: StreamResult) -> bool:
        packet = self.encoder.encode_result(msg)
        if packet is None:
            return False
        try:
            self._sock.sendto(packet, self.address)
        except OSError as exc:  # e.g. the host is unreachable right now; the next frame tries again
            log.warning("Live Link send to %s:%d failed: %s", *self.address, exc)
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> LiveLinkFaceSender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
