"""VMC protocol bridge (OSC over UDP, as VSeeFace, VirtualMotionCapture and EVMC4U receive it).

Each frame is a short run of OSC bundles, each within :data:`MAX_BUNDLE_BYTES` (the VMC specification
asks for bundles that fit one Ethernet frame, so a LAN never fragments them)::

    /VMC/Ext/OK        1 3 0 <tracking>        loaded, calibrated, normal mode, 1 = tracking / 0 = lost
    /VMC/Ext/T         <seconds since the bridge started>
    /VMC/Ext/Root/Pos  "root" px py pz qx qy qz qw
    /VMC/Ext/Bone/Pos  "Head" px py pz qx qy qz qw
    /VMC/Ext/Bone/Pos  "LeftEye" / "RightEye" px py pz qx qy qz qw     (eye_bones, from the gaze weights)
    /VMC/Ext/Blend/Val <name> <weight>      x 52, VRM Perfect Sync names (ARKit name, first letter upper-cased)
    /VMC/Ext/Blend/Val <preset> <weight>    x 12, VRM presets derived from the ARKit weights (presets)
    /VMC/Ext/Blend/Apply                    once, in the last bundle, after the last Blend/Val

Axes. VMC speaks Unity: left-handed, x right, y up, z forward, the avatar looking along +z (toward the
viewer) with its own right on +x. Our head frame (tracker.core.geometry) is right-handed, x toward the
performer's left, y down, z toward the back of the head; the camera frame matches it for a frontal
face. Taking the avatar to mirror the performer's own anatomy (performer turns to their left -> avatar
turns to its left), the map from our axes to Unity's is M = diag(-1, -1, -1) for both camera and head
frames. The head rotation in Unity is then M R M^T = R: the same matrix, read in Unity's basis, so the
Unity quaternion is our quaternion's (x, y, z, w) unchanged; a position maps to -p. (Checks: yaw > 0
moves the avatar's nose to its -x, its left; pitch > 0 raises it to +y; roll > 0 tilts the head toward
its left shoulder.)

Eyes. The model has no eyeballs; the eye bones turn by the eyeLook* weights at the scale fitted to real
ARKit data (``tracker.stream.bridges.livelink``: 35 degrees per unit of In - Out, 33 per unit of Down - Up),
the performer's left eye driving the avatar's ``LeftEye``. In Unity a positive angle about +y turns an eye
toward the avatar's right and a positive angle about +x turns it down.

Presets. Avatars without Perfect Sync clips react only to the VRM 0.x presets, so the bridge also sends
them, derived from the ARKit weights (:func:`vrm_presets`; a heuristic mapping, documented there).

Positions. The head bone gets a fixed local offset from its parent (``head_offset_m``, about a neck's
length), because receivers that apply bone positions (EVMC4U by default) would otherwise pull the head
into the neck; the eye bones likewise get typical local offsets from the head (``eye_offsets_m``). Head
translation drives the root instead: the root moves by the head's displacement from where it was in the
first tracked frame (``root_motion=True``), in Unity axes, metres.
"""

from __future__ import annotations

import logging
import math
import socket
import time

import numpy as np
from pythonosc import osc_bundle_builder, osc_message_builder
from pythonosc.osc_bundle import OscBundle
from pythonosc.parsing import osc_types

from tracker.core.face_model.arkit import ARKIT_NAMES
from tracker.stream.bridges.base import UdpDestination
from tracker.stream.bridges.livelink import EYE_PITCH_RAD_PER_UNIT, EYE_YAW_RAD_PER_UNIT
from tracker.stream.protocol import StreamResult

log = logging.getLogger(__name__)

