"""A stand-in for ``cv2.VideoCapture`` that injects camera failures (unplugging, hanging drivers).

Only failures are simulated: frames are plain arrays, and everything downstream of the capture object
(the source's reconnect logic, threads, colour conversion, intrinsics) runs for real.
"""

from __future__ import annotations

import threading
import time

import numpy as np


class FakeCamera:
    """Scripts what each ``VideoCapture`` opened on the fake device does.

    Args:
        sessions: One entry per open attempt: None = the device is absent (isOpened() is False), an int =
            it delivers that many frames and then every grab fails (unplugged), ``"forever"`` = it keeps
            delivering. Attempts past the list behave like the last entry.
        size: (height, width) of the frames.
        frame_interval_s: Time one grab takes (a camera's frame period).
        block_after: If set, the grab after this many frames blocks until :attr:`unblock` is set.
    """

    def __init__(self, sessions, size=(48, 64), frame_interval_s=0.0, block_after=None):
        self.sessions = list(sessions)
        self.size = size
        self.frame_interval_s = frame_interval_s
        self.block_after = block_after
        self.unblock = threading.Event()
        self.opened: list[FakeCapture] = []

    def __call__(self, device, api_preference=0):
        i = len(self.opened)
        plan = self.sessions[min(i, len(self.sessions) - 1)]
        cap = FakeCapture(self, plan)
        self.opened.append(cap)
        return cap


class FakeCapture:
    def __init__(self, camera: FakeCamera, plan):
        self.camera = camera
        self.plan = plan
        self.delivered = 0
        self.released = False
        self.props: dict[int, float] = {}

    def isOpened(self):  # noqa: N802 - OpenCV's name
        return self.plan is not None and not self.released

    def set(self, prop, value):
        self.props[prop] = value
        return True

    def get(self, prop):
        return self.props.get(prop, 30.0 if prop == 5 else 0.0)  # 5 = CAP_PROP_FPS

    def grab(self):
        cam = self.camera
        if cam.block_after is not None and self.delivered >= cam.block_after:
            cam.unblock.wait()  # a driver stuck in a read
            return False
        if self.released or self.plan is None or (self.plan != "forever" and self.delivered >= self.plan):
            return False
        if cam.frame_interval_s:
            time.sleep(cam.frame_interval_s)
        self.delivered += 1
        return True

    def retrieve(self):
        h, w = self.camera.size
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 0] = 255  # pure blue in BGR
        img[0, 0, 1] = self.delivered % 256
        return True, img

    def release(self):
        self.released = True
