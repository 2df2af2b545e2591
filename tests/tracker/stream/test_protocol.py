"""Protocol v1 encode/decode without sockets: exact round trip, layout, versioning rules."""

from __future__ import annotations

import msgpack
import numpy as np

from tests.tracker.stream.helpers import K_IDENTITY, assert_exact, random_result
from tracker.core.face_model.arkit import ARKIT_NAMES
from tracker.core.types import Intrinsics
from tracker.stream.protocol import (
    TOPIC_META,
    TOPIC_RESULT,
    Corrections,
    Decoder,
    Skipped,
    StreamMetadata,
    StreamResult,
    encode_metadata,
    encode_result,
    v1_face_layout,
)


def _meta(k: int = K_IDENTITY) -> StreamMetadata:
    return StreamMetadata(k, intrinsics=Intrinsics.from_fov(640, 480, 50))


def _frames(result, meta, seq=0):
    return encode_result(
        result, meta, seq=seq, session=7, t_publish_ns=result.t_done_ns + 10, unix_offset_ns=123
    )


def test_round_trip_every_field_exact(rng):
    meta = _meta()
    dec = Decoder()
    assert isinstance(dec.decode(encode_metadata(meta, session=7, t_publish_ns=1)), StreamMetadata)
    for n_faces in (0, 1, 3):
        sent = random_result(rng, 5 + n_faces, n_faces)
        got = dec.decode(_frames(sent, meta, seq=n_faces), t_receive_ns=99)
        assert isinstance(got, StreamResult), got
        assert_exact(sent, got)
        assert (got.seq, got.session, got.t_receive_ns, got.unix_offset_ns) == (n_faces, 7, 99, 123)
        assert got.t_publish_ns == sent.t_done_ns + 10


def test_metadata_describes_channels_units_and_fixed_offsets():
    meta = _meta(60)
    m = msgpack.unpackb(encode_metadata(meta, session=1, t_publish_ns=2)[1])
    assert m["schema_major"] == 1 and m["schema_minor"] == 1 and m["identity_dim"] == 60
    # model_id names the network that made the values, face_model the model the coefficients belong to.
    assert m["model_id"] == "coarsenet_v1" and m["face_model"] == "ict-facekit-light"
    assert m["channels"]["arkit"] == list(ARKIT_NAMES) and len(m["channels"]["ict"]) == 53
    assert m["unsupported"]["arkit"] == ["tongueOut"]
    assert m["intrinsics"]["width"] == 640
    offsets = {f["name"]: (f["offset"], f["count"]) for f in m["face_layout"]}
    # docs/protocol.md promises these byte offsets; identity is last so nothing else depends on K.
    assert offsets == {"quaternion": (0, 4), "translation_m": (16, 3), "arkit": (28, 52), "ict": (236, 53),
                       "lighting": (448, 27), "landmarks68": (556, 136), "identity": (1100, 60)}  # fmt: skip
    assert m["face_stride"] == 1100 + 4 * 60
    # The id is a content hash: stable across sessions, different for a different K.
    assert meta.meta_id == _meta(60).meta_id != _meta(61).meta_id
    assert StreamMetadata.from_wire(m) == meta


