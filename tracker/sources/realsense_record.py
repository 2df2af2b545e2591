"""Writing RealSense recordings from any source with depth, through the SDK's own software device.

A ``rs.software_device`` gets a depth sensor (z16, with the depth-units option) and a colour sensor (rgb8),
each with a video stream carrying the intrinsics, and the extrinsics between the two streams (identity:
the frames of a facetrack source are already registered, colour and depth seen by one camera). An
``rs.recorder`` wraps the device; every :class:`~tracker.core.types.Frame` pushed in becomes one depth and one
colour frame of the recording. The file is the SDK's own format (pyrealsense2 2.59 writes ROS2 ``.db3``),
so :class:`~tracker.sources.realsense.RealSensePlayback`, the RealSense Viewer and any SDK program read it.

Depth may be written at its own resolution (``depth_size``), like a D400's depth camera: it is then
resampled to that size and playback has real alignment work to do.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from tracker.core.errors import ConfigError
from tracker.core.types import Frame, Intrinsics
from tracker.sources.base import FrameSource
from tracker.sources.realsense import import_pyrealsense2

log = logging.getLogger(__name__)

DEVICE_NAME = "facetrack software camera"


def _rs_intrinsics(rs: Any, k: Intrinsics) -> Any:
    ri = rs.intrinsics()
    ri.width, ri.height = k.width, k.height
    ri.fx, ri.fy, ri.ppx, ri.ppy = k.fx, k.fy, k.cx, k.cy
    if not k.has_distortion:
        ri.model, ri.coeffs = rs.distortion.none, [0.0] * 5
    elif len(k.distortion) == 5:
        ri.model, ri.coeffs = rs.distortion.brown_conrady, list(k.distortion)
    else:
        raise ConfigError(
            f"RealSense recordings hold 5 distortion terms (k1 k2 p1 p2 k3), got {len(k.distortion)}"
        )
    return ri


@dataclasses.dataclass
class _Stream:
    sensor: Any
    profile: Any
    bpp: int


class RealSenseRecordingWriter:
    """Records colour + depth frames into a RealSense ``.db3`` file.

    The streams are set up from the first frame written (its intrinsics, size and depth scale); later
    frames must match. Use as a context manager, or call :meth:`close`, which finishes the file.

    Args:
        path: Output file; must end in ``.db3`` (the format pyrealsense2 2.59 writes).
        fps: Nominal frame rate of the streams (the recording's timestamps carry the actual timing).
        depth_size: (width, height) of the depth stream; None writes depth at the colour size.
    """

    def __init__(
        self, path: str | Path, *, fps: float = 30.0, depth_size: tuple[int, int] | None = None
    ) -> None:
        self.path = Path(path)
        if self.path.suffix != ".db3":
            raise ConfigError(
                f"RealSense recordings are written as .db3 (pyrealsense2 2.59), got {self.path.name}"
            )
        if not fps > 0:
            raise ConfigError(f"fps must be > 0, got {fps}")
        if depth_size is not None and (len(depth_size) != 2 or min(depth_size) < 1):
            raise ConfigError(f"depth_size must be (width, height) in px, got {depth_size}")
        self.fps = float(fps)
        self.depth_size = None if depth_size is None else (int(depth_size[0]), int(depth_size[1]))
        self.frames_written = 0
        self._rs = import_pyrealsense2()
        self._device = self._recorder = None
        self._record_sensors: list = []
        self._color: _Stream | None = None
        self._depth: _Stream | None = None
        self._color_k: Intrinsics | None = None
        self._depth_k: Intrinsics | None = None
        self._depth_scale_m = 0.0

    # ------------------------------------------------------------------ setup
    def _setup(self, frame: Frame) -> None:
        rs = self._rs
        if frame.depth is None:
            raise ConfigError(
                f"frame {frame.index} of {frame.source_id or 'the source'} has no depth; a RealSense recording needs colour + depth"
            )
        self._color_k = k = frame.intrinsics
        self._depth_scale_m = frame.depth_scale_m
        dk = (
            k
            if self.depth_size is None
            else k.scaled(self.depth_size[0] / k.width, self.depth_size[1] / k.height)
        )
        self._depth_k = dk
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            self.path.unlink()  # the recorder refuses to overwrite
        dev = self._device = rs.software_device()
        dev.register_info(rs.camera_info.name, DEVICE_NAME)
        dev.register_info(rs.camera_info.serial_number, "0")
        depth_sensor = dev.add_sensor("Stereo Module")
        depth_sensor.add_read_only_option(rs.option.depth_units, float(frame.depth_scale_m))
        color_sensor = dev.add_sensor("RGB Camera")
        fps = max(1, round(self.fps))
        self._depth = _Stream(
            depth_sensor, self._add_stream(depth_sensor, rs.stream.depth, rs.format.z16, 2, dk, 0, fps), 2
        )
        self._color = _Stream(
            color_sensor, self._add_stream(color_sensor, rs.stream.color, rs.format.rgb8, 3, k, 1, fps), 3
        )
        identity = rs.extrinsics()
        identity.rotation = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        identity.translation = [0.0, 0.0, 0.0]
        # Without extrinsics between the streams rs.align cannot map depth onto colour at playback.
        self._depth.profile.register_extrinsics_to(self._color.profile, identity)
        self._recorder = rs.recorder(str(self.path), dev)
        for sensor in self._recorder.query_sensors():
            sensor.open(sensor.get_stream_profiles()[0])
            sensor.start(lambda _frame: None)  # the recorder writes; nobody else consumes
            self._record_sensors.append(sensor)

    @staticmethod
    def _add_stream(sensor: Any, stream: Any, fmt: Any, bpp: int, k: Intrinsics, uid: int, fps: int) -> Any:
        rs = import_pyrealsense2()
        vs = rs.video_stream()
        vs.type, vs.index, vs.uid = stream, 0, uid
        vs.width, vs.height, vs.fps, vs.bpp, vs.fmt = k.width, k.height, fps, bpp, fmt
        vs.intrinsics = _rs_intrinsics(rs, k)
        return sensor.add_video_stream(vs, True).as_video_stream_profile()

    # ------------------------------------------------------------------ frames
    def write(self, frame: Frame, timestamp_ms: float | None = None) -> None:
        """Appends one frame.

        Args:
            frame: Colour + depth (aligned to colour), as every facetrack source with depth delivers it.
            timestamp_ms: Recorded timestamp; default ``frames_written * 1000 / fps``.
        """
        if self._device is None:
            self._setup(frame)
        k = self._color_k
        if (frame.intrinsics.width, frame.intrinsics.height) != (k.width, k.height) or frame.depth is None:
            raise ConfigError(
                f"frame {frame.index}: every frame of a recording needs depth and the first frame's size {k.width}x{k.height}"
            )
        if frame.depth_scale_m != self._depth_scale_m:
            raise ConfigError(
                f"frame {frame.index}: depth scale changed from {self._depth_scale_m} to {frame.depth_scale_m}"
            )
        depth = frame.depth
        dk = self._depth_k
        if (dk.width, dk.height) != (k.width, k.height):
            # Pixel-centre-exact nearest neighbour, matching Intrinsics.scaled (never blends depth across edges).
            depth = cv2.resize(depth, (dk.width, dk.height), interpolation=cv2.INTER_NEAREST_EXACT)
        ts = self.frames_written * 1000.0 / self.fps if timestamp_ms is None else float(timestamp_ms)
        self._push(
            self._depth, np.ascontiguousarray(depth, dtype=np.uint16), ts, depth_units=self._depth_scale_m
        )
        self._push(self._color, np.ascontiguousarray(frame.color), ts)
        self.frames_written += 1

    def _push(
        self, stream: _Stream, pixels: np.ndarray, ts_ms: float, depth_units: float | None = None
    ) -> None:
        rs = self._rs
        f = rs.software_video_frame()
        f.pixels = pixels
        f.stride = pixels.shape[1] * stream.bpp
        f.bpp = stream.bpp
        f.timestamp = ts_ms
        f.domain = rs.timestamp_domain.hardware_clock
        f.frame_number = self.frames_written
        f.profile = stream.profile
        if depth_units is not None:
            f.depth_units = float(depth_units)
        stream.sensor.on_video_frame(f)

    def close(self) -> None:
        """Stops the streams and finishes the file (the SDK writes its index when the recorder is destroyed)."""
        for sensor in self._record_sensors:
            for op in (sensor.stop, sensor.close):
                try:
                    op()
                except RuntimeError as exc:
                    log.debug("recorder: %s", exc)
        self._record_sensors = []
        self._color = self._depth = None
        self._recorder = self._device = None
        gc.collect()  # the recorder flushes in its destructor; make sure no cycle keeps it alive

    def __enter__(self) -> RealSenseRecordingWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclasses.dataclass
class RecordingStats:
    """What :func:`record_realsense` wrote."""

    path: Path
    frames: int
    bytes: int
    seconds: float


def record_realsense(
    source: FrameSource,
    path: str | Path,
    *,
    frames: int | None = None,
    fps: float = 30.0,
    depth_size: tuple[int, int] | None = None,
    progress: bool = True,
) -> RecordingStats:
    """Records frames of ``source`` (which must deliver depth) into a RealSense ``.db3`` file.

    Args:
        source: Any frame source with depth, e.g. :class:`~tracker.sources.synthetic.SyntheticSource`;
            connected here if it is not yet (and closed again in that case).
        path: Output ``.db3`` file.
        frames: Stop after this many frames; None records until the source ends.
        fps: Nominal frame rate; live sources record their capture times, others ``index / fps``.
        depth_size: (width, height) of the depth stream; None keeps the colour size.
        progress: Show a progress bar.

    Returns:
        The file, frame count, size and wall time.
    """
    t0 = time.monotonic()
    owns = not source.is_connected
    if owns:
        source.connect()
    bar = tqdm(
        total=frames, unit="frame", desc=f"recording {Path(path).name}", disable=not progress, leave=False
    )
    first_ns = None
    try:
        with RealSenseRecordingWriter(path, fps=fps, depth_size=depth_size) as writer:
            while frames is None or writer.frames_written < frames:
                frame = source.read()
                if frame is None:
                    break
                ts = None
                if source.is_live:
                    first_ns = frame.t_capture_ns if first_ns is None else first_ns
                    ts = (frame.t_capture_ns - first_ns) / 1e6
                writer.write(frame, ts)
                bar.update()
            n = writer.frames_written
    finally:
        bar.close()
        if owns:
            source.close()
    if n == 0:
        raise ConfigError(f"{source.source_id} delivered no frames; nothing was recorded")
    path = Path(path)
    return RecordingStats(path, n, path.stat().st_size, time.monotonic() - t0)
