"""A bank of real-face albedo textures in ICT's UV layout, unwrapped from fitted photos.

Layout of a bank folder (default ``<user cache>/texture_bank``; never in git: the textures derive from
research-only photos)::

    manifest.json        format, UV convention, licence note, one entry per texture
    textures/<id>.png    (T,T,3) RGB albedo, row 0 = v 1 (the renderer's ``Albedo.face_texture``)
    masks/<id>.png       (T,T) texel state: 255 seen in the photo, 128 mirrored, 0 filled

:func:`build_bank` fits each image (MediaPipe teacher + :class:`~engines.fitting.fit.Fitter`), keeps good
fits (landmark error, pose, visible area), unwraps and completes the texture, and writes the bank;
:class:`TextureBank` reads one back for the synthesiser.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from tracker.core.assets import cache_dir
from tracker.core.errors import AssetError, ConfigError

log = logging.getLogger(__name__)

BANK_FORMAT_VERSION = 1
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
#: A video frame as a bank source: ``<video path>#frame=<index>``.
FRAME_TAG = "#frame="
UV_CONVENTION = (
    "ICT-FaceKit face UV map (material M_Face, UDIM tile 0); texel (row i, col j) centre at "
    "u = (j + 0.5) / T, v = 1 - (i + 0.5) / T (row 0 is v = 1)"
)
COLOUR_NOTE = "display-referred RGB albedo = image colour / fitted SH shading (tracker.core.face_model.sh), clamped to [0,1]"
LICENCE_NOTE = (
    "Derived from third-party photos in ../shared/data (AFW, HELEN, 300W, identity sets, clips): research use only; "
    "the original datasets' terms apply. Do not commit or redistribute; a model trained with it must say so."
)


def default_bank_dir() -> Path:
    """``<user cache>/texture_bank``."""
    return cache_dir() / "texture_bank"


@dataclasses.dataclass(frozen=True)
class BankCriteria:
    """Which fits make it into the bank.

    Attributes:
        max_landmark_error_pct: Mean teacher-point error over the face size (sqrt of the landmark box area), %.
        max_abs_yaw_deg: Frontal-ish faces only (the unseen side comes from the mirror).
        max_abs_pitch_deg: Likewise for pitch.
        min_face_px: Smallest face size (sqrt of the landmark box area) worth unwrapping.
        min_visible_fraction: Least fraction of the UV face islands seen in the photo.
    """

    max_landmark_error_pct: float = 2.0
    max_abs_yaw_deg: float = 35.0
    max_abs_pitch_deg: float = 30.0
    min_face_px: float = 90.0
    min_visible_fraction: float = 0.2


@dataclasses.dataclass(frozen=True)
class BankEntry:
    """One texture of a bank (paths relative to the bank folder)."""

    id: str
    texture: str
    mask: str
    source: str
    landmark_error_px: float
    landmark_error_pct: float
    visible_fraction: float
    ypr_deg: tuple[float, float, float]
    fit_seconds: float


class TextureBank:
    """Reads a bank folder written by :func:`build_bank`.

    Example::

        bank = TextureBank()                      # the default folder
        tex = bank.texture(rng.integers(len(bank)))
        albedo = Albedo(vertex_rgb, face_texture=tex)   # tracker.render
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else default_bank_dir()
        manifest = self.path / "manifest.json"
        try:
            data = json.loads(manifest.read_text())
        except (OSError, ValueError) as exc:
            raise AssetError(f"no texture bank at {self.path} ({exc}); build one with `facetrack fit bank`") from exc
        if data.get("format") != BANK_FORMAT_VERSION:
            raise AssetError(f"{manifest}: bank format {data.get('format')}, expected {BANK_FORMAT_VERSION}")
        self.uv_size = int(data["uv_size"])
        self.manifest = data
        self.entries = [BankEntry(**{**e, "ypr_deg": tuple(e["ypr_deg"])}) for e in data["entries"]]

    def __len__(self) -> int:
        return len(self.entries)

    def texture(self, index: int) -> np.ndarray:
        """(T,T,3) uint8 RGB texture of entry ``index`` (ready for ``tracker.render.Albedo.face_texture``)."""
        img = cv2.imread(str(self.path / self.entries[index].texture), cv2.IMREAD_COLOR)
        if img is None:
            raise AssetError(f"cannot read {self.path / self.entries[index].texture}")
        return np.ascontiguousarray(img[:, :, ::-1])

    def mask(self, index: int) -> np.ndarray:
        """(T,T) uint8 texel states (255 seen, 128 mirrored, 0 filled)."""
        img = cv2.imread(str(self.path / self.entries[index].mask), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise AssetError(f"cannot read {self.path / self.entries[index].mask}")
        return img

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """A random texture (uniform over entries)."""
        if not self.entries:
            raise AssetError(f"the texture bank at {self.path} is empty")
        return self.texture(int(rng.integers(len(self.entries))))


def list_images(folders: Iterable[Path]) -> list[Path]:
    """Image files under the folders (recursive, sorted)."""
    out = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            out.append(folder)
            continue
        if not folder.is_dir():
            raise ConfigError(f"{folder} is not a folder or image")
        out.extend(p for p in sorted(folder.rglob("*")) if p.suffix.lower() in IMAGE_SUFFIXES)
    return out


def video_frame_sources(videos: Iterable[Path], frames_per_video: int = 3) -> list[str]:
    """``frames_per_video`` frames spread evenly over each clip, as ``<path>#frame=<index>`` sources."""
    out = []
    for video in videos:
        cap = cv2.VideoCapture(str(video))
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        cap.release()
        if count <= 0:
            raise ConfigError(f"cannot read video {video}")
        for idx in np.linspace(0, count - 1, frames_per_video + 2)[1:-1].round().astype(int):
            out.append(f"{video}{FRAME_TAG}{idx}")
    return out


def read_source(source: str | Path) -> np.ndarray | None:
    """(H,W,3) uint8 RGB of an image file or a ``<video>#frame=<index>`` source (None if unreadable)."""
    text = str(source)
    if FRAME_TAG in text:
        path, idx = text.rsplit(FRAME_TAG, 1)
        cap = cv2.VideoCapture(path)
        try:
            cap.set(cv2.CAP_PROP_POS_FRAMES, int(idx))
            ok, bgr = cap.read()
        finally:
            cap.release()
        bgr = bgr if ok else None
    else:
        bgr = cv2.imread(text, cv2.IMREAD_COLOR)
    return None if bgr is None else np.ascontiguousarray(bgr[:, :, ::-1])


def entry_id(source: str | Path) -> str:
    """A stable, file-system-safe id for a source image or video frame."""
    text = str(source)
    path, _, frame = text.partition(FRAME_TAG)
    digest = hashlib.sha1((str(Path(path).resolve()) + _ + frame).encode()).hexdigest()[:8]
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(path).stem)[:40]
    return f"{stem}{'_f' + frame if frame else ''}_{digest}"


