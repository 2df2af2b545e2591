"""Several cameras in one pipeline: real synthetic sources, real ONNX inference, real loopback ZeroMQ.

Batching the crops of two cameras into one network call must not change any result beyond the last bits
ONNX Runtime's kernels may differ in between batch sizes: landmarks agree to 1e-3 px and ARKit weights to
1e-4 with each camera tracked alone (measured differences are ~1e-5 px and ~1e-6).
"""

from __future__ import annotations

import csv
import json
import logging
import socket
import time

import numpy as np
import pytest
import zmq

from engines.base import Engine
from tools.cli import main
from tracker.core.errors import ConfigError, StreamError
from tracker.pipeline.multi import MultiPipeline, name_sources, split_source_arg
from tracker.pipeline.runtime import RuntimeOptions, create_tracker
from tracker.sources.synthetic import SyntheticSource
from tracker.stream.protocol import TOPIC_META, TOPIC_RESULT, StreamMetadata, encode_result
from tracker.stream.publisher import Publisher
from tracker.stream.subscriber import Subscriber
from tracker.tracking.regressor import DEFAULT_MODEL

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason="needs the trained engines/weights/coarsenet_v1.onnx")

SEEDS = {"cam1": 3, "cam2": 7}
FRAMES = 8
LANDMARK_TOL_PX = 1e-3
WEIGHT_TOL = 1e-4


class CountingEngine:
    """Forwards everything to a real engine and records the batch size of each ``infer`` call."""

    def __init__(self, engine, max_batch_size: int | None = None) -> None:
        self._engine = engine
        self.batches: list[int] = []
        if max_batch_size is not None:
            self.max_batch_size = max_batch_size

    def infer(self, feed):
        self.batches.append(int(next(iter(feed.values())).shape[0]))
        return self._engine.infer(feed)

    # The engine interface's chunking, over this wrapper's infer and max_batch_size.
    infer_batched = Engine.infer_batched

    def __getattr__(self, name):
        return getattr(self._engine, name)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tracker(face_model):
    # Made once for the module (the networks load once); each test makes fresh siblings with empty tracks.
    t = create_tracker(RuntimeOptions(backend="onnxruntime", threads=1, max_batch=8), face_model=face_model)
    yield t
    t.close()


def _sources(face_model, frames: int = FRAMES) -> dict[str, SyntheticSource]:
    return {name: SyntheticSource(seed, frames, model=face_model) for name, seed in SEEDS.items()}


def _alone(tracker, face_model, seed: int, frames: int = FRAMES):
    fresh = tracker.sibling()
    with SyntheticSource(seed, frames, model=face_model) as source:
        return [fresh.process(frame) for frame in source]


def _run_multi(tracker, face_model, sinks=None, frames: int = FRAMES):
    collected: dict[str, list] = {name: [] for name in SEEDS}
    all_sinks = {"collect": lambda name, frame, result: collected[name].append(result), **(sinks or {})}
    trackers = {name: tracker.sibling() for name in SEEDS}
    pipeline = MultiPipeline(_sources(face_model, frames), trackers, sinks=all_sinks)
    stats = pipeline.run()
    return pipeline, stats, collected


