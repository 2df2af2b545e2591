"""CSV export: facetrack's ARKit table and Live Link Face takes, streamed row by row."""

from __future__ import annotations

import csv
import dataclasses
import math
import re
import time

import numpy as np
import pytest

from tests.tracker.stream.helpers import random_result
from tracker.core.errors import ConfigError, StreamError
from tracker.core.face_model.arkit import ARKIT_NAMES
from tracker.core.geometry import rotation_from_ypr_deg
from tracker.stream.bridges.livelink import head_angles_rad
from tracker.stream.csv_writer import LIVELINK_CSV_COLUMNS, CsvWriter, live_link_timecode
from tracker.stream.recording import StreamLog, export_csv

# A Live Link Face take's header as the app writes it (its documented CSV layout: timecode, the count of
# curves, then the curves by PascalCase name; the CSV swaps JawRight/JawLeft and MouthRight/MouthLeft
# relative to the UDP order). Typed out here from that layout, not generated from the code under test.
LIVE_LINK_FACE_TAKE_HEADER = (
    "Timecode,BlendShapeCount,EyeBlinkLeft,EyeLookDownLeft,EyeLookInLeft,EyeLookOutLeft,EyeLookUpLeft,"
    "EyeSquintLeft,EyeWideLeft,EyeBlinkRight,EyeLookDownRight,EyeLookInRight,EyeLookOutRight,EyeLookUpRight,"
    "EyeSquintRight,EyeWideRight,JawForward,JawRight,JawLeft,JawOpen,MouthClose,MouthFunnel,MouthPucker,"
    "MouthRight,MouthLeft,MouthSmileLeft,MouthSmileRight,MouthFrownLeft,MouthFrownRight,MouthDimpleLeft,"
    "MouthDimpleRight,MouthStretchLeft,MouthStretchRight,MouthRollLower,MouthRollUpper,MouthShrugLower,"
    "MouthShrugUpper,MouthPressLeft,MouthPressRight,MouthLowerDownLeft,MouthLowerDownRight,MouthUpperUpLeft,"
    "MouthUpperUpRight,BrowDownLeft,BrowDownRight,BrowInnerUp,BrowOuterUpLeft,BrowOuterUpRight,CheekPuff,"
    "CheekSquintLeft,CheekSquintRight,NoseSneerLeft,NoseSneerRight,TongueOut,HeadYaw,HeadPitch,HeadRoll,"
    "LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll\n"
)
TIMECODE = re.compile(r"^\d\d:\d\d:\d\d:\d\d\.\d\d\d$")


def _pascal_to_arkit(name: str) -> str:
    return name[0].lower() + name[1:]


def load_take(path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """A retargeting-style reader: keyed on the take's column names, never on positions.

    Returns the timecodes, (F,52) ARKit weights in Apple order and (F,3) head angles (yaw, pitch, roll).
    """
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    weights = np.array([[float(r[n[0].upper() + n[1:]]) for n in ARKIT_NAMES] for r in rows])
    head = np.array([[float(r["HeadYaw"]), float(r["HeadPitch"]), float(r["HeadRoll"])] for r in rows])
    assert all(int(r["BlendShapeCount"]) == 61 for r in rows)
    return [r["Timecode"] for r in rows], weights, head


def test_livelink_header_is_the_apps_take_header_byte_for_byte(tmp_path):
    with CsvWriter(tmp_path / "take.csv", format="livelink", fps=60):
        pass
    assert (tmp_path / "take.csv").read_bytes() == LIVE_LINK_FACE_TAKE_HEADER.encode()
    assert len(LIVELINK_CSV_COLUMNS) == 2 + 61
    assert {_pascal_to_arkit(c) for c in LIVELINK_CSV_COLUMNS[2:54]} == set(ARKIT_NAMES)


def test_timecode_format_and_rate(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:
        t = 1_700_000_000 * 10**9  # 2023-11-14 22:13:20 UTC
        assert live_link_timecode(t, 30) == "22:13:20:00.000"
        assert live_link_timecode(t + 500_000_000, 30) == "22:13:20:15.000"
        assert live_link_timecode(t + 510_000_000, 30) == "22:13:20:15.300"  # 15.3 frames
        assert live_link_timecode(t + 999_999_999, 60) == "22:13:20:59.999"
    finally:
        monkeypatch.undo()
        time.tzset()
    assert TIMECODE.match(live_link_timecode(time.time_ns(), 60))


def test_livelink_rows_read_back_by_name_with_live_link_signs(tmp_path, rng):
    results = [random_result(rng, i, n_faces=2) for i in range(4)]
    for r in results:
        r.faces[1].confidence, r.faces[1].state = 5.0, "tracking"  # the primary face
    face = results[0].faces[1]
    face.coefficients = dataclasses.replace(face.coefficients, rotation=rotation_from_ypr_deg(20, 0, 0))  # performer's left
    with CsvWriter(tmp_path / "take.csv", format="livelink", fps=30, unix_offset_ns=0) as w:
        for r in results:
            assert w.write(r) == 1  # one face per row: a take holds one performer
    codes, weights, head = load_take(tmp_path / "take.csv")
    assert len(codes) == 4 and all(TIMECODE.match(c) for c in codes)
    for r, wts, h in zip(results, weights, head, strict=True):
        face = r.faces[1]
        np.testing.assert_allclose(wts, face.arkit, atol=1e-6)  # JawLeft holds jawLeft, not jawRight
        np.testing.assert_allclose(h, head_angles_rad(face.rotation), atol=1e-6)
    assert head[0, 0] == pytest.approx(math.radians(20), abs=1e-6)


def test_arkit_rows_are_flushed_as_written(tmp_path, rng):
    w = CsvWriter(tmp_path / "a.csv")  # the lead's `run --csv` keeps one open for the whole run
    try:
        assert w.write(random_result(rng, 0, n_faces=3)) == 3
        # Read before close(): a killed run keeps what was written.
        rows = list(csv.DictReader(open(tmp_path / "a.csv", newline="")))  # noqa: SIM115
        assert len(rows) == 3 and rows[0]["time_s"] == "0.000000" and "jawOpen" in rows[0]
    finally:
        w.close()


def test_bad_arguments_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="CSV format"):
        CsvWriter(tmp_path / "x.csv", format="fbx")
    with pytest.raises(ConfigError, match="fps"):
        CsvWriter(tmp_path / "x.csv", format="livelink", fps=0)
    (tmp_path / "file").write_text("")
    with pytest.raises(StreamError, match="cannot write CSV"):
        CsvWriter(tmp_path / "file" / "x.csv")


def test_demo_stream_exports_as_a_live_link_take(tmp_path, demo_log):
    results = list(StreamLog(demo_log).results())
    tracked = [m for m in results if any(f.state != "lost" for f in m.result.faces)]
    rows = export_csv(demo_log, tmp_path / "take.csv", format="livelink")
    assert rows == len(tracked) >= 10
    assert (tmp_path / "take.csv").read_text().splitlines()[0] + "\n" == LIVE_LINK_FACE_TAKE_HEADER
    codes, weights, _ = load_take(tmp_path / "take.csv")
    assert all(TIMECODE.match(c) for c in codes) and codes == sorted(codes)
    np.testing.assert_allclose(weights, [m.arkit[0] for m in tracked], atol=1e-6)
