"""Scoring fits against iBUG-68 annotations: NME of ICT's 68 landmarks and the teacher-point error."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from tracker.core.boxes import iou, points_box
from tracker.core.errors import ConfigError
from tracker.evaluation.ibug import read_pts
from tracker.evaluation.metrics import nme_percent

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ImageScore:
    """One image's fit scores."""

    image: str
    detected: bool
    nme_pct: float = float("nan")
    teacher_error_px: float = float("nan")
    teacher_error_pct: float = float("nan")
    ypr_deg: tuple[float, float, float] = (float("nan"),) * 3
    fit_seconds: float = float("nan")


def _best_face(faces, gt: np.ndarray):
    """The teacher face whose box best overlaps the ground-truth landmarks' box (ARCHITECTURE §8)."""
    g = points_box(gt)
    return max(faces, key=lambda f: iou(f.box_xyxy, g))


def score_images(images: Sequence[Path], fitter, teacher, overlay_dir: Path | None = None, progress: bool = True) -> list[ImageScore]:
    """Fits each annotated image (teacher -> fitter) and scores it.

    Args:
        images: Image files, each with an iBUG ``.pts`` beside it.
        fitter: An :class:`~engines.fitting.fit.Fitter`.
        teacher: An open :class:`~engines.teacher.mediapipe_landmarker.MediaPipeTeacher` (image mode).
        overlay_dir: Write an overlay PNG per image here.
        progress: Show a progress bar.
    """
    from tqdm import tqdm

    from engines.fitting.overlay import overlay_image

    scores = []
    for path in tqdm(images, desc="fit", unit="img", disable=not progress):
        gt = read_pts(Path(path).with_suffix(".pts"))
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ConfigError(f"cannot read image {path}")
        image = np.ascontiguousarray(bgr[:, :, ::-1])
        faces = teacher.detect(image)
        if not faces:
            scores.append(ImageScore(str(path), False))
            continue
        face = _best_face(faces, gt)
        fit = fitter.fit_image(image, face.landmarks_px)
        box = face.box_xyxy
        size = float(np.sqrt(max(box[2] - box[0], 1) * max(box[3] - box[1], 1)))
        err = float(fit.landmark_error_px[0])
        scores.append(ImageScore(str(path), True, nme_percent(fit.landmarks68_px[0], gt), err, 100 * err / size,
                                 tuple(float(a) for a in fit.ypr_deg()[0]), fit.seconds))  # fmt: skip
        if overlay_dir is not None:
            overlay_dir.mkdir(parents=True, exist_ok=True)
            ov = overlay_image(fitter, fit, image, face.landmarks_px, reference68_px=gt)
            cv2.imwrite(str(overlay_dir / f"{Path(path).stem}_fit.png"), ov[:, :, ::-1])
    return scores


def summarise(scores: Sequence[ImageScore]) -> dict:
    """Means over detected images: NME %, teacher error px / %, fit seconds; detected fraction."""
    det = [s for s in scores if s.detected]
    if not det:
        return {"n": len(scores), "detected_fraction": 0.0}
    return {
        "n": len(scores),
        "detected_fraction": len(det) / len(scores),
        "nme": float(np.mean([s.nme_pct for s in det])),
        "nme_median": float(np.median([s.nme_pct for s in det])),
        "teacher_error_px": float(np.mean([s.teacher_error_px for s in det])),
        "teacher_error_pct": float(np.mean([s.teacher_error_pct for s in det])),
        "fit_seconds": float(np.mean([s.fit_seconds for s in det])),
        "fit_seconds_p50": float(np.median([s.fit_seconds for s in det])),
    }
