"""A subscriber in another language, written from docs/protocol.md alone, decodes a real stream.

tests/clients/node/subscriber.mjs uses npm's `zeromq` (libzmq bundled, prebuilt inside the npm package:
nothing is fetched from outside the registry) and `@msgpack/msgpack`. scripts/bootstrap.sh installs them
(`npm ci`); this test installs them itself when they are missing, and skips without `node`/`npm` or when
the registry cannot be reached.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.tracker.stream.helpers import LOOPBACK_ANY, random_result, record_demo_stream
from tracker.stream import Publisher
from tracker.stream.protocol import StreamMetadata, encode_metadata, encode_result
from tracker.stream.recording import StreamLog, drop_unused_metadata, first_needed_metadata

NODE_DIR = Path(__file__).resolve().parent / "node"


@pytest.fixture(scope="module")
def node_client() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed")
    if not (NODE_DIR / "node_modules" / "zeromq").exists():
        proc = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, text=True,
                              timeout=300)  # fmt: skip
        if proc.returncode != 0:
            pytest.skip(f"npm ci failed (no registry?): {proc.stderr[-300:]}")
    return NODE_DIR / "subscriber.mjs"


@pytest.fixture(scope="session")
def demo_log(tmp_path_factory):
    return record_demo_stream(tmp_path_factory.getbasetemp() / "demo_stream.ftlog")


def test_node_subscriber_decodes_a_demo_stream_exactly(node_client, demo_log):
    records = drop_unused_metadata(StreamLog(demo_log).records())
    expected = list(StreamLog(demo_log).results())
    # One extra message with integers past 2^31 and 2^53 (ids and ns times are uint64 on the wire).
    big_meta = StreamMetadata(40)
    big = random_result(np.random.default_rng(3), 0)
    big.faces[0].track_id = 3_000_000_000
    big.frame_index, big.t_capture_ns, big.t_done_ns = 2**33, 2**62 + 12345, 2**62 + 12999
    big_frames = encode_result(big, big_meta, seq=2**40, session=0xFFFFFFF0, t_publish_ns=2**62 + 13000,
                               unix_offset_ns=-(2**60) - 1)  # fmt: skip
    n = len(expected) + 1
    pub = Publisher(LOOPBACK_ANY, sndhwm=10_000, queue_size=10_000, own_metadata=False,
                    raw_metadata=first_needed_metadata(records).frames).start()  # fmt: skip
    try:
        proc = subprocess.Popen(["node", str(node_client), pub.endpoint, str(n), "15000"], cwd=NODE_DIR,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert pub.wait_for_subscriber(20.0), "the node client did not subscribe"
        time.sleep(0.2)  # the metadata sent on subscription goes out first
        for rec in records:
            pub.publish_raw(rec.frames)
            time.sleep(0.002)
        pub.publish_raw(encode_metadata(big_meta, session=0xFFFFFFF0, t_publish_ns=2**62))
        time.sleep(0.05)
        pub.publish_raw(big_frames)
        out, err = proc.communicate(timeout=60)
    finally:
        pub.close()
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    summary = lines[-1]["summary"]
    got = lines[:-1]
    assert summary["decoded"] == n == len(got), (summary, err)
    assert summary["skipped"]["short_frame"] == 0
    for msg, g in zip(expected, got, strict=False):
        assert (int(g["seq"]), int(g["session"]), int(g["frame"]), int(g["t_capture_ns"])) == (
            msg.seq, msg.session, msg.result.frame_index, msg.result.t_capture_ns)
        assert int(g["unix_offset_ns"]) == msg.unix_offset_ns
        assert g["identity_dim"] == "40" and g["face_stride"] == 1260 and g["model_id"] == "coarsenet_v1"
        assert g["face_model"] == "ict-facekit-light"
        assert len(g["faces"]) == len(msg.result.faces)
        for i, (face, gf) in enumerate(zip(msg.result.faces, g["faces"], strict=True)):
            assert int(gf["track_id"]) == face.track_id and gf["state"] == face.state
            assert gf["confidence"] == face.confidence and gf["face_bytes"] == 1260
            # float32 values compared exactly: JSON carries the double each float32 widens to.
            np.testing.assert_array_equal(np.float32(gf["quaternion"]), msg.quaternions[i])
            np.testing.assert_array_equal(np.float32(gf["arkit"]), msg.arkit[i])
            np.testing.assert_array_equal(np.float32(gf["translation_m"]), face.translation_m.astype(np.float32))
            np.testing.assert_array_equal(np.float32(gf["identity"]), face.identity)
    last = got[-1]
    assert int(last["seq"]) == 2**40 and int(last["session"]) == 0xFFFFFFF0 and int(last["frame"]) == 2**33
    assert int(last["t_capture_ns"]) == 2**62 + 12345 and int(last["unix_offset_ns"]) == -(2**60) - 1
    assert int(last["faces"][0]["track_id"]) == 3_000_000_000