VMC_DEFAULT_PORT = 39539
#: Largest bundle sent (UDP payload bytes): the VMC specification's limit, one Ethernet MTU.
MAX_BUNDLE_BYTES = 1500
#: VRM "Perfect Sync" blendshape names: the ARKit names with the first letter upper-cased.
PERFECT_SYNC_NAMES: tuple[str, ...] = tuple(n[0].upper() + n[1:] for n in ARKIT_NAMES)
#: VRM 0.x preset blendshape names, in the order sent.
VRM_PRESET_NAMES: tuple[str, ...] = ("Blink", "Blink_L", "Blink_R", "A", "I", "U", "E", "O", "Joy", "Angry",
                                     "Sorrow", "Fun")  # fmt: skip
#: Unity axes from our camera/head axes (see the module docstring).
OPENCV_TO_UNITY = np.diag([-1.0, -1.0, -1.0])
#: Local eye-bone positions under the head bone, Unity axes, metres (a typical adult VRM head).
DEFAULT_EYE_OFFSETS_M = {"LeftEye": (-0.032, 0.065, 0.07), "RightEye": (0.032, 0.065, 0.07)}

_A = {n: i for i, n in enumerate(ARKIT_NAMES)}
_BUNDLE_HEAD_BYTES = 16  # "#bundle\0" + 8-byte time tag
_ELEMENT_SIZE_BYTES = 4  # each element is prefixed by its int32 size


def unity_quaternion_xyzw(quaternion_wxyz: np.ndarray) -> tuple[float, float, float, float]:
    """Our (w,x,y,z) head rotation as the (x,y,z,w) Unity quaternion of the mirrored-anatomy avatar."""
    w, x, y, z = (float(v) for v in quaternion_wxyz)
    return x, y, z, w


def unity_position(p_m: np.ndarray) -> tuple[float, float, float]:
    """A camera-frame displacement (metres) in Unity axes."""
    return tuple(float(v) for v in OPENCV_TO_UNITY @ np.asarray(p_m, dtype=np.float64))


def _quat_mul_xyzw(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, float, float, float]:
    ax, ay, az, aw = a
    bx, by, bz, bw = b
    return (aw * bx + ax * bw + ay * bz - az * by, aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw, aw * bw - ax * bx - ay * by - az * bz)  # fmt: skip


def eye_rotations_xyzw(arkit: np.ndarray) -> dict[str, tuple[float, float, float, float]]:
    """Unity local rotations (x,y,z,w) of the ``LeftEye`` and ``RightEye`` bones from (52,) ARKit weights.

    Yaw (about +y, > 0 toward the avatar's own right) then pitch (about +x, > 0 down), as Unity's
    ``Quaternion.Euler(pitch, yaw, 0)`` composes them.
    """
    a = np.asarray(arkit, dtype=np.float64)
    gaze = {  # (toward the performer's right, down) per eye, in units of weight
        "LeftEye": (a[_A["eyeLookInLeft"]] - a[_A["eyeLookOutLeft"]], a[_A["eyeLookDownLeft"]] - a[_A["eyeLookUpLeft"]]),
        "RightEye": (a[_A["eyeLookOutRight"]] - a[_A["eyeLookInRight"]],
                     a[_A["eyeLookDownRight"]] - a[_A["eyeLookUpRight"]]),
    }  # fmt: skip
    out = {}
    for bone, (right, down) in gaze.items():
        yaw, pitch = float(right) * EYE_YAW_RAD_PER_UNIT, float(down) * EYE_PITCH_RAD_PER_UNIT
        qy = (0.0, math.sin(yaw / 2), 0.0, math.cos(yaw / 2))
        qx = (math.sin(pitch / 2), 0.0, 0.0, math.cos(pitch / 2))
        out[bone] = _quat_mul_xyzw(qy, qx)
    return out


