"""Metric definitions of ARCHITECTURE §8, in one place."""

from __future__ import annotations

import numpy as np


def box_size_norm(landmarks: np.ndarray) -> float:
    """sqrt(w * h) of the landmarks' bounding box, px."""
    lo, hi = landmarks.min(axis=0), landmarks.max(axis=0)
    return float(np.sqrt(max((hi - lo)[0], 1e-6) * max((hi - lo)[1], 1e-6)))


def nme_percent(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean 2D point error / sqrt(w*h) of the ground-truth landmarks' box x 100."""
    return float(np.linalg.norm(pred - gt, axis=1).mean() / box_size_norm(gt) * 100.0)


def jitter_series(landmarks: list[np.ndarray | None]) -> np.ndarray:
    """Per-frame jitter: mean over the 68 points of |p_t - 2 p_{t-1} + p_{t-2}| / sqrt(w*h of the frame's
    landmark box) x 100, for frames t >= 2 tracked in t, t-1 and t-2 (NaN elsewhere)."""
    out = np.full(len(landmarks), np.nan)
    for t in range(2, len(landmarks)):
        a, b, c = landmarks[t], landmarks[t - 1], landmarks[t - 2]
        if a is None or b is None or c is None:
            continue
        out[t] = np.linalg.norm(a - 2 * b + c, axis=1).mean() / box_size_norm(a) * 100.0
    return out


def percentiles(values, ps=(50, 95)) -> dict[str, float]:
    a = np.asarray(values, dtype=np.float64)
    if a.size == 0:
        return {f"p{p}": float("nan") for p in ps}
    return {f"p{p}": float(v) for p, v in zip(ps, np.percentile(a, ps), strict=True)}


YAW_BINS = (("0-30", 0, 30), ("30-60", 30, 60), ("60-90", 60, 90.01))


def by_yaw_bin(values: np.ndarray, yaw_deg: np.ndarray) -> dict[str, float]:
    """Mean of ``values`` per |yaw| bin (0-30, 30-60, 60-90 degrees); NaN for an empty bin."""
    out = {}
    for name, lo, hi in YAW_BINS:
        sel = (np.abs(yaw_deg) >= lo) & (np.abs(yaw_deg) < hi)
        out[name] = float(np.mean(values[sel])) if sel.any() else float("nan")
    return out
