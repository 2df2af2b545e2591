"""The preview viewer: a subscriber that draws the ICT head with the received coefficients.

Each received result is rendered from the tracking camera's point of view (intrinsics from the stream
metadata), so a head appears where the performer is in the camera image, with the received identity,
expression, pose and (optionally) lighting; the 68 received landmarks are dotted over it, and a HUD
shows the frame rate, the end-to-end latency (capture -> shown, from the capture timestamp; same host
only) and the face count. Frames go to a window (OpenCV) when a display exists, or into a video file.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from tracker.core.errors import ConfigError, RenderError
from tracker.core.face_model.sh import sh_ambient, sh_directional
from tracker.core.types import FaceCoefficients, Intrinsics
from tracker.render import Renderer, procedural_albedo
from tracker.stream.protocol import StreamResult

log = logging.getLogger(__name__)

#: Camera used before metadata with intrinsics has arrived (or when the publisher sends none).
DEFAULT_INTRINSICS = Intrinsics.from_fov(640, 480, 60.0)
BACKGROUND_RGB = (28, 30, 40)
#: A soft front light from above: the head reads as 3D whatever lighting the tracker estimated.
STUDIO_LIGHT = sh_ambient((0.55, 0.55, 0.55)) + sh_directional((0.3, -0.6, -1.0), (0.6, 0.6, 0.6))
_LANDMARK_RGB = (90, 255, 140)
_HUD_RGB = (235, 235, 235)


def has_display() -> bool:
    """Whether a window can be opened (an X11 or Wayland display is set)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@dataclasses.dataclass(frozen=True)
class ViewerStats:
    """What a viewer run showed.

    Attributes:
        frames: Frames shown or written.
        fps: Mean frames per second over the run.
        latency_ms: Capture -> shown latency percentiles ``p50``, ``p95`` (empty when nothing was shown).
        faces_max: Most faces in one frame.
    """

    frames: int
    fps: float
    latency_ms: dict[str, float]
    faces_max: int


class HeadView:
    """Renders received results into RGB frames with a HUD.

    Args:
        renderer: The OpenGL renderer (its face model is used).
        size: Output (width, height); None uses the camera's size from the metadata.
        lighting: ``"studio"`` (a fixed soft light) or ``"received"`` (the tracker's SH estimate).
        landmarks: Dot the received 68 landmarks over the head.
    """

    def __init__(self, renderer: Renderer, *, size: tuple[int, int] | None = None, lighting: str = "studio",
                 landmarks: bool = True) -> None:  # fmt: skip
        if lighting not in ("studio", "received"):
            raise ConfigError(f"lighting must be 'studio' or 'received', got {lighting!r}")
        self.renderer = renderer
        self.size = size
        self.lighting = lighting
        self.landmarks = landmarks
        self.albedo = procedural_albedo(renderer.model, seed=3)

    def intrinsics_for(self, msg: StreamResult | None) -> tuple[Intrinsics, np.ndarray]:
        """The view camera and (sx, sy), the scale from the tracking camera's pixels to the view's."""
        cam = DEFAULT_INTRINSICS
        if msg is not None and msg.metadata.intrinsics is not None:
            cam = msg.metadata.intrinsics
        if self.size is None or (cam.width, cam.height) == tuple(self.size):
            return cam, np.ones(2)
        scale = np.array([self.size[0] / cam.width, self.size[1] / cam.height])
        return cam.scaled(*scale), scale

    def draw(self, msg: StreamResult | None, hud: str) -> np.ndarray:
        """One (H,W,3) uint8 RGB frame: every face of ``msg`` that is not lost, landmarks, HUD."""
        cam, scale = self.intrinsics_for(msg)
        h, w = cam.height, cam.width
        image = np.empty((h, w, 3), np.uint8)
        image[:] = BACKGROUND_RGB
        depth = np.full((h, w), np.inf, np.float32)
        faces = [f for f in msg.result.faces if f.state != "lost"] if msg is not None else []
        for face in faces:
            k = min(face.identity.shape[0], self.renderer.model.num_identities)
            lighting = face.lighting if self.lighting == "received" else STUDIO_LIGHT
            params = FaceCoefficients(
                face.identity[:k], face.expression, face.rotation, face.translation_m, lighting
            )
            out = self.renderer.render(params, cam, self.albedo, background=BACKGROUND_RGB)
            # Composite faces by depth so that several people occlude each other correctly.
            nearer = (out.depth_m > 0) & (out.depth_m < depth)
            image[nearer] = out.rgb[nearer]
            depth[nearer] = out.depth_m[nearer]
        if self.landmarks:
            for face in faces:
                for x, y in (face.landmarks68 + 0.5) * scale - 0.5:  # pixel-centre exact
                    if 0 <= x < w and 0 <= y < h:
                        cv2.circle(image, (int(round(x)), int(round(y))), 1, _LANDMARK_RGB, -1, cv2.LINE_AA)
        cv2.rectangle(image, (0, 0), (w, 24), (0, 0, 0), -1)
        cv2.putText(image, hud, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, _HUD_RGB, 1, cv2.LINE_AA)
        return image