def test_face_frame_is_plain_little_endian_float32(rng):
    meta = _meta()
    sent = random_result(rng, 1, 1)
    face_frame = _frames(sent, meta)[2]
    raw = np.frombuffer(face_frame, "<f4")
    f = sent.faces[0]
    layout = {b.name: b for b in v1_face_layout(K_IDENTITY)}
    assert len(face_frame) == 1100 + 4 * K_IDENTITY
    np.testing.assert_array_equal(raw[0:4], f.quaternion.astype("<f4"))
    np.testing.assert_array_equal(
        raw[layout["landmarks68"].offset_bytes // 4 :][:136], f.landmarks68.reshape(-1)
    )
    np.testing.assert_array_equal(raw[275:], f.identity)


def test_versioning_rules(rng):
    meta = _meta()
    dec = Decoder()
    sent = random_result(rng, 3, 2)
    frames = _frames(sent, meta)
    # No metadata yet: skipped, then decodable once it arrives.
    assert dec.decode(frames) == Skipped("no_metadata", f"meta_id {meta.meta_id} not received yet")
    dec.decode(encode_metadata(meta, session=7, t_publish_ns=1))
    # Unknown header keys, trailing frames and trailing bytes in a face frame are ignored (additive changes).
    header = msgpack.unpackb(frames[1])
    header["future_key"] = {"x": [1, 2]}
    header["schema_minor"] = 9
    extended = [TOPIC_RESULT, msgpack.packb(header), frames[2] + b"\0" * 8, frames[3], b"future frame"]
    got = dec.decode(extended)
    assert isinstance(got, StreamResult) and got.extra == {"future_key": {"x": [1, 2]}}
    assert_exact(sent, got)
    # Another major version is skipped, results and metadata alike.
    header["schema_major"] = 2
    assert dec.decode([TOPIC_RESULT, msgpack.packb(header), *frames[2:]]).reason == "wrong_version"
    m = msgpack.unpackb(encode_metadata(meta, session=1, t_publish_ns=2)[1])
    m["schema_major"] = 2
    assert dec.decode([TOPIC_META, msgpack.packb(m)]).reason == "wrong_version"
    assert dec.decode([b"facetrack.future", b"x"]).reason == "unknown_topic"


def test_malformed_messages_are_skipped_not_raised(rng):
    meta = _meta()
    dec = Decoder()
    dec.decode(encode_metadata(meta, session=7, t_publish_ns=1))
    frames = _frames(random_result(rng, 3, 1), meta)
    header = msgpack.unpackb(frames[1])
    nan_face = np.frombuffer(frames[2], "<f4").copy()
    nan_face[20] = np.nan
    bad = [
        [],
        [TOPIC_RESULT],
        [TOPIC_RESULT, b"\xc1"],  # never-used msgpack byte
        [TOPIC_RESULT, msgpack.packb([1, 2, 3])],
        [TOPIC_RESULT, frames[1]],  # face frame missing
        [TOPIC_RESULT, frames[1], frames[2][:-4]],  # face frame short
        [TOPIC_RESULT, frames[1], nan_face.tobytes()],
        [TOPIC_RESULT, msgpack.packb({**header, "seq": "one"}), frames[2]],
        [TOPIC_RESULT, msgpack.packb({**header, "faces": [{"track_id": 1}]}), frames[2]],
        [TOPIC_META, b"garbage"],
        [TOPIC_META, msgpack.packb({"schema_major": 1, "identity_dim": -3})],
    ]
    for frames_bad in bad:
        out = dec.decode(frames_bad)
        assert isinstance(out, Skipped) and out.reason == "malformed", (frames_bad, out)
    assert dec.latest_metadata == meta  # bad metadata never replaces good metadata


def test_metadata_of_schema_1_0_without_face_model_still_decodes():
    m = msgpack.unpackb(encode_metadata(_meta(), session=1, t_publish_ns=2)[1])
    del m["face_model"]
    m["schema_minor"] = 0
    got = Decoder().decode([TOPIC_META, msgpack.packb(m)])
    assert isinstance(got, StreamMetadata) and got.face_model == "ict-facekit-light"


def test_out_of_range_weights_are_clamped_and_quaternions_normalised(rng):
    """A publisher sending JawOpen 5.0, EyeBlinkLeft -3.0 or the quaternion (0,0,0,2) reaches no client as is."""
    meta = _meta()
    dec = Decoder()
    dec.decode(encode_metadata(meta, session=7, t_publish_ns=1))
    sent = random_result(rng, 3, 1)
    frames = _frames(sent, meta)
    face = np.frombuffer(frames[2], "<f4").copy()
    arkit0, ict0 = 7, 59  # float32 offsets of the arkit and ict fields (28 / 4, 236 / 4)
    face[0:4] = [0, 0, 0, 2]
    face[arkit0 + ARKIT_NAMES.index("jawOpen")] = 5.0
    face[arkit0 + ARKIT_NAMES.index("eyeBlinkLeft")] = -3.0
    face[ict0] = 1.5
    got = dec.decode([frames[0], frames[1], face.tobytes()])
    assert isinstance(got, StreamResult)
    assert got.corrections == Corrections(clamped_weights=3, normalised_quaternions=1)
    np.testing.assert_array_equal(got.quaternions[0], [0, 0, 0, 1])
    assert got.arkit[0, ARKIT_NAMES.index("jawOpen")] == 1.0 and got.arkit[0, ARKIT_NAMES.index("eyeBlinkLeft")] == 0.0
    assert got.result.faces[0].expression[0] == 1.0
    assert float(got.arkit.min()) >= 0.0 and float(got.arkit.max()) <= 1.0
    # In-range values pass bit for bit and count nothing.
    clean = dec.decode(frames)
    assert clean.corrections == Corrections() and not clean.corrections
    assert_exact(sent, clean)
    # A zero quaternion cannot be repaired: the message is skipped as malformed.
    face[0:4] = 0
    assert dec.decode([frames[0], frames[1], face.tobytes()]).reason == "malformed"
