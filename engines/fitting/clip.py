"""Fitting a video clip: frames sampled from a file, teacher in video mode, one shared identity."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from tracker.core.errors import ConfigError

log = logging.getLogger(__name__)


def read_frames(path: Path, num_frames: int = 8, stride: int = 5, start: int = 0) -> tuple[list[np.ndarray], list[int]]:
    """Reads ``num_frames`` RGB frames every ``stride`` frames from ``start``.

    Returns:
        The (H,W,3) uint8 RGB frames and their timestamps in milliseconds.
    """
    if num_frames < 1 or stride < 1 or start < 0:
        raise ConfigError("num_frames and stride must be >= 1 and start >= 0")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ConfigError(f"cannot open video {path}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    frames, stamps = [], []
    index = 0
    try:
        while len(frames) < num_frames:
            ok, bgr = cap.read()
            if not ok:
                break
            if index >= start and (index - start) % stride == 0:
                frames.append(np.ascontiguousarray(bgr[:, :, ::-1]))
                stamps.append(int(round(index * 1000.0 / fps)))
            index += 1
    finally:
        cap.release()
    if not frames:
        raise ConfigError(f"{path}: no frames read")
    return frames, stamps


def fit_video(path: Path, fitter, num_frames: int = 8, stride: int = 5, start: int = 0):
    """Fits frames of one clip jointly (shared identity and albedo; per-frame pose, expression, light).

    Frames where the teacher finds no face are dropped.

    Returns:
        (FitResult, the frames used, their (B,478,2) teacher landmarks).
    """
    from engines.teacher.mediapipe_landmarker import MediaPipeTeacher

    frames, stamps = read_frames(path, num_frames, stride, start)
    kept, lms = [], []
    with MediaPipeTeacher(mode="video") as teacher:
        for frame, ts in zip(frames, stamps, strict=True):
            faces = teacher.detect(frame, timestamp_ms=ts)
            if faces:
                kept.append(frame)
                lms.append(faces[0].landmarks_px)
    if not kept:
        raise ConfigError(f"{path}: the teacher found no face in the sampled frames")
    landmarks = np.stack(lms)
    return fitter.fit(kept, landmarks), kept, landmarks
