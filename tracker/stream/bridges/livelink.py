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

Angles are **radians**, as the app sends them (its CSV takes hold head angles of a few tenths). Their
signs follow the app's source of data, ARKit's face anchor (Apple's ARFaceAnchor documentation, "Tracking
Face Position and Orientation"): a right-handed frame with +x toward the face's own left (the viewer's
right), +y up, +z out of the face toward the camera; the anchor's identity is a face looking straight into
the camera. Each angle is a right-hand-rule rotation about one of those axes (R_arkit = Ry(HeadYaw) ·
Rx(HeadPitch) · Rz(HeadRoll)), so:

* HeadYaw > 0 when the performer turns toward their own left (nose to the image's right),
* HeadPitch > 0 when the nose goes down,
* HeadRoll > 0 when the head tilts toward the performer's right shoulder (counter-clockwise in the image).

In facetrack's convention (tracker.core.geometry, degrees) that is, for small angles, HeadYaw = +yaw,
HeadPitch = -pitch, HeadRoll = -roll; the exact values come from the matrix (:func:`head_angles_rad`).
A rig that reads the other way gets ``invert_yaw`` / ``invert_pitch`` / ``invert_roll``.

Eye angles: the face model has no eyeball rotation, so they come from the eyeLook* weights with the scale
fitted to real Live Link Face takes (about 35 degrees per unit of In - Out sideways, 31-35 degrees per unit
of Down - Up vertically: :data:`EYE_YAW_RAD_PER_UNIT`, :data:`EYE_PITCH_RAD_PER_UNIT`), in the same
right-handed face axes as the head (yaw > 0 toward the performer's left, pitch > 0 down; the invert flags
apply to them too); eye roll is 0 (ARKit's eyes do not roll).

The destination is resolved once, when the sender is made: an unknown host is a clear error at start,
and no frame waits for a DNS lookup.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import math
import socket
import struct
import uuid

import numpy as np

from tracker.core.errors import ConfigError
from tracker.core.face_model.arkit import ARKIT_NAMES, NUM_ARKIT
from tracker.stream.bridges.base import UdpDestination
from tracker.stream.protocol import StreamResult

log = logging.getLogger(__name__)

LIVELINK_DEFAULT_PORT = 11111
PACKET_VERSION = 6
DEVICE_ID_LENGTH = 36
EXTRA_CURVES = ("HeadYaw", "HeadPitch", "HeadRoll", "LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll",
                "RightEyeYaw", "RightEyePitch", "RightEyeRoll")  # fmt: skip
NUM_CURVES = NUM_ARKIT + len(EXTRA_CURVES)  # 61
#: Eye rotation per unit of eyeLook weight difference, fitted to real Live Link Face takes (module docstring).
EYE_YAW_RAD_PER_UNIT = math.radians(35.0)
EYE_PITCH_RAD_PER_UNIT = math.radians(33.0)
#: facetrack's camera/head axes (x right, y down, z forward) -> ARKit's (x right, y up, z toward the viewer).
_TO_ARKIT = np.diag([1.0, -1.0, -1.0])

_A = {n: i for i, n in enumerate(ARKIT_NAMES)}


@dataclasses.dataclass(frozen=True)
class AngleSigns:
    """Which Live Link angle groups to negate (for rigs that read an axis the other way).

    Attributes:
        invert_yaw, invert_pitch, invert_roll: Negate HeadYaw/LeftEyeYaw/RightEyeYaw, the pitches, HeadRoll.
    """

    invert_yaw: bool = False
    invert_pitch: bool = False
    invert_roll: bool = False

    def apply(self, yaw: float, pitch: float, roll: float) -> tuple[float, float, float]:
        return (-yaw if self.invert_yaw else yaw, -pitch if self.invert_pitch else pitch,
                -roll if self.invert_roll else roll)  # fmt: skip


#: The app's own signs (nothing inverted).
APP_SIGNS = AngleSigns()


def head_angles_rad(rotation: np.ndarray, signs: AngleSigns = APP_SIGNS) -> tuple[float, float, float]:
    """(HeadYaw, HeadPitch, HeadRoll) in radians, Live Link Face signs (module docstring).

    Args:
        rotation: (3,3) head-to-camera rotation in facetrack's axes (ARCHITECTURE §2).
        signs: Axes to invert.
    """
    r = _TO_ARKIT @ np.asarray(rotation, dtype=np.float64) @ _TO_ARKIT
    # R = Ry(a) Rx(b) Rz(c): R[1,2] = -sin b, R[0,2] = sin a cos b, R[2,2] = cos a cos b,
    # R[1,0] = cos b sin c, R[1,1] = cos b cos c.
    pitch = math.asin(max(-1.0, min(1.0, -r[1, 2])))
    yaw = math.atan2(r[0, 2], r[2, 2])
    roll = math.atan2(r[1, 0], r[1, 1])
    return signs.apply(yaw, pitch, roll)


def eye_angles_rad(arkit: np.ndarray, signs: AngleSigns = APP_SIGNS) -> tuple[float, ...]:
    """(LeftEyeYaw, LeftEyePitch, LeftEyeRoll, RightEyeYaw, RightEyePitch, RightEyeRoll), radians.

    From the (52,) ARKit weights: yaw > 0 looks toward the performer's left (left eye: outward, right eye:
    inward), pitch > 0 looks down; roll is 0.
    """
    a = np.asarray(arkit, dtype=np.float64)
    left_yaw = (a[_A["eyeLookOutLeft"]] - a[_A["eyeLookInLeft"]]) * EYE_YAW_RAD_PER_UNIT
    right_yaw = (a[_A["eyeLookInRight"]] - a[_A["eyeLookOutRight"]]) * EYE_YAW_RAD_PER_UNIT
    left_pitch = (a[_A["eyeLookDownLeft"]] - a[_A["eyeLookUpLeft"]]) * EYE_PITCH_RAD_PER_UNIT
    right_pitch = (a[_A["eyeLookDownRight"]] - a[_A["eyeLookUpRight"]]) * EYE_PITCH_RAD_PER_UNIT
    ly, lp, _ = signs.apply(float(left_yaw), float(left_pitch), 0.0)
    ry, rp, _ = signs.apply(float(right_yaw), float(right_pitch), 0.0)
    return ly, lp, 0.0, ry, rp, 0.0


def live_link_curves(arkit: np.ndarray, rotation: np.ndarray, signs: AngleSigns = APP_SIGNS) -> np.ndarray:
    """(61,) float32 in the UDP order: the 52 ARKit weights (Apple order), then the 9 head/eye angles (rad)."""
    out = np.zeros(NUM_CURVES, dtype=np.float32)
    out[:NUM_ARKIT] = arkit
    out[NUM_ARKIT : NUM_ARKIT + 3] = head_angles_rad(rotation, signs)
    out[NUM_ARKIT + 3 :] = eye_angles_rad(arkit, signs)
    return out


class LiveLinkFaceEncoder:
    """Builds Live Link Face datagrams.

    Args:
        subject: Subject name shown in Unreal's Live Link panel.
        device_id: 36-character device id; a new UUID when None (kept for the encoder's life, so Unreal
            sees one source).
        fps: Frame rate written into the frame time (numerator; denominator 1).
        signs: Angle axes to invert.
    """

    def __init__(self, subject: str = "facetrack", device_id: str | None = None, fps: int = 60,
                 signs: AngleSigns = APP_SIGNS) -> None:  # fmt: skip
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
        self.signs = signs

    def frame_time(self, t_unix_ns: int) -> tuple[int, float]:
        """(frame number, sub-frame) of a Unix time: frames since local midnight at :attr:`fps`."""
        t = datetime.datetime.fromtimestamp(t_unix_ns / 1e9)
        midnight = t.replace(hour=0, minute=0, second=0, microsecond=0)
        frames = (t - midnight).total_seconds() * self.fps
        return int(frames), float(frames - int(frames))

    def curves(self, arkit: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        """(61,) float32: the 52 ARKit weights then head and eye angles (radians)."""
        return live_link_curves(arkit, rotation, self.signs)

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
        i = msg.result.primary_index()
        if i is None:
            return None
        face = msg.result.faces[i]
        return self.encode(msg.arkit[i], face.rotation, msg.result.t_capture_ns + msg.unix_offset_ns)


class LiveLinkFaceSender:
    """Sends a stream's results to Unreal as a Live Link Face source (UDP).

    When no face is tracked nothing is sent, so Unreal holds the last pose (as with the app).

    Args:
        host, port: The Unreal machine; resolved once here.
        encoder: Builds the datagrams (subject, fps, signs).

    Raises:
        ConfigError: if the host cannot be resolved.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = LIVELINK_DEFAULT_PORT,
                 encoder: LiveLinkFaceEncoder | None = None) -> None:  # fmt: skip
        self.destination = UdpDestination.resolve(host, port)
        self.address = self.destination.sockaddr
        self.encoder = encoder or LiveLinkFaceEncoder()
        self._sock = socket.socket(self.destination.family, socket.SOCK_DGRAM)
        self.sent = 0
        self.failed = 0

    def send(self, msg: StreamResult) -> bool:
        """Sends the primary face of one result; returns whether a datagram went out."""
        packet = self.encoder.encode_result(msg)
        if packet is None:
            return False
        try:
            self._sock.sendto(packet, self.address)
        except OSError as exc:  # e.g. the host is unreachable right now; the next frame tries again
            self.failed += 1
            if self.failed == 1 or self.failed % 100 == 0:
                log.warning("Live Link send to %s failed (%d so far): %s", self.destination, self.failed, exc)
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> LiveLinkFaceSender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
