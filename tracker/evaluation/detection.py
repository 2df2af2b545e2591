"""Face-detection evaluation on images with 68-point annotations (``facetrack eval detection``).

A face counts as **found** when some detection's box has IoU >= 0.4 with the bounding box of its 68
landmarks, or contains >= 90 % of the landmarks (the landmark box of a profile face is much narrower than
a detector's box, so IoU alone would undercount). Speed is measured separately on frames of a fixed size
(640x480 by default: each evaluation image letterboxed into it), timing the whole ``detect()`` call:
pre-processing, inference and decoding.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from engines.base import LatencyRecorder
from tracker.core.boxes import box_iou, points_box
from tracker.core.errors import ConfigError
from tracker.core.types import Detections
from tracker.evaluation.ibug import AnnotatedImage, evenly_spaced, find_annotated_images, read_pts
from tracker.evaluation.plotting import png_figure

log = logging.getLogger(__name__)

IOU_THRESHOLD = 0.4
INSIDE_FRACTION = 0.9


def fraction_inside(boxes: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Fraction of the (P,2) points inside each (N,4) xyxy box -> (N,)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 1, 4)
    p = np.asarray(points, dtype=np.float64)[None]
    inside = (
        (p[..., 0] >= b[..., 0])
        & (p[..., 0] <= b[..., 2])
        & (p[..., 1] >= b[..., 1])
        & (p[..., 1] <= b[..., 3])
    )
    return inside.mean(axis=1)


@dataclasses.dataclass(frozen=True)
class FaceMatch:
    """How well the detections of one image cover its annotated face.

    Attributes:
        found: Whether a detection meets the IoU or containment criterion.
        best_iou: Highest IoU of any detection with the landmark box (0 with no detection).
        best_inside: Highest fraction of landmarks inside any detection box.
        score: Score of the matching detection (the best-IoU one when several match), or 0.
        n_detections: Detections in the image.
    """

    found: bool
    best_iou: float
    best_inside: float
    score: float
    n_detections: int


def match_face(
    dets: Detections,
    landmarks: np.ndarray,
    iou_threshold: float = IOU_THRESHOLD,
    inside_fraction: float = INSIDE_FRACTION,
) -> FaceMatch:
    """Decides whether ``dets`` found the face annotated by ``landmarks`` ((68,2) px)."""
    if len(dets) == 0:
        return FaceMatch(False, 0.0, 0.0, 0.0, 0)
    ious = box_iou(dets.boxes, points_box(landmarks))
    inside = fraction_inside(dets.boxes, landmarks)
    ok = (ious >= iou_threshold) | (inside >= inside_fraction)
    pick = int(np.argmax(np.where(ok, ious + 1.0, ious)))  # prefer a matching detection, then the best IoU
    return FaceMatch(bool(ok.any()), float(ious.max()), float(inside.max()), float(dets.scores[pick]) if ok.any() else 0.0,
                     len(dets))  # fmt: skip


def letterbox_into(image: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """The image resized to fit ``size_wh`` (keeping its aspect) and centred on black: a camera-sized frame."""
    h, w = image.shape[:2]
    s = min(size_wh[0] / w, size_wh[1] / h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    resized = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    out = np.zeros((size_wh[1], size_wh[0], 3), dtype=np.uint8)
    x0, y0 = (size_wh[0] - nw) // 2, (size_wh[1] - nh) // 2
    out[y0 : y0 + nh, x0 : x0 + nw] = resized
    return out


@dataclasses.dataclass
class ImageRecord:
    name: str
    found: bool
    best_iou: float
    best_inside: float
    score: float
    n_detections: int
    ms: float


@dataclasses.dataclass
class DetectionEvaluation:
    """Result of :func:`evaluate_detection` (see ``to_dict`` for the JSON keys).

    Attributes:
        images_dir: The dataset root.
        records: One per image.
        ms_per_image: Latency of ``detect()`` on the images at their own size.
        frame_ms: Latency of ``detect()`` on ``frame_wh`` frames (the speed target's measurement).
        frame_wh: Size of the timing frames.
        settings: Detector and engine settings, for the record.
        iou_threshold, inside_fraction: The "found" criterion.
    """

    images_dir: str
    records: list[ImageRecord]
    ms_per_image: dict[str, float]
    frame_ms: dict[str, float]
    frame_wh: tuple[int, int]
    settings: dict
    iou_threshold: float = IOU_THRESHOLD
    inside_fraction: float = INSIDE_FRACTION

    @property
    def n(self) -> int:
        return len(self.records)

    @property
    def n_found(self) -> int:
        return sum(r.found for r in self.records)

    @property
    def detection_rate(self) -> float:
        return self.n_found / self.n if self.n else float("nan")

    def recall_at_iou(self, thresholds: Sequence[float]) -> list[float]:
        """Fraction of faces with a detection of IoU >= t, for each t (IoU criterion only)."""
        ious = np.array([r.best_iou for r in self.records])
        return [float((ious >= t).mean()) if len(ious) else float("nan") for t in thresholds]

    def to_dict(self) -> dict:
        missed = [r.name for r in self.records if not r.found]
        by_subset: dict[str, list[bool]] = {}
        for r in self.records:
            by_subset.setdefault(r.name.split("/")[0], []).append(r.found)
        return {
            "images_dir": self.images_dir,
            "n": self.n,
            "found": self.n_found,
            "detection_rate": self.detection_rate,
            "detection_rate_by_subset": {k: float(np.mean(v)) for k, v in sorted(by_subset.items())},
            "criterion": {"iou_threshold": self.iou_threshold, "inside_fraction": self.inside_fraction},
            "mean_best_iou": float(np.mean([r.best_iou for r in self.records]))
            if self.records
            else float("nan"),
            "ms_per_image": self.ms_per_image,
            "frame_ms": self.frame_ms | {"width": self.frame_wh[0], "height": self.frame_wh[1]},
            "settings": self.settings,
            "missed": missed,
            "per_image": [dataclasses.asdict(r) for r in self.records],
        }


def _stats(rec: LatencyRecorder) -> dict[str, float]:
    s = rec.stats()
    return {"p50": s.p50_ms, "p95": s.p95_ms, "mean": s.mean_ms, "count": s.count}


def _read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ConfigError(f"{path}: cannot read the image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def evaluate_detection(
    detect: Callable[[np.ndarray], Detections],
    images_dir: Path | str,
    *,
    limit: int | None = None,
    iou_threshold: float = IOU_THRESHOLD,
    inside_fraction: float = INSIDE_FRACTION,
    frame_wh: tuple[int, int] = (640, 480),
    timing_frames: int = 50,
    timing_repeats: int = 3,
    settings: dict | None = None,
    progress: bool = True,
) -> DetectionEvaluation:
    """Measures the detection rate on annotated images and the latency on camera-sized frames.

    Args:
        detect: RGB (H,W,3) uint8 -> Detections (e.g. ``YuNetDetector.detect``).
        images_dir: Folder with images and iBUG ``.pts`` files (searched recursively).
        limit: Evaluate at most this many images, spread evenly over the sorted list.
        iou_threshold, inside_fraction: The "found" criterion (see the module docstring).
        frame_wh: Size of the timing frames.
        timing_frames: How many images are letterboxed into timing frames (0: no timing run).
        timing_repeats: Passes over the timing frames (the first image is detected once untimed, so
            lazy initialisation is not counted).
        settings: Extra fields recorded in the result (detector configuration).
        progress: Show a tqdm progress bar.
    """
    from tqdm import tqdm

    items: list[AnnotatedImage] = evenly_spaced(find_annotated_images(images_dir), limit)
    records: list[ImageRecord] = []
    per_image = LatencyRecorder(window=max(1, len(items)))
    frames = []
    warmed = False
    for item in tqdm(items, desc="detect", unit="img", disable=not progress):
        image = _read_rgb(item.image_path)
        landmarks = read_pts(item.pts_path)
        if not warmed:
            detect(image)
            warmed = True
        t0 = _now_ms()
        dets = detect(image)
        ms = _now_ms() - t0
        per_image.record(ms)
        m = match_face(dets, landmarks, iou_threshold, inside_fraction)
        records.append(
            ImageRecord(item.name, m.found, m.best_iou, m.best_inside, m.score, m.n_detections, ms)
        )
        if len(frames) < timing_frames:
            frames.append(image)
    frame_rec = LatencyRecorder(window=max(1, len(frames) * timing_repeats))
    if frames:
        frames = [letterbox_into(f, frame_wh) for f in evenly_spaced(frames, timing_frames)]
        detect(frames[0])  # first call at a new input shape initialises kernels: not counted
        for _ in tqdm(range(timing_repeats), desc=f"time {frame_wh[0]}x{frame_wh[1]}", disable=not progress):
            for f in frames:
                t0 = _now_ms()
                detect(f)
                frame_rec.record(_now_ms() - t0)
    return DetectionEvaluation(
        str(images_dir), records, _stats(per_image), _stats(frame_rec), tuple(frame_wh), dict(settings or {}),
        iou_threshold, inside_fraction,
    )  # fmt: skip


def _now_ms() -> float:
    return time.perf_counter_ns() / 1e6


def plot_detection_evaluation(result: DetectionEvaluation, path: Path | str) -> Path:
    """Writes a PNG: recall vs IoU threshold, and the histogram of matched detection scores."""
    with png_figure(path, 2, (10, 4), dpi=100) as (_, (ax1, ax2)):
        t = np.linspace(0.0, 1.0, 101)
        ax1.plot(t, result.recall_at_iou(t), label="IoU with landmark box >= t")
        ax1.axhline(result.detection_rate, color="C1", ls="--", label=f"found (IoU>={result.iou_threshold} or "
                    f">={result.inside_fraction:.0%} inside): {result.detection_rate:.1%}")  # fmt: skip
        ax1.axvline(result.iou_threshold, color="grey", lw=0.8)
        ax1.set(
            xlabel="IoU threshold t",
            ylabel="fraction of faces",
            title=f"Recall vs IoU (n={result.n})",
            ylim=(0, 1.02),
        )
        ax1.legend(fontsize=8, loc="lower left")
        scores = [r.score for r in result.records if r.found]
        lo = max(0.0, np.floor(min(scores, default=0.0) * 20) / 20 - 0.05)  # zoom on where the scores are
        ax2.hist(scores, bins=40, range=(lo, 1.0), color="C2")
        ax2.set(xlabel="score of the matched detection", ylabel="faces",
                title=f"{result.frame_wh[0]}x{result.frame_wh[1]} detect p50 {result.frame_ms['p50']:.2f} ms")  # fmt: skip
    return Path(path)


__all__ = [
    "DetectionEvaluation", "FaceMatch", "ImageRecord", "evaluate_detection", "fraction_inside", "letterbox_into",
    "match_face", "plot_detection_evaluation",
]  # fmt: skip
