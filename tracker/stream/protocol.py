"""Stream protocol v1: the bytes on the wire (ARCHITECTURE §7; the client-facing spec is docs/protocol.md).

Every message is a ZeroMQ multipart message whose first frame is its topic:

* ``facetrack.result`` — frame 1 is a msgpack map (the header: schema version, sequence, frame index,
  timestamps, per-face scalars), then one frame per face holding that face's little-endian float32
  buffers back to back (quaternion, translation, ARKit, ICT, lighting, landmarks, identity), in the
  order and at the byte offsets the metadata's ``face_layout`` lists.
* ``facetrack.meta`` — frame 1 is a msgpack map describing the stream: channel names, units, which
  channels are unsupported, the model id, the camera intrinsics and the identity dimension K. A result
  names the metadata it was encoded with by ``meta_id``; a client decodes results only once it holds
  that metadata, which the publisher re-sends every second and whenever a new subscriber joins.

Several cameras in one publisher (``facetrack run --source cam1=... --source cam2=...``): each camera is
its own stream on its own topics, ``facetrack.result/<name>`` and ``facetrack.meta/<name>``, whose
header and metadata carry the key ``source_name``; a SUB socket selects one camera by subscribing to
``facetrack.result/<name>`` (and ``facetrack.meta/<name>``), all of them with ``facetrack.``. A
single-camera publisher sends the plain topics and no ``source_name``, byte for byte as before.

Versioning: ``schema_major`` changes only when a v1 client could misread a message; a client skips (and
counts) messages whose major version it does not know, and ignores header keys, metadata keys and
trailing frames or bytes it does not know. Additive changes bump ``schema_minor`` (1.1 added the
metadata key ``face_model``).

The decoder is the boundary where network input becomes typed values, so it also repairs what a sane
publisher never sends but a buggy one might: weights outside 0..1 are clamped and quaternions that are
not unit length are normalised, and each result counts what was corrected (:class:`Corrections`).

numpy arrays go on the wire as raw little-endian float32 bytes, never pickled.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import msgpack
import numpy as np

from tracker.core.errors import ConfigError, StreamError
from tracker.core.face_model.arkit import (
    ARKIT_NAMES,
    ICT_EXPRESSION_NAMES,
    NUM_ARKIT,
    NUM_ICT,
    UNSUPPORTED_ARKIT,
)
from tracker.core.geometry import rotation_from_quaternion
from tracker.core.types import (
    NUM_LANDMARKS,
    NUM_SH,
    TRACKING_STATES,
    FaceCoefficients,
    FaceState,
    Intrinsics,
    TrackResult,
)

SCHEMA_MAJOR = 1
SCHEMA_MINOR = 1

TOPIC_PREFIX = b"facetrack."
TOPIC_RESULT = b"facetrack.result"
TOPIC_META = b"facetrack.meta"
#: Separates a topic from the source name of a multi-camera stream: ``facetrack.result/cam1``.
TOPIC_SOURCE_SEPARATOR = b"/"

#: What a source name may hold (it becomes part of a topic): letters, digits, ``_`` and ``-``.
SOURCE_NAME_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


def check_source_name(name: str) -> str:
    """Returns ``name`` if it can name a stream's source (:data:`SOURCE_NAME_PATTERN`).

    Raises:
        ConfigError: naming the rule.
    """
    if not isinstance(name, str) or SOURCE_NAME_PATTERN.fullmatch(name) is None:
        raise ConfigError(f"bad source name {name!r}: use 1 to 64 letters, digits, '_' or '-' (e.g. cam1)")
    return name


def result_topic(source_name: str | None = None) -> bytes:
    """``facetrack.result``, or ``facetrack.result/<name>`` for one camera of a multi-camera stream."""
    if source_name is None:
        return TOPIC_RESULT
    return TOPIC_RESULT + TOPIC_SOURCE_SEPARATOR + check_source_name(source_name).encode("ascii")


def meta_topic(source_name: str | None = None) -> bytes:
    """``facetrack.meta``, or ``facetrack.meta/<name>`` for one camera of a multi-camera stream."""
    if source_name is None:
        return TOPIC_META
    return TOPIC_META + TOPIC_SOURCE_SEPARATOR + check_source_name(source_name).encode("ascii")


def parse_topic(topic: bytes) -> tuple[bytes, str | None] | None:
    """(the base topic, the source name or None) of a result or metadata topic; None for any other topic."""
    for base in (TOPIC_RESULT, TOPIC_META):
        if topic == base:
            return base, None
        if topic.startswith(base + TOPIC_SOURCE_SEPARATOR):
            try:
                name = topic[len(base) + 1 :].decode("ascii")
            except UnicodeDecodeError:
                return None
            return (base, name) if SOURCE_NAME_PATTERN.fullmatch(name) else None
    return None

#: Network id (``model_id``) sent when the publisher is not told otherwise: the regressor that made the values.
DEFAULT_MODEL_ID = "coarsenet_v1"
#: Face model (``face_model``) whose coefficients the stream carries (identity, ICT expressions, landmarks).
DEFAULT_FACE_MODEL = "ict-facekit-light"

#: A received quaternion whose norm differs from 1 by more than this is normalised (and counted); float32
#: rounding of a unit quaternion stays far below it, so a sane publisher's values pass bit for bit.
QUATERNION_NORM_TOLERANCE = 1e-3

#: Wire dtype of every per-face buffer.
WIRE_DTYPE = np.dtype("<f4")

#: Metadata cache size of a decoder: a publisher changes metadata rarely (a new K or new intrinsics).
_MAX_KNOWN_METADATA = 8

#: SH lighting coefficient names: 9 per channel (band-major l=0..2), channels R, G, B.
LIGHTING_NAMES: tuple[str, ...] = tuple(f"{c}{i}" for c in "RGB" for i in range(9))


@dataclasses.dataclass(frozen=True)
class BufferField:
    """One float32 buffer inside a face frame.

    Attributes:
        name: Field name (``"quaternion"``, ``"translation_m"``, ...).
        offset_bytes: Byte offset from the start of the face frame.
        count: Number of float32 values.
        unit: Human-readable unit and meaning, for client authors.
    """

    name: str
    offset_bytes: int
    count: int
    unit: str

    @property
    def end_bytes(self) -> int:
        return self.offset_bytes + 4 * self.count


# Field order of protocol v1. Identity comes last so every other field has a fixed byte offset whatever
# the identity dimension K is (a client that ignores identity never needs K).
_V1_FIELDS: tuple[tuple[str, int | None, str], ...] = (
    ("quaternion", 4, "unit quaternion w,x,y,z; rotates head coordinates into the camera frame"),
    ("translation_m", 3, "metres; head origin in the OpenCV camera frame (x right, y down, z forward)"),
    ("arkit", NUM_ARKIT, "ARKit blendshape weights 0..1 in Apple order (channels.arkit)"),
    ("ict", NUM_ICT, "ICT-FaceKit expression coefficients 0..1 (channels.ict)"),
    ("lighting", NUM_SH, "spherical-harmonics lighting, 9 coefficients per channel, R then G then B"),
    ("landmarks68", 2 * NUM_LANDMARKS, "68 iBUG landmarks as x0,y0,x1,y1,... pixels, (0,0) = centre of top-left pixel"),
    ("identity", None, "identity coefficients of the face model's first K modes (K = identity_dim)"),
)  # fmt: skip


def v1_face_layout(identity_dim: int) -> tuple[BufferField, ...]:
    """The v1 per-face buffer layout for identity dimension K."""
    fields, offset = [], 0
    for name, count, unit in _V1_FIELDS:
        n = identity_dim if count is None else count
        fields.append(BufferField(name, offset, n, unit))
        offset += 4 * n
    return tuple(fields)


def _layout_counts(identity_dim: int) -> dict[str, int]:
    return {f.name: f.count for f in v1_face_layout(identity_dim)}


# --------------------------------------------------------------------------------------------- metadata
@dataclasses.dataclass(frozen=True)
class StreamMetadata:
    """What a client needs to decode and interpret results.

    Attributes:
        identity_dim: K, the number of identity coefficients per face.
        model_id: The network that produced the values (e.g. ``coarsenet_v1``).
        intrinsics: The camera's intrinsics (landmarks are in its pixels), or None when unknown.
        face_layout: The per-face buffers with their byte offsets (v1 layout unless received otherwise).
        extra: Keys received that this version does not know (kept, never interpreted).
        sent_meta_id: The id the sender gave this metadata (received metadata only); results refer to it.
        face_model: The face model the coefficients belong to (e.g. ``ict-facekit-light``); metadata of
            schema 1.0 did not send it, and decodes with the default.
        source_name: The camera's name in a multi-camera stream (sent on ``facetrack.meta/<name>``);
            None for a single-camera stream, whose metadata has no such key.
    """

    identity_dim: int
    model_id: str = DEFAULT_MODEL_ID
    intrinsics: Intrinsics | None = None
    face_layout: tuple[BufferField, ...] = ()
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict, compare=False)
    sent_meta_id: int | None = dataclasses.field(default=None, compare=False)
    face_model: str = DEFAULT_FACE_MODEL
    source_name: str | None = None

    def __post_init__(self) -> None:
        if self.source_name is not None:
            check_source_name(self.source_name)
        if (
            not isinstance(self.identity_dim, int)
            or isinstance(self.identity_dim, bool)
            or self.identity_dim < 0
        ):
            raise ConfigError(f"StreamMetadata.identity_dim must be an int >= 0, got {self.identity_dim!r}")
        if not self.face_layout:
            object.__setattr__(self, "face_layout", v1_face_layout(self.identity_dim))
        counts = {f.name: f.count for f in self.face_layout}
        for name, count in _layout_counts(self.identity_dim).items():
            if counts.get(name) != count:
                raise ConfigError(
                    f"face_layout field {name!r} must hold {count} float32, got {counts.get(name)}"
                )
        for f in self.face_layout:
            if f.offset_bytes < 0 or f.offset_bytes % 4 or f.count < 0:
                raise ConfigError(
                    f"face_layout field {f.name!r} has a bad offset {f.offset_bytes} or count {f.count}"
                )

    @property
    def face_stride_bytes(self) -> int:
        """Bytes of one face frame (the end of its last buffer)."""
        return max((f.end_bytes for f in self.face_layout), default=0)

    @functools.cached_property
    def meta_id(self) -> int:
        """u32 content hash of everything a decoder depends on; results carry it to name their metadata.

        Being a hash (not a counter) keeps it stable across publisher restarts and replays, so results
        stay decodable with metadata received from an earlier session or recorded in a log.
        """
        return zlib.crc32(msgpack.packb(self._content(), use_bin_type=True)) & 0xFFFFFFFF

    def with_identity_dim(self, identity_dim: int) -> StreamMetadata:
        return StreamMetadata(identity_dim, self.model_id, self.intrinsics, face_model=self.face_model,
                              source_name=self.source_name)  # fmt: skip

    def _content(self) -> dict[str, Any]:
        # The source name is hashed into meta_id only when there is one: a single-camera stream's
        # metadata (and its id) stays exactly what it was before multi-camera streams existed.
        named = {} if self.source_name is None else {"source_name": self.source_name}
        return {
            **named,
            "model_id": self.model_id,
            "face_model": self.face_model,
            "identity_dim": self.identity_dim,
            "face_layout": [
                {"name": f.name, "offset": f.offset_bytes, "count": f.count, "unit": f.unit}
                for f in self.face_layout
            ],
            "face_stride": self.face_stride_bytes,
            "intrinsics": None if self.intrinsics is None else self.intrinsics.to_dict(),
        }

    def to_wire(self, *, session: int, t_publish_ns: int) -> dict[str, Any]:
        """The metadata map as sent (see docs/protocol.md)."""
        return {
            "schema_major": SCHEMA_MAJOR,
            "schema_minor": SCHEMA_MINOR,
            "meta_id": self.wire_meta_id,
            "session": session,
            "t_publish_ns": t_publish_ns,
            **self._content(),
            "channels": {
                "arkit": list(ARKIT_NAMES),
                "ict": list(ICT_EXPRESSION_NAMES),
                "lighting": list(LIGHTING_NAMES),
                "tracking_states": list(TRACKING_STATES),
            },
            "unsupported": {"arkit": list(UNSUPPORTED_ARKIT)},
            "units": {
                "time": "ns, CLOCK_MONOTONIC of the publishing host; add unix_offset_ns for Unix time",
                "confidence": "0..1",
            },
            "coordinates": (
                "OpenCV camera frame: x right, y down, z forward; the quaternion maps head to camera "
                "coordinates; a frontal face looking into the camera has the identity rotation (nose along -z)"
            ),
        }

    @classmethod
    def from_wire(cls, m: Mapping[str, Any]) -> StreamMetadata:
        """Parses a received metadata map (major version already checked).

        Raises:
            StreamError: if a required key is missing or has the wrong type.
        """
        try:
            k = _int(m, "identity_dim")
            layout = tuple(
                BufferField(_str(f, "name"), _int(f, "offset"), _int(f, "count"), str(f.get("unit", "")))
                for f in _list(m, "face_layout")
            )
            intr = m.get("intrinsics")
            intrinsics = None
            if intr is not None:
                if not isinstance(intr, Mapping):
                    raise StreamError("metadata.intrinsics must be a map or nil")
                intrinsics = Intrinsics(
                    float(intr["fx"]), float(intr["fy"]), float(intr["cx"]), float(intr["cy"]),
                    int(intr["width"]), int(intr["height"]), tuple(float(d) for d in intr.get("distortion", ())),
                )  # fmt: skip
            known = {"identity_dim", "face_layout", "intrinsics", "model_id", "face_model", "source_name"}
            extra = {kk: v for kk, v in m.items() if kk not in known}
            face_model = _str(m, "face_model") if "face_model" in m else DEFAULT_FACE_MODEL
            source_name = _str(m, "source_name") if "source_name" in m else None
            # Results name their metadata by the sender's id; a future minor version may hash more keys
            # than this one knows, so the received id is kept rather than recomputed.
            return cls(k, _str(m, "model_id"), intrinsics, layout, extra, _int(m, "meta_id"), face_model,
                       source_name)  # fmt: skip
        except (ConfigError, KeyError, TypeError, ValueError) as exc:
            raise StreamError(f"bad metadata: {type(exc).__name__}: {exc}") from exc

    @property
    def wire_meta_id(self) -> int:
        """The id results refer to: the sender's id when received, else :attr:`meta_id`."""
        return self.meta_id if self.sent_meta_id is None else self.sent_meta_id


