"""The one interface every capture source implements, in the manner of lerobot's cameras.

``connect()`` opens the device or file, ``read()`` returns the next frame (blocking), ``async_read()``
returns the newest frame captured by a background thread (a latest-frame slot: live sources drop what
nobody asked for, because latency beats completeness), ``close()`` stops the thread and releases the
device. Sources are context managers. End of stream is ``read() -> None``; failures raise
:class:`~tracker.core.errors.CameraError` with a message that says what to do.
"""

from __future__ import annotations

import abc
import logging
import threading
import time

from tracker.core.errors import CameraError, CameraTimeoutError
from tracker.core.types import Frame, Intrinsics
from tracker.pipeline.worker import Worker

log = logging.getLogger(__name__)


class FrameSource(abc.ABC):
    """Base class of all capture sources.

    Subclasses implement :meth:`_open` (which sets ``self._intrinsics``), :meth:`_read_next` and
    :meth:`_release`; this class provides the
    connection state, the background reader thread with its latest-frame slot and the context manager.

    Attributes:
        source_id: Stable name of the source, e.g. ``"webcam:0"`` or ``"synthetic"``.
        is_live: True for cameras (frames keep coming, only the newest matters); False for files and
            generators, whose every frame is wanted.
        drop_when_behind: For a file or generator: behave like a camera, keeping only the newest frame when
            the consumer falls behind (``facetrack run --realtime``). Off by default: a file's every frame is
            tracked, paced or not.
        frames_dropped: Frames the background reader replaced before anyone took them (live sources and
            ``drop_when_behind`` only; a lossless source never drops).
    """

    is_live: bool = False
    drop_when_behind: bool = False

    def __init__(self, source_id: str) -> None:
        self.source_id = source_id
        self._intrinsics: Intrinsics | None = None
        self._connected = False
        self._lock = threading.Condition()
        self._latest: Frame | None = None
        self._latest_seq = 0
        self._consumed_seq = 0
        self._ended = False
        self._error: BaseException | None = None
        self._stop = threading.Event()
        self._thread: Worker | None = None
        self.frames_dropped = 0

    # --------------------------------------------------------------- subclass hooks
    @abc.abstractmethod
    def _open(self) -> None:
        """Opens the device or file; raises CameraError on failure."""

    @abc.abstractmethod
    def _read_next(self) -> Frame | None:
        """Blocks until the next frame; None at end of stream; raises CameraError on failure."""

    def _release(self) -> None:  # noqa: B027 - optional hook
        """Releases the device or file."""

    @property
    def intrinsics(self) -> Intrinsics:
        """Intrinsics of the colour stream; subclasses set ``self._intrinsics`` when they connect.

        Raises:
            CameraError: before :meth:`connect` (a camera's intrinsics come from the device).
        """
        if self._intrinsics is None:
            raise CameraError(f"{self.source_id}: intrinsics are known after connect()")
        return self._intrinsics

    # --------------------------------------------------------------- public API
    @property
    def lossless(self) -> bool:
        """True when every frame must be tracked: a file or generator read as fast as the consumer takes it.

        The reader then waits for each frame to be taken, and the pipeline blocks instead of dropping. A
        camera, or a file with ``drop_when_behind``, keeps only the newest frame (latency beats completeness).
        """
        return not self.is_live and not self.drop_when_behind

    @property
    def expected_frames(self) -> int | None:
        """How many frames the source will deliver, when known before reading (progress bars); else None."""
        return None

    @property
    def is_connected(self) -> bool:
        return self._connected

    def connect(self) -> None:
        if self._connected:
            return
        self._open()
        self._connected = True

    def read(self) -> Frame | None:
        """Reads the next frame synchronously; None at end of stream."""
        if not self._connected:
            raise CameraError(f"{self.source_id}: read() before connect()")
        if self._thread is not None:
            raise CameraError(f"{self.source_id}: read() while async_read() owns the device; use async_read()")
        return self._read_next()

    def async_read(self, timeout_ms: float = 1000.0) -> Frame | None:
        """Returns a frame newer than the last one returned, captured by the background thread.

        Args:
            timeout_ms: How long to wait for a new frame.

        Returns:
            The newest frame, or None at end of stream.

        Raises:
            CameraTimeoutError: when no new frame arrives in time.
            CameraError: re-raising the reader thread's failure.
        """
        if not self._connected:
            raise CameraError(f"{self.source_id}: async_read() before connect()")
        if self._thread is None:
            self._thread = Worker(f"source-{self.source_id}", lambda _stop: self._reader(), stop_event=self._stop).start()
        deadline = time.monotonic() + timeout_ms / 1e3
        with self._lock:
            while self._latest_seq == self._consumed_seq:
                if self._error is not None:
                    raise CameraError(f"{self.source_id}: {self._error}") from self._error
                if self._ended:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CameraTimeoutError(f"{self.source_id}: no frame within {timeout_ms:.0f} ms")
                self._lock.wait(remaining)
            self._consumed_seq = self._latest_seq
            self._lock.notify_all()  # a file reader waits for this before producing the next frame
            return self._latest

    def _reader(self) -> None:
        while not self._stop.is_set():
            try:
                frame = self._read_next()
            except BaseException as exc:  # handed to the caller of async_read
                with self._lock:
                    self._error = exc
                    self._lock.notify_all()
                return
            with self._lock:
                if frame is None:
                    self._ended = True
                    self._lock.notify_all()
                    return
                if self.lossless:
                    # A file or generator: wait until the consumer took the previous frame, so none is lost.
                    while self._latest_seq != self._consumed_seq and not self._stop.is_set():
                        self._lock.wait(0.05)
                elif self._latest_seq != self._consumed_seq:
                    self.frames_dropped += 1  # nobody took the previous frame: a camera moves on
                self._latest = frame
                self._latest_seq += 1
                self._lock.notify_all()

    def close(self) -> None:
        """Stops the reader thread (within about a second) and releases the device. Idempotent."""
        self._stop.set()
        with self._lock:
            self._lock.notify_all()
        if self._thread is not None:
            if not self._thread.join(1.0):
                log.warning("%s: the reader is blocked in the driver; the device is released anyway", self.source_id)
            self._thread = None
        if self._connected:
            self._connected = False
            self._release()

    def __enter__(self) -> FrameSource:
        self.connect()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self):
        """Iterates synchronously over frames until end of stream."""
        while (frame := self.read()) is not None:
            yield frame
