"""The tracker's own preview: the fitted mesh drawn over the camera frame, with a HUD.

A pipeline sink on its own worker. Frames go to a window and/or a video file, exactly one preview frame per
result it is handed: from a file every tracked frame (the run waits for the renderer), from a camera the
newest result whenever the renderer is free (rendering never slows tracking there).
"""

from __future__ import annotations

import collections
import logging
import time

import cv2
import numpy as np

from tracker.core.types import Frame, TrackResult
from tracker.render import Renderer

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
    """

    def __init__(self, renderer: Renderer, outputs: list, *, mode: str = "wireframe", opacity: float = 0.6,
                 owns_renderer: bool = False) -> None:  # fmt: skip
        self.renderer = renderer
        self.outputs = outputs
        self.mode = mode
        self.opacity = opacity
        self._owns = owns_renderer
        self._shown = collections.deque(maxlen=30)
        self.closed_by_user = False
        self.frames_written = 0

    def draw(self, frame: Frame, result: TrackResult) -> np.ndarray:
        """(H,W,3) uint8 RGB: the frame, each tracked face's mesh and landmarks, and the HUD."""
        faces = [f for f in result.faces if f.state != "lost"]
        image = frame.color
        if faces:
            params = [f.coefficients for f in faces]
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
        for out in self.outputs:
            if not out.write(image):
                self.closed_by_user = True
        self.frames_written += 1

    def close(self) -> None:
        for out in self.outputs:
            out.close()
        if self._owns:
            self.renderer.close()
