"""`facetrack demo` and `facetrack run` end to end: real sources, real ONNX, real ZeroMQ, real OpenGL."""

import json
import socket

import pytest

from tools.cli import main
from tracker.stream.recording import StreamLog
from tracker.tracking.regressor import DEFAULT_MODEL

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason="needs the trained engines/weights/coarsenet_v1.onnx")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_streams_previews_and_reports(tmp_path, capsys):
    out, js = tmp_path / "demo.mp4", tmp_path / "demo.json"
    ep = f"tcp://127.0.0.1:{_free_port()}"
    # Paced at 30 fps like the demo itself: unpaced, the source renders faster than a loaded machine tracks,
    # and the drop-oldest queue (rightly) drops frames, so the count would measure the machine's load.
    assert main(["demo", "--frames", "20", "--out", str(out), "--publish", ep, "--json", str(js)]) == 0
    text = capsys.readouterr().out
    assert "end-to-end latency" in text and "decoded" in text
    report = json.loads(js.read_text())
    assert report["pipeline"]["frames_tracked"] >= 15 and report["published"] >= 15
    assert report["received"] >= 10  # the in-process subscriber decoded the stream
    assert out.stat().st_size > 10_000


def test_run_on_a_video_records_the_stream(tmp_path, shared_data):
    log, js = tmp_path / "s.ftlog", tmp_path / "run.json"
    clip = shared_data / "videos" / "liveportrait_d19.mp4"
    ep = f"tcp://127.0.0.1:{_free_port()}"
    assert main(["run", "--source", f"video:{clip}", "--frames", "15", "--fast", "--publish", ep,
                 "--record", str(log), "--json", str(js)]) == 0  # fmt: skip
    report = json.loads(js.read_text())
    assert report["recorded"] >= report["published"] >= 10
    results = list(StreamLog(log).results())
    assert len(results) == report["published"]
    assert sum(len(r.result.faces) for r in results) >= 10  # the face was tracked and streamed