# ---------------------------------------------------------------------------------------------- workers
@dataclasses.dataclass(frozen=True)
class _WorkerSpec:
    uv_size: int
    criteria: BankCriteria
    num_identity: int


class _Worker:
    """Per-process state: model, fitter, teacher, UV layout (built once per process)."""

    def __init__(self, spec: _WorkerSpec) -> None:
        import torch

        from engines.differentiable import FaceLayer
        from engines.fitting.fit import FitConfig, Fitter
        from engines.fitting.uv_unwrap import UVLayout
        from engines.teacher.mediapipe_landmarker import MediaPipeTeacher

        torch.set_num_threads(1)  # small tensors: one thread per process is fastest (see FitConfig.torch_threads)
        self.spec = spec
        self.fitter = Fitter(config=FitConfig(num_identity=spec.num_identity))
        self.layout = UVLayout(self.fitter.model, spec.uv_size)
        self.face_layer = FaceLayer(self.fitter.model, spec.num_identity, region="face")
        self.teacher = MediaPipeTeacher(mode="image")

    def process(self, path: str | Path, out_dir: Path) -> dict:
        """Fits, filters, unwraps and writes one image; returns a status dict (``entry`` when kept)."""
        from engines.fitting.uv_unwrap import complete_texture, unwrap_albedo

        image = read_source(path)
        if image is None:
            return {"source": str(path), "status": "unreadable", "reason": "unreadable"}
        faces = self.teacher.detect(image)
        if not faces:
            return {"source": str(path), "status": "no face", "reason": "no face"}
        teacher = faces[0].landmarks_px
        c = self.spec.criteria
        box = faces[0].box_xyxy
        face_px = float(np.sqrt(max(box[2] - box[0], 1) * max(box[3] - box[1], 1)))
        if face_px < c.min_face_px:
            return {"source": str(path), "status": f"face too small ({face_px:.0f} px)", "reason": "face too small"}
        fit = self.fitter.fit_image(image, teacher)
        err_px = float(fit.landmark_error_px[0])
        err_pct = 100.0 * err_px / face_px
        yaw, pitch, _ = (float(a) for a in fit.ypr_deg()[0])
        if err_pct > c.max_landmark_error_pct:
            return {"source": str(path), "status": f"fit error {err_pct:.2f}%", "reason": "fit error"}
        if abs(yaw) > c.max_abs_yaw_deg or abs(pitch) > c.max_abs_pitch_deg:
            return {"source": str(path), "status": f"pose yaw {yaw:.0f} pitch {pitch:.0f}", "reason": "pose"}
        unwrap = unwrap_albedo(self.layout, self.face_layer, fit, image, 0, teacher)
        visible = float(unwrap.visible.sum() / self.layout.mask.sum())
        if visible < c.min_visible_fraction:
            return {"source": str(path), "status": f"visible {visible:.2f}", "reason": "too little visible"}
        texture, state = complete_texture(self.layout, unwrap)
        eid = entry_id(path)
        tex_rel, mask_rel = f"textures/{eid}.png", f"masks/{eid}.png"
        cv2.imwrite(str(out_dir / tex_rel), texture[:, :, ::-1])
        cv2.imwrite(str(out_dir / mask_rel), state)
        entry = BankEntry(eid, tex_rel, mask_rel, str(path), round(err_px, 3), round(err_pct, 3), round(visible, 4),
                          (round(yaw, 2), round(pitch, 2), round(float(fit.ypr_deg()[0, 2]), 2)),
                          round(fit.seconds, 3))  # fmt: skip
        return {"source": str(path), "status": "ok", "entry": dataclasses.asdict(entry)}

    def close(self) -> None:
        self.teacher.close()


