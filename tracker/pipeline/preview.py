"""The tracker's own preview: the fitted mesh drawn over the camera frame, with a HUD.

A pipeline sink (it runs on its own thread with a drop-oldest queue, so rendering never slows tracking).
Frames go to a window and/or a video file; a video keeps the source's timing by repeating the last
preview for frames the preview skipped, so a slow software renderer gives a choppier, not a faster, video.
"""

from __future__ import annotations

import collections
import logging
import time

import cv2
import numpy as np

from tracker.core.types import Frame, TrackResult
from tracker.render import FaceParams, Renderer

log = logging.getLogger(__name__)

_LANDMARK_RGB = (255, 210, 60)


class PreviewSink:
    """Draws tracking results over their frames.

    Args:
        renderer: OpenGL renderer (owned by the caller, or by this sink when ``owns_renderer``).
        outputs: Objects with ``write(rgb) -> bool`` and ``close()`` (e.g. the viewer's ``VideoSink`` or
            ``WindowSink``); a ``False`` from ``write`` means the user closed the window.
        mode: ``"wireframe"`` or ``"shaded"`` overlay.
        opacity: Overlay opacity in [0,1].
        fps: Source frame rate, for the video's timing.
    """

    def __init__(self, renderer: Renderer, outputs: list, *, mode: str = "wireframe", opacity: float = 0.6,
                 fps: float = 30.0, owns_renderer: bool = False) -> None:  # fmt: skip
        self.renderer = renderer
        self.outputs = outputs
        self.mode = mode
        self.opacity = opacity
        self.fps = fps
        self._owns = owns_renderer
        self._last: np.ndarray | None = None
        self._last_index: int | None = None
        self._shown = collections.deque(maxlen=30)
        self.closed_by_user = False
        self.frames_written = 0

    def draw(self, frame: Frame, result: TrackResult) -> np.ndarray:
        """(H,W,3) uint8 RGB: the frame, each tracked face's mesh and landmarks, and the HUD."""
        faces = [f for f in result.faces if f.state != "lost"]
        image = frame.color
        if faces:
            params = [FaceParams.from_face_state(f) for f in faces]
            image = self.renderer.overlay(image, params, frame.intrinsics, mode=self.mode, opacity=self.opacity)
        if not image.flags.writeable or image is frame.color:
            image = image.copy()  # never draw into the camera frame other stages may still read
        for f in faces:
            for x, y in f.landmarks68:
                cv2.circle(image, (int(round(x)), int(round(y))), 2, _LANDMARK_RGB, -1, cv2.LINE_AA)
            x0, y0 = f.landmarks68.min(axis=0)
            cv2.putText(image, f"#{f.track_id} {f.confidence:.2f}", (int(x0), max(12, int(y0) - 8)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.45, _LANDMARK_RGB, 1, cv2.LINE_AA)  # fmt: skip
        now = time.monotonic()
        self._shown.append(now)
        fps = (len(self._shown) - 1) / (self._shown[-1] - self._shown[0]) if len(self._shown) > 1 else 0.0
        latency_ms = (time.monotonic_ns() - frame.t_capture_ns) / 1e6
        hud = f"frame {frame.index}  preview {fps:4.1f} fps  capture->preview {latency_ms:5.1f} ms  faces {len(faces)}"
        cv2.rectangle(image, (0, 0), (image.shape[1], 22), (0, 0, 0), -1)
        cv2.putText(image, hud, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (235, 235, 235), 1, cv2.LINE_AA)
        return image

    def __call__(self, frame: Frame, result: TrackResult) -> None:
        image = self.draw(frame, result)
        # Repeat the previous preview for frames we never saw, so the video plays at the source's pace.
        repeats = 0 if self._last_index is None else max(0, frame.index - self._last_index - 1)
        for _ in range(min(repeats, int(self.fps * 2))):
            self._write(self._last)
        self._write(image)
        self._last, self._last_index = image, frame.index

    def _write(self, image: np.ndarray) -> None:
        for out in self.outputs:
            if not out.write(image):
                self.closed_by_user = True
        self.frames_written += 1

    def close(self) -> None:
        for out in self.outputs:
            out.close()
        if self._owns:
            self.renderer.close()