# ----------------------------------------------------------------------------------------- typed results
@dataclasses.dataclass(frozen=True)
class Corrections:
    """What the decoder repaired in one result message (all zero for a sane publisher).

    Attributes:
        clamped_weights: ARKit and ICT values that were outside 0..1 and were clamped into it.
        normalised_quaternions: Face quaternions whose norm was not 1 (beyond
            :data:`QUATERNION_NORM_TOLERANCE`) and were normalised.
    """

    clamped_weights: int = 0
    normalised_quaternions: int = 0

    def __bool__(self) -> bool:
        return bool(self.clamped_weights or self.normalised_quaternions)


@dataclasses.dataclass
class StreamResult:
    """One decoded result message.

    ``result`` holds typed :class:`FaceState` objects rebuilt from the wire values: arrays are exactly
    the float32 values sent; ``rotation`` is rebuilt from the float32 quaternion, and ``quaternions`` /
    ``arkit`` keep the received values bit for bit.

    Attributes:
        result: The frame's :class:`TrackResult` (index, capture and done times, faces, timings, source).
        seq: Publisher sequence number (resets when the publisher restarts).
        session: Publisher session id (random per publisher start).
        meta_id: Id of the metadata used to decode.
        t_publish_ns: Publisher clock (monotonic ns) when the message was sent.
        t_receive_ns: Local ``time.monotonic_ns()`` when it was received (0 when decoded offline).
        unix_offset_ns: Add to the publisher's monotonic times to get Unix time (ns).
        quaternions: (N,4) float32 w,x,y,z as received (normalised when they were not unit length).
        arkit: (N,52) float32 ARKit weights as received (clamped into 0..1).
        metadata: The metadata the message was decoded with.
        extra: Header keys this version does not know.
        corrections: What the decoder clamped or normalised in this message.
        source_name: The camera's name in a multi-camera stream (the header's ``source_name``, else the
            topic's suffix); None for a single-camera stream.
    """

    result: TrackResult
    seq: int
    session: int
    meta_id: int
    t_publish_ns: int
    t_receive_ns: int
    unix_offset_ns: int
    quaternions: np.ndarray
    arkit: np.ndarray
    metadata: StreamMetadata
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)
    corrections: Corrections = Corrections()
    source_name: str | None = None

    @property
    def latency_ms(self) -> float:
        """Capture -> receive latency in ms (same host only: both clocks are CLOCK_MONOTONIC)."""
        return (self.t_receive_ns - self.result.t_capture_ns) / 1e6


