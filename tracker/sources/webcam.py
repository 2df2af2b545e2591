"""``webcam:N``: a USB or built-in camera through OpenCV's VideoCapture.

Frames carry ``time.monotonic_ns()`` taken right after ``grab()`` returns (before decoding), which is the
closest the host sees to the exposure. A camera that stops delivering frames is reported and reopened
with bounded backoff (:mod:`tracker.sources.reconnect`); its intrinsics come from a calibration file or,
without one, from the assumed camera (:meth:`tracker.core.types.Intrinsics.assumed`).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import cv2
import numpy as np

from calibration.intrinsics import resolve_intrinsics
from tracker.core.errors import CameraError, ConfigError
from tracker.core.types import Frame, Intrinsics
from tracker.sources.base import FrameSource
from tracker.sources.reconnect import ReconnectPolicy, reconnect

log = logging.getLogger(__name__)


class WebcamSource(FrameSource):
    """A live camera opened with ``cv2.VideoCapture``.

    Args:
        device: Camera index (0 is the first camera) or a device path such as ``/dev/video2``.
        width, height: Requested resolution, px (the driver may pick the nearest it supports; the frames'
            actual size wins). None keeps the driver's default.
        fps: Requested frame rate; None keeps the default.
        fourcc: Requested pixel format, e.g. ``"MJPG"`` (many USB cameras reach 30 fps at 1280x720 only
            compressed). None keeps the default.
        calibration: Calibration JSON file or :class:`Intrinsics`; None uses the default FOV guess.
        reconnect: What to do when reads fail; the default reopens up to 6 times over about 12 s.
        api_preference: OpenCV capture backend (``cv2.CAP_ANY``, ``cv2.CAP_V4L2``, ``cv2.CAP_DSHOW``...).
    """

    is_live = True

    def __init__(
        self,
        device: int | str = 0,
        *,
        width: int | None = None,
        height: int | None = None,
        fps: float | None = None,
        fourcc: str | None = None,
        calibration: str | Path | Intrinsics | None = None,
        reconnect: ReconnectPolicy | None = None,
        api_preference: int = cv2.CAP_ANY,
    ) -> None:
        super().__init__(f"webcam:{device}")
        for name, v in (("width", width), ("height", height), ("fps", fps)):
            if v is not None and not v > 0:
                raise ConfigError(f"webcam {name} must be > 0, got {v}")
        if fourcc is not None and len(fourcc) != 4:
            raise ConfigError(f"fourcc must be 4 characters such as 'MJPG', got {fourcc!r}")
        self.device = device
        self.width, self.height, self.requested_fps, self.fourcc = width, height, fps, fourcc
        self.calibration = calibration
        self.policy = reconnect if reconnect is not None else ReconnectPolicy()
        self.api_preference = api_preference
        self._cap: cv2.VideoCapture | None = None
        # Held while a read is inside the driver, so close() never releases the device under it.
        self._cap_lock = threading.Lock()
        self._release_deferred = False
        self._pending: tuple[int, np.ndarray] | None = None
        self._intrinsics: Intrinsics | None = None
        self._index = 0
        self._failures = 0
        self.fps = 0.0
        self.reconnects = 0


    # ----------------------------------------------------------------- device
    def _open_capture(self) -> None:
        """Opens the device and reads one frame (kept for the first read); raises CameraError."""
        cap = cv2.VideoCapture(self.device, self.api_preference)
        if not cap.isOpened():
            cap.release()
            dev = f"/dev/video{self.device}" if isinstance(self.device, int) else str(self.device)
            raise CameraError(
                f"{self.source_id}: cannot open camera {self.device!r} with OpenCV. Check that it is plugged in "
                f"and not in use by another program, that you may read {dev} (Linux: be in group 'video'), "
                "or try another index such as webcam:1 (`v4l2-ctl --list-devices` lists the cameras)"
            )
        if self.fourcc is not None:
            cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*self.fourcc))
        if self.width is not None:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, float(self.width))
        if self.height is not None:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, float(self.height))
        if self.requested_fps is not None:
            cap.set(cv2.CAP_PROP_FPS, float(self.requested_fps))
        grabbed = self._grab(cap)
        if grabbed is None:
            cap.release()
            raise CameraError(
                f"{self.source_id}: the camera opened but delivered no frame; another program may hold it, or "
                "the requested width/height/fps/fourcc is not supported (try without them)"
            )
        self._cap = cap
        self._pending = grabbed
        h, w = grabbed[1].shape[:2]
        if self.width is not None and (w, h) != (self.width, self.height or h):
            log.warning(
                "%s: asked for %sx%s, the camera delivers %dx%d",
                self.source_id,
                self.width,
                self.height,
                w,
                h,
            )
        if self._intrinsics is None or (self._intrinsics.width, self._intrinsics.height) != (w, h):
            self._intrinsics = resolve_intrinsics(w, h, self.calibration)
        self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)

    @staticmethod
    def _grab(cap: cv2.VideoCapture) -> tuple[int, np.ndarray] | None:
        """One frame as (capture time ns, BGR image), or None when the read failed."""
        if not cap.grab():
            return None
        t_ns = time.monotonic_ns()
        ok, bgr = cap.retrieve()
        if not ok or bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.size == 0:
            return None
        return t_ns, bgr

    def _open(self) -> None:
        self._index = 0
        self._failures = 0
        self._open_capture()

    def _reopen(self) -> None:
        self._release_capture()
        self._open_capture()
        self.reconnects += 1

    def _release_capture(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()

    def _release(self) -> None:
        self._pending = None
        if self._cap_lock.acquire(timeout=0.2):
            try:
                self._release_capture()
            finally:
                self._cap_lock.release()
        else:
            # The reader thread is blocked in the driver; it releases the device when the call returns.
            self._release_deferred = True

    # ----------------------------------------------------------------- frames
    def _read_next(self) -> Frame | None:
        while not self._stop.is_set():
            if self._pending is not None:
                grabbed, self._pending = self._pending, None
            else:
                with self._cap_lock:
                    grabbed = self._grab(self._cap) if self._cap is not None else None
                    if self._release_deferred:
                        self._release_capture()
                        return None
            if grabbed is not None:
                self._failures = 0
                return self._to_frame(*grabbed)
            self._failures += 1
            if self._failures < self.policy.failures_before_reconnect:
                self._stop.wait(0.01)  # a dropped frame; don't spin on a failing driver
                continue
            self._recover()
        return None

    def _recover(self) -> None:
        """Reopens the camera after repeated failed reads; raises CameraError when it stays gone."""
        n = self._failures
        log.warning(
            "%s: camera stopped delivering frames (%d failed reads in a row); reconnecting", self.source_id, n
        )
        out = reconnect(self.source_id, self._reopen, self.policy, self._stop)
        self._failures = 0
        if out.ok or out.stopped:
            return
        raise CameraError(
            f"{self.source_id}: the camera disappeared ({n} failed reads in a row) and {out.attempts} reconnect "
            f"attempt(s) over {out.waited_s:.1f} s failed{' (' + out.last_error + ')' if out.last_error else ''}. "
            "Check the cable and USB port and that no other program took the camera, then start again"
        )

    def _to_frame(self, t_ns: int, bgr: np.ndarray) -> Frame:
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        k = self._intrinsics
        if (rgb.shape[1], rgb.shape[0]) != (k.width, k.height):
            # Some drivers switch resolution after a reopen; keep the intrinsics consistent with the pixels.
            log.warning("%s: frame size changed to %dx%d", self.source_id, rgb.shape[1], rgb.shape[0])
            self._intrinsics = k = resolve_intrinsics(rgb.shape[1], rgb.shape[0], self.calibration)
        frame = Frame(index=self._index, t_capture_ns=t_ns, color=rgb, intrinsics=k, source_id=self.source_id)
        self._index += 1
        return frame
