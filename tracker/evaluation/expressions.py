"""``facetrack eval expressions``: facetrack's 52 ARKit values against the Face Landmarker's blendshapes.

Real video has no blendshape ground truth here, so the reference is MediaPipe's Face Landmarker
(``output_face_blendshapes``) on the same frames (:func:`~tracker.evaluation.compare.run_paired`). Scores:

- per channel, over frames where both tools track a face: Pearson r and the mean absolute difference;
- which channels **move**: the reference's standard deviation over those frames is >= :data:`MOVE_STD`
  (a channel the reference holds still has no r worth reading);
- the **mirror check**: the clip mirrored left-right goes through both tools again, and each tool's
  ``...Left`` channel on the mirrored clip must follow its ``...Right`` channel on the original (and the
  reverse). Blinks, smiles and brows are mostly symmetric, so the test is on each pair's asymmetry
  d = Left - Right (its constant part included: a Left/Right offset that stays put on the mirrored face is
  a failure to swap): for a tool that swaps, d on the mirrored clip = -d on the original. A pair passes
  when ``mean |d_mirror + d|`` is :data:`MIRROR_MARGIN` times smaller than ``mean |d_mirror - d|``, fails
  when it is that much larger, and is undecided in between or when d is too small to tell the two apart
  (RMS < :data:`MIN_ASYMMETRY`). ``passes_dynamic`` repeats the test with each series' mean removed, which
  tells a fixed one-sided bias from a failure to swap what moves;
- the **Left/Right convention** of each tool (ARKit: the subject's left): each tool's eyeBlink asymmetry
  against the eye-opening asymmetry of its own landmarks, where the subject's left eye is iBUG 42-47 /
  MediaPipe 362-263 (the eye on the image's right in a face seen from the front), and the two tools'
  asymmetries against each other.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from tracker.core.errors import ConfigError
from tracker.core.face_model import ARKIT_NAMES
from tracker.evaluation.compare import PairedRun, run_paired
from tracker.evaluation.plotting import png_figure

log = logging.getLogger(__name__)

#: Channels the issue's targets name, in the order the plot stacks them.
KEY_CHANNELS = ("jawOpen", "eyeBlinkLeft", "eyeBlinkRight", "mouthSmileLeft", "mouthSmileRight", "browInnerUp",
                "browDownLeft", "browDownRight", "mouthFunnel", "mouthPucker")  # fmt: skip
#: A channel moves when the reference's std over the frames scored is at least this (0..1 scale).
MOVE_STD = 0.03
#: A Left/Right pair's asymmetry must be at least this large (RMS, 0..1) for the mirror check to decide it.
MIN_ASYMMETRY = 0.02
#: Factor by which one hypothesis (swapped / not swapped) must fit better than the other for a verdict.
MIRROR_MARGIN = 1.25

#: Eye landmarks (subject's right eye, subject's left eye): outer corner, inner corner, two (upper, lower)
#: lid pairs. iBUG-68: 36-41 is the subject's right eye; MediaPipe: 33/133 right, 263/362 left.
IBUG_EYES = ((36, 39, ((37, 41), (38, 40))), (45, 42, ((44, 46), (43, 47))))
MP_EYES = ((33, 133, ((159, 145), (158, 153))), (263, 362, ((386, 374), (385, 380))))


def mirror_permutation_arkit(names: tuple[str, ...] = ARKIT_NAMES) -> np.ndarray:
    """(52,) int64: index of each channel's mirror image (``...Left`` <-> ``...Right``; the others fixed)."""
    index = {n: i for i, n in enumerate(names)}
    perm = np.arange(len(names))
    for i, n in enumerate(names):
        if n.endswith("Left"):
            perm[i] = index[n[: -len("Left")] + "Right"]
        elif n.endswith("Right"):
            perm[i] = index[n[: -len("Right")] + "Left"]
    return perm