@dataclasses.dataclass(frozen=True)
class Skipped:
    """A message the decoder did not turn into a result or metadata, and why.

    ``reason`` is one of ``"malformed"``, ``"wrong_version"``, ``"no_metadata"``, ``"unknown_topic"``.
    """

    reason: str
    detail: str


SKIP_REASONS = ("malformed", "wrong_version", "no_metadata", "unknown_topic")


# ------------------------------------------------------------------------------------------------ encode
def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def encode_metadata(metadata: StreamMetadata, *, session: int, t_publish_ns: int) -> list[bytes]:
    """The frames of a metadata message (on ``facetrack.meta/<name>`` when the metadata names a source)."""
    return [meta_topic(metadata.source_name), _pack(metadata.to_wire(session=session, t_publish_ns=t_publish_ns))]


def encode_face(face: FaceState, metadata: StreamMetadata) -> bytes:
    """One face's float32 buffers in the v1 layout.

    Raises:
        StreamError: if the face's identity length differs from ``metadata.identity_dim``.
    """
    if face.identity.shape[0] != metadata.identity_dim:
        raise StreamError(
            f"face {face.track_id} has {face.identity.shape[0]} identity coefficients, the stream metadata says "
            f"{metadata.identity_dim}"
        )
    parts = (face.quaternion, face.translation_m, face.arkit, face.expression, face.lighting,
             face.landmarks68.reshape(-1), face.identity)  # fmt: skip
    return np.concatenate([np.asarray(p, dtype=WIRE_DTYPE).reshape(-1) for p in parts]).tobytes()


