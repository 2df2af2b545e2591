"""Pairs of nearby real video frames for the temporal terms E_flow and E_same (ARCHITECTURE §6).

A pair is two frames of one clip, ``gap`` frames apart, cut with **the same** perspective crop (the crop
the tracker would cut around the first frame's face, jittered like the real crops of
:mod:`engines.train.real`). Because both crops share one virtual camera, the face's image motion between
them is measured directly in crop pixels: dense optical flow (OpenCV's DIS) from the first crop to the
second. E_flow then asks that the network's two predicted faces, projected into that crop, move as the
flow says; E_same asks that the two predicted identities agree (one person). Each frame also carries the
teacher's 468 points, so the pair's crops serve E_lan as well.

One shard per clip group (``shard_<group>.npz``): ``image`` (N,2,128,128,3) uint8, ``flow`` (N,128,128,2)
float16 crop px (first -> second crop), ``points`` (N,2,468,2) float32 teacher points in crop px (NaN when
the teacher missed the second frame), ``focal_px`` (N,), ``gap`` (N,) frames, ``source`` (N,) and ``group``
(N,). ``manifest.json`` lists the spec and per-group stats. Evaluation data is refused, as for
:mod:`engines.train.real`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from engines.train.real import (
    NUM_POINTS,
    RealGroup,
    RealSpec,
    check_not_evaluation,
    jittered_crops,
    list_groups,
)
from tracker.core.crop import CROP_SIZE_PX
from tracker.core.errors import ConfigError
from tracker.core.types import ASSUMED_FOV_DEG

log = logging.getLogger(__name__)

PAIRS_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class PairSpec:
    """How frame pairs are made; stored in the manifest.

    Attributes:
        pairs_per_clip: First frames taken per clip, spread evenly.
        gaps: Frame gaps drawn from (1 = consecutive frames).
        scale_sigma: Std of the log crop-scale jitter.
        shift_sigma: Std of the crop-centre jitter, in crop sides.
        fov_deg: Assumed field of view across the longer frame side.
        min_face_px: Faces whose teacher box is smaller are skipped.
        crop_size_px: Crop side.
        seed: Jitter seed (per-group streams).
    """

    pairs_per_clip: int = 80
    gaps: tuple[int, ...] = (1, 2)
    scale_sigma: float = 0.1
    shift_sigma: float = 0.07
    fov_deg: float = ASSUMED_FOV_DEG
    min_face_px: float = 48.0
    crop_size_px: int = CROP_SIZE_PX
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pairs_per_clip < 1 or not self.gaps or min(self.gaps) < 1:
            raise ConfigError(f"pairs_per_clip must be >= 1 and gaps >= 1: {self}")


def crop_flow(first_rgb: np.ndarray, second_rgb: np.ndarray) -> np.ndarray:
    """(N,N,2) float32 dense optical flow in px from one crop to the other (OpenCV DIS, medium preset).

    DIS rather than Farneback: it keeps motion edges (the jaw against the background) sharper at a few
    milliseconds per 128 px crop.
    """
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    a = cv2.cvtColor(first_rgb, cv2.COLOR_RGB2GRAY)
    b = cv2.cvtColor(second_rgb, cv2.COLOR_RGB2GRAY)
    return dis.calc(a, b, None).astype(np.float32)


def iter_clip(path: Path) -> tuple[int, Iterator[np.ndarray]]:
    """A clip's frame count (from the container) and an iterator over its frames as (H,W,3) uint8 RGB,
    decoded one at a time (a 1080p clip would not fit in memory whole).

    Raises:
        ConfigError: if the file cannot be opened or reports no frames.
    """
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ConfigError(f"cannot open video {path}")
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    if total <= 0:
        cap.release()
        raise ConfigError(f"{path}: unknown frame count")

    def frames() -> Iterator[np.ndarray]:
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield np.ascontiguousarray(bgr[:, :, ::-1])
        finally:
            cap.release()

    return total, frames()


def _faces(teacher, rgb: np.ndarray) -> list[np.ndarray]:
    """The teacher's faces in a frame: (468,2) float64 image points each."""
    return [f.landmarks_px[:NUM_POINTS].astype(np.float64) for f in teacher.detect(rgb)]


def _largest(faces: list[np.ndarray]) -> np.ndarray | None:
    return max(faces, key=lambda p: float(np.ptp(p, axis=0).prod())) if faces else None


def _nearest(faces: list[np.ndarray], reference: np.ndarray) -> np.ndarray | None:
    """The face whose point centroid is nearest the reference's (the same person a frame or two later)."""
    c = reference.mean(axis=0)
    return min(faces, key=lambda p: float(np.linalg.norm(p.mean(axis=0) - c))) if faces else None


