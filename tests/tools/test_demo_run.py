"""`facetrack demo` and `facetrack run` end to end: real sources, real ONNX, real ZeroMQ, real OpenGL."""

import csv
import json
import socket

import cv2
import pytest

from tools.cli import main
from tracker.stream.recording import StreamLog
from tracker.tracking.regressor import DEFAULT_MODEL

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason="needs the trained engines/weights/coarsenet_v1.onnx")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _video_frames(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def test_demo_streams_previews_and_reports(tmp_path, capsys):
    out, js = tmp_path / "demo.mp4", tmp_path / "demo.json"
    ep = f"tcp://127.0.0.1:{_free_port()}"
    # --fast is lossless: every rendered frame is tracked, published and previewed, however busy the machine.
    assert main(["demo", "--frames", "20", "--fast", "--out", str(out), "--publish", ep, "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "end-to-end latency" in text and "decoded" in text
    report = json.loads(js.read_text())
    assert report["pipeline"]["frames_tracked"] == 20 and report["pipeline"]["frames_dropped"] == 0
    assert report["published"] == 20
    assert report["received"] >= 10  # the in-process subscriber decoded the stream
    assert _video_frames(out) == 20  # exactly one preview frame per tracked frame, none repeated


def test_run_on_a_video_records_the_stream(tmp_path, shared_data):
    log, js = tmp_path / "s.ftlog", tmp_path / "run.json"
    clip = shared_data / "videos" / "liveportrait_d19.mp4"
    ep = f"tcp://127.0.0.1:{_free_port()}"
    assert main(["run", "--source", f"video:{clip}", "--frames", "15", "--fast", "--publish", ep,
                 "--record", str(log), "--json", str(js)]) == 0  # fmt: skip
    report = json.loads(js.read_text())
    assert report["pipeline"]["frames_tracked"] == 15 and report["published"] == 15
    results = list(StreamLog(log).results())
    assert [r.result.frame_index for r in results] == list(range(15))
    assert sum(len(r.result.faces) for r in results) == 15  # one face, tracked in every frame


def test_run_writes_every_frame_of_a_clip_to_csv_and_jsonl(tmp_path, shared_data):
    clip = shared_data / "videos" / "liveportrait_d19.mp4"
    csv_path, jsonl = tmp_path / "d19.csv", tmp_path / "d19.jsonl"
    assert main(["run", "--source", f"video:{clip}", "--fast", "--publish", f"tcp://127.0.0.1:{_free_port()}",
                 "--csv", str(csv_path), "--jsonl", str(jsonl)]) == 0  # fmt: skip
    frames = _video_frames(clip)
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["frame_index"] for line in lines] == list(range(frames))
    faces = sum(len(line["faces"]) for line in lines)
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == faces == frames  # rows = frames x faces (one person)
    assert [int(r["frame_index"]) for r in rows] == list(range(frames))
    face = lines[-1]["faces"][0]
    assert len(face["landmarks68_px"]) == 68 and len(face["arkit"]) == 52 and face["state"] == "tracking"


def test_run_on_an_image_folder_tracks_every_image(tmp_path, shared_data):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for src in sorted((shared_data / "landmarks68" / "afw").glob("*.jpg"))[:12]:
        (folder / src.name).symlink_to(src)
    jsonl = tmp_path / "afw.jsonl"
    assert main(["run", "--source", f"images:{folder}", "--publish", f"tcp://127.0.0.1:{_free_port()}",
                 "--jsonl", str(jsonl)]) == 0  # fmt: skip
    assert len(jsonl.read_text().splitlines()) == 12


def test_run_writes_a_live_link_take(tmp_path, shared_data):
    clip = shared_data / "videos" / "liveportrait_d19.mp4"
    take = tmp_path / "take.csv"
    assert main(["run", "--source", f"video:{clip}", "--fast", "--frames", "12", "--csv", str(take), "--format",
                 "livelink", "--publish", f"tcp://127.0.0.1:{_free_port()}"]) == 0  # fmt: skip
    lines = take.read_text().splitlines()
    assert lines[0].startswith("Timecode,BlendShapeCount,EyeBlinkLeft,") and len(lines) == 1 + 12
    assert all(line.split(",")[1] == "61" for line in lines[1:])