def test_two_sources_one_regressor_call_per_tick_same_results_as_alone(tracker, face_model):
    real = tracker.regressor.engine
    counting = CountingEngine(real)
    tracker.regressor.engine = counting
    try:
        pipeline, stats, got = _run_multi(tracker, face_model)
    finally:
        tracker.regressor.engine = real
    # Exact frame counts, every frame of both lossless sources, in order.
    assert stats.frames_tracked == 2 * FRAMES and stats.frames_dropped == 0 and stats.lossless
    per = pipeline.source_stats()
    assert {n: (s.frames_tracked, s.frames_dropped) for n, s in per.items()} == {n: (FRAMES, 0) for n in SEEDS}
    for name, seed in SEEDS.items():
        assert [r.frame_index for r in got[name]] == list(range(FRAMES))
        assert {r.source_id for r in got[name]} == {f"synthetic:{seed}"}
    # One network call per tick, each carrying the face of both cameras.
    assert counting.batches == [2] * FRAMES
    batch = pipeline.batch_stats()
    assert (batch.calls, batch.crops, batch.mean_crops_per_call, batch.max_crops_per_call) == (FRAMES, 2 * FRAMES, 2.0, 2)
    # Each camera numbers its own tracks.
    for name in SEEDS:
        assert {f.track_id for r in got[name] for f in r.faces} == {1}
        assert got[name][0].faces[0].state == "new" and got[name][1].faces[0].state == "tracking"
    # The same results as each camera tracked alone (batch 1 per frame).
    for name, seed in SEEDS.items():
        alone = _alone(tracker, face_model, seed)
        for ref, res in zip(alone, got[name], strict=True):
            assert [(f.track_id, f.state) for f in res.faces] == [(f.track_id, f.state) for f in ref.faces]
            for f_ref, f_res in zip(ref.faces, res.faces, strict=True):
                np.testing.assert_allclose(f_res.landmarks68, f_ref.landmarks68, atol=LANDMARK_TOL_PX, rtol=0)
                np.testing.assert_allclose(f_res.arkit, f_ref.arkit, atol=WEIGHT_TOL, rtol=0)
                np.testing.assert_allclose(f_res.translation_m, f_ref.translation_m, atol=1e-5, rtol=0)


def test_regress_many_splits_one_batch_and_chunks_at_the_engine_limit(tracker, face_model):
    with SyntheticSource(3, 1, model=face_model) as a, SyntheticSource(7, 1, model=face_model) as b:
        fa, fb = a.read(), b.read()
    plans = [tracker.sibling().prepare(f) for f in (fa, fb)]
    assert [len(p.crops) for p in plans] == [1, 1]
    items = [(fa, plans[0].crops), (fb, []), (fb, plans[1].crops)]
    reg = tracker.regressor
    real = reg.engine
    try:
        reg.engine = counting = CountingEngine(real)
        together = reg.regress_many(items)
        assert counting.batches == [2]
        reg.engine = limited = CountingEngine(real, max_batch_size=1)
        chunked = reg.regress_many(items)
        assert limited.batches == [1, 1]
        assert reg.regress_many([(fa, [])]) == [[]] and limited.batches == [1, 1]  # no crops: no call
    finally:
        reg.engine = real
    assert [len(r) for r in together] == [len(r) for r in chunked] == [1, 0, 1]
    singles = [reg.regress(fa, plans[0].crops), reg.regress(fb, plans[1].crops)]
    for batched, single in ((together[0][0], singles[0][0]), (together[2][0], singles[1][0]), (chunked[2][0], singles[1][0])):
        np.testing.assert_allclose(batched.expression, single.expression, atol=1e-5, rtol=0)
        np.testing.assert_allclose(batched.translation_m, single.translation_m, atol=1e-6, rtol=0)