def encode_result(
    result: TrackResult,
    metadata: StreamMetadata,
    *,
    seq: int,
    session: int,
    t_publish_ns: int,
    unix_offset_ns: int = 0,
) -> list[bytes]:
    """The frames of a result message: topic, msgpack header, one float32 frame per face.

    Args:
        result: What to send.
        metadata: The stream metadata (its id goes into the header; its K must match the faces).
        seq: Sequence number within this publisher session.
        session: Publisher session id.
        t_publish_ns: Monotonic ns stamped just before sending.
        unix_offset_ns: ``time.time_ns() - time.monotonic_ns()`` on the publishing host.

    The topic and the header key ``source_name`` come from ``metadata.source_name`` (a multi-camera
    stream); without one the message is the single-camera ``facetrack.result`` message.
    """
    header = {
        "schema_major": SCHEMA_MAJOR,
        "schema_minor": SCHEMA_MINOR,
        "seq": int(seq),
        "session": int(session),
        "meta_id": metadata.wire_meta_id,
        "frame": int(result.frame_index),
        "t_capture_ns": int(result.t_capture_ns),
        "t_done_ns": int(result.t_done_ns),
        "t_publish_ns": int(t_publish_ns),
        "unix_offset_ns": int(unix_offset_ns),
        "source": result.source_id,
        "timings_ms": {str(k): float(v) for k, v in result.timings_ms.items()},
        "faces": [
            {
                "track_id": int(f.track_id),
                "confidence": float(f.confidence),
                "state": f.state,
                "timings_ms": {str(k): float(v) for k, v in f.timings_ms.items()},
            }
            for f in result.faces
        ],
    }
    if metadata.source_name is not None:
        header["source_name"] = metadata.source_name
    return [result_topic(metadata.source_name), _pack(header), *(encode_face(f, metadata) for f in result.faces)]


