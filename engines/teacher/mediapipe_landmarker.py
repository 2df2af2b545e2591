"""MediaPipe Face Landmarker (Tasks API) as an offline teacher: 478 landmarks per face, in pixels.

This is the only module that imports ``mediapipe`` (extra ``teacher``). The model is the registered asset
``mediapipe-face-landmarker``; inference runs on the CPU (XNNPACK).

Pixel convention: MediaPipe's normalised coordinates run from the left/top image *edge* (0) to the
right/bottom edge (1); this module returns facetrack's pixel-centre coordinates, ``x_px = x * W - 0.5``.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Literal

import numpy as np

from tracker.core.assets import require
from tracker.core.boxes import points_box
from tracker.core.errors import ConfigError, EngineError
from tracker.core.face_model import ARKIT_NAMES
from tracker.core.types import check_array

log = logging.getLogger(__name__)

NUM_MP_LANDMARKS = 478
NUM_MP_MESH = 468
#: Iris centres of the refined model: 468 = the subject's right eye (image left), 473 = the left eye.
MP_IRIS_CENTRES = (468, 473)
INSTALL_HINT = "pip install 'facetrack[teacher]'"


@dataclasses.dataclass(frozen=True)
class TeacherFace:
    """One face found by the teacher.

    Attributes:
        landmarks_px: (478,2) float32 pixel coordinates (0-based, pixel centres).
        depth: (478,) float32 MediaPipe's relative depth, in the same units as ``landmarks_px`` (px);
            smaller = closer to the camera; only relative values are meaningful.
        blendshapes: (52,) float32 ARKit blendshape scores in Apple order (``tongueOut`` = 0 when missing),
            or None when not requested.
        transform: (4,4) float32 MediaPipe's canonical-face -> camera matrix (cm), or None.
    """

    landmarks_px: np.ndarray
    depth: np.ndarray
    blendshapes: np.ndarray | None = None
    transform: np.ndarray | None = None

    def __post_init__(self) -> None:
        check_array("TeacherFace.landmarks_px", self.landmarks_px, (NUM_MP_LANDMARKS, 2), np.float32)
        check_array("TeacherFace.depth", self.depth, (NUM_MP_LANDMARKS,), np.float32)
        if self.blendshapes is not None:
            check_array("TeacherFace.blendshapes", self.blendshapes, (len(ARKIT_NAMES),), np.float32)

    @property
    def box_xyxy(self) -> np.ndarray:
        """(4,) float32 bounding box of the 468 mesh landmarks, px."""
        return points_box(self.landmarks_px[:NUM_MP_MESH]).astype(np.float32)


def _import_mediapipe():
    try:
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision
    except ImportError as exc:
        raise EngineError(f"MediaPipe is not installed ({exc}); run `{INSTALL_HINT}`") from exc
    return mp, BaseOptions, vision


class MediaPipeTeacher:
    """The Face Landmarker, opened once and used as a context manager.

    Example::

        with MediaPipeTeacher() as teacher:
            faces = teacher.detect(image_rgb)
    """

    def __init__(
        self,
        mode: Literal["image", "video"] = "image",
        num_faces: int = 1,
        blendshapes: bool = False,
        model_path: Path | None = None,
        min_confidence: float = 0.5,
    ) -> None:
        """Opens the landmarker.

        Args:
            mode: ``image`` (each call independent) or ``video`` (tracking across calls; timestamps must
                increase).
            num_faces: Maximum faces per image.
            blendshapes: Also return the 52 ARKit blendshape scores.
            model_path: The ``.task`` file; default: the registered asset.
            min_confidence: Detection / presence / tracking confidence threshold.

        Raises:
            EngineError: if MediaPipe is missing or the model cannot be loaded.
            AssetError: if the model asset is missing.
        """
        if mode not in ("image", "video"):
            raise ConfigError(f"mode must be 'image' or 'video', got {mode!r}")
        self._mp, base_options, vision = _import_mediapipe()
        path = Path(model_path) if model_path is not None else require("mediapipe-face-landmarker")
        self.mode = mode
        self.blendshapes = blendshapes
        options = vision.FaceLandmarkerOptions(
            base_options=base_options(model_asset_path=str(path)),
            running_mode=vision.RunningMode.VIDEO if mode == "video" else vision.RunningMode.IMAGE,
            num_faces=int(num_faces),
            min_face_detection_confidence=min_confidence,
            min_face_presence_confidence=min_confidence,
            min_tracking_confidence=min_confidence,
            output_face_blendshapes=blendshapes,
            output_facial_transformation_matrixes=True,
        )
        try:
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"cannot load the MediaPipe Face Landmarker from {path}: {exc}") from exc
        self._last_ts = -1

    def __enter__(self) -> MediaPipeTeacher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Releases the graph (idempotent). Close explicitly: MediaPipe's finaliser can fail at shutdown."""
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def detect(self, image_rgb: np.ndarray, timestamp_ms: int | None = None) -> list[TeacherFace]:
        """Landmarks of the faces in one image.

        Args:
            image_rgb: (H,W,3) uint8 RGB.
            timestamp_ms: Video mode only: the frame's time, strictly increasing; default = last + 33.

        Returns:
            Faces, largest first (may be empty).
        """
        if self._landmarker is None:
            raise EngineError("the MediaPipe teacher is closed")
        check_array("image_rgb", image_rgb, (None, None, 3), np.uint8)
        h, w = image_rgb.shape[:2]
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(image_rgb))
        try:
            if self.mode == "video":
                ts = self._last_ts + 33 if timestamp_ms is None else int(timestamp_ms)
                if ts <= self._last_ts:
                    raise ConfigError(f"video timestamps must increase: {ts} ms after {self._last_ts} ms")
                self._last_ts = ts
                result = self._landmarker.detect_for_video(image, ts)
            else:
                result = self._landmarker.detect(image)
        except (RuntimeError, ValueError) as exc:
            raise EngineError(f"MediaPipe Face Landmarker failed: {exc}") from exc
        faces = []
        for i, lms in enumerate(result.face_landmarks):
            arr = np.array([(p.x, p.y, p.z) for p in lms], dtype=np.float32)
            if arr.shape[0] != NUM_MP_LANDMARKS:
                raise EngineError(f"expected {NUM_MP_LANDMARKS} landmarks (the refined model), got {arr.shape[0]}")
            px = arr[:, :2] * np.array([w, h], np.float32) - 0.5
            depth = arr[:, 2] * np.float32(w)  # MediaPipe scales z like x
            bs = None
            if self.blendshapes and i < len(result.face_blendshapes):
                scores = {c.category_name: c.score for c in result.face_blendshapes[i]}
                bs = np.array([scores.get(n, 0.0) for n in ARKIT_NAMES], dtype=np.float32)
            tf = None
            if i < len(result.facial_transformation_matrixes):
                tf = np.asarray(result.facial_transformation_matrixes[i], dtype=np.float32)
            faces.append(TeacherFace(px.astype(np.float32), depth.astype(np.float32), bs, tf))
        faces.sort(key=lambda f: -float(np.prod(f.box_xyxy[2:] - f.box_xyxy[:2])))
        return faces