def test_each_camera_streams_on_its_own_topics(tracker, face_model):
    port = _free_port()
    ep = f"tcp://127.0.0.1:{port}"
    intrinsics = {name: None for name in SEEDS}
    ctx = zmq.Context()
    raw = ctx.socket(zmq.SUB)
    try:
        # A deep high-water mark: the test reads after the run, and none of the 2x8 results may be dropped.
        with Publisher(ep, sources=intrinsics, sndhwm=1000, queue_size=256) as pub, \
                Subscriber(ep, source_name="cam2") as only_cam2, Subscriber(ep) as everyone:  # fmt: skip
            raw.setsockopt(zmq.RCVHWM, 1000)
            raw.setsockopt(zmq.SUBSCRIBE, TOPIC_RESULT + b"/cam1")
            raw.connect(ep)
            deadline = time.monotonic() + 10
            while pub.stats().subscriptions < 4 and time.monotonic() < deadline:  # 1 + 2 + 1 topic prefixes
                time.sleep(0.01)
            assert pub.stats().subscriptions == 4
            with pytest.raises(StreamError, match="unknown source_name"):
                pub.publish(_alone(tracker, face_model, 3, 1)[0])  # a multi-camera publisher needs the name
            _run_multi(tracker, face_model, sinks={"pub": lambda name, frame, result: pub.publish(result, name)})
            assert pub.flush(5.0)
            topics = []
            while raw.poll(2000 if len(topics) < FRAMES else 200):
                topics.append(raw.recv_multipart()[0])
            assert topics == [b"facetrack.result/cam1"] * FRAMES  # prefix matching selects one camera
            cam2 = [m for m in (only_cam2.recv(3000) for _ in range(FRAMES)) if m is not None]
            assert [(m.source_name, m.result.frame_index, m.seq) for m in cam2] == [("cam2", i, i) for i in range(FRAMES)]
            assert only_cam2.metadata.source_name == "cam2"
            both = [m for m in (everyone.recv(3000) for _ in range(2 * FRAMES)) if m is not None]
            assert sorted((m.source_name, m.result.frame_index) for m in both) == \
                sorted((n, i) for n in SEEDS for i in range(FRAMES))  # fmt: skip
            assert {m.source_name: m.metadata.source_name for m in both} == {"cam1": "cam1", "cam2": "cam2"}
            assert everyone.stats().gaps == 0 and everyone.stats().restarts == 0  # sequences are per camera
            assert only_cam2.stats().no_metadata == everyone.stats().no_metadata == 0
    finally:
        raw.close(linger=0)
        ctx.term()


def test_a_single_camera_keeps_the_plain_topics_and_header(tracker, face_model):
    result = _alone(tracker, face_model, 3, 1)[0]
    meta = StreamMetadata(40)
    frames = encode_result(result, meta, seq=0, session=1, t_publish_ns=0)
    assert frames[0] == TOPIC_RESULT and b"source_name" not in frames[1]
    named = StreamMetadata(40, source_name="cam1")
    assert named.meta_id != meta.meta_id
    assert encode_result(result, named, seq=0, session=1, t_publish_ns=0)[0] == b"facetrack.result/cam1"
    from tracker.stream.protocol import encode_metadata

    assert encode_metadata(meta, session=1, t_publish_ns=0)[0] == TOPIC_META
    assert encode_metadata(named, session=1, t_publish_ns=0)[0] == b"facetrack.meta/cam1"


def test_source_names():
    assert split_source_arg("cam1=webcam:0") == ("cam1", "webcam:0")
    assert split_source_arg("video:/clips/a=b.mp4") == (None, "video:/clips/a=b.mp4")
    assert name_sources(["synthetic", "cam=synthetic:5", "synthetic:2"]) == [
        ("s0", "synthetic"), ("cam", "synthetic:5"), ("s2", "synthetic:2")]  # fmt: skip
    with pytest.raises(ConfigError, match="duplicate source name 'a'"):
        name_sources(["a=synthetic", "a=synthetic:1"])
    with pytest.raises(ConfigError, match="bad source name"):
        split_source_arg("cam 1=synthetic")
    with pytest.raises(ConfigError, match="bad source name"):
        Subscriber("tcp://127.0.0.1:1", source_name="a/b")