def lr_pairs(names: tuple[str, ...] = ARKIT_NAMES) -> list[tuple[int, int]]:
    """(Left index, Right index) of every mirrored pair, in channel order."""
    perm = mirror_permutation_arkit(names)
    return [(i, int(perm[i])) for i, n in enumerate(names) if n.endswith("Left")]


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    """Pearson r of two series; NaN when either is constant or they hold fewer than 3 values."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.size < 3:
        return float("nan")
    xc, yc = x - x.mean(), y - y.mean()
    den = np.sqrt((xc**2).sum() * (yc**2).sum())
    return float((xc * yc).sum() / den) if den > 1e-12 else float("nan")


def channel_agreement(ours: np.ndarray, ref: np.ndarray, names: tuple[str, ...] = ARKIT_NAMES) -> dict:
    """Per-channel agreement of two (N,C) series over the frames where both are finite.

    Returns:
        ``frames`` (used), ``channels`` {name: {``r``, ``mean_abs_diff``, ``ours_mean``, ``ref_mean``,
        ``ours_std``, ``ref_std``, ``moves``, ``ours_moves`` (the same test on ours), ``r_vs_ref_mirror`` (r against the reference's other-side
        channel: above ``r`` would mean the two disagree on Left/Right)}}, ``moving`` (names of channels that move, :data:`MOVE_STD`)
        and ``mean_r_moving`` (mean r over those; NaN r values left out).
    """
    ok = np.isfinite(ours).all(1) & np.isfinite(ref).all(1)
    a, b = ours[ok].astype(np.float64), ref[ok].astype(np.float64)
    perm = mirror_permutation_arkit(names)
    channels = {}
    for c, name in enumerate(names):
        ref_std = float(b[:, c].std()) if ok.any() else float("nan")
        channels[name] = {
            "r": pearson(a[:, c], b[:, c]),
            "mean_abs_diff": float(np.abs(a[:, c] - b[:, c]).mean()) if ok.any() else float("nan"),
            "ours_mean": float(a[:, c].mean()) if ok.any() else float("nan"),
            "ref_mean": float(b[:, c].mean()) if ok.any() else float("nan"),
            "ours_std": float(a[:, c].std()) if ok.any() else float("nan"),
            "ref_std": ref_std,
            "moves": bool(ref_std >= MOVE_STD),
            # an r on a channel ours holds still (a dead output) measures noise at the 1e-4 level
            "ours_moves": bool(ok.any() and a[:, c].std() >= MOVE_STD),
            "r_vs_ref_mirror": pearson(a[:, c], b[:, perm[c]]),
        }
    moving = [n for n, v in channels.items() if v["moves"]]
    rs = [channels[n]["r"] for n in moving if np.isfinite(channels[n]["r"])]
    return {"frames": int(ok.sum()), "channels": channels, "moving": moving,
            "mean_r_moving": float(np.mean(rs)) if rs else float("nan")}  # fmt: skip


def _swap_verdict(d: np.ndarray, dm: np.ndarray) -> tuple[str, float, float]:
    """("pass" | "fail" | "undecided", swap error, same error) for asymmetries on the clip and on its mirror."""
    swap_err, same_err = float(np.abs(dm + d).mean()), float(np.abs(dm - d).mean())
    verdict = "undecided"
    if np.sqrt(np.mean(d**2)) >= MIN_ASYMMETRY:
        if swap_err * MIRROR_MARGIN <= same_err:
            verdict = "pass"
        elif same_err * MIRROR_MARGIN <= swap_err:
            verdict = "fail"
    return verdict, swap_err, same_err


def mirror_check(original: np.ndarray, mirrored: np.ndarray, names: tuple[str, ...] = ARKIT_NAMES) -> dict:
    """One tool's outputs on a clip and on the clip mirrored left-right: does it swap every Left/Right channel?

    The verdict counts the whole asymmetry, a constant Left/Right offset included; ``dynamic_verdict`` (and
    ``passes_dynamic``) test only its moving part (each series' mean removed), which separates a tool that
    swaps what it sees but carries a fixed one-sided bias from one that does not swap at all.

    Args:
        original: (N,C) outputs on the clip, NaN rows where no face.
        mirrored: (N,C) outputs on the same frames mirrored, NaN rows where no face.

    Returns:
        ``frames`` (used), ``pairs`` {"<Left>/<Right>": {``asymmetry_rms``, ``asymmetry_mean``,
        ``mirrored_asymmetry_mean``, ``swap_error``, ``same_error``, ``verdict`` ("pass", "fail" or
        "undecided"), ``dynamic_verdict``}}, ``channels`` {name: {``r``, ``mean_abs_diff``}} (the mirrored
        clip's channel against the original's mirror channel), ``passes`` (no pair fails and some frame is
        usable), ``passes_dynamic`` (the same on the moving parts), ``failed``, ``failed_dynamic`` and
        ``undecided`` (pair names).
    """
    perm = mirror_permutation_arkit(names)
    ok = np.isfinite(original).all(1) & np.isfinite(mirrored).all(1)
    a, b = original[ok].astype(np.float64), mirrored[ok].astype(np.float64)
    pairs = {}
    for li, ri in lr_pairs(names):
        key = f"{names[li]}/{names[ri]}"
        if not ok.any():
            pairs[key] = {"verdict": "undecided", "dynamic_verdict": "undecided"}
            continue
        d, dm = a[:, li] - a[:, ri], b[:, li] - b[:, ri]
        verdict, swap_err, same_err = _swap_verdict(d, dm)
        pairs[key] = {
            "asymmetry_rms": float(np.sqrt(np.mean(d**2))), "asymmetry_mean": float(d.mean()),
            "mirrored_asymmetry_mean": float(dm.mean()), "swap_error": swap_err, "same_error": same_err,
            "verdict": verdict, "dynamic_verdict": _swap_verdict(d - d.mean(), dm - dm.mean())[0],
        }  # fmt: skip
    channels = {
        n: {"r": pearson(b[:, c], a[:, perm[c]]),
            "mean_abs_diff": float(np.abs(b[:, c] - a[:, perm[c]]).mean()) if ok.any() else float("nan")}
        for c, n in enumerate(names)
    }  # fmt: skip
    failed = [k for k, p in pairs.items() if p["verdict"] == "fail"]
    failed_dynamic = [k for k, p in pairs.items() if p["dynamic_verdict"] == "fail"]
    undecided = [k for k, p in pairs.items() if p["verdict"] == "undecided"]
    return {"frames": int(ok.sum()), "pairs": pairs, "channels": channels, "failed": failed,
            "failed_dynamic": failed_dynamic, "undecided": undecided, "passes": bool(ok.any() and not failed),
            "passes_dynamic": bool(ok.any() and not failed_dynamic)}  # fmt: skip


def eye_opening(points: np.ndarray, eyes) -> np.ndarray:
    """(N,2) eye opening (mean lid distance / eye width) of (subject's right, subject's left) eye.

    Args:
        points: (N,P,2) px landmarks (NaN rows where no face).
        eyes: :data:`IBUG_EYES` or :data:`MP_EYES`.
    """
    out = []
    for outer, inner, lids in eyes:
        width = np.linalg.norm(points[:, outer] - points[:, inner], axis=-1)
        gap = np.mean([np.linalg.norm(points[:, u] - points[:, lo], axis=-1) for u, lo in lids], axis=0)
        out.append(gap / np.maximum(width, 1e-6))
    return np.stack(out, axis=1)


def lr_convention(run: PairedRun) -> dict:
    """Which side each tool calls Left, from a clip (ARKit's convention: the subject's left).

    ``<tool>_blink_vs_own_eyes``: r of the tool's eyeBlinkLeft - eyeBlinkRight against the closing asymmetry
    (right-eye opening - left-eye opening) of its own landmarks, with the subject's left eye as the eye
    landmarks say; > 0 means the tool's Left is the subject's left. ``tools_agree``: r of the two tools'
    blink asymmetries (> 0: the same convention). ``left_eye_on_image_right``: fraction of frames where the
    subject's left eye (by the landmark ids) is on the image's right, i.e. the face is seen from the front.
    """
    bl, br = ARKIT_NAMES.index("eyeBlinkLeft"), ARKIT_NAMES.index("eyeBlinkRight")
    out = {}
    both = run.ft_tracked & run.mp_tracked
    for tool, values, points, eyes, ids in (
        ("facetrack", run.ft_arkit, run.ft_landmarks68, IBUG_EYES, (36, 45)),
        ("mediapipe", run.mp_blendshapes, run.mp_landmarks, MP_EYES, (33, 263)),
    ):
        ok = np.isfinite(values).all(1) & np.isfinite(points[:, :, 0]).all(1)
        opening = eye_opening(points[ok], eyes)
        out[f"{tool}_blink_vs_own_eyes"] = pearson(
            values[ok, bl] - values[ok, br], opening[:, 0] - opening[:, 1]
        )
        right_eye_x, left_eye_x = points[ok, ids[0], 0], points[ok, ids[1], 0]
        out[f"{tool}_left_eye_on_image_right"] = (
            float(np.mean(left_eye_x > right_eye_x)) if ok.any() else float("nan")
        )
    out["tools_agree"] = pearson(run.ft_arkit[both, bl] - run.ft_arkit[both, br],
                                 run.mp_blendshapes[both, bl] - run.mp_blendshapes[both, br])  # fmt: skip
    return out


def save_runs(path: Path, runs: dict[str, PairedRun]) -> Path:
    """Writes the per-frame values of both tools (``<run>_<field>`` arrays, e.g. ``original_ft_arkit``) to .npz."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"arkit_names": np.array(ARKIT_NAMES)}
    for name, run in runs.items():
        for field in ("ft_arkit", "ft_landmarks68", "ft_ms", "mp_blendshapes", "mp_landmarks", "mp_ms"):
            arrays[f"{name}_{field}"] = getattr(run, field)
        arrays[f"{name}_fps"] = np.float64(run.fps)
    np.savez_compressed(path, **arrays)
    return path


def evaluate_expressions(
    tracker, video: Path, max_frames: int | None = None, mirror: bool = True, progress: bool = True,
    frames_npz: Path | None = None,
) -> dict:  # fmt: skip
    """``facetrack eval expressions`` on one clip.

    Args:
        tracker: A :class:`~tracker.tracking.Tracker`.
        video: The clip.
        max_frames: Stop after N frames (default: all).
        mirror: Also run the mirrored clip through both tools (the mirror check; doubles the time).
        progress: Show progress bars.
        frames_npz: Also write every frame's values of both tools there (:func:`save_runs`).

    Returns:
        ``frames``, ``fps``, ``tracked_fraction`` {``facetrack``, ``mediapipe``}, ``frames_both``,
        ``channels`` (per channel, :func:`channel_agreement`, ``ours`` = facetrack and ``ref`` = MediaPipe),
        ``moving``, ``moves_definition``, ``mean_r_moving``, ``key_channels`` {name: r}, ``lr_convention``,
        ``mirror`` {``facetrack``, ``mediapipe``: :func:`mirror_check`} when ``mirror``, and ``series``
        (the key channels per frame, None where untracked) for the plot.
    """
    run = run_paired(tracker, Path(video), max_frames, progress=progress, desc="eval expressions")
    agree = channel_agreement(run.ft_arkit, run.mp_blendshapes)
    result = {
        "frames": run.frames,
        "fps": run.fps,
        "tracked_fraction": {
            "facetrack": float(run.ft_tracked.mean()) if run.frames else 0.0,
            "mediapipe": float(run.mp_tracked.mean()) if run.frames else 0.0,
        },  # fmt: skip
        "frames_both": agree["frames"],
        "channels": agree["channels"],
        "moving": agree["moving"],
        "moves_definition": f"MediaPipe's std over the frames both tools track >= {MOVE_STD}",
        "mean_r_moving": agree["mean_r_moving"],
        "key_channels": {n: agree["channels"][n]["r"] for n in KEY_CHANNELS},
        "lr_convention": lr_convention(run),
    }
    runs = {"original": run}
    if mirror:
        flipped = run_paired(tracker, Path(video), max_frames, flip=True, progress=progress,
                             desc="eval expressions, mirrored")  # fmt: skip
        runs["mirrored"] = flipped
        result["mirror"] = {"facetrack": mirror_check(run.ft_arkit, flipped.ft_arkit),
                            "mediapipe": mirror_check(run.mp_blendshapes, flipped.mp_blendshapes)}  # fmt: skip
    if frames_npz is not None:
        save_runs(frames_npz, runs)
    idx = [ARKIT_NAMES.index(n) for n in KEY_CHANNELS]
    result["series"] = {
        tool: {n: [None if not np.isfinite(v) else float(v) for v in values[:, c]] for n, c in zip(KEY_CHANNELS, idx, strict=True)}
        for tool, values in (("facetrack", run.ft_arkit), ("mediapipe", run.mp_blendshapes))
    }  # fmt: skip
    return result


def plot_expressions(result: dict, path: Path, title: str = "") -> Path:
    """The key channels over time, stacked (facetrack solid, MediaPipe dashed), with each channel's r."""
    with png_figure(path, 1, (12, 1.1 * len(KEY_CHANNELS) + 1)) as (_, ax):
        ticks = []
        for k, name in enumerate(KEY_CHANNELS):
            base = 1.2 * (len(KEY_CHANNELS) - 1 - k)
            for tool, style, color in (("facetrack", "-", "C0"), ("mediapipe", "--", "C1")):
                v = np.array([np.nan if x is None else x for x in result["series"][tool][name]], dtype=float)
                ax.plot(v + base, style, color=color, lw=0.9, label=tool if k == 0 else None)
            ax.axhline(base, color="0.85", lw=0.5)
            ticks.append((base + 0.5, f"{name}\nr {result['channels'][name]['r']:.2f}"))
        ax.set_yticks([t for t, _ in ticks], [lab for _, lab in ticks], fontsize=8)
        ax.set_xlabel("frame")
        ax.set_title(f"{title} ARKit channels (0..1 each): facetrack vs MediaPipe; "
                     f"mean r over moving channels {result['mean_r_moving']:.2f}")  # fmt: skip
        ax.legend(loc="upper right")
    return Path(path)


def summarize_clips(results: dict[str, dict]) -> dict:
    """The per-clip results of several clips, summarised the way issue 13's targets read them.

    Args:
        results: Clip name -> :func:`evaluate_expressions` result.

    Returns:
        ``clips`` (count), ``key_channels`` {name: {``median``, ``min``, ``max``, ``clips`` (with a finite
        r)}} of the per-clip r, ``mean_r_moving`` the same over clips, ``tracked_fraction_min`` per tool,
        and, when mirrored, ``mirror`` {tool: {``passes``, ``passes_dynamic``: clips passing}}.
    """
    if not results:
        raise ConfigError("no clips to summarise")

    def stats(values: list[float]) -> dict:
        v = np.array([x for x in values if np.isfinite(x)], dtype=float)
        if v.size == 0:
            return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "clips": 0}
        return {"median": float(np.median(v)), "min": float(v.min()), "max": float(v.max()), "clips": int(v.size)}

    rs = list(results.values())
    summary = {
        "clips": len(rs),
        "key_channels": {n: stats([r["key_channels"][n] for r in rs]) for n in KEY_CHANNELS},
        "mean_r_moving": stats([r["mean_r_moving"] for r in rs]),
        "tracked_fraction_min": {t: float(min(r["tracked_fraction"][t] for r in rs)) for t in ("facetrack", "mediapipe")},
    }
    if all("mirror" in r for r in rs):
        summary["mirror"] = {
            tool: {k: int(sum(bool(r["mirror"][tool][k]) for r in rs)) for k in ("passes", "passes_dynamic")}
            for tool in rs[0]["mirror"]
        }
    return summary


def plot_clip_summary(summary: dict, results: dict[str, dict], path: Path) -> Path:
    """Per-clip r of each key channel (dots) and the median over clips (bar)."""
    with png_figure(path, 1, (12, 4.5)) as (_, ax):
        x = np.arange(len(KEY_CHANNELS))
        ax.bar(x, [summary["key_channels"][n]["median"] for n in KEY_CHANNELS], color="C0", alpha=0.35,
               label="median over clips")  # fmt: skip
        for r in results.values():
            ax.plot(x, [r["key_channels"][n] for n in KEY_CHANNELS], ".", color="C0", ms=4, alpha=0.7)
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_xticks(x, KEY_CHANNELS, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("Pearson r vs MediaPipe")
        ax.set_ylim(-0.6, 1.0)
        ax.set_title(f"facetrack vs MediaPipe blendshapes on {summary['clips']} clips (dots: one clip each)")
        ax.legend(loc="lower right")
    return Path(path)
