"""async_read(): the latest-frame slot of live sources, lossless reading of files, close() that never hangs."""

import threading
import time

import cv2
import pytest

from tests.tracker.sources.fake_capture import FakeCamera
from tracker.core.errors import CameraError
from tracker.sources.video import VideoFileSource
from tracker.sources.webcam import WebcamSource


def test_live_source_returns_newest_frame_and_drops_the_rest(monkeypatch):
    monkeypatch.setattr(cv2, "VideoCapture", FakeCamera(["forever"], frame_interval_s=0.005))
    with WebcamSource(0) as src:
        a = src.async_read(timeout_ms=1000)
        time.sleep(0.2)  # ~40 frames arrive meanwhile; only the newest is kept
        b = src.async_read(timeout_ms=1000)
        c = src.async_read(timeout_ms=1000)  # never the same frame twice: waits for a newer one
    assert b.index - a.index > 3
    assert c.index > b.index and c.t_capture_ns > b.t_capture_ns


def test_file_source_loses_no_frame_with_a_slow_consumer(shared_data):
    with VideoFileSource(shared_data / "videos" / "liveportrait_d0.mp4") as src:
        got = []
        for _ in range(8):
            got.append(src.async_read(timeout_ms=2000).index)
            time.sleep(0.01)
    assert got == list(range(8))


def test_close_within_a_second_when_the_driver_blocks(monkeypatch):
    cam = FakeCamera(["forever"], block_after=3)
    monkeypatch.setattr(cv2, "VideoCapture", cam)
    src = WebcamSource(0)
    src.connect()
    assert src.async_read(timeout_ms=1000) is not None
    with pytest.raises(CameraError, match="no frame within"):
        for _ in range(5):
            src.async_read(timeout_ms=200)
    t0 = time.monotonic()
    src.close()
    assert time.monotonic() - t0 < 1.5  # 1 s join timeout + bookkeeping
    assert not src.is_connected
    # The device is not released under the blocked call; the reader releases it once the call returns.
    assert not cam.opened[0].released
    cam.unblock.set()
    deadline = time.monotonic() + 2.0
    while not cam.opened[0].released and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cam.opened[0].released
    time.sleep(0.05)
    assert not any(t.name.startswith("source-webcam") for t in threading.enumerate())
