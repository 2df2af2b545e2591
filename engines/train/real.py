"""Real training crops labelled by the MediaPipe teacher, for the landmark re-projection term E_lan (ARCHITECTURE §6).

Synthetic pairs teach CoarseNet exact geometry, but only on rendered skin. Real frames close the domain gap
with a weaker label: the teacher's 468 face-mesh points, which the correspondence
(:mod:`engines.teacher.correspondence`) ties to fixed spots of the ICT surface, so the network's predicted
face can be projected and compared with them (:class:`engines.train.losses.RealLandmarkLoss`).

Sources: the development clips (``videos/*.mp4``, frames sampled evenly) and the identity photo sets
(``identity/``). Never the AFW/HELEN images of ``landmarks68/``: they are the evaluation set
(:data:`engines.train.synth.EVAL_SOURCES`), and :func:`extract_real` refuses them.

Crops are built as the tracker builds them at run time: a :class:`~tracker.core.crop.PerspectiveCrop` of the
frame (an assumed 50° pinhole, :meth:`tracker.core.types.Intrinsics.assumed`) around a box that
matches the box the tracker derives from the ICT 68 landmarks (:func:`teacher_crop_box`, calibrated by
:func:`calibrate_teacher_box`), jittered in scale and shift like the synthetic crops.

One shard per *group* (a clip, or one person's photos): ``shard_<group>.npz`` holds ``image`` (N,128,128,3)
uint8, ``points`` (N,468,2) float32 teacher points in crop pixels, ``focal_px`` (N,) the crop's virtual
focal length, ``box`` (N,3) the crop box in the frame (cx, cy, side px), ``source`` (N,) the frame and
``group`` (N,), and since the v2 stages ``blendshapes`` (N,52) float32, the teacher's ARKit blendshape scores of
the face (Apple order; the expression teacher term ``real_expression``). A ``manifest.json`` lists the spec and the groups. Existing shards are not rebuilt, so
extraction resumes. The validation split is by group (:func:`split_groups`), never by frame: frames of one
clip are near-duplicates.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from engines.train.synth import EVAL_SOURCES, RendererFactory, load_shards
from tracker.core.crop import CROP_SIZE_PX, LANDMARK_BOX_SCALE, CropBox, PerspectiveCrop
from tracker.core.errors import ConfigError
from tracker.core.face_model.arkit import ARKIT_NAMES, NUM_ARKIT
from tracker.core.types import ASSUMED_FOV_DEG, Intrinsics

log = logging.getLogger(__name__)

REAL_FORMAT_VERSION = 1
NUM_POINTS = 468
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

#: (52,) index permutation of the ARKit blendshapes under a left-right mirror: channel i of a mirrored face is
#: channel ARKIT_MIRROR[i] of the original (Left <-> Right; the symmetric channels stay).
ARKIT_MIRROR = np.array([ARKIT_NAMES.index(n.replace("Left", "#").replace("Right", "Left").replace("#", "Right"))
                         for n in ARKIT_NAMES], np.int64)  # fmt: skip

#: Side of the ICT-68 landmark box over the side of MediaPipe's 468-point box (both: the larger of width
#: and height, in practice the height). MediaPipe's mesh reaches up onto the forehead, so its box is taller.
#: Measured by :func:`calibrate_teacher_box` on rendered faces: median 0.915 (seed 0, 60 renders, IQR
#: 0.875-0.962) and 0.903 (seed 1, 79 renders, yaw ±50°); per-face spread ~6 %, below the crops' 10 % scale
#: jitter.
TEACHER_BOX_SIDE_RATIO = 0.91
#: Centre of the ICT-68 box minus the centre of MediaPipe's box towards the chin, in MediaPipe box sides
#: (the 68 points have no forehead, so they sit lower). Same calibration: 0.055 and 0.058 (spread 0.018);
#: sideways 0.000.
TEACHER_BOX_CENTRE_DY = 0.056

#: Clips known to show the same person (README of the data): one group, so they never straddle the split.
SAME_PERSON = {"videoretalking_3": "sadtalker_WDA_AlexandriaOcasioCortez_000"}


# ---------------------------------------------------------------------------------------------- crop box
def _roll_up(points_px: np.ndarray) -> np.ndarray:
    """(2,) unit vector from chin to forehead of a MediaPipe mesh (points 152 = chin, 10 = top of forehead)."""
    v = points_px[10] - points_px[152]
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-6 else np.array([0.0, -1.0])


def teacher_crop_box(points_px: np.ndarray, scale: float = LANDMARK_BOX_SCALE) -> CropBox:
    """The crop box the tracker would cut around this face, from MediaPipe's 468 (or 478) points.

    The tracker's box (:meth:`CropBox.from_landmarks`) is ``scale`` times the box of the ICT 68 landmarks;
    this maps MediaPipe's box onto that one with the calibrated ratio and a shift towards the chin (along
    the face's own chin direction, so rolled faces shift the right way).

    Args:
        points_px: (468+,2) MediaPipe points in image pixels.
        scale: Crop side over the 68-landmark box side.
    """
    pts = np.asarray(points_px, np.float64)[:NUM_POINTS]
    mp = CropBox.from_landmarks(pts, 1.0)
    down = -_roll_up(pts)
    cx, cy = np.array([mp.cx, mp.cy]) + TEACHER_BOX_CENTRE_DY * mp.size_px * down
    return CropBox(float(cx), float(cy), mp.size_px * TEACHER_BOX_SIDE_RATIO * scale)


def calibrate_teacher_box(renderer_factory: RendererFactory, num_renders: int = 60, seed: int = 0, size_px: int = 384,
                          progress: bool = False) -> dict:  # fmt: skip
    """Measures :data:`TEACHER_BOX_SIDE_RATIO` and :data:`TEACHER_BOX_CENTRE_DY` on rendered faces.

    Random ICT faces (identity ~N(0,0.8), sampled expressions, yaw ±40°, pitch ±20°, roll ±15°, procedural
    skin) are rendered with known geometry; MediaPipe runs on each render, and its 468-point box is compared
    with the box of the projected ICT 68 landmarks (what the tracker crops around).

    Returns:
        ``side_ratio`` and ``centre_dx`` / ``centre_dy`` (roll-aligned, in MediaPipe box sides) as medians,
        their quartiles, and the number of renders the teacher found a face in.
    """
    from tqdm import tqdm

    from engines.teacher.mediapipe_landmarker import MediaPipeTeacher
    from engines.train.sampling import sample_expression, sample_identity, sample_lighting
    from tracker.core.face_model import FaceModel
    from tracker.core.face_model.albedo import procedural_albedo
    from tracker.core.geometry import rotation_from_ypr_deg, transform_points
    from tracker.core.types import FaceCoefficients

    rng = np.random.default_rng(seed)
    model = FaceModel.load()
    cam = Intrinsics.from_fov(size_px, size_px, 40.0)
    ratio, dx, dy = [], [], []
    with renderer_factory(model) as renderer, MediaPipeTeacher() as teacher:
        for k in tqdm(range(num_renders), desc="box calibration renders", disable=not progress):
            ident = sample_identity(rng, 40)
            expr = sample_expression(rng)
            rot = rotation_from_ypr_deg(*rng.uniform([-40, -20, -15], [40, 20, 15]))
            trans = np.array([rng.uniform(-0.02, 0.02), rng.uniform(-0.02, 0.02), rng.uniform(0.45, 0.6)])
            background = tuple(int(c) for c in rng.integers(0, 256, 3))
            out = renderer.render(FaceCoefficients(ident, expr, rot, trans, sample_lighting(rng)), cam,
                                  albedo=procedural_albedo(model, seed=seed * 100_000 + k), background=background)  # fmt: skip
            faces = teacher.detect(out.rgb)
            if not faces:
                continue
            mp_pts = faces[0].landmarks_px[:NUM_POINTS].astype(np.float64)
            lm = cam.project(transform_points(rot, trans, model.landmarks68(ident, expr).astype(np.float64)))
            mp_box, lm_box = CropBox.from_landmarks(mp_pts, 1.0), CropBox.from_landmarks(lm, 1.0)
            up = _roll_up(mp_pts)
            right = np.array([-up[1], up[0]])  # up rotated by +90° in image coordinates (y down)
            d = (np.array([lm_box.cx, lm_box.cy]) - [mp_box.cx, mp_box.cy]) / mp_box.size_px
            ratio.append(lm_box.size_px / mp_box.size_px)
            dx.append(float(d @ right))
            dy.append(float(-(d @ up)))

    def stats(v: list[float]) -> dict:
        return {"median": float(np.median(v)), "q25": float(np.percentile(v, 25)), "q75": float(np.percentile(v, 75))}

    if not ratio:
        raise ConfigError("the teacher found no face in any calibration render")
    return {"side_ratio": stats(ratio), "centre_dx": stats(dx), "centre_dy": stats(dy), "renders_with_face": len(ratio),
            "renders": num_renders}  # fmt: skip


# ---------------------------------------------------------------------------------------------- sources
#: The development data beside the repository (``../shared/data``, as the tests find it).
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@dataclasses.dataclass(frozen=True)
class RealSpec:
    """How real crops are made; stored in the manifest, so a changed spec is noticed.

    Attributes:
        per_clip: Frames taken per video, spread evenly over the clip (photos: all).
        jitter: Crops per face, each with its own random scale and shift.
        scale_sigma: Std of the log crop-scale jitter.
        shift_sigma: Std of the crop-centre jitter, in crop sides.
        fov_deg: Assumed field of view across the longer frame side (the clips' cameras are unknown).
        min_face_px: Faces whose MediaPipe box is smaller than this are skipped (unreliable teacher).
        max_faces: Faces per frame (largest first).
        crop_size_px: Crop side.
        seed: Jitter seed (each group draws from its own stream, so resumed runs match).
    """

    per_clip: int = 40
    jitter: int = 4
    scale_sigma: float = 0.1
    shift_sigma: float = 0.07
    fov_deg: float = ASSUMED_FOV_DEG
    min_face_px: float = 48.0
    max_faces: int = 4
    crop_size_px: int = CROP_SIZE_PX
    seed: int = 0

    def __post_init__(self) -> None:
        if self.per_clip < 1 or self.jitter < 1 or self.max_faces < 1:
            raise ConfigError(f"per_clip, jitter and max_faces must be >= 1: {self}")
        if self.scale_sigma < 0 or self.shift_sigma < 0:
            raise ConfigError(f"jitter sigmas must be >= 0: {self}")


@dataclasses.dataclass(frozen=True)
class RealGroup:
    """Frames that belong together for the validation split: one clip (or clips of one person), or one
    person's photos.

    Attributes:
        name: File-system-safe group name (the shard is ``shard_<name>.npz``).
        videos: Video files.
        images: Image files.
    """

    name: str
    videos: tuple[Path, ...] = ()
    images: tuple[Path, ...] = ()

    def frame_count(self, per_clip: int) -> int:
        """Frames this group will read (an upper bound for videos shorter than ``per_clip``)."""
        return len(self.videos) * per_clip + len(self.images)


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def check_not_evaluation(path: Path) -> None:
    """Raises ConfigError for evaluation data (``landmarks68/``): a face trained on is no test."""
    text = str(Path(path).resolve()) + "/"
    for marker in EVAL_SOURCES:
        if "/" + marker in text:
            raise ConfigError(f"{path} is evaluation data ({marker!r}); it is never used for training")


def list_groups(videos: list[Path] | None = None, identity_dir: Path | None = None,
                include_identity: bool = True) -> list[RealGroup]:  # fmt: skip
    """Groups of the development data (clips first, then people).

    Args:
        videos: Video files or folders of them; default ``<data root>/videos``.
        identity_dir: Photo sets laid out ``<set>/<person>/<image>``; default ``<data root>/identity``.
            Each person folder is one group.
        include_identity: False = videos only.

    Raises:
        ConfigError: for evaluation data or missing folders.
    """
    videos = [DEFAULT_DATA_ROOT / "videos"] if videos is None else list(videos)
    identity_dir = DEFAULT_DATA_ROOT / "identity" if identity_dir is None else identity_dir
    files: list[Path] = []
    for v in videos:
        v = Path(v)
        check_not_evaluation(v)
        if v.is_dir():
            files += sorted(p for p in v.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
        elif v.is_file():
            files.append(v)
        else:
            raise ConfigError(f"video {v} not found")
    by_group: dict[str, list[Path]] = {}
    for f in files:
        by_group.setdefault(_safe(SAME_PERSON.get(f.stem, f.stem)), []).append(f)
    groups = [RealGroup(name, videos=tuple(fs)) for name, fs in by_group.items()]
    if include_identity:
        identity_dir = Path(identity_dir)
        check_not_evaluation(identity_dir)
        if not identity_dir.is_dir():
            raise ConfigError(f"identity folder {identity_dir} not found")
        people: dict[Path, list[Path]] = {}
        for p in sorted(identity_dir.rglob("*")):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                people.setdefault(p.parent, []).append(p)
        for folder, imgs in people.items():
            rel = folder.relative_to(identity_dir)
            groups.append(RealGroup(_safe("id_" + "_".join(rel.parts)), images=tuple(imgs)))
    return groups


def video_frames(path: Path, count: int) -> Iterator[tuple[int, np.ndarray]]:
    """``count`` frames spread evenly over a clip (the centres of ``count`` equal segments), decoded in
    one pass: (frame index, (H,W,3) uint8 RGB)."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ConfigError(f"cannot open video {path}")
    try:
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if total <= 0:
            raise ConfigError(f"{path}: unknown frame count")
        wanted = set(((np.arange(min(count, total)) + 0.5) * total / min(count, total)).astype(int).tolist())
        for index in range(max(wanted) + 1):
            if not cap.grab():
                break
            if index in wanted:
                ok, bgr = cap.retrieve()
                if ok:
                    yield index, np.ascontiguousarray(bgr[:, :, ::-1])
    finally:
        cap.release()


def _group_frames(group: RealGroup, per_clip: int) -> Iterator[tuple[str, np.ndarray | None]]:
    for v in group.videos:
        for index, rgb in video_frames(v, per_clip):
            yield f"{v.name}#frame={index}", rgb
    for p in group.images:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        yield f"{p.parent.name}/{p.name}", None if bgr is None else np.ascontiguousarray(bgr[:, :, ::-1])


# ---------------------------------------------------------------------------------------------- extraction
def jittered_crops(rgb: np.ndarray, points_px: np.ndarray, spec: RealSpec,
                   rng: np.random.Generator) -> list[tuple[PerspectiveCrop, np.ndarray, np.ndarray]]:  # fmt: skip
    """``spec.jitter`` crops of one face: (crop, (N,N,3) uint8 image, (468,2) float32 crop-pixel points)."""
    h, w = rgb.shape[:2]
    cam = Intrinsics.assumed(w, h, spec.fov_deg)
    base = teacher_crop_box(points_px)
    out = []
    for _ in range(spec.jitter):
        shift = rng.normal(0.0, spec.shift_sigma, 2) * base.size_px
        box = CropBox(base.cx + shift[0], base.cy + shift[1], base.size_px * float(np.exp(rng.normal(0.0, spec.scale_sigma))))
        crop = PerspectiveCrop(cam, box, spec.crop_size_px)
        out.append((crop, crop.warp(rgb), crop.to_crop(points_px[:NUM_POINTS]).astype(np.float32)))
    return out


def extract_group(teacher, group: RealGroup, spec: RealSpec, bar=None) -> tuple[dict[str, np.ndarray], dict]:
    """Runs the teacher on a group's frames and cuts the crops.

    Args:
        teacher: An open :class:`~engines.teacher.mediapipe_landmarker.MediaPipeTeacher` (image mode).
        group: The frames.
        spec: Crop settings.
        bar: Optional tqdm bar, advanced per frame.

    Returns:
        The shard arrays (see the module docstring) and stats (frames, faces, frames without a face,
        seconds).
    """
    rng = np.random.default_rng([spec.seed, zlib.crc32(group.name.encode())])
    n = spec.crop_size_px
    cols: dict[str, list] = {k: [] for k in ("image", "points", "focal_px", "box", "source", "blendshapes")}
    stats = {"frames": 0, "faces": 0, "no_face": 0, "unreadable": 0, "small": 0}
    t0 = time.perf_counter()
    for name, rgb in _group_frames(group, spec.per_clip):
        if bar is not None:
            bar.update(1)
        if rgb is None:
            stats["unreadable"] += 1
            continue
        stats["frames"] += 1
        faces = teacher.detect(rgb)[: spec.max_faces]
        if not faces:
            stats["no_face"] += 1
        for face in faces:
            pts = face.landmarks_px[:NUM_POINTS].astype(np.float64)
            if np.ptp(pts, axis=0).max() < spec.min_face_px:
                stats["small"] += 1
                continue
            stats["faces"] += 1
            for crop, image, points in jittered_crops(rgb, pts, spec, rng):
                cols["image"].append(image)
                cols["points"].append(points)
                cols["focal_px"].append(np.float32(crop.focal_px))
                cols["box"].append(np.float32([crop.box.cx, crop.box.cy, crop.box.size_px]))
                cols["source"].append(name)
                # A teacher opened without blendshapes (older callers) gives NaN rows: "no expression label".
                cols["blendshapes"].append(face.blendshapes if face.blendshapes is not None
                                           else np.full(NUM_ARKIT, np.nan, np.float32))  # fmt: skip
    stats["seconds"] = time.perf_counter() - t0
    arrays = {
        "image": np.stack(cols["image"]) if cols["image"] else np.zeros((0, n, n, 3), np.uint8),
        "points": np.stack(cols["points"]) if cols["points"] else np.zeros((0, NUM_POINTS, 2), np.float32),
        "focal_px": np.asarray(cols["focal_px"], np.float32),
        "box": np.stack(cols["box"]) if cols["box"] else np.zeros((0, 3), np.float32),
        "source": np.asarray(cols["source"], dtype=str),
        "group": np.asarray([group.name] * len(cols["source"]), dtype=str),
        "blendshapes": (np.stack(cols["blendshapes"]).astype(np.float32) if cols["blendshapes"]
                        else np.zeros((0, NUM_ARKIT), np.float32)),  # fmt: skip
    }
    stats["samples"] = int(arrays["image"].shape[0])
    return arrays, stats


def shard_path(out_dir: Path, group: RealGroup) -> Path:
    return Path(out_dir) / f"shard_{group.name}.npz"


def extract_real(out_dir: Path, groups: list[RealGroup], spec: RealSpec = RealSpec(), progress: bool = True) -> dict:
    """Extracts (or completes) a real dataset: one shard per group, plus ``manifest.json``.

    Raises:
        ConfigError: if the folder holds a dataset made with another spec, or a group is evaluation data.

    Returns:
        The manifest (spec, box calibration, per-group stats, seconds per frame of this call).
    """
    from tqdm import tqdm

    from engines.teacher.mediapipe_landmarker import MediaPipeTeacher

    for g in groups:
        for p in (*g.videos, *g.images):
            check_not_evaluation(p)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "manifest.json"
    meta = {"format_version": REAL_FORMAT_VERSION, "spec": dataclasses.asdict(spec),
            "box": {"landmark_box_scale": LANDMARK_BOX_SCALE, "side_ratio": TEACHER_BOX_SIDE_RATIO,
                    "centre_dy": TEACHER_BOX_CENTRE_DY}, "groups": {}}  # fmt: skip
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old.get("spec") != meta["spec"] or old.get("box") != meta["box"]:
            raise ConfigError(f"{out_dir} holds a real dataset with another spec; use a new data name or delete it")
        meta["groups"] = old.get("groups", {})
    todo = [g for g in groups if not shard_path(out_dir, g).exists()]
    frames, seconds = 0, 0.0
    if todo:
        with MediaPipeTeacher(mode="image", num_faces=spec.max_faces, blendshapes=True) as teacher, \
                tqdm(total=sum(g.frame_count(spec.per_clip) for g in todo), desc="real crops", unit="frame",
                     disable=not progress) as bar:  # fmt: skip
            for g in todo:
                arrays, stats = extract_group(teacher, g, spec, bar)
                path = shard_path(out_dir, g)
                tmp = path.with_name(path.stem + ".part.npz")
                np.savez(tmp, format_version=np.int32(REAL_FORMAT_VERSION), **arrays)
                tmp.replace(path)
                meta["groups"][g.name] = stats
                manifest_path.write_text(json.dumps(meta, indent=2))
                frames += stats["frames"]
                seconds += stats["seconds"]
    manifest_path.write_text(json.dumps(meta, indent=2))
    meta["this_run"] = {"groups": len(todo), "frames": frames, "seconds": seconds,
                        "seconds_per_frame": seconds / frames if frames else None}  # fmt: skip
    log.info("real dataset %s: %d groups extracted now (%d frames, %.0f ms/frame)", out_dir, len(todo), frames,
             1000 * seconds / max(frames, 1))  # fmt: skip
    return meta


# ---------------------------------------------------------------------------------------------- split
def split_groups(counts: dict[str, int], val_fraction: float) -> set[str]:
    """Validation groups: a fixed pseudo-random order of the group names (by hash, so adding groups
    leaves earlier choices alone), taken until they hold ``val_fraction`` of the samples. Splitting by
    group keeps every clip (and person) on one side.

    Returns:
        The validation group names; empty when ``val_fraction`` is 0 or there is a single group.
    """
    names = [g for g, n in counts.items() if n > 0]
    if val_fraction <= 0 or len(names) < 2:
        return set()
    order = sorted(names, key=lambda g: hashlib.sha1(g.encode()).hexdigest())
    total = sum(counts[g] for g in names)
    val: set[str] = set()
    n_val = 0
    for g in order[:-1]:  # at least one group stays for training
        if n_val >= val_fraction * total:
            break
        val.add(g)
        n_val += counts[g]
    return val


def load_real_shards(data_dirs: list[Path]) -> list[Path]:
    """Complete shards of real datasets.

    Raises:
        ConfigError: if a dataset has no shards.
    """
    out = []
    for d in data_dirs:
        shards = load_shards(d)
        if not shards:
            raise ConfigError(f"no real shards in {d}; run `facetrack train real --data-name {Path(d).name}` first")
        out += shards
    return out

