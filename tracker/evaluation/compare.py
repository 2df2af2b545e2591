"""``facetrack eval compare``: facetrack and MediaPipe's Face Landmarker side by side on one clip.

Both run on the same decoded frames, interleaved in one process (frame by frame, alternating which of the
two goes first so neither always finds the caches warm): ms/frame of each, their ratio, jitter of each
(ARCHITECTURE §8) and the tracked fraction. The Face Landmarker runs in VIDEO mode (its own tracking
across frames) with media timestamps ``index * 1000 / fps`` ms.

MediaPipe's 478 points become iBUG-68 points through :func:`mediapipe_to_ibug68`: the committed
MediaPipe -> ICT surface correspondence (``engines/teacher/data/mediapipe_to_ict.npz``) places each of
MediaPipe's 468 mesh points on the ICT face, so every ICT landmark vertex is a fixed affine combination of
its nearest MediaPipe points on the neutral face. One fixed linear map, so it adds no jitter of its own.

:func:`run_paired` is also the frame loop of ``facetrack eval expressions``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from tracker.core.errors import ConfigError
from tracker.core.face_model import NUM_ARKIT
from tracker.core.types import Frame
from tracker.evaluation.metrics import jitter_series, nme_percent, percentiles
from tracker.evaluation.plotting import png_figure

log = logging.getLogger(__name__)

NUM_MP_POINTS = 478
NUM_MP_MESH = 468


@dataclasses.dataclass
class PairedRun:
    """Per-frame outputs of facetrack and of the Face Landmarker on the same frames.

    Attributes:
        fps: Frame rate of the clip (the one the media timestamps use).
        frame_wh: (width, height) px of the frames.
        flipped: Whether the frames were mirrored left-right before both tools saw them.
        ft_arkit: (N,52) float32 facetrack's ARKit values; NaN rows where it tracked no face.
        ft_landmarks68: (N,68,2) float64 px facetrack's landmarks; NaN where no face.
        ft_ms: (N,) float64 wall time of ``Tracker.process`` per frame, ms.
        mp_blendshapes: (N,52) float32 the Face Landmarker's blendshapes; NaN rows where it found no face
            (or blendshapes were not requested).
        mp_landmarks: (N,478,2) float64 px the Face Landmarker's points; NaN where no face.
        mp_ms: (N,) float64 wall time of one Face Landmarker call per frame, ms.
    """

    fps: float
    frame_wh: tuple[int, int]
    flipped: bool
    ft_arkit: np.ndarray
    ft_landmarks68: np.ndarray
    ft_ms: np.ndarray
    mp_blendshapes: np.ndarray
    mp_landmarks: np.ndarray
    mp_ms: np.ndarray

    @property
    def frames(self) -> int:
        return int(self.ft_ms.shape[0])

    @property
    def ft_tracked(self) -> np.ndarray:
        """(N,) bool: facetrack tracked a face."""
        return np.isfinite(self.ft_landmarks68[:, 0, 0])

    @property
    def mp_tracked(self) -> np.ndarray:
        """(N,) bool: the Face Landmarker found a face."""
        return np.isfinite(self.mp_landmarks[:, 0, 0])


def mirror_frame(frame: Frame) -> Frame:
    """The frame mirrored left-right, with the intrinsics of a camera that would have seen it that way.

    Raises:
        ConfigError: for distortion models beyond OpenCV's 5 terms (their mirror is not implemented).
    """
    k = frame.intrinsics
    dist = list(k.distortion)
    if any(dist[5:]):
        raise ConfigError("mirroring frames with more than 5 distortion terms is not supported")
    if len(dist) >= 4:
        dist[3] = -dist[3]  # x -> -x flips the sign of the tangential term p2 (p1 and the radial terms stay)
    intr = dataclasses.replace(k, cx=(k.width - 1) - k.cx, distortion=tuple(dist))
    return dataclasses.replace(frame, color=np.ascontiguousarray(frame.color[:, ::-1]), intrinsics=intr)


def run_paired(
    tracker, video: Path, max_frames: int | None = None, flip: bool = False, blendshapes: bool = True,
    progress: bool = True, desc: str = "facetrack + mediapipe",
) -> PairedRun:  # fmt: skip
    """Runs every frame of a clip through facetrack and the Face Landmarker (VIDEO mode), interleaved.

    The tracker is reset first, and a fresh Face Landmarker is opened, so a second call (e.g. on the mirrored
    clip) starts from no track in both.

    Args:
        tracker: A :class:`~tracker.tracking.Tracker`.
        video: The clip.
        max_frames: Stop after this many frames (default: all).
        flip: Mirror every frame left-right first (:func:`mirror_frame`).
        blendshapes: Ask the Face Landmarker for its 52 blendshapes.
        progress: Show a progress bar.
        desc: The progress bar's label.

    Raises:
        CameraError: if the clip is missing or cannot be decoded.
        EngineError: if MediaPipe (extra ``teacher``) or its model is missing.
    """
    from tqdm import tqdm

    from engines.teacher.mediapipe_landmarker import MediaPipeTeacher
    from tracker.sources import open_source

    if max_frames is not None and max_frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {max_frames}")
    tracker.reset()
    nan68, nan478, nan52 = (np.full(s, np.nan) for s in ((68, 2), (NUM_MP_POINTS, 2), (NUM_ARKIT,)))
    ft_arkit, ft_lm, ft_ms, mp_bs, mp_lm, mp_ms = [], [], [], [], [], []
    source = open_source(f"video:{video}", realtime=False)
    with source, MediaPipeTeacher(mode="video", blendshapes=blendshapes) as teacher:
        fps = float(source.fps)
        bar = tqdm(desc=desc, unit="frame", disable=not progress)
        frame_wh = (0, 0)
        while (frame := source.read()) is not None:
            if flip:
                frame = mirror_frame(frame)
            frame_wh = (frame.intrinsics.width, frame.intrinsics.height)
            ts_ms = round(frame.index * 1000.0 / fps)

            def run_ft(frame=frame):
                # Decoding is excluded from the timings, as in `eval video`; the filters use the media time.
                frame = dataclasses.replace(frame, t_capture_ns=time.monotonic_ns())
                t0 = time.perf_counter()
                face = tracker.process(frame).primary_face()
                ft_ms.append((time.perf_counter() - t0) * 1e3)
                ft_arkit.append(nan52 if face is None else face.arkit)
                ft_lm.append(nan68 if face is None else face.landmarks68)

            def run_mp(frame=frame, ts_ms=ts_ms):
                t0 = time.perf_counter()
                faces = teacher.detect(frame.color, timestamp_ms=ts_ms)
                mp_ms.append((time.perf_counter() - t0) * 1e3)
                face = faces[0] if faces else None
                mp_lm.append(nan478 if face is None else face.landmarks_px)
                mp_bs.append(nan52 if face is None or face.blendshapes is None else face.blendshapes)

            for step in (run_ft, run_mp) if frame.index % 2 == 0 else (run_mp, run_ft):
                step()
            bar.update(1)
            if max_frames is not None and len(ft_ms) >= max_frames:
                break
        bar.close()
    return PairedRun(
        fps=fps, frame_wh=frame_wh, flipped=flip,
        ft_arkit=np.array(ft_arkit, np.float32).reshape(-1, NUM_ARKIT),
        ft_landmarks68=np.array(ft_lm, np.float64).reshape(-1, 68, 2),
        ft_ms=np.array(ft_ms, np.float64),
        mp_blendshapes=np.array(mp_bs, np.float32).reshape(-1, NUM_ARKIT),
        mp_landmarks=np.array(mp_lm, np.float64).reshape(-1, NUM_MP_POINTS, 2),
        mp_ms=np.array(mp_ms, np.float64),
    )  # fmt: skip


def mediapipe_to_ibug68(model, correspondence=None, k: int = 8, ridge: float = 0.01) -> np.ndarray:
    """(68,478) float64 weights W with ``W @ mediapipe_points`` = the iBUG-68 points (rows sum to 1).

    Each ICT iBUG-68 landmark vertex is written as an affine combination of ``k`` MediaPipe mesh points
    (their positions on the ICT surface from the committed correspondence) that holds on the neutral face
    and on each of the 53 expressions at full weight: the neighbours are the points nearest over all those
    shapes (on the neutral face alone the upper and lower inner lips coincide), the weights least squares on
    the stacked 3D positions, summing to 1, with a small ridge toward inverse-distance weights so that
    near-coplanar neighbours give stable weights. The 10 iris points get weight 0.

    Args:
        model: The ICT :class:`~tracker.core.face_model.FaceModel`.
        correspondence: A :class:`~engines.teacher.correspondence.Correspondence`; default: the committed one.
        k: MediaPipe points per landmark.
        ridge: Weight of the pull toward inverse-distance weights, cm^2.
    """
    from engines.teacher.correspondence import load_correspondence
    from tracker.core.face_model import NUM_ICT

    corr = correspondence if correspondence is not None else load_correspondence()
    expressions = np.vstack([np.zeros((1, NUM_ICT)), np.eye(NUM_ICT)]).astype(np.float32)
    shapes = np.asarray(model.vertices(None, expressions), np.float64)  # (54,V,3) cm
    mp_cm = np.stack([corr.points_cm(v) for v in shapes])  # (54,468,3)
    lm_cm = shapes[:, model.landmark_ids]  # (54,68,3)
    w_all = np.zeros((68, NUM_MP_POINTS), np.float64)
    for i in range(68):
        dist = np.linalg.norm(mp_cm - lm_cm[:, i : i + 1], axis=2).mean(0)  # (468,) mean over shapes
        near = np.argsort(dist)[:k]
        a = mp_cm[:, near].transpose(0, 2, 1).reshape(-1, k)  # (54*3,k)
        target = lm_cm[:, i].reshape(-1)
        w0 = 1.0 / np.maximum(dist[near], 1e-3)
        w0 /= w0.sum()
        # min |a w - target|^2 / shapes + ridge |w - w0|^2  subject to  sum(w) = 1 (a KKT system)
        n_shapes = len(shapes)
        kkt = np.zeros((k + 1, k + 1))
        kkt[:k, :k] = a.T @ a / n_shapes + ridge * np.eye(k)
        kkt[:k, k] = kkt[k, :k] = 1.0
        rhs = np.concatenate([a.T @ target / n_shapes + ridge * w0, [1.0]])
        w_all[i, near] = np.linalg.solve(kkt, rhs)[:k]
    return w_all


def _side(ms: np.ndarray, landmarks68: np.ndarray, tracked: np.ndarray) -> dict:
    jit = jitter_series([lm if ok else None for lm, ok in zip(landmarks68, tracked, strict=True)])
    return {
        "tracked_fraction": float(tracked.mean()) if tracked.size else 0.0,
        "jitter": float(np.nanmean(jit)) if np.isfinite(jit).any() else float("nan"),
        "ms_per_frame": percentiles(ms),
        "jitter_series": [None if not np.isfinite(v) else float(v) for v in jit],
    }


def compare_run(run: PairedRun, w68: np.ndarray) -> dict:
    """The scores of ``facetrack eval compare`` from a :func:`run_paired` run.

    Returns:
        ``frames``, ``fps``, ``facetrack`` and ``mediapipe`` (each ``tracked_fraction``, ``jitter``,
        ``ms_per_frame`` {``p50``, ``p95``}, ``jitter_series``), ``speedup`` {``p50``, ``p95``} (MediaPipe's
        ms / facetrack's ms: how many times faster facetrack is), ``jitter_ratio`` (facetrack / MediaPipe)
        and ``landmark_agreement_nme`` (mean NME of facetrack's 68 points against MediaPipe's mapped ones, %).
    """
    mp68 = np.einsum("kp,npc->nkc", w68, np.nan_to_num(run.mp_landmarks))
    mp68[~run.mp_tracked] = np.nan
    ft = _side(run.ft_ms, run.ft_landmarks68, run.ft_tracked)
    mp = _side(run.mp_ms, mp68, run.mp_tracked)
    both = run.ft_tracked & run.mp_tracked
    agree = [nme_percent(run.ft_landmarks68[i], mp68[i]) for i in np.flatnonzero(both)]
    return {
        "frames": run.frames,
        "fps": run.fps,
        "frame_wh": list(run.frame_wh),
        "facetrack": ft,
        "mediapipe": mp,
        "speedup": {p: mp["ms_per_frame"][p] / ft["ms_per_frame"][p] for p in ("p50", "p95")},
        "jitter_ratio": ft["jitter"] / mp["jitter"] if mp["jitter"] > 0 else float("nan"),
        "landmark_agreement_nme": float(np.mean(agree)) if agree else float("nan"),
        "mediapipe_to_68": "ICT landmark vertices as affine combinations of MediaPipe points "
                           "(engines/teacher/data/mediapipe_to_ict.npz)",
    }  # fmt: skip


def evaluate_compare(tracker, video: Path, max_frames: int | None = None, progress: bool = True) -> dict:
    """``facetrack eval compare``: :func:`run_paired` then :func:`compare_run` (keys there)."""
    run = run_paired(
        tracker, Path(video), max_frames, blendshapes=False, progress=progress, desc="eval compare"
    )
    return compare_run(run, mediapipe_to_ibug68(tracker.regressor.face_model))


def plot_compare(result: dict, path: Path, title: str = "") -> Path:
    """Jitter over time of both tools, and their ms/frame percentiles."""
    with png_figure(path, 2, (13, 3.8)) as (_, axes):
        for name, style in (("facetrack", "-"), ("mediapipe", "--")):
            jit = np.array([np.nan if v is None else v for v in result[name]["jitter_series"]], dtype=float)
            axes[0].plot(jit, style, lw=0.8, label=f"{name} (mean {result[name]['jitter']:.3f})")
        axes[0].set_xlabel("frame")
        axes[0].set_ylabel("jitter (% of face size)")
        axes[0].set_title(f"{title} jitter")
        axes[0].legend()
        x = np.arange(2)
        for j, name in enumerate(("facetrack", "mediapipe")):
            ms = result[name]["ms_per_frame"]
            axes[1].bar(x + 0.4 * j, [ms["p50"], ms["p95"]], 0.4, label=name)
        axes[1].set_xticks(x + 0.2, ["p50", "p95"])
        axes[1].set_ylabel("ms / frame")
        axes[1].set_title(f"facetrack {result['speedup']['p50']:.1f}x faster (p50)")
        axes[1].legend()
    return Path(path)