# ------------------------------------------------------------------------------------------------ decode
def _int(m: Mapping, key: str) -> int:
    v = m[key]
    if not isinstance(v, int) or isinstance(v, bool):
        raise StreamError(f"{key} must be an integer, got {type(v).__name__}")
    return v


def _str(m: Mapping, key: str) -> str:
    v = m[key]
    if not isinstance(v, str):
        raise StreamError(f"{key} must be a string, got {type(v).__name__}")
    return v


def _float(m: Mapping, key: str) -> float:
    v = m[key]
    if not isinstance(v, int | float) or isinstance(v, bool):
        raise StreamError(f"{key} must be a number, got {type(v).__name__}")
    return float(v)


def _list(m: Mapping, key: str) -> list:
    v = m[key]
    if not isinstance(v, list | tuple):
        raise StreamError(f"{key} must be an array, got {type(v).__name__}")
    return list(v)


def _timings(m: Mapping) -> dict[str, float]:
    v = m.get("timings_ms", {})
    if not isinstance(v, Mapping):
        raise StreamError("timings_ms must be a map")
    return {str(k): _float(v, k) for k in v}


def _clamp_weights(values: np.ndarray) -> tuple[np.ndarray, int]:
    """(values clamped into 0..1, how many were outside); values inside pass unchanged, bit for bit."""
    if values.size == 0 or (values.min() >= 0.0 and values.max() <= 1.0):  # the common case, cheaply
        return values, 0
    outside = int(np.count_nonzero((values < 0.0) | (values > 1.0)))
    return np.clip(values, 0.0, 1.0).astype(WIRE_DTYPE), outside