# ------------------------------------------------------------------------------------------------ the CLI
def test_run_with_two_sources_reports_each_and_writes_a_source_column(tmp_path, capsys):
    js, table, lines = tmp_path / "run.json", tmp_path / "run.csv", tmp_path / "run.jsonl"
    n = 6
    assert main(["run", "--source", "synthetic", "--source", "synthetic:5", "--frames", str(n), "--fast",
                 "--publish", f"tcp://127.0.0.1:{_free_port()}", "--json", str(js), "--csv", str(table),
                 "--jsonl", str(lines), "--threads", "1"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "source s0 (synthetic:0): 6 tracked" in out and "source s1 (synthetic:5): 6 tracked" in out
    report = json.loads(js.read_text())
    assert report["pipeline"]["frames_tracked"] == 2 * n and report["published"] == 2 * n
    assert {k: (v["source_id"], v["frames_tracked"], v["frames_dropped"]) for k, v in report["sources"].items()} == {
        "s0": ("synthetic:0", n, 0), "s1": ("synthetic:5", n, 0)}  # fmt: skip
    b = report["regressor_batches"]
    assert (b["calls"], b["crops"], b["mean_crops_per_call"]) == (n, 2 * n, 2.0)
    with open(table, newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted((r["source"], int(r["frame_index"])) for r in rows) == sorted((s, i) for s in ("s0", "s1") for i in range(n))
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert sorted((r["source"], r["frame_index"]) for r in records) == sorted((s, i) for s in ("s0", "s1") for i in range(n))


def test_a_single_source_report_has_no_multi_source_keys(tmp_path):
    js = tmp_path / "one.json"
    assert main(["run", "--source", "synthetic", "--frames", "3", "--fast", "--threads", "1",
                 "--publish", f"tcp://127.0.0.1:{_free_port()}", "--json", str(js)]) == 0  # fmt: skip
    report = json.loads(js.read_text())
    assert "sources" not in report and "regressor_batches" not in report
    assert report["pipeline"]["frames_tracked"] == 3


@pytest.mark.parametrize(("argv", "message"), [
    (["--source", "a=synthetic", "--source", "a=synthetic:1"], "duplicate source name 'a'"),
    (["--source", "cam 1=synthetic", "--source", "synthetic:1"], "bad source name 'cam 1'"),
    (["--source", "synthetic", "--source", "nonsense:1"], "unknown source 'nonsense:1'"),
    (["--source", "synthetic", "--source", "synthetic:1", "--csv", "x.csv", "--csv-format", "livelink"],
     "holds one performer"),
])  # fmt: skip
def test_bad_sources_are_one_clear_error(argv, message, tmp_path, caplog, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.ERROR):
        assert main(["run", *argv, "--frames", "1", "--fast"]) == 2
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and message in errors[0].getMessage()
    assert not (tmp_path / "x.csv").exists()


def test_stream_echo_follows_one_camera(tracker, face_model, capsys):
    import threading

    ep = f"tcp://127.0.0.1:{_free_port()}"
    results = _alone(tracker, face_model, 3, 1)
    done = threading.Event()
    with Publisher(ep, sources={"cam1": None, "cam2": None}) as pub:

        def publish() -> None:  # until echo has what it waits for (it may subscribe after the first ones)
            while not done.wait(0.02):
                pub.publish(results[0], "cam1")
                pub.publish(results[0], "cam2")

        thread = threading.Thread(target=publish)
        thread.start()
        try:
            assert main(["stream", "echo", "--connect", ep, "--source-name", "cam2", "--count", "3",
                         "--timeout", "10"]) == 0  # fmt: skip
        finally:
            done.set()
            thread.join(5)
    lines = [line for line in capsys.readouterr().out.splitlines() if " frame " in line]
    assert len(lines) == 3 and all(line.startswith("cam2 #") for line in lines)


def test_live_sources_give_their_newest_frame_and_count_the_rest(tracker, face_model):
    # drop_when_behind makes the synthetic sources behave like cameras (one-slot latest frame): whatever the
    # machine's speed, every frame is either tracked or counted as dropped, and each camera's results stay
    # in order.
    sources = _sources(face_model, frames=12)
    for source in sources.values():
        source.drop_when_behind = True
    got: dict[str, list] = {name: [] for name in SEEDS}
    trackers = {name: tracker.sibling() for name in SEEDS}
    pipeline = MultiPipeline(sources, trackers, sinks={"c": lambda name, frame, result: got[name].append(result)})
    assert not pipeline.lossless
    pipeline.run()
    for name, st in pipeline.source_stats().items():
        assert st.frames_tracked + st.frames_dropped == 12 and not st.lossless
        indices = [r.frame_index for r in got[name]]
        assert indices == sorted(set(indices)) and len(indices) == st.frames_tracked >= 1
    batch = pipeline.batch_stats()
    assert batch.max_crops_per_call <= 2 and batch.crops == sum(len(r.faces) for rs in got.values() for r in rs)
