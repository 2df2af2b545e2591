"""``facetrack eval video`` and ``facetrack eval synthetic`` (ARCHITECTURE §8).

Both run the synchronous :class:`~tracker.tracking.Tracker` frame by frame (decoding or rendering the
frame is not timed: ``t_capture_ns`` is taken once the frame is in memory, like a camera's timestamp).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from tracker.core.face_model import ARKIT_NAMES, ict_to_arkit
from tracker.core.geometry import rotation_angle_deg, ypr_deg_from_rotation
from tracker.core.types import TrackResult
from tracker.evaluation.metrics import by_yaw_bin, jitter_series, nme_percent, percentiles
from tracker.evaluation.plotting import png_figure

log = logging.getLogger(__name__)


def _timing_summary(results: list[TrackResult]) -> tuple[dict, dict]:
    ms = [r.timings_ms.get("total_ms", np.nan) for r in results]
    lat = [(r.t_done_ns - r.t_capture_ns) / 1e6 for r in results]
    return percentiles(ms), percentiles(lat)


def _face_stage_p50(results: list[TrackResult], stage: str) -> dict:
    """``{stage}_ms_p50``: the median of the faces' own ``timings_ms[stage]`` (ms per face, every face of
    every frame that reports it); empty when no face does (a tracker without that step)."""
    ms = [f.timings_ms[stage] for r in results for f in r.faces if stage in f.timings_ms]
    return {f"{stage}_ms_p50": percentiles(ms)["p50"]} if ms else {}


def evaluate_video(tracker, source, max_frames: int | None = None, progress: bool = True) -> dict:
    """Tracks a clip; returns ``frames``, ``tracked_fraction``, ``jitter``, ``ms_per_frame``, ``latency_ms``."""
    from tqdm import tqdm

    results, landmarks = [], []
    with source:
        bar = tqdm(desc="eval video", unit="frame", disable=not progress)
        while (frame := source.read()) is not None:
            # Decode is excluded from the timings; the filters run on the frame's media time.
            frame = dataclasses.replace(frame, t_capture_ns=time.monotonic_ns())
            r = tracker.process(frame)
            results.append(r)
            face = r.primary_face()
            landmarks.append(None if face is None else face.landmarks68.astype(np.float64))
            bar.update(1)
            if max_frames is not None and len(results) >= max_frames:
                break
        bar.close()
    jit = jitter_series(landmarks)
    ms, lat = _timing_summary(results)
    return {
        "frames": len(results),
        "tracked_fraction": float(np.mean([lm is not None for lm in landmarks])) if landmarks else 0.0,
        "jitter": float(np.nanmean(jit)) if np.isfinite(jit).any() else float("nan"),
        "ms_per_frame": ms,
        "latency_ms": lat,
        "jitter_series": [None if not np.isfinite(v) else float(v) for v in jit],
        "stage_ms": {k: percentiles([r.timings_ms.get(k, np.nan) for r in results])
                     for k in ("flow_ms", "detect_ms", "regress_ms", "filter_ms")},  # fmt: skip
        **_face_stage_p50(results, "depth"),
    }


def evaluate_synthetic(tracker, source, progress: bool = True) -> dict:
    """Tracks the synthetic source and compares every frame with its exact ground truth."""
    from tqdm import tqdm

    model = tracker.regressor.face_model
    rows, results = [], []
    with source:
        for frame in tqdm(source, desc="eval synthetic", unit="frame", disable=not progress):
            frame = dataclasses.replace(frame, t_capture_ns=time.monotonic_ns())
            r = tracker.process(frame)
            results.append(r)
            gt = frame.ground_truth
            face = r.primary_face()
            yaw_gt, pitch_gt, _ = ypr_deg_from_rotation(gt.rotation)
            row = {"frame": frame.index, "tracked": face is not None, "yaw_gt": yaw_gt, "pitch_gt": pitch_gt,
                   "z_gt_m": float(gt.translation_m[2])}  # fmt: skip
            if face is not None:
                k = max(len(face.identity), len(gt.identity))
                id_pred = np.zeros(k, np.float32)
                id_pred[: len(face.identity)] = face.identity
                id_gt = np.zeros(k, np.float32)
                id_gt[: len(gt.identity)] = gt.identity
                shape_err = np.linalg.norm(model.vertices(id_pred, region="face") - model.vertices(id_gt, region="face"),
                                           axis=1).mean() * 10.0  # cm -> mm  # fmt: skip
                row.update(
                    rotation_err_deg=rotation_angle_deg(face.rotation, gt.rotation),
                    translation_err_mm=float(np.linalg.norm(face.translation_m - gt.translation_m) * 1e3),
                    expression_mae=float(np.abs(ict_to_arkit(face.expression) - gt.arkit).mean()),
                    landmark_nme=nme_percent(face.landmarks68, gt.landmarks68),
                    identity_err_mm=float(shape_err),
                    yaw_est=ypr_deg_from_rotation(face.rotation)[0],
                    pitch_est=ypr_deg_from_rotation(face.rotation)[1],
                    blink_gt=[float(gt.arkit[i]) for i in _BLINKS],
                    blink_est=[float(face.arkit[i]) for i in _BLINKS],
                )
            rows.append(row)
    tracked = [r for r in rows if r["tracked"]]

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in tracked])) if tracked else float("nan")

    ms, lat = _timing_summary(results)
    out = {
        "frames": len(rows),
        "tracked_fraction": len(tracked) / max(1, len(rows)),
        "rotation_err_deg": mean("rotation_err_deg"),
        "translation_err_mm": mean("translation_err_mm"),
        "expression_mae": mean("expression_mae"),
        "landmark_nme": mean("landmark_nme"),
        "identity_err_mm": mean("identity_err_mm"),
        "ms_per_frame": ms,
        "latency_ms": lat,
        **_blink_hits(tracked),
        **_face_stage_p50(results, "depth"),
        **_face_stage_p50(results, "depth_pose"),
    }
    if tracked:
        yaw = np.array([r["yaw_gt"] for r in tracked])
        out["rotation_err_by_yaw"] = by_yaw_bin(np.array([r["rotation_err_deg"] for r in tracked]), yaw)
        out["lag_frames"] = {axis: estimate_lag_frames(np.array([r[f"{axis}_gt"] for r in rows]),
                                                       np.array([r.get(f"{axis}_est", np.nan) for r in rows]))
                             for axis in ("yaw", "pitch")}  # fmt: skip
    out["rows"] = rows
    return out


#: ARKit eyeBlinkLeft / eyeBlinkRight, and issue 13's closed-eye test: a true blink >= 0.8 must read >= 0.7.
_BLINKS = (ARKIT_NAMES.index("eyeBlinkLeft"), ARKIT_NAMES.index("eyeBlinkRight"))
CLOSED_TRUE, CLOSED_READ = 0.8, 0.7


def _blink_hits(tracked_rows: list[dict]) -> dict:
    """``blink_closed_eyes`` (eyes over all tracked frames whose true blink is >= 0.8) and
    ``blink_hit_fraction`` (the share of them read as >= 0.7; NaN when none)."""
    gt = np.array([r["blink_gt"] for r in tracked_rows], dtype=float).reshape(-1)
    est = np.array([r["blink_est"] for r in tracked_rows], dtype=float).reshape(-1)
    closed = gt >= CLOSED_TRUE
    return {"blink_closed_eyes": int(closed.sum()),
            "blink_hit_fraction": float((est[closed] >= CLOSED_READ).mean()) if closed.any() else float("nan")}


#: The scores of one synthetic evaluation (ARCHITECTURE §8's keys and ``tracked_fraction``): what
#: ``facetrack eval synthetic`` prints and :func:`summarize_seeds` averages.
SYNTHETIC_KEYS = ("tracked_fraction", "rotation_err_deg", "translation_err_mm", "expression_mae", "landmark_nme",
                  "identity_err_mm")  # fmt: skip


def summarize_seeds(seeds: list[int], results: list[dict]) -> dict:
    """Scores of several synthetic performances (one random identity each) as one result.

    Each of :data:`SYNTHETIC_KEYS` is the mean over seeds; ``translation_err_mm_over_seeds`` gives its
    median, p95 and the fraction of seeds at or under 25 mm (from colour alone the error follows each head's
    size, so it is a property of the population of heads, not of one); ``per_seed`` lists every seed's scores.
    ``depth_ms_p50`` and ``depth_pose_ms_p50``, where every seed reports them, are the medians of the seeds'.
    """
    per_seed = [{"seed": s} | {k: r[k] for k in SYNTHETIC_KEYS} for s, r in zip(seeds, results, strict=True)]
    out = {k: float(np.mean([r[k] for r in results])) for k in SYNTHETIC_KEYS}
    t = np.array([r["translation_err_mm"] for r in results])
    out["translation_err_mm_over_seeds"] = percentiles(t) | {"fraction_le_25": float(np.mean(t <= 25.0))}
    out["frames"] = int(sum(r["frames"] for r in results))
    # Closed eyes pooled over seeds (seeds differ in how often their script closes the eyes).
    closed = sum(r["blink_closed_eyes"] for r in results)
    hits = sum(r["blink_closed_eyes"] * r["blink_hit_fraction"] for r in results if r["blink_closed_eyes"])
    out["blink_closed_eyes"] = int(closed)
    out["blink_hit_fraction"] = float(hits / closed) if closed else float("nan")
    for key in ("depth_ms_p50", "depth_pose_ms_p50"):
        if results and all(key in r for r in results):
            out[key] = float(np.median([r[key] for r in results]))
    out["per_seed"] = per_seed
    return out


def estimate_lag_frames(truth: np.ndarray, estimate: np.ndarray, max_lag: float = 5.0, step: float = 0.05) -> float:
    """Delay (frames) that best aligns ``estimate`` with ``truth``: argmin over tau of the mean squared
    difference between estimate(t) and truth(t - tau), with sub-frame tau by linear interpolation."""
    t = np.arange(len(truth), dtype=np.float64)
    ok = np.isfinite(estimate) & np.isfinite(truth)
    if ok.sum() < 10:
        return float("nan")
    best, best_err = 0.0, np.inf
    for tau in np.arange(-max_lag, max_lag + step / 2, step):
        shifted = np.interp(t - tau, t, truth)
        err = np.mean((estimate[ok] - shifted[ok]) ** 2)
        if err < best_err:
            best, best_err = float(tau), err
    return best


def plot_video(result: dict, path: Path, title: str = "") -> Path:
    jit = np.array([np.nan if v is None else v for v in result["jitter_series"]], dtype=float)
    with png_figure(path, 1, (10, 3.5)) as (_, ax):
        ax.plot(jit, lw=0.8)
        ax.set_xlabel("frame")
        ax.set_ylabel("jitter (% of face size)")
        ax.set_title(f"{title} jitter over time (mean {result['jitter']:.3f}, tracked {result['tracked_fraction']:.1%})")
        ax.grid(alpha=0.3)
    return Path(path)


def plot_synthetic(result: dict, path: Path) -> Path:
    rows = result["rows"]
    with png_figure(path, 2, (13, 4)) as (_, axes):
        f = [r["frame"] for r in rows]
        axes[0].plot(f, [r["yaw_gt"] for r in rows], label="yaw truth")
        axes[0].plot(f, [r.get("yaw_est", np.nan) for r in rows], label="yaw tracked", lw=0.8)
        axes[0].plot(f, [r["pitch_gt"] for r in rows], label="pitch truth")
        axes[0].plot(f, [r.get("pitch_est", np.nan) for r in rows], label="pitch tracked", lw=0.8)
        axes[0].set_xlabel("frame")
        axes[0].set_ylabel("degrees")
        axes[0].legend()
        bins = result.get("rotation_err_by_yaw", {})
        axes[1].bar(list(bins), list(bins.values()))
        axes[1].set_xlabel("|yaw| bin (truth), degrees")
        axes[1].set_ylabel("rotation error (deg)")
        axes[1].set_title(f"rotation {result['rotation_err_deg']:.2f} deg, expression MAE {result['expression_mae']:.3f}")
    return Path(path)


def plot_synthetic_seeds(result: dict, path: Path) -> Path:
    """Per-seed translation and rotation error (:func:`summarize_seeds`), sorted by translation error."""
    rows = sorted(result["per_seed"], key=lambda r: r["translation_err_mm"])
    with png_figure(path, 2, (13, 4)) as (_, axes):
        axes[0].bar(range(len(rows)), [r["translation_err_mm"] for r in rows])
        axes[0].axhline(25.0, color="k", lw=0.8, ls="--")
        axes[0].set_xlabel("seed (sorted by error)")
        axes[0].set_ylabel("translation error (mm)")
        axes[0].set_title(f"mean {result['translation_err_mm']:.1f} mm over {len(rows)} seeds")
        axes[1].bar(range(len(rows)), [r["rotation_err_deg"] for r in rows])
        axes[1].set_xlabel("seed (same order)")
        axes[1].set_ylabel("rotation error (deg)")
    return Path(path)