# ------------------------------------------------------------------------------------------------ sinks
class WindowSink:
    """Shows frames in an OpenCV window; ``write`` returns False once the user pressed q/Esc or closed it."""

    def __init__(self, title: str = "facetrack view") -> None:
        self.title = title
        try:
            cv2.namedWindow(title, cv2.WINDOW_AUTOSIZE)
        except cv2.error as exc:
            raise RenderError(
                f"cannot open a window ({exc}); use --out FILE.mp4 to write a video instead"
            ) from exc

    def write(self, rgb: np.ndarray) -> bool:
        cv2.imshow(self.title, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        key = cv2.waitKey(1) & 0xFF
        visible = cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) >= 1
        return key not in (ord("q"), 27) and visible

    def close(self) -> None:
        cv2.destroyWindow(self.title)


class VideoSink:
    """Writes frames to a video file (mp4v), created at the first frame's size."""

    def __init__(self, path: str | os.PathLike, fps: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = float(fps)
        self._writer: cv2.VideoWriter | None = None
        self.frames = 0

    def write(self, rgb: np.ndarray) -> bool:
        if self._writer is None:
            h, w = rgb.shape[:2]
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self._writer.isOpened():
                raise RenderError(f"cannot write video {self.path} (mp4v codec unavailable?)")
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames += 1
        return True

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None


# ------------------------------------------------------------------------------------------------- loop
def run_viewer(
    subscriber,
    view: HeadView,
    sinks: list,
    *,
    stop: threading.Event | None = None,
    duration_s: float | None = None,
    max_frames: int | None = None,
    idle_timeout_s: float | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> ViewerStats:
    """Receives, renders and shows the newest result until stopped.

    A backlog is skipped (the newest result is drawn), so a slow renderer never falls behind the stream.

    Args:
        subscriber: A connected :class:`~tracker.stream.subscriber.Subscriber`.
        view: Draws the frames.
        sinks: Objects with ``write(rgb) -> bool`` (False ends the run) and ``close()``.
        stop: Ends the run when set.
        duration_s: Ends after this long.
        max_frames: Ends after this many frames.
        idle_timeout_s: Ends after this long without a result (None: wait forever).
        on_frame: Called with the frame count after each frame (e.g. a progress bar).
    """
    t0 = time.monotonic()
    shown = collections.deque(maxlen=30)  # times of the last frames, for the HUD's fps
    latencies: list[float] = []
    frames, faces_max, last_data = 0, 0, time.monotonic()
    running = True
    while running and not (stop is not None and stop.is_set()):
        now = time.monotonic()
        if duration_s is not None and now - t0 >= duration_s:
            break
        if max_frames is not None and frames >= max_frames:
            break
        if idle_timeout_s is not None and now - last_data >= idle_timeout_s:
            log.info("no data for %.1f s; stopping", idle_timeout_s)
            break
        msg = subscriber.recv_latest(100)
        if msg is None:
            continue
        last_data = time.monotonic()
        fps = (len(shown) - 1) / (shown[-1] - shown[0]) if len(shown) > 1 and shown[-1] > shown[0] else 0.0
        n_faces = sum(f.state != "lost" for f in msg.result.faces)
        # The HUD shows the previous frame's capture -> shown latency (this one is not shown yet).
        latency_ms = latencies[-1] if latencies else (time.monotonic_ns() - msg.result.t_capture_ns) / 1e6
        hud = (f"{fps:5.1f} fps | latency {latency_ms:6.1f} ms | faces {n_faces} | frame {msg.result.frame_index}"
               f" | lost {subscriber.stats().gaps}")  # fmt: skip
        rgb = view.draw(msg, hud)
        for sink in sinks:
            running = sink.write(rgb) and running
        # Latency as the user sees it: from capture until the frame is handed to the screen or file.
        latencies.append((time.monotonic_ns() - msg.result.t_capture_ns) / 1e6)
        shown.append(time.monotonic())
        frames += 1
        faces_max = max(faces_max, n_faces)
        if on_frame is not None:
            on_frame(frames)
    elapsed = time.monotonic() - t0
    lat = np.asarray(latencies)
    pct = {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95))} if len(lat) else {}
    return ViewerStats(frames, frames / elapsed if elapsed > 0 else 0.0, pct, faces_max)
