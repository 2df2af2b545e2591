"""``facetrack eval landmarks``: 68-point accuracy and head pose on annotated still images (ARCHITECTURE §8).

A still image has no previous frame, so the tracker's steps run on it directly: detect, regress from the
detection's crop, then optionally regress again from the crop of the landmarks it found (what the next
video frame would do), ``refine_passes`` times. With the v1 weights a refinement pass makes real photos
slightly worse (HELEN subset: NME 5.4 % without, 6.3 % with two passes), so the default is none. The
detection scored is the one whose box best overlaps the ground-truth landmarks' box.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import time
from pathlib import Path

import cv2
import numpy as np

from tracker.core.boxes import box_iou, points_box
from tracker.core.crop import CropBox, PerspectiveCrop
from tracker.core.errors import ConfigError
from tracker.core.geometry import ypr_deg_from_rotation
from tracker.core.types import Frame, Intrinsics
from tracker.evaluation.ibug import find_annotated_images, read_pts
from tracker.evaluation.metrics import YAW_BINS, by_yaw_bin, nme_percent
from tracker.evaluation.plotting import png_figure

log = logging.getLogger(__name__)

@dataclasses.dataclass
class StillResult:
    landmarks68: np.ndarray
    rotation: np.ndarray
    translation_m: np.ndarray
    confidence: float


def track_still(tracker, image_rgb: np.ndarray, box_xyxy: np.ndarray, refine_passes: int = 0) -> StillResult:
    """Regresses one face of a still image, starting from a detector box."""
    h, w = image_rgb.shape[:2]
    frame = Frame(0, time.monotonic_ns(), image_rgb, Intrinsics.assumed(w, h))
    reg = tracker.regressor
    crop_box = CropBox.from_detection(box_xyxy)
    for _ in range(1 + refine_passes):
        r = reg.regress(frame, [PerspectiveCrop(frame.intrinsics, crop_box)])[0]
        lm = reg.landmarks_px(frame, r.identity, r.expression, r.rotation, r.translation_m)
        crop_box = CropBox.from_landmarks(lm)
    return StillResult(lm, r.rotation, r.translation_m, r.confidence)


def read_pose_csv(path: Path) -> dict[str, dict]:
    """``name,pitch,yaw,roll[,valid]`` rows keyed by name (the image file's stem)."""
    out = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                out[row["name"]] = {"yaw": float(row["yaw"]), "pitch": float(row["pitch"]), "roll": float(row["roll"]),
                                    "valid": row.get("valid", "1").strip() not in ("0", "false", "False")}  # fmt: skip
            except (KeyError, ValueError) as exc:
                raise ConfigError(f"{path}: needs columns name,pitch,yaw,roll with numbers ({exc})") from exc
    return out


def evaluate_landmarks(tracker, images_dir: Path, pose_csv: Path | None = None, limit: int | None = None,
                       refine_passes: int = 0, progress: bool = True) -> dict:  # fmt: skip
    """Runs the tracker on every annotated image; returns the JSON of ARCHITECTURE §8 plus per-image rows."""
    from tqdm import tqdm

    from tracker.evaluation.ibug import evenly_spaced

    items = evenly_spaced(find_annotated_images(images_dir), limit)
    poses = read_pose_csv(pose_csv) if pose_csv else {}
    rows = []
    for item in tqdm(items, desc="eval landmarks", disable=not progress):
        img = cv2.imread(str(item.image_path), cv2.IMREAD_COLOR)
        if img is None:
            log.warning("%s: unreadable image, counted as not detected", item.image_path)
            rows.append({"name": item.name, "detected": False})
            continue
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        gt = read_pts(item.pts_path)
        t0 = time.perf_counter()
        dets = tracker.detector.detect(rgb)
        row = {"name": item.name, "detected": False}
        if len(dets):
            ious = box_iou(dets.boxes, points_box(gt))
            best = int(np.argmax(ious))
            if ious[best] > 0.1:
                res = track_still(tracker, rgb, dets.boxes[best], refine_passes)
                yaw, pitch, roll = ypr_deg_from_rotation(res.rotation)
                row.update(detected=True, nme=nme_percent(res.landmarks68, gt), yaw=yaw, pitch=pitch, roll=roll,
                           confidence=res.confidence)  # fmt: skip
        row["ms"] = (time.perf_counter() - t0) * 1e3
        rows.append(row)

    det = [r for r in rows if r["detected"]]
    nme = np.array([r["nme"] for r in det])
    out: dict = {
        "n": len(rows),
        "detected_fraction": len(det) / max(1, len(rows)),
        "nme": float(nme.mean()) if len(nme) else float("nan"),
        "ms_per_image": float(np.mean([r["ms"] for r in rows])) if rows else float("nan"),
    }
    stem = {r["name"]: Path(r["name"]).name for r in rows}
    with_pose = [r for r in det if stem[r["name"]] in poses]
    if with_pose:
        gt_yaw = np.array([poses[stem[r["name"]]]["yaw"] for r in with_pose])
        out["nme_by_yaw"] = by_yaw_bin(np.array([r["nme"] for r in with_pose]), gt_yaw)
        out["nme_balanced"] = float(np.nanmean(list(out["nme_by_yaw"].values())))
        valid = [r for r in with_pose if poses[stem[r["name"]]]["valid"]]
        mae = {k: float(np.mean([abs(r[k] - poses[stem[r["name"]]][k]) for r in valid])) if valid else float("nan")
               for k in ("yaw", "pitch", "roll")}  # fmt: skip
        mae["mean"] = float(np.mean([mae["yaw"], mae["pitch"], mae["roll"]]))
        out["pose_mae_deg"] = mae
    out["images"] = rows
    return out


def plot_landmarks(result: dict, path: Path) -> Path:
    """NME cumulative distribution and NME by estimated |yaw| bin."""
    det = [r for r in result["images"] if r["detected"]]
    nme = np.sort([r["nme"] for r in det])
    with png_figure(path, 2, (11, 4)) as (_, axes):
        if len(nme):
            axes[0].plot(nme, np.arange(1, len(nme) + 1) / result["n"])
        axes[0].set_xlim(0, 15)
        axes[0].set_xlabel("NME (%)")
        axes[0].set_ylabel("fraction of images")
        axes[0].set_title(f"NME CDF (mean {result['nme']:.2f}%, detected {result['detected_fraction']:.1%})")
        axes[0].grid(alpha=0.3)
        yaw = np.array([r["yaw"] for r in det])
        bins = by_yaw_bin(np.array([r["nme"] for r in det]), yaw) if len(det) else {}
        axes[1].bar([b[0] for b in YAW_BINS], [bins.get(b[0], np.nan) for b in YAW_BINS])
        axes[1].set_xlabel("|yaw| (estimated), degrees")
        axes[1].set_ylabel("mean NME (%)")
        axes[1].set_title("error by yaw")
    return Path(path)