# A pool worker's state lives for the worker process's life; the pool initializer creates it once.
_WORKER: _Worker | None = None


def _init_worker(spec: _WorkerSpec) -> None:
    global _WORKER
    _WORKER = _Worker(spec)


def _run_with(worker: _Worker, job: tuple[str, Path]) -> dict:
    try:
        return worker.process(*job)
    except Exception as exc:  # a bad image must not end a long bank build; it is reported in the summary
        log.exception("failed on %s", job[0])
        return {"source": str(job[0]), "status": f"error: {type(exc).__name__}: {exc}", "reason": "error"}


def _run_one(job: tuple[str, Path]) -> dict:
    return _run_with(_WORKER, job)


def build_bank(
    images: Sequence[str | Path],
    out_dir: Path | None = None,
    uv_size: int = 512,
    criteria: BankCriteria | None = None,
    workers: int = 1,
    num_identity: int = 50,
    progress: bool = True,
) -> dict:
    """Fits the images and writes a texture bank (appending to an existing one of the same UV size).

    Args:
        images: Image files or ``<video>#frame=<index>`` sources (:func:`video_frame_sources`); one face
            each is used, the largest.
        out_dir: Bank folder; default :func:`default_bank_dir`.
        uv_size: Texture side, texels.
        criteria: Which fits to keep.
        workers: Processes (each loads the model and MediaPipe once; 1 = in this process).
        num_identity: Identity modes fitted.
        progress: Show a progress bar.

    Returns:
        A summary: counts, kept entries, reasons for rejections, the manifest path.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir) if out_dir is not None else default_bank_dir()
    (out_dir / "textures").mkdir(parents=True, exist_ok=True)
    (out_dir / "masks").mkdir(parents=True, exist_ok=True)
    spec = _WorkerSpec(uv_size, criteria or BankCriteria(), num_identity)
    manifest_path = out_dir / "manifest.json"
    entries: dict[str, dict] = {}
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old.get("format") == BANK_FORMAT_VERSION and int(old.get("uv_size", -1)) == uv_size:
            entries = {e["id"]: e for e in old["entries"]}
        else:
            log.warning("replacing the bank at %s (other format or UV size)", out_dir)
    jobs = [(str(p), out_dir) for p in images]
    results = []
    bar = tqdm(total=len(jobs), desc="texture bank", unit="img", disable=not progress)
    if workers <= 1:
        worker = _Worker(spec)
        try:
            for job in jobs:
                results.append(_run_with(worker, job))
                bar.update()
        finally:
            worker.close()
    else:
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")  # torch and MediaPipe threads do not survive fork
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(spec,)) as pool:
            for res in pool.map(_run_one, jobs, chunksize=1):
                results.append(res)
                bar.update()
    bar.close()
    for res in results:
        if res["status"] == "ok":
            entries[res["entry"]["id"]] = res["entry"]
    manifest = {
        "format": BANK_FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "uv_size": uv_size,
        "uv_convention": UV_CONVENTION,
        "colour": COLOUR_NOTE,
        "licence": LICENCE_NOTE,
        "criteria": dataclasses.asdict(spec.criteria),
        "entries": sorted(entries.values(), key=lambda e: e["id"]),
    }
    tmp = manifest_path.with_suffix(".json.part")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    tmp.replace(manifest_path)
    rejected: dict[str, int] = {}
    for res in results:
        if res["status"] != "ok":
            rejected[res["reason"]] = rejected.get(res["reason"], 0) + 1
    kept = [r for r in results if r["status"] == "ok"]
    return {
        "bank": str(out_dir),
        "manifest": str(manifest_path),
        "images": len(jobs),
        "kept": len(kept),
        "bank_size": len(entries),
        "rejected": rejected,
        "mean_landmark_error_px": float(np.mean([r["entry"]["landmark_error_px"] for r in kept])) if kept else None,
        "mean_fit_seconds": float(np.mean([r["entry"]["fit_seconds"] for r in kept])) if kept else None,
        "results": results,
    }