def extract_pair_group(teacher, group: RealGroup, spec: PairSpec, bar=None) -> tuple[dict[str, np.ndarray], dict]:
    """Cuts the pairs of one group's clips (see the module docstring for the arrays)."""
    rng = np.random.default_rng([spec.seed, zlib.crc32(group.name.encode())])
    crop_spec = RealSpec(jitter=1, scale_sigma=spec.scale_sigma, shift_sigma=spec.shift_sigma, fov_deg=spec.fov_deg,
                         crop_size_px=spec.crop_size_px)  # fmt: skip
    cols: dict[str, list] = {k: [] for k in ("image", "flow", "points", "focal_px", "gap", "source")}
    stats = {"pairs": 0, "no_face": 0, "small": 0}
    t0 = time.perf_counter()
    for video in group.videos:
        total, frames = iter_clip(video)
        gap_max = max(spec.gaps)
        n = min(spec.pairs_per_clip, max(0, total - gap_max))
        starts = set(((np.arange(n) + 0.5) * (total - gap_max) / max(n, 1)).astype(int).tolist())
        pending: dict[int, tuple] = {}  # second frame index -> pairs waiting for it
        done: dict[int, tuple] = {}  # first frame index -> finished pair (kept in first-frame order)
        for i, frame in enumerate(frames):
            if i in starts:  # draws happen in first-frame order: gap, then the crop jitter
                if bar is not None:
                    bar.update(1)
                gap = int(rng.choice(spec.gaps))
                pts = _largest(_faces(teacher, frame))
                if pts is None:
                    stats["no_face"] += 1
                elif np.ptp(pts, axis=0).max() < spec.min_face_px:
                    stats["small"] += 1
                else:
                    crop, first, first_pts = jittered_crops(frame, pts, crop_spec, rng)[0]
                    pending.setdefault(i + gap, []).append((i, gap, crop, first, first_pts, pts))
            waiting = pending.pop(i, [])
            faces = _faces(teacher, frame) if waiting else []
            for t, gap, crop, first, first_pts, pts1 in waiting:
                pts2 = _nearest(faces, pts1)
                second = crop.warp(frame)
                second_pts = (crop.to_crop(pts2).astype(np.float32) if pts2 is not None
                              else np.full((NUM_POINTS, 2), np.nan, np.float32))  # fmt: skip
                done[t] = (np.stack([first, second]), crop_flow(first, second).astype(np.float16),
                           np.stack([first_pts, second_pts]), np.float32(crop.focal_px), gap)  # fmt: skip
        for t in sorted(done):
            image, flow, points, focal, gap = done[t]
            cols["image"].append(image)
            cols["flow"].append(flow)
            cols["points"].append(points)
            cols["focal_px"].append(focal)
            cols["gap"].append(gap)
            cols["source"].append(f"{video.name}#frame={t}+{gap}")
            stats["pairs"] += 1
    stats["seconds"] = time.perf_counter() - t0
    s = spec.crop_size_px
    arrays = {
        "image": np.stack(cols["image"]) if cols["image"] else np.zeros((0, 2, s, s, 3), np.uint8),
        "flow": np.stack(cols["flow"]) if cols["flow"] else np.zeros((0, s, s, 2), np.float16),
        "points": np.stack(cols["points"]) if cols["points"] else np.zeros((0, 2, NUM_POINTS, 2), np.float32),
        "focal_px": np.asarray(cols["focal_px"], np.float32),
        "gap": np.asarray(cols["gap"], np.int32),
        "source": np.asarray(cols["source"], dtype=str),
        "group": np.asarray([group.name] * len(cols["source"]), dtype=str),
    }
    return arrays, stats


def extract_pairs(out_dir: Path, videos: list[Path] | None = None, spec: PairSpec = PairSpec(),
                  progress: bool = True) -> dict:  # fmt: skip
    """Extracts (or completes) a pair dataset from video clips: one shard per clip group + ``manifest.json``.

    Args:
        out_dir: Dataset folder (under the cache's ``train/data``).
        videos: Video files or folders; default the development clips.
        spec: Pair settings.
        progress: Show a progress bar.

    Raises:
        ConfigError: for evaluation data, or a folder holding pairs made with another spec.
    """
    from tqdm import tqdm

    from engines.teacher.mediapipe_landmarker import MediaPipeTeacher

    groups = list_groups(videos, include_identity=False)
    for g in groups:
        for p in g.videos:
            check_not_evaluation(p)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "manifest.json"
    spec_json = json.loads(json.dumps(dataclasses.asdict(spec)))  # tuples -> lists, as read back
    meta = {"format_version": PAIRS_FORMAT_VERSION, "kind": "pairs", "spec": spec_json, "groups": {}}
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old.get("spec") != spec_json or old.get("kind") != "pairs":
            raise ConfigError(f"{out_dir} holds a dataset with another spec; use a new data name or delete it")
        meta["groups"] = old.get("groups", {})
    todo = [g for g in groups if not (out_dir / f"shard_{g.name}.npz").exists()]
    if todo:
        with MediaPipeTeacher(mode="image", num_faces=2) as teacher, \
                tqdm(total=sum(len(g.videos) * spec.pairs_per_clip for g in todo), desc="frame pairs", unit="pair",
                     disable=not progress) as bar:  # fmt: skip
            for g in todo:
                arrays, stats = extract_pair_group(teacher, g, spec, bar)
                path = out_dir / f"shard_{g.name}.npz"
                tmp = path.with_name(path.stem + ".part.npz")
                np.savez(tmp, format_version=np.int32(PAIRS_FORMAT_VERSION), **arrays)
                tmp.replace(path)
                meta["groups"][g.name] = stats
                manifest_path.write_text(json.dumps(meta, indent=2))
    manifest_path.write_text(json.dumps(meta, indent=2))
    return meta