def vrm_presets(arkit: np.ndarray) -> dict[str, float]:
    """The 12 VRM 0.x preset weights (0..1) derived from (52,) ARKit weights.

    A heuristic, for avatars without Perfect Sync clips:

    * Blink = min(eyeBlinkLeft, eyeBlinkRight); Blink_L / Blink_R = what each eye closes beyond that
      (receivers add the presets, so each eye ends up closed by its own ARKit weight).
    * Visemes from the jaw and lips: open = jawOpen, round = max(mouthFunnel, mouthPucker), wide = mean
      of mouthStretch and mouthSmile; A = open·(1-round)·(1-wide), E = open·wide, O = open·round,
      I = wide·(1-open), U = round·(1-open).
    * Joy = mean(mouthSmile), Angry = mean(browDown), Sorrow = mean(mouthFrown) · (0.5 + 0.5·browInnerUp),
      Fun = min(Joy, mean(cheekSquint)).
    """
    a = np.clip(np.asarray(arkit, dtype=np.float64), 0.0, 1.0)

    def g(name: str) -> float:
        return float(a[_A[name]])

    def mean(*names: str) -> float:
        return sum(g(n) for n in names) / len(names)

    bl, br = g("eyeBlinkLeft"), g("eyeBlinkRight")
    both = min(bl, br)
    open_ = g("jawOpen")
    round_ = max(g("mouthFunnel"), g("mouthPucker"))
    wide = mean("mouthStretchLeft", "mouthStretchRight", "mouthSmileLeft", "mouthSmileRight")
    joy = mean("mouthSmileLeft", "mouthSmileRight")
    values = {
        "Blink": both, "Blink_L": bl - both, "Blink_R": br - both,
        "A": open_ * (1 - round_) * (1 - wide), "I": wide * (1 - open_), "U": round_ * (1 - open_),
        "E": open_ * wide, "O": open_ * round_,
        "Joy": joy, "Angry": mean("browDownLeft", "browDownRight"),
        "Sorrow": mean("mouthFrownLeft", "mouthFrownRight") * (0.5 + 0.5 * g("browInnerUp")),
        "Fun": min(joy, mean("cheekSquintLeft", "cheekSquintRight")),
    }  # fmt: skip
    return {k: float(min(1.0, max(0.0, v))) for k, v in values.items()}


def _message(address: str, *args) -> bytes:
    m = osc_message_builder.OscMessageBuilder(address=address)
    for a in args:
        m.add_arg(a)
    return m.build().dgram


def pack_bundles(messages: list[bytes], max_bytes: int = MAX_BUNDLE_BYTES) -> list[bytes]:
    """Packs OSC message datagrams, in order, into as few bundles of at most ``max_bytes`` as possible."""
    bundles: list[bytes] = []
    current: list[bytes] = []
    size = _BUNDLE_HEAD_BYTES
    for m in messages:
        need = _ELEMENT_SIZE_BYTES + len(m)
        if _BUNDLE_HEAD_BYTES + need > max_bytes:
            raise ValueError(f"an OSC message of {len(m)} bytes cannot fit a {max_bytes}-byte bundle")
        if current and size + need > max_bytes:
            bundles.append(_bundle(current))
            current, size = [], _BUNDLE_HEAD_BYTES
        current.append(m)
        size += need
    if current:
        bundles.append(_bundle(current))
    return bundles


def _bundle(messages: list[bytes]) -> bytes:
    """An OSC bundle (time tag "immediately") of already encoded messages."""
    head = b"#bundle\x00" + osc_types.write_date(osc_bundle_builder.IMMEDIATELY)
    return head + b"".join(osc_types.write_int(len(m)) + m for m in messages)


