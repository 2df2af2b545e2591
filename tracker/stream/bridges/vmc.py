"""VMC protocol bridge (OSC over UDP, as VSeeFace, VirtualMotionCapture and EVMC4U receive it).

Each frame is one OSC bundle::

    /VMC/Ext/OK        1 3 0 <tracking>        loaded, calibrated, normal mode, 1 = tracking / 0 = lost
    /VMC/Ext/T         <seconds since the bridge started>
    /VMC/Ext/Root/Pos  "root" px py pz qx qy qz qw
    /VMC/Ext/Bone/Pos  "Head" px py pz qx qy qz qw
    /VMC/Ext/Blend/Val <name> <weight>      x 52, VRM Perfect Sync names (ARKit name, first letter upper-cased)
    /VMC/Ext/Blend/Apply

Axes. VMC speaks Unity: left-handed, x right, y up, z forward, the avatar looking along +z (toward the
viewer) with its own right on +x. Our head frame (tracker.core.geometry) is right-handed, x toward the
performer's left, y down, z toward the back of the head; the camera frame matches it for a frontal
face. Taking the avatar to mirror the performer's own anatomy (performer turns to their left -> avatar
turns to its left), the map from our axes to Unity's is M = diag(-1, -1, -1) for both camera and head
frames. The head rotation in Unity is then M R M^T = R: the same matrix, read in Unity's basis, so the
Unity quaternion is our quaternion's (x, y, z, w) unchanged; a position maps to -p. (Checks: yaw > 0
moves the avatar's nose to its -x, its left; pitch > 0 raises it to +y; roll > 0 tilts the head toward
its left shoulder.)

Positions. The head bone gets a fixed local offset from its parent (``head_offset_m``, about a neck's
length), because receivers that apply bone positions (EVMC4U by default) would otherwise pull the head
into the neck. Head translation drives the root instead: the root moves by the head's displacement from
where it was in the first tracked frame (``root_motion=True``), in Unity axes, metres.
"""

from __future__ import annotations

import logging
import time

import numpy as np
from pythonosc import osc_bundle_builder, osc_message_builder
from pythonosc.udp_client import UDPClient

from tracker.core.face_model.arkit import ARKIT_NAMES
from tracker.stream.bridges.base import primary_face
from tracker.stream.protocol import StreamResult

log = logging.getLogger(__name__)

VMC_DEFAULT_PORT = 39539
#: VRM "Perfect Sync" blendshape names: the ARKit names with the first letter upper-cased.
PERFECT_SYNC_NAMES: tuple[str, ...] = tuple(n[0].upper() + n[1:] for n in ARKIT_NAMES)
#: Unity axes from our camera/head axes (see the module docstring).
OPENCV_TO_UNITY = np.diag([-1.0, -1.0, -1.0])


def unity_quaternion_xyzw(quaternion_wxyz: np.ndarray) -> tuple[float, float, float, float]:
    """Our (w,x,y,z) head rotation as the (x,y,z,w) Unity quaternion of the mirrored-anatomy avatar."""
    w, x, y, z = (float(v) for v in quaternion_wxyz)
    return x, y, z, w


def unity_position(p_m: np.ndarray) -> tuple[float, float, float]:
    """A camera-frame displacement (metres) in Unity axes."""
    return tuple(float(v) for v in OPENCV_TO_UNITY @ np.asarray(p_m, dtype=np.float64))


def _message(address: str, *args) -> osc_message_builder.OscMessageBuilder:
    m = osc_message_builder.OscMessageBuilder(address=address)
    for a in args:
        m.add_arg(a)
    return m


class VmcSender:
    """Sends a stream's results to a VMC receiver as OSC bundles over UDP.

    Args:
        host, port: The receiver (VSeeFace's default VMC port is 39539).
        head_offset_m: Local position of the head bone under its parent, Unity axes.
        root_motion: Move the root with the head's displacement since the first tracked frame.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = VMC_DEFAULT_PORT, *,
                 head_offset_m: tuple[float, float, float] = (0.0, 0.08, 0.0), root_motion: bool = True) -> None:  # fmt: skip
        self.address = (host, int(port))
        self._client = UDPClient(host, int(port))
        self._t0 = time.monotonic()
        self._head_offset = tuple(float(v) for v in head_offset_m)
        self._root_motion = root_motion
        self._reference_m: np.ndarray | None = None
        self.sent = 0

    def build_bundle(self, msg: StreamResult | None):
        """The OSC bundle for one result (None or no tracked face: only OK with tracking 0, and the time)."""
        b = osc_bundle_builder.OscBundleBuilder(osc_bundle_builder.IMMEDIATELY)
        chosen = primary_face(msg) if msg is not None else None
        b.add_content(_message("/VMC/Ext/OK", 1, 3, 0, 1 if chosen else 0).build())
        b.add_content(_message("/VMC/Ext/T", float(time.monotonic() - self._t0)).build())
        if chosen is not None:
            i, face = chosen
            if self._reference_m is None:
                self._reference_m = face.translation_m.copy()
            root = (
                unity_position(face.translation_m - self._reference_m)
                if self._root_motion
                else (0.0, 0.0, 0.0)
            )
            q = unity_quaternion_xyzw(msg.quaternions[i])
            b.add_content(_message("/VMC/Ext/Root/Pos", "root", *root, 0.0, 0.0, 0.0, 1.0).build())
            b.add_content(_message("/VMC/Ext/Bone/Pos", "Head", *self._head_offset, *q).build())
            for name, value in zip(PERFECT_SYNC_NAMES, msg.arkit[i], strict=True):
                b.add_content(_message("/VMC/Ext/Blend/Val", name, float(value)).build())
            b.add_content(_message("/VMC/Ext/Blend/Apply").build())
        return b.build()

    def send(self, msg: StreamResult | None) -> None:
        """Sends one frame (``None``: tracking lost)."""
        try:
            self._client.send(self.build_bundle(msg))
        except OSError as exc:  # the next frame tries again
            log.warning("VMC send to %s:%d failed: %s", *self.address, exc)
            return
        self.sent += 1

    def send_idle(self) -> None:
        self.send(None)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> VmcSender:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
