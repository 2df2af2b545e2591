"""docs/protocol.md against a real stream: the tables a client author trusts are what `facetrack demo` sends."""

from __future__ import annotations

import re
from pathlib import Path

import msgpack

from tracker.stream.recording import StreamLog

DOC = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"


def _table_after(text: str, heading_fragment: str) -> list[list[str]]:
    """The rows (cells stripped, header and rule skipped) of the first Markdown table after a line."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if heading_fragment in line)
    rows, seen = [], False
    for line in lines[start + 1 :]:
        if line.startswith("|"):
            seen = True
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif seen:
            break
    return [r for r in rows[2:]]  # header, then the |---| rule


def _keys(rows: list[list[str]]) -> set[str]:
    return {k for r in rows for k in re.findall(r"`([a-z_0-9]+)`", r[0])}


def _recorded(demo_log):
    meta = header = face = None
    for rec in StreamLog(demo_log):
        m = msgpack.unpackb(rec.frames[1])
        if rec.topic == b"facetrack.meta" and m["identity_dim"] > 0:
            meta = m
        elif rec.topic == b"facetrack.result" and m["faces"] and meta is not None and m["meta_id"] == meta["meta_id"]:
            header, face = m, rec.frames[2]
            break
    assert meta is not None and header is not None
    return meta, header, face


def test_face_frame_table_and_size_example_match_a_real_stream(demo_log):
    text = DOC.read_text()
    meta, _, face = _recorded(demo_log)
    layout = {f["name"]: (f["offset"], f["count"]) for f in meta["face_layout"]}
    k = meta["identity_dim"]
    doc_layout = {}
    for name, offset, count, _ in _table_after(text, "### Face frame"):
        doc_layout[name.strip("`")] = (int(offset), k if count == "K" else int(count))
    assert doc_layout == layout
    (example,) = _table_after(text, "The length of a face frame is decided by")
    assert (int(example[0]), int(example[1])) == (meta["identity_dim"], meta["face_stride"]) == (k, 1100 + 4 * k)
    assert len(face) == meta["face_stride"]
    assert meta["model_id"] == "coarsenet_v1" and meta["face_model"] == "ict-facekit-light"


def test_every_key_sent_is_documented(demo_log):
    text = DOC.read_text()
    meta, header, _ = _recorded(demo_log)
    assert set(header) <= _keys(_table_after(text, "### Result header")), set(header) - _keys(
        _table_after(text, "### Result header"))
    assert set(header["faces"][0]) <= _keys(_table_after(text, "Each `faces[i]`"))
    assert set(meta) <= _keys(_table_after(text, "### Metadata")), set(meta) - _keys(_table_after(text, "### Metadata"))
    # Stage times, the header's and each face's, are documented by name.
    assert all(f"`{key}`" in text for key in header["timings_ms"])
    face_times = header["faces"][0]["timings_ms"]
    assert {"regress", "filter"} <= set(face_times) <= {"regress", "filter", "depth", "depth_pose"}
    assert all(f"`{key}`" in text for key in face_times)
    assert all(v >= 0 for v in face_times.values())
