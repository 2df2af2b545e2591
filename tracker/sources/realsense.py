"""``realsense`` (a live Intel RealSense camera) and ``realsense:RECORDING`` (a ``.bag`` / ``.db3`` file).

Both deliver RGB colour with uint16 depth aligned to it (``rs.align`` to the colour stream), the colour
stream's intrinsics and the depth scale, all read from the device or the recording. pyrealsense2 (extra
``realsense``) is imported only when a source connects, so ``import tracker`` works without it.

Playback reads a recording with the SDK's real-time mode off, so every frame comes out however slowly
the consumer reads; ``realtime=True`` then paces the frames by their recorded timestamps. Two SDK
behaviours are handled here: the syncer hands out the first frames of a recording unpaired (so a lone
depth frame is held and joined with the next colour frame of the same time), and ``rs.align`` is skipped
when depth is already registered to colour (same intrinsics, identity extrinsics), where it would only
add its one-pixel rounding artefacts.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tracker.core.errors import CameraError, ConfigError
from tracker.core.types import Frame, Intrinsics
from tracker.pipeline.worker import Worker
from tracker.sources.base import FrameSource
from tracker.sources.reconnect import ReconnectPolicy, reconnect

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'facetrack[realsense]'"
#: How long playback may go without a frame while the SDK still reports "playing" before it is an error.
PLAYBACK_STALL_S = 10.0


def import_pyrealsense2() -> Any:
    """Imports pyrealsense2, or raises CameraError saying how to install it."""
    try:
        import pyrealsense2 as rs
    except ImportError as exc:
        raise CameraError(f"RealSense sources need the pyrealsense2 package: {INSTALL_HINT} ({exc})") from exc
    return rs


def intrinsics_from_rs(rs: Any, ri: Any) -> Intrinsics:
    """Converts ``rs.intrinsics`` to :class:`Intrinsics` (RealSense and OpenCV share the pixel-centre convention)."""
    coeffs = tuple(float(c) for c in ri.coeffs)
    if ri.model == rs.distortion.brown_conrady:
        distortion = coeffs  # k1 k2 p1 p2 k3, OpenCV's order and meaning
    else:
        if any(coeffs) and ri.model != rs.distortion.none:
            log.warning(
                "RealSense distortion model %s has no OpenCV equivalent; treating the image as undistorted",
                ri.model,
            )
        distortion = (0.0,) * 5
    return Intrinsics(
        float(ri.fx), float(ri.fy), float(ri.ppx), float(ri.ppy), int(ri.width), int(ri.height), distortion
    )


def color_to_rgb(rs: Any, frame: Any) -> np.ndarray:
    """(H,W,3) uint8 RGB copy of a colour frame in any of the formats RealSense cameras record."""
    data = np.asanyarray(frame.get_data())
    fmt = frame.get_profile().format()
    if fmt == rs.format.rgb8:
        return np.array(data, dtype=np.uint8, copy=True)
    conversions = {
        rs.format.bgr8: cv2.COLOR_BGR2RGB,
        rs.format.rgba8: cv2.COLOR_RGBA2RGB,
        rs.format.bgra8: cv2.COLOR_BGRA2RGB,
        rs.format.yuyv: cv2.COLOR_YUV2RGB_YUY2,
        rs.format.uyvy: cv2.COLOR_YUV2RGB_UYVY,
    }
    if fmt in conversions:
        if fmt in (rs.format.yuyv, rs.format.uyvy):
            data = data.reshape(frame.get_height(), frame.get_width(), 2)
        return cv2.cvtColor(data, conversions[fmt])
    if fmt in (rs.format.y8,):
        return cv2.cvtColor(np.ascontiguousarray(data), cv2.COLOR_GRAY2RGB)
    raise CameraError(
        f"colour format {fmt} is not supported; record colour as rgb8, bgr8, rgba8, bgra8, yuyv or y8"
    )


def _same_geometry(rs: Any, depth_profile: Any, color_profile: Any) -> bool:
    """True when depth is already registered to colour: same intrinsics and identity extrinsics."""
    di = depth_profile.as_video_stream_profile().get_intrinsics()
    ci = color_profile.as_video_stream_profile().get_intrinsics()
    same_k = (di.width, di.height) == (ci.width, ci.height) and np.allclose(
        [di.fx, di.fy, di.ppx, di.ppy, *di.coeffs], [ci.fx, ci.fy, ci.ppx, ci.ppy, *ci.coeffs], atol=1e-6
    )
    if not same_k:
        return False
    e = depth_profile.get_extrinsics_to(color_profile)
    return np.allclose(e.rotation, np.eye(3).ravel(), atol=1e-9) and np.allclose(
        e.translation, 0.0, atol=1e-9
    )


class _FramesetDecoder:
    """Turns SDK framesets into (colour RGB, aligned depth, depth scale, timestamp ms).

    Holds the aligner and, for the syncer's unpaired frames, the last lone depth frame plus a small
    processing block that joins a lone depth and a lone colour frame into one frameset for ``rs.align``.
    """

    def __init__(self, rs: Any, color_profile: Any, depth_profile: Any | None, depth_scale_m: float) -> None:
        self.rs = rs
        self.depth_scale_m = depth_scale_m
        self.has_depth = depth_profile is not None
        self.aligner = None
        if depth_profile is not None:
            try:
                registered = _same_geometry(rs, depth_profile, color_profile)
            except RuntimeError as exc:
                raise CameraError(
                    f"the depth stream has no extrinsics to the colour stream, so depth cannot be aligned ({exc})"
                ) from exc
            if not registered:
                self.aligner = rs.align(rs.stream.color)
        fps = float(color_profile.fps() or 30)
        self.pair_tolerance_ms = 0.5 * 1000.0 / fps
        self._held_depth = None
        # The block's callback captures only this list (not self): no reference cycle, so the SDK objects
        # go away as soon as the source lets go of them instead of at some later garbage collection.
        pair: list = []
        self._pair = pair
        self._joined = rs.frame_queue(1, keep_frames=True)
        self._joiner = rs.processing_block(
            lambda _f, src: src.frame_ready(src.allocate_composite_frame(pair))
        )
        self._joiner.start(self._joined)

    def decode(self, frames: Any) -> tuple[np.ndarray, np.ndarray | None, float, float] | None:
        """Decodes one syncer output; None when it only held a lone depth frame for later."""
        rs = self.rs
        fs = frames.as_frameset()
        color = fs.get_color_frame()
        depth = fs.get_depth_frame() if self.has_depth else None
        if not color:
            if depth:
                self._held_depth = depth  # the syncer's unpaired first frames: wait for the colour frame
            return None
        if self.has_depth and not depth:
            held = self._held_depth
            if held and abs(held.get_timestamp() - color.get_timestamp()) <= self.pair_tolerance_ms:
                self._pair[:] = [held, color]
                self._joiner.invoke(held)
                fs = self._joined.wait_for_frame(1000).as_frameset()
                depth = fs.get_depth_frame()
            self._held_depth = None
        depth_img = None
        scale = self.depth_scale_m
        if depth:
            if self.aligner is not None:
                fs = self.aligner.process(fs)
                depth = fs.get_depth_frame()
                color = fs.get_color_frame()
            depth_img = np.array(np.asanyarray(depth.get_data()), dtype=np.uint16, copy=True)
            units = depth.as_depth_frame().get_units()
            scale = float(units) if units > 0 else scale
        return color_to_rgb(rs, color), depth_img, scale, float(color.get_timestamp())

    def close(self) -> None:
        # A processing block has no stop(); dropping the references releases the SDK frames it holds.
        self._held_depth = None
        self._pair.clear()


class RealSensePlayback(FrameSource):
    """Plays back a RealSense recording (``.bag`` from the SDK/viewer, ``.db3`` from SDK 2.59+).

    Args:
        path: The recording.
        realtime: Pace frames by their recorded timestamps; False returns them as fast as they decode.
        align_depth: Align depth to colour (off only to inspect the raw depth; it then has the depth
            stream's own size and cannot go into a :class:`Frame` unless the sizes match).

    Attributes:
        depth_scale_m: Metres per depth unit, from the recording.
        fps: Colour frame rate the recording declares.
        aligns_depth: Whether depth goes through ``rs.align`` (False when the recording's depth is already
            registered to colour, or has no depth).
    """

    is_live = False

    def __init__(self, path: str | Path, *, realtime: bool = False, align_depth: bool = True) -> None:
        self.path = Path(path)
        super().__init__(f"realsense:{self.path}")
        self.realtime = bool(realtime)
        self.align_depth = bool(align_depth)
        self._rs: Any = None
        self._ctx = self._device = self._playback = self._syncer = None
        self._sensors: list = []
        self._resumer: Worker | None = None
        self._decoder: _FramesetDecoder | None = None
        self._intrinsics: Intrinsics | None = None
        self._index = 0
        self._t0 = 0.0
        self._ts0_ms = 0.0
        self.depth_scale_m = 0.001
        self.fps = 30.0
        self.aligns_depth = False


    def _open(self) -> None:
        if not self.path.is_file():
            raise CameraError(f"RealSense recording not found: {self.path}")
        rs = self._rs = import_pyrealsense2()
        self._ctx = rs.context()
        try:
            self._device = self._ctx.load_device(str(self.path))
        except RuntimeError as exc:
            raise CameraError(
                f"cannot read RealSense recording {self.path}: {exc}. The file is corrupt, truncated, or not a "
                "RealSense .bag/.db3 recording"
            ) from exc
        try:
            self._start_playback(rs)
        except BaseException:
            self._release()
            raise

    def _start_playback(self, rs: Any) -> None:
        playback = self._playback = self._device.as_playback()
        playback.set_real_time(False)  # never drop frames; realtime pacing happens in _read_next
        color_p = depth_p = None
        wanted: dict[int, tuple[Any, list]] = {}
        for i, sensor in enumerate(self._device.query_sensors()):
            for p in sensor.get_stream_profiles():
                if not p.is_video_stream_profile():
                    continue
                if p.stream_type() == rs.stream.color and color_p is None:
                    color_p = p
                elif p.stream_type() == rs.stream.depth and depth_p is None and self.align_depth:
                    depth_p = p
                else:
                    continue
                wanted.setdefault(i, (sensor, []))[1].append(p)
        if color_p is None:
            raise CameraError(
                f"{self.path}: the recording has no colour stream (facetrack needs colour, depth is optional)"
            )
        self._intrinsics = intrinsics_from_rs(rs, color_p.as_video_stream_profile().get_intrinsics())
        self.fps = float(color_p.fps() or 30)
        if depth_p is not None:
            try:
                self.depth_scale_m = float(self._device.first_depth_sensor().get_depth_scale())
            except RuntimeError:
                log.warning("%s: no depth scale in the recording; assuming 1 mm", self.path)
        self._decoder = _FramesetDecoder(rs, color_p, depth_p, self.depth_scale_m)
        self.aligns_depth = self._decoder.aligner is not None
        self._syncer = rs.syncer(4)
        # Paused while the sensors start one after another, so the first sensor's frames are not played
        # before the second sensor listens. resume() waits until the SDK's read thread has delivered a
        # frame, which (real-time mode off) waits for a consumer: resume on a helper thread, so the
        # reader here is that consumer, instead of deadlocking until the SDK's 10 s timeout.
        playback.pause()
        for sensor, profiles in wanted.values():
            sensor.open(profiles)
            sensor.start(self._syncer)
            self._sensors.append(sensor)
        self._resumer = Worker(f"resume-{self.source_id}", lambda _stop: self._resume()).start()
        self._index = 0

    def _resume(self) -> None:
        try:
            self._playback.resume()
        except (RuntimeError, AttributeError) as exc:  # closed meanwhile
            log.debug("%s: resume: %s", self.source_id, exc)

    def _release(self) -> None:
        for sensor in self._sensors:
            for op in (sensor.stop, sensor.close):
                try:
                    op()
                except RuntimeError as exc:  # already stopped / closed
                    log.debug("%s: %s", self.source_id, exc)
        self._sensors = []
        if self._resumer is not None:
            self._resumer.join(1.0)  # returns once the stopped sensors release the read thread
            self._resumer = None
        if self._decoder is not None:
            self._decoder.close()
        self._decoder = None
        self._syncer = self._playback = self._device = self._ctx = None

    def _next_frames(self) -> Any | None:
        """The syncer's next output, or None at the end of the recording (or when closing)."""
        rs = self._rs
        t_start = time.monotonic()
        while not self._stop.is_set():
            ok, frames = self._syncer.try_wait_for_frames(100)
            if ok:
                return frames
            resuming = self._resumer is not None and self._resumer.is_alive
            # Until resume() has run, "stopped" means "not started yet", not the end of the file.
            if not resuming and self._playback.current_status() == rs.playback_status.stopped:
                ok, frames = self._syncer.try_wait_for_frames(50)  # frames queued just before the end
                return frames if ok else None
            if time.monotonic() - t_start > PLAYBACK_STALL_S:
                raise CameraError(
                    f"{self.path}: playback stalled (no frame for {PLAYBACK_STALL_S:.0f} s); the recording may be damaged"
                )
        return None

    def _read_next(self) -> Frame | None:
        if self._syncer is None:
            return None
        while True:
            frames = self._next_frames()
            if frames is None:
                return None
            try:
                decoded = self._decoder.decode(frames)
            except RuntimeError as exc:
                raise CameraError(f"{self.path}: cannot decode a frame: {exc}") from exc
            if decoded is not None:
                break
        rgb, depth, scale, ts_ms = decoded
        if self.realtime:
            if self._index == 0:
                self._t0, self._ts0_ms = time.monotonic(), ts_ms
            wait = self._t0 + (ts_ms - self._ts0_ms) / 1e3 - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return None
        return self._make_frame(rgb, depth, scale, ts_ms)

    def _make_frame(self, rgb: np.ndarray, depth: np.ndarray | None, scale: float, ts_ms: float) -> Frame:
        k = self._intrinsics
        if depth is not None and depth.shape != rgb.shape[:2]:
            raise CameraError(
                f"{self.source_id}: depth {depth.shape} is not aligned to colour {rgb.shape[:2]}"
            )
        frame = Frame(
            index=self._index, t_capture_ns=time.monotonic_ns(), color=rgb, intrinsics=k, depth=depth,
            depth_scale_m=scale, source_id=self.source_id, t_media_ns=round(ts_ms * 1e6),
        )  # fmt: skip
        self._index += 1
        return frame


class RealSenseSource(FrameSource):
    """A live Intel RealSense camera (D400 series and similar): colour + depth aligned to colour.

    Args:
        width, height, fps: Stream mode for both colour and depth (640x480 at 30 fps works on every
            D400 camera; ``rs-enumerate-devices`` lists the others).
        serial: Serial number of the camera to open when several are connected; None takes the first.
        depth: Also stream depth (False gives colour-only frames).
        timeout_ms: How long one read waits for a frameset before it counts as a failed read.
        reconnect: What to do when reads fail (the camera was unplugged or reset).

    Attributes:
        depth_scale_m: Metres per depth unit, from the device.
        aligns_depth: Whether depth goes through ``rs.align`` (always, for a real camera's depth).
    """

    is_live = True

    def __init__(
        self,
        *,
        width: int = 640,
        height: int = 480,
        fps: int = 30,
        serial: str | None = None,
        depth: bool = True,
        timeout_ms: float = 1000.0,
        reconnect: ReconnectPolicy | None = None,
    ) -> None:
        super().__init__("realsense" if serial is None else f"realsense:{serial}")
        for name, v in (("width", width), ("height", height), ("fps", fps), ("timeout_ms", timeout_ms)):
            if not v > 0:
                raise ConfigError(f"realsense {name} must be > 0, got {v}")
        self.width, self.height, self.fps = int(width), int(height), int(fps)
        self.serial = serial
        self.depth = bool(depth)
        self.timeout_ms = float(timeout_ms)
        self.policy = reconnect if reconnect is not None else ReconnectPolicy(failures_before_reconnect=3)
        self._rs: Any = None
        self._pipeline = None
        self._decoder: _FramesetDecoder | None = None
        self._intrinsics: Intrinsics | None = None
        self._index = 0
        self._failures = 0
        self.depth_scale_m = 0.001
        self.aligns_depth = False


    def _open(self) -> None:
        self._rs = import_pyrealsense2()
        self._index = 0
        self._start()

    def _start(self) -> None:
        rs = self._rs
        ctx = rs.context()
        serials = [d.get_info(rs.camera_info.serial_number) for d in ctx.query_devices()]
        if not serials:
            raise CameraError(
                "realsense: no Intel RealSense camera found (pyrealsense2 sees no device). Connect a D400-series "
                "camera to a USB 3 port, check it with `rs-enumerate-devices`, or play a recording with "
                "realsense:FILE.bag"
            )
        if self.serial is not None and self.serial not in serials:
            raise CameraError(
                f"realsense: no camera with serial {self.serial}; connected: {', '.join(serials)}"
            )
        cfg = rs.config()
        if self.serial is not None:
            cfg.enable_device(self.serial)
        cfg.enable_stream(rs.stream.color, self.width, self.height, rs.format.rgb8, self.fps)
        if self.depth:
            cfg.enable_stream(rs.stream.depth, self.width, self.height, rs.format.z16, self.fps)
        pipeline = rs.pipeline(ctx)
        try:
            profile = pipeline.start(cfg)
        except RuntimeError as exc:
            raise CameraError(
                f"realsense: cannot stream {self.width}x{self.height} at {self.fps} fps ({exc}); pick a mode the "
                "camera supports (`rs-enumerate-devices`) or check that no other program uses it"
            ) from exc
        color_p = profile.get_stream(rs.stream.color)
        depth_p = profile.get_stream(rs.stream.depth) if self.depth else None
        if depth_p is not None:
            self.depth_scale_m = float(profile.get_device().first_depth_sensor().get_depth_scale())
        self._intrinsics = intrinsics_from_rs(rs, color_p.as_video_stream_profile().get_intrinsics())
        self._decoder = _FramesetDecoder(rs, color_p, depth_p, self.depth_scale_m)
        self.aligns_depth = self._decoder.aligner is not None
        self._pipeline = pipeline
        self._failures = 0

    def _stop_pipeline(self) -> None:
        pipeline, self._pipeline = self._pipeline, None
        if pipeline is not None:
            try:
                pipeline.stop()
            except RuntimeError as exc:
                log.debug("realsense: %s", exc)
        if self._decoder is not None:
            self._decoder.close()
            self._decoder = None

    def _reopen(self) -> None:
        self._stop_pipeline()
        self._start()

    def _release(self) -> None:
        self._stop_pipeline()

    def _read_next(self) -> Frame | None:
        while not self._stop.is_set():
            ok, frames = (
                self._pipeline.try_wait_for_frames(int(self.timeout_ms)) if self._pipeline else (False, None)
            )
            if ok:
                decoded = self._decoder.decode(frames)
                if decoded is None:
                    continue
                self._failures = 0
                rgb, depth, scale, ts_ms = decoded
                frame = Frame(
                    index=self._index, t_capture_ns=time.monotonic_ns(), color=rgb, intrinsics=self._intrinsics,
                    depth=depth, depth_scale_m=scale, source_id=self.source_id, t_media_ns=round(ts_ms * 1e6),
                )  # fmt: skip
                self._index += 1
                return frame
            self._failures += 1
            if self._failures < self.policy.failures_before_reconnect:
                continue
            log.warning("%s: no frames for %d reads; reconnecting", self.source_id, self._failures)
            out = reconnect(self.source_id, self._reopen, self.policy, self._stop)
            if not (out.ok or out.stopped):
                raise CameraError(
                    f"{self.source_id}: the camera stopped delivering frames and {out.attempts} reconnect attempt(s) "
                    f"over {out.waited_s:.1f} s failed ({out.last_error}); check the USB 3 cable and port"
                )
        return None