def unpack_map(frame: bytes, what: str) -> dict[str, Any]:
    """Unpacks one msgpack map frame (string keys only).

    Raises:
        StreamError: on anything that is not a msgpack map with string keys.
    """
    try:
        obj = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises many types (ExtraData, ValueError, UnicodeDecodeError, ...)
        raise StreamError(f"{what} is not valid msgpack: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise StreamError(f"{what} must be a msgpack map with string keys, got {type(obj).__name__}")
    return obj


def check_version(m: Mapping[str, Any], what: str) -> None:
    """Raises StreamError unless ``m`` declares schema major 1."""
    major = m.get("schema_major")
    if major != SCHEMA_MAJOR:
        raise StreamError(f"{what} has schema_major {major!r}; this client understands {SCHEMA_MAJOR}")


def decode_header(frames: Sequence[bytes]) -> dict[str, Any]:
    """Unpacks and version-checks a result message's header (frames include the topic)."""
    parsed = parse_topic(bytes(frames[0])) if len(frames) else None
    if len(frames) < 2 or parsed is None or parsed[0] != TOPIC_RESULT:
        raise StreamError("a result message has the topic facetrack.result[/NAME] and a msgpack header")
    header = unpack_map(frames[1], "result header")
    check_version(header, "result header")
    return header


def decode_result(
    frames: Sequence[bytes], metadata: StreamMetadata, *, header: Mapping[str, Any] | None = None,
    t_receive_ns: int = 0,
) -> StreamResult:  # fmt: skip
    """Decodes a result message with the metadata it names.

    Args:
        frames: The message's frames, topic first.
        metadata: The metadata whose ``wire_meta_id`` equals the header's ``meta_id``.
        header: The already unpacked header (saves unpacking twice), or None.
        t_receive_ns: When it was received (local monotonic ns).

    Raises:
        StreamError: if the message is malformed or of another major version.
    """
    h = decode_header(frames) if header is None else header
    try:
        faces_meta = _list(h, "faces")
        n = len(faces_meta)
        if len(frames) < 2 + n:
            raise StreamError(f"header lists {n} faces but the message has {len(frames) - 2} face frames")
        layout = {f.name: f for f in metadata.face_layout}
        stride = metadata.face_stride_bytes
        faces, quats, arkits = [], np.zeros((n, 4), WIRE_DTYPE), np.zeros((n, NUM_ARKIT), WIRE_DTYPE)
        clamped = normalised = 0
        for i, fm in enumerate(faces_meta):
            if not isinstance(fm, Mapping):
                raise StreamError("each faces[] entry must be a map")
            buf = frames[2 + i]
            if len(buf) < stride:
                raise StreamError(f"face frame {i} has {len(buf)} bytes, the layout needs {stride}")
            if not np.all(np.isfinite(np.frombuffer(buf, WIRE_DTYPE, stride // 4))):
                raise StreamError(f"face frame {i} holds NaN or infinite values")

            def field(name: str, buf=buf) -> np.ndarray:
                f = layout[name]
                return np.frombuffer(buf, WIRE_DTYPE, f.count, f.offset_bytes).astype(np.float32)

            state = _str(fm, "state")
            q = field("quaternion")
            q64 = q.astype(np.float64)  # float64: a float32 square can overflow
            norm = math.sqrt(float(np.dot(q64, q64)))
            if norm < 1e-6:
                raise StreamError(f"face frame {i} holds a zero quaternion (no rotation can be recovered)")
            if abs(norm - 1.0) > QUATERNION_NORM_TOLERANCE:
                q = (q / norm).astype(WIRE_DTYPE)
                normalised += 1
            quats[i] = q
            arkit, n_arkit = _clamp_weights(field("arkit"))
            ict, n_ict = _clamp_weights(field("ict"))
            clamped += n_arkit + n_ict
            arkits[i] = arkit
            faces.append(
                FaceState(
                    track_id=_int(fm, "track_id"),
                    coefficients=FaceCoefficients(
                        identity=field("identity"),
                        expression=ict,
                        rotation=rotation_from_quaternion(quats[i].astype(np.float64)),
                        translation_m=field("translation_m").astype(np.float64),
                        lighting=field("lighting"),
                    ),
                    landmarks68=field("landmarks68").reshape(NUM_LANDMARKS, 2),
                    confidence=_float(fm, "confidence"),
                    state=state if state in TRACKING_STATES else "tracking",
                    timings_ms=_timings(fm),
                )
            )
        source = h.get("source", "")
        result = TrackResult(
            frame_index=_int(h, "frame"),
            t_capture_ns=_int(h, "t_capture_ns"),
            t_done_ns=_int(h, "t_done_ns"),
            faces=faces,
            timings_ms=_timings(h),
            source_id=source if isinstance(source, str) else str(source),
        )
        known = {"schema_major", "schema_minor", "seq", "session", "meta_id", "frame", "t_capture_ns", "t_done_ns",
                 "t_publish_ns", "unix_offset_ns", "source", "timings_ms", "faces", "source_name"}  # fmt: skip
        parsed = parse_topic(bytes(frames[0]))
        source_name = _str(h, "source_name") if "source_name" in h else (parsed[1] if parsed else None)
        return StreamResult(
            result=result,
            seq=_int(h, "seq"),
            session=_int(h, "session"),
            meta_id=_int(h, "meta_id"),
            t_publish_ns=_int(h, "t_publish_ns"),
            t_receive_ns=int(t_receive_ns),
            unix_offset_ns=int(h.get("unix_offset_ns", 0))
            if isinstance(h.get("unix_offset_ns", 0), int)
            else 0,
            quaternions=quats,
            arkit=arkits,
            metadata=metadata,
            extra={k: v for k, v in h.items() if k not in known},
            corrections=Corrections(clamped, normalised),
            source_name=source_name,
        )
    except StreamError:
        raise
    except (ConfigError, KeyError, TypeError, ValueError, IndexError) as exc:
        raise StreamError(f"bad result message: {type(exc).__name__}: {exc}") from exc


class Decoder:
    """Stateful decoder: remembers received metadata and decodes the results that name it.

    Never raises on bad input: every message becomes a :class:`StreamResult`, a :class:`StreamMetadata`
    or a :class:`Skipped` saying why it was skipped.
    """

    def __init__(self) -> None:
        self._known: dict[int, StreamMetadata] = {}
        self.latest_metadata: StreamMetadata | None = None

    def add_metadata(self, metadata: StreamMetadata) -> None:
        self._known.pop(metadata.wire_meta_id, None)
        self._known[metadata.wire_meta_id] = metadata
        while len(self._known) > _MAX_KNOWN_METADATA:
            self._known.pop(next(iter(self._known)))
        self.latest_metadata = metadata

    def decode(
        self, frames: Sequence[bytes], t_receive_ns: int = 0
    ) -> StreamResult | StreamMetadata | Skipped:
        """Decodes one multipart message (topic first)."""
        try:
            if not len(frames):
                return Skipped("malformed", "empty message")
            topic = bytes(frames[0])
            parsed = parse_topic(topic)  # facetrack.result / facetrack.meta, each optionally /<source name>
            if parsed is None:
                return Skipped("unknown_topic", repr(topic[:40]))
            if parsed[0] == TOPIC_META:
                if len(frames) < 2:
                    return Skipped("malformed", "metadata message without its msgpack frame")
                m = unpack_map(frames[1], "metadata")
                if m.get("schema_major") != SCHEMA_MAJOR:
                    return Skipped("wrong_version", f"metadata schema_major {m.get('schema_major')!r}")
                meta = StreamMetadata.from_wire(m)
                self.add_metadata(meta)
                return meta
            if len(frames) < 2:
                return Skipped("malformed", "result message without a header frame")
            header = unpack_map(frames[1], "result header")
            if header.get("schema_major") != SCHEMA_MAJOR:
                return Skipped("wrong_version", f"schema_major {header.get('schema_major')!r}")
            meta_id = header.get("meta_id")
            meta = self._known.get(meta_id) if isinstance(meta_id, int) else None
            if meta is None:
                if not isinstance(meta_id, int):
                    return Skipped("malformed", "result header without an integer meta_id")
                return Skipped("no_metadata", f"meta_id {meta_id} not received yet")
            return decode_result(frames, meta, header=header, t_receive_ns=t_receive_ns)
        except StreamError as exc:
            return Skipped("malformed", str(exc))
        except Exception as exc:  # a decoder that faces the network must survive any input
            return Skipped("malformed", f"{type(exc).__name__}: {exc}")
