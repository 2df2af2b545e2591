"""Helpers of the stream tests: random but valid results."""

from __future__ import annotations

import time

import numpy as np

from tracker.core.geometry import rotation_from_ypr_deg
from tracker.core.types import FaceCoefficients, FaceState, TrackResult

K_IDENTITY = 40


def random_face(
    rng: np.random.Generator, track_id: int, k: int = K_IDENTITY, state: str = "tracking"
) -> FaceState:
    return FaceState(
        track_id=track_id,
        coefficients=FaceCoefficients(
            identity=rng.normal(0, 1, k),
            expression=rng.uniform(0, 1, 53),
            rotation=rotation_from_ypr_deg(*rng.uniform(-60, 60, 3)),
            translation_m=rng.uniform([-0.2, -0.2, 0.3], [0.2, 0.2, 1.5]),
            lighting=rng.normal(0, 0.5, 27),
        ),
        landmarks68=rng.uniform(0, 640, (68, 2)),
        confidence=float(rng.uniform()),
        state=state,
        timings_ms={"regress": float(rng.uniform(1, 5))},
    )


def random_result(
    rng: np.random.Generator, frame_index: int, n_faces: int = 1, k: int = K_IDENTITY
) -> TrackResult:
    t = time.monotonic_ns()
    states = ("tracking", "new", "lost")
    faces = [random_face(rng, 10 + i, k, states[i % 3]) for i in range(n_faces)]
    return TrackResult(frame_index, t - 5_000_000, t, faces, {"detect": 1.5, "total": 7.25}, "synthetic")


LOOPBACK_ANY = "tcp://127.0.0.1:*"


def assert_exact(sent: TrackResult, got) -> None:
    """Checks a decoded StreamResult against what was published: every field, float32-exact."""
    r = got.result
    assert (r.frame_index, r.t_capture_ns, r.t_done_ns, r.source_id) == (
        sent.frame_index, sent.t_capture_ns, sent.t_done_ns, sent.source_id,
    )  # fmt: skip
    assert r.timings_ms == sent.timings_ms
    assert len(r.faces) == len(sent.faces)
    f32 = np.float32
    for i, (a, b) in enumerate(zip(sent.faces, r.faces, strict=True)):
        assert (b.track_id, b.confidence, b.state, b.timings_ms) == (
            a.track_id,
            a.confidence,
            a.state,
            a.timings_ms,
        )
        np.testing.assert_array_equal(got.quaternions[i], a.quaternion.astype(f32))
        np.testing.assert_array_equal(got.arkit[i], a.arkit)
        np.testing.assert_array_equal(b.arkit, a.arkit)
        np.testing.assert_array_equal(b.translation_m, a.translation_m.astype(f32).astype(np.float64))
        for name in ("identity", "expression", "lighting", "landmarks68"):
            np.testing.assert_array_equal(getattr(b, name), getattr(a, name).astype(f32), err_msg=name)
        # The rotation travels as a float32 quaternion: exact to float32 rounding.
        np.testing.assert_allclose(b.rotation, a.rotation, atol=1e-6)


def free_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def record_demo_stream(path, frames: int = 24, timeout_s: float = 240.0):
    """Records what a real ``facetrack demo`` publishes (a subprocess: real ONNX tracking) into a stream log.

    Returns the path, or calls ``pytest.skip`` when the trained network is absent. Reused when the file exists
    (one recording per test session: tests pass ``tmp_path_factory.getbasetemp()``-based paths).
    """
    import subprocess
    import sys
    from pathlib import Path

    import pytest

    from tracker.stream.recording import LogWriter
    from tracker.stream.subscriber import Subscriber
    from tracker.tracking.regressor import DEFAULT_MODEL

    path = Path(path)
    if path.exists():
        return path
    if not DEFAULT_MODEL.exists():
        pytest.skip("needs the trained engines/weights/coarsenet_v1.onnx")
    ep = f"tcp://127.0.0.1:{free_tcp_port()}"
    tmp, err_path = path.with_suffix(".part"), path.with_suffix(".stderr")
    with open(err_path, "w") as err, Subscriber(ep, rcvhwm=10_000) as sub, \
            LogWriter(tmp, info={"endpoint": ep, "source": "facetrack demo"}) as w:
        proc = subprocess.Popen([sys.executable, "-m", "tools.cli", "-q", "demo", "--frames", str(frames), "--fast",
                                 "--publish", ep, "--out", str(path.with_suffix(".mp4"))],
                                stdout=subprocess.DEVNULL, stderr=err)  # fmt: skip
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                raw = sub.recv_raw(200)
                if raw is not None:
                    w.write(raw.frames, raw.t_receive_ns)
                elif proc.poll() is not None:
                    break  # the demo ended and the socket is drained
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, f"facetrack demo exited {proc.returncode}: {err_path.read_text()[-2000:]}"
    tmp.rename(path)
    return path