class VmcSender:
    """Sends a stream's results to a VMC receiver as OSC bundles over UDP.

    Args:
        host, port: The receiver (VSeeFace's default VMC port is 39539); resolved once here.
        head_offset_m: Local position of the head bone under its parent, Unity axes.
        root_motion: Move the root with the head's displacement since the first tracked frame.
        perfect_sync: Send the 52 Perfect Sync blendshapes.
        presets: Also send the 12 VRM presets (:func:`vrm_presets`).
        eye_bones: Send ``LeftEye`` / ``RightEye`` bone rotations from the gaze weights.
        eye_offsets_m: Local positions of the eye bones under the head, Unity axes.

    Raises:
        ConfigError: if the host cannot be resolved.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = VMC_DEFAULT_PORT, *,
                 head_offset_m: tuple[float, float, float] = (0.0, 0.08, 0.0), root_motion: bool = True,
                 perfect_sync: bool = True, presets: bool = True, eye_bones: bool = True,
                 eye_offsets_m: dict[str, tuple[float, float, float]] | None = None) -> None:  # fmt: skip
        self.destination = UdpDestination.resolve(host, port)
        self.address = self.destination.sockaddr
        self._sock = socket.socket(self.destination.family, socket.SOCK_DGRAM)
        self._t0 = time.monotonic()
        self._head_offset = tuple(float(v) for v in head_offset_m)
        self._root_motion = root_motion
        self.perfect_sync, self.presets, self.eye_bones = perfect_sync, presets, eye_bones
        self._eye_offsets = dict(DEFAULT_EYE_OFFSETS_M if eye_offsets_m is None else eye_offsets_m)
        self._reference_m: np.ndarray | None = None
        self.sent = 0  # frames sent with a tracked face
        self.keepalives = 0  # frames sent without one ("tracking lost")
        self.bundles = 0
        self.failed = 0

    def frame_messages(self, msg: StreamResult | None) -> tuple[list[bytes], bool]:
        """The OSC messages of one frame, in order, and whether it carries a tracked face."""
        i = msg.result.primary_index() if msg is not None else None
        out = [_message("/VMC/Ext/OK", 1, 3, 0, 0 if i is None else 1),
               _message("/VMC/Ext/T", float(time.monotonic() - self._t0))]  # fmt: skip
        if i is None:
            return out, False
        face = msg.result.faces[i]
        if self._reference_m is None:
            self._reference_m = face.translation_m.copy()
        root = unity_position(face.translation_m - self._reference_m) if self._root_motion else (0.0, 0.0, 0.0)
        arkit = msg.arkit[i]
        out.append(_message("/VMC/Ext/Root/Pos", "root", *root, 0.0, 0.0, 0.0, 1.0))
        out.append(_message("/VMC/Ext/Bone/Pos", "Head", *self._head_offset, *unity_quaternion_xyzw(msg.quaternions[i])))
        if self.eye_bones:
            for bone, q in eye_rotations_xyzw(arkit).items():
                out.append(_message("/VMC/Ext/Bone/Pos", bone, *self._eye_offsets[bone], *q))
        if self.perfect_sync:
            out += [_message("/VMC/Ext/Blend/Val", n, float(v)) for n, v in zip(PERFECT_SYNC_NAMES, arkit, strict=True)]
        if self.presets:
            out += [_message("/VMC/Ext/Blend/Val", n, v) for n, v in vrm_presets(arkit).items()]
        out.append(_message("/VMC/Ext/Blend/Apply"))
        return out, True

    def build_bundles(self, msg: StreamResult | None) -> list[bytes]:
        """The datagrams of one frame: bundles of at most :data:`MAX_BUNDLE_BYTES`, Blend/Apply last."""
        return pack_bundles(self.frame_messages(msg)[0])

    def build_bundle(self, msg: StreamResult | None) -> OscBundle:
        """The first bundle of a frame, parsed (kept for callers of the one-bundle API)."""
        return OscBundle(self.build_bundles(msg)[0])

    def send(self, msg: StreamResult | None) -> bool:
        """Sends one frame (``None``: tracking lost); returns whether it carried a tracked face."""
        messages, tracked = self.frame_messages(msg)
        try:
            for dgram in pack_bundles(messages):
                self._sock.sendto(dgram, self.address)
                self.bundles += 1
        except OSError as exc:  # the next frame tries again
            self.failed += 1
            if self.failed == 1 or self.failed % 100 == 0:
                log.warning("VMC send to %s failed (%d so far): %s", self.destination, self.failed, exc)
            return tracked
        if tracked:
            self.sent += 1
        else:
            self.keepalives += 1
        return tracked

    def send_idle(self) -> None:
        self.send(None)

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> VmcSender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
