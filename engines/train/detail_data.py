"""Training data of the eye and mouth detail networks (``facetrack train detail-data``).

Two sources, one shard per clip or synthetic shard:

- **real clips**, every frame: MediaPipe's Face Landmarker (VIDEO mode) gives the ARKit blendshapes that
  serve as the teacher, and its points place the patches (:mod:`tracker.core.regions`, MediaPipe anchors).
  At run time the tracker's own landmarks place them; the trainer jitters each patch by more than the two
  disagree (68-point agreement 1.9-4.8 % of the face, docs/benchmarks.md), so the placement does not matter.
- **synthetic crops** (``facetrack train synth``): exact expressions, patches placed by the exact 68 points.
  They teach what MediaPipe cannot: a fully closed eye is a blink of 1 (MediaPipe reads 0.45-0.77 there).

Patches are stored grey, wider than the networks' input (:data:`CONTEXT`), so the trainer can move, scale
and turn them without running out of image. Evaluation data (``landmarks68/``) and the developer clips the
expression targets are measured on (``videos/``) are refused.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import cv2
import numpy as np

from engines.train.real import VIDEO_SUFFIXES, check_not_evaluation
from tracker.core.errors import ConfigError
from tracker.core.face_model.arkit import ict_to_arkit
from tracker.core.regions import IBUG68_ANCHORS, MEDIAPIPE_ANCHORS, cut_patches

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
#: Stored patches cover this many times the networks' patch (room for the training-time jitter).
CONTEXT = 1.3
#: Faces whose eye distance is smaller than this (px) are skipped: the teacher is unreliable there and the
#: eyes are a few pixels wide.
MIN_EYE_DISTANCE_PX = 24.0
#: Synthetic crops turned further than this are left out: the far eye and half the mouth are hidden there,
#: so their exact labels describe nothing the patch shows.
MAX_SYNTH_YAW_DEG = 45.0
#: Clip formats read (OpenCV decodes GRID's MPEG-1 and animated GIFs too).
CLIP_SUFFIXES = (*VIDEO_SUFFIXES, ".mpg", ".mpeg", ".gif")
#: Clips the expression targets of issue 13 are measured on: never trained on.
HELD_FOR_EVALUATION = ("/data/videos/",)


@dataclasses.dataclass(frozen=True)
class DetailShard:
    """One shard's arrays (``.npz``).

    Attributes:
        eyes: (N,2,E,E) uint8 grey, subject's right eye then left eye mirrored (E = 48 x CONTEXT).
        mouth: (N,M,M) uint8 grey (M = 64 x CONTEXT).
        arkit: (N,52) float32 ARKit targets (MediaPipe's scores, or the exact synthetic ones).
        exact: (N,) bool: True for synthetic (exact) targets.
    """

    eyes: np.ndarray
    mouth: np.ndarray
    arkit: np.ndarray
    exact: np.ndarray

    def save(self, path: Path) -> None:
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, format_version=FORMAT_VERSION, eyes=self.eyes, mouth=self.mouth, arkit=self.arkit,
                            exact=self.exact)  # fmt: skip
        tmp.replace(path)  # a shard exists only when complete, so an interrupted build resumes cleanly

    @classmethod
    def load(cls, path: Path) -> DetailShard:
        with np.load(path) as z:
            if int(z["format_version"]) != FORMAT_VERSION:
                raise ConfigError(f"{path}: detail shard format {int(z['format_version'])}, expected {FORMAT_VERSION}; "
                                  "rebuild with `facetrack train detail-data`")  # fmt: skip
            return cls(z["eyes"], z["mouth"], z["arkit"], z["exact"])

    def __len__(self) -> int:
        return int(self.arkit.shape[0])


def _empty() -> dict[str, list]:
    return {"eyes": [], "mouth": [], "arkit": []}


def _shard(rows: dict[str, list], exact: bool) -> DetailShard:
    from tracker.core.regions import patch_sizes_px

    e, m = patch_sizes_px(CONTEXT)
    n = len(rows["arkit"])
    return DetailShard(
        eyes=np.array(rows["eyes"], np.uint8).reshape(n, 2, e, e),
        mouth=np.array(rows["mouth"], np.uint8).reshape(n, m, m),
        arkit=np.array(rows["arkit"], np.float32).reshape(n, 52),
        exact=np.full(n, exact, bool),
    )


def check_trainable(path: Path) -> None:
    """Raises ConfigError for evaluation data and for the developer clips the targets are measured on."""
    check_not_evaluation(path)
    text = str(Path(path).resolve()) + "/"
    if any(marker in text for marker in HELD_FOR_EVALUATION):
        raise ConfigError(f"{path}: the developer clips in videos/ are where `facetrack eval expressions` is "
                          "measured; train the detail networks on videos_extra/ or your own clips")  # fmt: skip


def list_clips(paths: list[Path]) -> list[Path]:
    """Video files of ``paths`` (files or folders), sorted, each checked with :func:`check_trainable`."""
    clips: list[Path] = []
    for p in map(Path, paths):
        check_trainable(p)
        if p.is_dir():
            clips += sorted(f for f in p.iterdir() if f.suffix.lower() in CLIP_SUFFIXES)
        elif p.is_file():
            clips.append(p)
        else:
            raise ConfigError(f"clip {p} not found")
    return clips


def clip_frame_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    try:
        return max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
    finally:
        cap.release()


def extract_clip(teacher_factory, path: Path, bar=None) -> DetailShard:
    """Every frame of one clip through a fresh MediaPipe teacher (VIDEO mode), the largest face's patches.

    Args:
        teacher_factory: ``() -> MediaPipeTeacher`` in video mode with blendshapes (one per clip: VIDEO mode
            tracks across calls).
        path: The clip.
        bar: Optional tqdm bar, advanced per frame.
    """
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ConfigError(f"cannot open video {path}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    rows = _empty()
    try:
        with teacher_factory() as teacher:
            index = 0
            while True:
                ok, bgr = cap.read()
                if not ok:
                    break
                rgb = np.ascontiguousarray(bgr[:, :, ::-1])
                faces = teacher.detect(rgb, timestamp_ms=int(round(index * 1000.0 / fps)) + 1)
                index += 1
                if bar is not None:
                    bar.update(1)
                if not faces or faces[0].blendshapes is None:
                    continue
                anchors = faces[0].landmarks_px[list(MEDIAPIPE_ANCHORS)]
                if np.linalg.norm(anchors[2:4].mean(0) - anchors[0:2].mean(0)) < MIN_EYE_DISTANCE_PX:
                    continue
                eyes, mouth = cut_patches(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), anchors, CONTEXT)
                rows["eyes"].append(eyes)
                rows["mouth"].append(mouth)
                rows["arkit"].append(faces[0].blendshapes)
    finally:
        cap.release()
    return _shard(rows, exact=False)


def extract_synthetic(shard_path: Path, max_yaw_deg: float = MAX_SYNTH_YAW_DEG) -> DetailShard:
    """The patches of one synthetic shard's face crops (``is_face``, ``|yaw| <= max_yaw_deg``), placed by the
    exact 68 points."""
    with np.load(shard_path) as z:
        images, landmarks, expression = z["image"], z["landmarks"], z["expression"]
        keep = (z["is_face"] > 0.5) & (np.abs(z["yaw_deg"]) <= max_yaw_deg)
    rows = _empty()
    for img, lm, ex, ok in zip(images, landmarks, expression, keep, strict=True):
        if not ok:
            continue
        eyes, mouth = cut_patches(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), lm[list(IBUG68_ANCHORS)], CONTEXT)
        rows["eyes"].append(eyes)
        rows["mouth"].append(mouth)
        rows["arkit"].append(ict_to_arkit(ex))
    return _shard(rows, exact=True)


def build(out_dir: Path, clips: list[Path], synthetic_shards: list[Path], progress: bool = True) -> dict:
    """Builds (or completes) a detail dataset: one shard per clip and per synthetic shard.

    Returns:
        The manifest: ``{"format_version", "shards": {name: {"samples", "exact", "source"}}}``, also
        written to ``out_dir/manifest.json``.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"shards": {}}
    manifest["format_version"] = FORMAT_VERSION

    def record(name: str, shard: DetailShard, source: Path) -> None:
        shard.save(out_dir / f"{name}.npz")
        manifest["shards"][name] = {"samples": len(shard), "exact": bool(shard.exact.all()) if len(shard) else False,
                                    "source": str(source)}  # fmt: skip
        manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True))

    todo = [c for c in clips if f"real_{c.stem}" not in manifest["shards"]]
    if todo:
        from engines.teacher.mediapipe_landmarker import MediaPipeTeacher

        def factory():
            return MediaPipeTeacher(mode="video", blendshapes=True)

        with tqdm(total=sum(clip_frame_count(c) for c in todo), desc="detail patches (MediaPipe)", unit="frame",
                  disable=not progress) as bar:  # fmt: skip
            for clip in todo:
                record(f"real_{clip.stem}", extract_clip(factory, clip, bar), clip)
    for sp in tqdm([s for s in synthetic_shards if f"synth_{s.parent.name}_{s.stem}" not in manifest["shards"]],
                   desc="detail patches (synthetic)", unit="shard", disable=not progress):  # fmt: skip
        record(f"synth_{sp.parent.name}_{sp.stem}", extract_synthetic(sp), sp)
    return manifest


def load_dataset(data_dir: Path) -> dict[str, DetailShard]:
    """All shards of a built dataset, by name."""
    manifest_path = Path(data_dir) / "manifest.json"
    if not manifest_path.is_file():
        raise ConfigError(f"{data_dir} is not a detail dataset (no manifest.json); build it with "
                          "`facetrack train detail-data`")  # fmt: skip
    names = json.loads(manifest_path.read_text())["shards"]
    return {n: DetailShard.load(Path(data_dir) / f"{n}.npz") for n in sorted(names)}
