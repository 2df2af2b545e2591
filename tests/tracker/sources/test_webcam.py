"""WebcamSource with injected camera failures: missing camera, unplug + reconnect, giving up, stopping."""

import logging
import math
import threading
import time

import cv2
import numpy as np
import pytest

from calibration.intrinsics import save_intrinsics
from tests.tracker.sources.fake_capture import FakeCamera
from tracker.core.errors import CameraError
from tracker.core.types import ASSUMED_FOV_DEG, Intrinsics
from tracker.sources.reconnect import ReconnectPolicy
from tracker.sources.webcam import WebcamSource

FAST = ReconnectPolicy(
    failures_before_reconnect=3, max_attempts=4, initial_backoff_s=0.01, max_backoff_s=0.04
)


@pytest.fixture
def camera(monkeypatch):
    def install(*args, **kwargs):
        cam = FakeCamera(*args, **kwargs)
        monkeypatch.setattr(cv2, "VideoCapture", cam)
        return cam

    return install


def test_missing_camera_says_which_and_what_to_try(camera):
    camera([None])
    with pytest.raises(CameraError, match=r"webcam:7.*another index") as err:
        WebcamSource(7).connect()
    assert "/dev/video7" in str(err.value)


def test_frames_are_rgb_with_default_fov(camera):
    camera(["forever"], size=(48, 64))
    with WebcamSource(0, width=64, height=48, fps=30) as src:
        f = src.read()
        g = src.read()
    assert (f.index, g.index) == (0, 1) and g.t_capture_ns > f.t_capture_ns
    np.testing.assert_array_equal(f.color[1, 1], [0, 0, 255])  # BGR blue -> RGB blue
    k = f.intrinsics
    assert (k.width, k.height) == (64, 48)
    assert math.degrees(2 * math.atan(32 / k.fx)) == pytest.approx(ASSUMED_FOV_DEG)


def test_calibration_file_overrides_the_guess(camera, tmp_path):
    camera(["forever"], size=(48, 64))
    k = Intrinsics(70.0, 71.0, 31.0, 24.0, 64, 48)
    with WebcamSource(0, calibration=save_intrinsics(k, tmp_path / "cam.json")) as src:
        assert src.intrinsics == k and src.read().intrinsics == k


def test_unplugged_camera_is_reported_and_reconnected(camera, caplog):
    caplog.set_level(logging.WARNING)
    cam = camera([5, None, None, "forever"])  # 5 frames, unplugged, two failed reopens, back
    with WebcamSource(0, reconnect=FAST) as src:
        frames = [src.read() for _ in range(9)]
        assert src.reconnects == 1
    assert [f.index for f in frames] == list(range(9))
    assert len(cam.opened) == 4 and all(c.released for c in cam.opened)
    assert "stopped delivering frames" in caplog.text and "reconnected" in caplog.text


def test_camera_gone_for_good_raises_after_bounded_attempts(camera):
    cam = camera([2, None])
    with WebcamSource(0, reconnect=FAST) as src:
        src.read(), src.read()
        t0 = time.monotonic()
        with pytest.raises(CameraError, match=r"disappeared.*4 reconnect attempt"):
            src.read()
        assert time.monotonic() - t0 < 2.0
    assert len(cam.opened) == 1 + FAST.max_attempts


def test_async_read_reraises_when_camera_is_gone(camera):
    camera([1, None])
    with WebcamSource(0, reconnect=FAST) as src:
        src.async_read(timeout_ms=1000)
        with pytest.raises(CameraError, match="disappeared"):
            src.async_read(timeout_ms=3000)


def test_close_during_backoff_is_prompt(camera):
    slow = ReconnectPolicy(
        failures_before_reconnect=1, max_attempts=3, initial_backoff_s=5.0, max_backoff_s=5.0
    )
    camera([1, None])
    src = WebcamSource(0, reconnect=slow)
    src.connect()
    src.async_read(timeout_ms=1000)
    time.sleep(0.1)  # the reader is now waiting 5 s before its first reconnect attempt
    t0 = time.monotonic()
    src.close()
    assert time.monotonic() - t0 < 1.0
    assert not any(t.name.startswith("source-webcam") for t in threading.enumerate())
