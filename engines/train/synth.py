"""Synthesis of labelled training crops (ARCHITECTURE §6, "training data by inverse rendering").

Each sample is a random face (identity, the full ARKit expression range including closed eyes and a
wide-open jaw, yaw up to ±90°, pitch, roll, distance, lighting), placed in a random camera, cropped
exactly as the tracker crops at run time (a :class:`~tracker.core.crop.PerspectiveCrop` around its landmarks,
with jitter in scale and shift so the network learns to recover from imperfect crops) and rendered
directly through the crop's virtual camera at the network's input size. Skin comes from the texture bank
of inverse-rendered real faces (``facetrack fit bank``) where one exists, else from procedural albedo.
Backgrounds, occluders, blur, noise, JPEG and colour changes follow. A share of crops hold no face
(confidence target 0). Labels are exact.

Samples are written in shards (``shard_NNNNN.npz``: images + labels) with a ``manifest.json``; a shard
that exists is never rebuilt, so generation resumes where it stopped. Workers are processes, each with
its own OpenGL context.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import multiprocessing as mp
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from tracker.core.crop import CROP_SIZE_PX, CropBox, PerspectiveCrop, encode_pose
from tracker.core.face_model import FaceModel
from tracker.core.geometry import rotation_from_ypr_deg, transform_points
from tracker.core.render_types import Albedo, FaceRenderer
from tracker.core.types import FaceCoefficients, Intrinsics

#: Builds the renderer of one process (``tracker.render.Renderer``, handed in by the caller).
RendererFactory = Callable[[FaceModel], FaceRenderer]

log = logging.getLogger(__name__)

#: 2: offset and log_scale refer to the pose anchor (tracker.core.crop.POSE_ANCHOR_HEAD_M); 1: to the head
#: origin (converted on load, engines.train.trainer.ShardData).
SHARD_FORMAT_VERSION = 2


@dataclasses.dataclass(frozen=True)
class SynthSpec:
    """What a dataset contains; stored in its manifest, so a changed spec is noticed.

    Attributes:
        num_identity: Identity modes sampled (the network regresses the same K).
        identity_sigma: Std of the identity coefficients.
        max_yaw_deg: Largest |yaw|.
        negative_fraction: Share of no-face crops.
        bank_fraction: Share of samples textured from the texture bank (if there is one).
        crop_size_px: Side of the crops.
        depth: Also render each crop's depth through the D4xx sensor model and a hand occluder in front of
            some faces (the RGB-D set of CoarseNet-D), with the face surface for E_geo.
    """

    num_identity: int = 40
    identity_sigma: float = 0.8
    max_yaw_deg: float = 90.0
    negative_fraction: float = 0.06
    bank_fraction: float = 0.5
    crop_size_px: int = CROP_SIZE_PX
    depth: bool = False


# ---------------------------------------------------------------------------------------------- sampling
def sample_pose_deg(rng: np.random.Generator, max_yaw_deg: float) -> tuple[float, float, float]:
    """(yaw, pitch, roll) degrees: mostly near-frontal, with a long tail to profile.

    Unlike :func:`engines.train.sampling.sample_pose` (uniform yaw), this weights the poses a tracker
    sees most, so the network spends its capacity there, while still covering ±``max_yaw_deg``.
    """
    if rng.random() < 0.65:
        yaw = rng.normal(0, 25)
    else:
        yaw = rng.uniform(-max_yaw_deg, max_yaw_deg)
    yaw = float(np.clip(yaw, -max_yaw_deg, max_yaw_deg))
    pitch = float(np.clip(rng.normal(0, 14), -45, 45))
    roll = float(np.clip(rng.normal(0, 12), -45, 45))
    return yaw, pitch, roll


def sample_camera(rng: np.random.Generator) -> Intrinsics:
    """A 640x480 pinhole with a random vertical field of view (38..75 degrees)."""
    return Intrinsics.from_fov(640, 480, float(rng.uniform(38, 75)))


# ---------------------------------------------------------------------------------------------- images
def clutter_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size,size,3) uint8: smooth colour noise, gradients, stripes and blobs (busier than the renderer's
    indoor-wall :func:`~engines.train.background.procedural_background`; the two are mixed)."""
    kind = rng.integers(4)
    if kind == 0:
        low = rng.uniform(0, 255, (rng.integers(2, 9), rng.integers(2, 9), 3)).astype(np.float32)
        img = cv2.resize(low, (size, size), interpolation=cv2.INTER_CUBIC)
    elif kind == 1:
        a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        t = np.linspace(0, 1, size)[:, None, None]
        img = a * (1 - t) + b * t
        img = np.broadcast_to(img, (size, size, 3)).copy()
        img = np.rot90(img, rng.integers(4)).copy()
    else:
        img = np.full((size, size, 3), rng.uniform(0, 255, 3), np.float32)
    for _ in range(rng.integers(0, 12)):
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        p = rng.integers(-size // 4, size + size // 4, 4)
        if rng.random() < 0.5:
            cv2.rectangle(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), colour, -1)
        else:
            cv2.line(img, (int(p[0]), int(p[1])), (int(p[2]), int(p[3])), colour, int(rng.integers(1, 12)))
    img = img + rng.normal(0, rng.uniform(0, 12), img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def add_occluder(rng: np.random.Generator, img: np.ndarray) -> None:
    """Draws a hand-, hair- or object-like shape over part of the crop (in place)."""
    n = img.shape[0]
    colour = tuple(float(c) for c in (rng.uniform(60, 230, 3) if rng.random() < 0.5 else
                                      np.array([200, 150, 120]) * rng.uniform(0.5, 1.1)))  # fmt: skip
    centre = (int(rng.uniform(0, n)), int(rng.uniform(0, n)))
    if rng.random() < 0.6:
        axes = (int(rng.uniform(0.08, 0.3) * n), int(rng.uniform(0.05, 0.2) * n))
        cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1)
    else:
        end = (int(rng.uniform(0, n)), int(rng.uniform(0, n)))
        cv2.line(img, centre, end, colour, int(rng.uniform(0.03, 0.12) * n))


def degrade(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Camera effects: colour/gamma/contrast changes, blur or motion blur, noise, JPEG, sometimes grey."""
    x = img.astype(np.float32) / 255.0
    x = np.clip(x * rng.uniform(0.85, 1.15, 3) + rng.normal(0, 0.03), 0, 1)
    x = x ** rng.uniform(0.75, 1.35)
    x = np.clip((x - 0.5) * rng.uniform(0.75, 1.25) + 0.5, 0, 1)
    if rng.random() < 0.1:
        x[:] = x.mean(axis=2, keepdims=True)
    out = (x * 255).astype(np.uint8)
    r = rng.random()
    if r < 0.25:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.4, 1.5))
    elif r < 0.4:
        k = int(rng.integers(3, 9))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2, :] = 1.0 / k
        m = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), float(rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, m, (k, k))
        out = cv2.filter2D(out, -1, kernel / max(kernel.sum(), 1e-6))
    if rng.random() < 0.6:
        out = np.clip(out + rng.normal(0, rng.uniform(1, 8), out.shape), 0, 255).astype(np.uint8)
    if rng.random() < 0.4:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.uniform(35, 95))])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return out


# ---------------------------------------------------------------------------------------------- one shard
class ShardSynthesizer:
    """Renders shards in one process (one OpenGL context, reused).

    Args:
        spec: Dataset spec.
        bank_dir: Texture bank folder (PNG textures + manifest.json) or None.
    """

    def __init__(self, spec: SynthSpec, renderer_factory: RendererFactory, bank_dir: Path | None = None) -> None:
        self.spec = spec
        self.model = FaceModel.load()
        self.renderer = renderer_factory(self.model)
        self.bank = _load_bank(bank_dir)

    def close(self) -> None:
        self.renderer.close()

    def _albedo(self, rng: np.random.Generator, seed: int):
        from tracker.core.face_model.albedo import procedural_albedo

        base = procedural_albedo(self.model, seed=seed, texture_px=256)
        if self.bank and rng.random() < self.spec.bank_fraction:
            tex = cv2.imread(str(self.bank[rng.integers(len(self.bank))]), cv2.IMREAD_COLOR)
            if tex is not None:
                tex = cv2.cvtColor(tex, cv2.COLOR_BGR2RGB)
                return Albedo(base.vertex_rgb, tex), "bank"
        return base, "procedural"

    def make_shard(self, seed: int, n: int, group: int = 50) -> dict[str, np.ndarray]:
        """``n`` samples from ``seed``; every ``group`` samples share one albedo (one batched render)."""
        from engines.train.background import procedural_background
        from engines.train.sampling import sample_expression, sample_identity, sample_lighting

        rng = np.random.default_rng(seed)
        s = self.spec
        size = s.crop_size_px
        out = {k: [] for k in ("image", "identity", "expression", "rotation", "offset", "log_scale",
                               "lighting", "focal_px", "is_face", "landmarks", "yaw_deg")}  # fmt: skip
        if s.depth:
            out.update({k: [] for k in ("depth_mm", "translation", "surface", "surface_normal")})
        for start in range(0, n, group):
            m = min(group, n - start)
            albedo, _ = self._albedo(rng, int(rng.integers(1 << 31)))
            params, cams, bgs, labels = [], [], [], []
            for _ in range(m):
                identity = sample_identity(rng, s.num_identity, s.identity_sigma)
                expression = sample_expression(rng)
                yaw, pitch, roll = sample_pose_deg(rng, s.max_yaw_deg)
                rotation = rotation_from_ypr_deg(yaw, pitch, roll)
                cam = sample_camera(rng)
                z = rng.uniform(0.3, 1.6)
                uv = rng.uniform([0.15 * cam.width, 0.15 * cam.height], [0.85 * cam.width, 0.85 * cam.height])
                translation = cam.unproject(uv[None], z)[0]
                lm3d = transform_points(rotation, translation, self.model.landmarks68(identity, expression).astype(np.float64))
                box = CropBox.from_landmarks(cam.project(lm3d))
                negative = rng.random() < s.negative_fraction
                if negative:
                    # Far off the face, or much too large: the tracker must learn to say "no face here".
                    ang = rng.uniform(0, 2 * np.pi)
                    shift = rng.uniform(0.75, 1.5) * box.size_px
                    box = CropBox(box.cx + shift * np.cos(ang), box.cy + shift * np.sin(ang),
                                  box.size_px * rng.uniform(0.6, 1.6))  # fmt: skip
                else:
                    jitter = rng.normal(0, 0.07, 2) * box.size_px
                    box = CropBox(box.cx + jitter[0], box.cy + jitter[1], box.size_px * float(np.exp(rng.normal(0, 0.1))))
                crop = PerspectiveCrop(cam, box, size)
                pose = encode_pose(crop, rotation, translation)
                t_local = crop.r_ray.T @ translation
                lighting = sample_lighting(rng)
                params.append(FaceCoefficients(identity, expression, pose.rotation_local, t_local, lighting))
                cams.append(crop.virtual_intrinsics())
                bgs.append(clutter_background(rng, size) if rng.random() < 0.5 else
                           procedural_background(int(rng.integers(1 << 31)), size, size))  # fmt: skip
                labels.append((identity, expression, pose, lighting, crop.focal_px, negative, yaw,
                               crop.to_crop(cam.project(lm3d)), t_local))  # fmt: skip
            # Backgrounds are composited here rather than uploaded as textures: one texture upload per
            # tile costs more than the whole composite.
            renders = self.renderer.render_batch(params, cams, albedo, (0, 0, 0))
            for r, bg, (identity, expression, pose, lighting, focal, negative, yaw, lm, t_local) in zip(renders, bgs, labels, strict=True):
                img = np.where((r.depth_m > 0)[..., None], r.rgb, bg)
                if s.depth:
                    self._add_depth(rng, out, img, r.depth_m, focal, lm, t_local, identity, expression)
                elif rng.random() < 0.3:
                    add_occluder(rng, img)
                out["image"].append(degrade(rng, img))
                out["identity"].append(identity)
                out["expression"].append(expression)
                out["rotation"].append(pose.rotation_local.astype(np.float32))
                out["offset"].append(pose.offset.astype(np.float32))
                out["log_scale"].append(np.float32([pose.log_scale]))
                out["lighting"].append(lighting)
                out["focal_px"].append(np.float32(focal))
                out["is_face"].append(np.float32(0.0 if negative else 1.0))
                out["landmarks"].append(lm.astype(np.float32))
                out["yaw_deg"].append(np.float32(yaw))
        return {k: np.stack(v) for k, v in out.items()}

    def _add_depth(self, rng: np.random.Generator, out: dict, img: np.ndarray, depth_m: np.ndarray, focal_px: float,
                   landmarks_px: np.ndarray, t_local: np.ndarray, identity: np.ndarray, expression: np.ndarray) -> None:  # fmt: skip
        """The RGB-D extras of one crop: a hand in front of the face (colour and depth, 35 % of crops), the
        sensor's depth, the head-frame surface for E_geo, and the head translation in the virtual camera."""
        from tracker.core.depth_sensor import DepthSensorModel, Hand, paint_hand

        z = depth_m.copy()
        if rng.random() < 0.5:  # a wall or furniture behind the head, else out of range (no return)
            ramp = np.linspace(-1, 1, z.shape[0], dtype=np.float32)
            wall = float(t_local[2]) + rng.uniform(0.3, 1.5) + 0.1 * (rng.normal() * ramp[None, :] + rng.normal() * ramp[:, None])
            z = np.where(z > 0, z, wall).astype(np.float32)
        if rng.random() < 0.35:
            lo, hi = landmarks_px.min(axis=0), landmarks_px.max(axis=0)
            face_z = float(np.median(z[z > 0])) if np.any(z > 0) else float(t_local[2])
            paint_hand(Hand.random(rng, (lo + hi) / 2, float(max(hi - lo)), face_z), img, z)
        elif rng.random() < 0.1:
            add_occluder(rng, img)  # colour only: a sticker, a printed pattern, hair the sensor sees through
        # Misalignment is stated in camera pixels; a crop samples the camera at 64 / (face box side) px per
        # pixel, 0.2-0.6 for faces of 100-300 px: half the camera's shift bounds it.
        sensor = DepthSensorModel()
        zs = sensor.apply(rng, z, focal_px, tuple(v * 0.5 for v in sensor.shift_px(rng)))
        out["depth_mm"].append(np.rint(zs * 1000).astype(np.uint16))
        points, normals = self.model.surface_m(identity, expression, stride=SURFACE_STRIDE)
        out["surface"].append(points.astype(np.float32))
        out["surface_normal"].append(normals.astype(np.float16))
        out["translation"].append(np.asarray(t_local, np.float32))


#: Every this-many narrow-face vertex is stored with an RGB-D sample for E_geo (~280 points).
SURFACE_STRIDE = 24

#: Bank textures whose source path contains one of these are never trained on: ``landmarks68/`` holds the
#: AFW/HELEN images that ``facetrack eval landmarks`` scores, and a face seen in training is no test.
EVAL_SOURCES = ("landmarks68/",)


def _load_bank(bank_dir: Path | None, exclude: tuple[str, ...] = EVAL_SOURCES) -> list[Path]:
    """Texture files of a bank (``facetrack fit bank``), minus those made from evaluation images."""
    if bank_dir is None or not (Path(bank_dir) / "manifest.json").is_file():
        return []
    entries = json.loads((Path(bank_dir) / "manifest.json").read_text())["entries"]
    keep = [Path(bank_dir) / e["texture"] for e in entries if not any(x in e["source"] for x in exclude)]
    log.info("texture bank %s: %d textures, %d left out as evaluation data", bank_dir, len(keep), len(entries) - len(keep))
    return keep


# ---------------------------------------------------------------------------------------------- dataset
def _worker(args) -> str:
    spec_dict, renderer_factory, bank_dir, out_dir, jobs = args
    synth = ShardSynthesizer(SynthSpec(**spec_dict), renderer_factory, Path(bank_dir) if bank_dir else None)
    try:
        for index, seed, n in jobs:
            path = Path(out_dir) / f"shard_{index:05d}.npz"
            if path.exists():
                continue
            data = synth.make_shard(seed, n)
            tmp = path.with_name(path.stem + ".part.npz")
            np.savez(tmp, format_version=np.int32(SHARD_FORMAT_VERSION), **data)
            tmp.replace(path)
            print(f"shard {index} done", flush=True)
    finally:
        synth.close()
    return "ok"


def shard_plan(num_samples: int, shard_size: int, seed: int) -> list[tuple[int, int, int]]:
    """(index, seed, count) of every shard; deterministic from the dataset seed."""
    n_shards = -(-num_samples // shard_size)
    return [(i, seed * 1_000_003 + i, min(shard_size, num_samples - i * shard_size)) for i in range(n_shards)]


def generate(out_dir: Path, spec: SynthSpec, num_samples: int, shard_size: int, seed: int,
             renderer_factory: RendererFactory, workers: int = 2, bank_dir: Path | None = None,
             progress: bool = True) -> Path:  # fmt: skip
    """Generates (or completes) a dataset; returns its folder.

    ``renderer_factory`` (``FaceModel -> FaceRenderer``, e.g. :class:`tracker.render.Renderer`) must be
    picklable: each worker process builds its own renderer.

    Raises:
        ConfigError: if the folder holds a dataset made with another spec.
    """
    from tqdm import tqdm

    from tracker.core.errors import ConfigError

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / "manifest.json"
    meta = {"format_version": SHARD_FORMAT_VERSION, "spec": dataclasses.asdict(spec), "seed": seed,
            "shard_size": shard_size, "num_samples": num_samples,
            "bank": str(bank_dir) if bank_dir and _load_bank(bank_dir) else None}  # fmt: skip
    if manifest.exists():
        old = json.loads(manifest.read_text())
        if old["spec"] != meta["spec"] or old["seed"] != seed or old["shard_size"] != shard_size:
            raise ConfigError(f"{out_dir} holds a dataset with another spec/seed; use a new data name or delete it")
        meta["num_samples"] = max(num_samples, old["num_samples"])
    manifest.write_text(json.dumps(meta, indent=2))
    plan = [p for p in shard_plan(num_samples, shard_size, seed) if not (out_dir / f"shard_{p[0]:05d}.npz").exists()]
    if not plan:
        return out_dir
    t0 = time.perf_counter()
    workers = max(1, min(workers, len(plan)))
    spec_dict = dataclasses.asdict(spec)
    ctx = mp.get_context("spawn")  # a fresh process per worker: OpenGL contexts do not survive fork
    with tqdm(total=len(plan), desc="synthesising shards", unit="shard", disable=not progress) as bar:
        if workers == 1:
            for job in plan:
                _worker((spec_dict, renderer_factory, bank_dir, out_dir, [job]))
                bar.update(1)
        else:
            with ctx.Pool(workers) as pool:
                jobs = [(spec_dict, renderer_factory, bank_dir, out_dir, [j]) for j in plan]
                for _ in pool.imap_unordered(_worker, jobs):
                    bar.update(1)
    log.info("synthesised %d shards in %.0f s", len(plan), time.perf_counter() - t0)
    return out_dir


def load_shards(data_dir: Path) -> list[Path]:
    """Complete shards of a dataset, sorted."""
    return sorted(p for p in Path(data_dir).glob("shard_*.npz") if not p.name.endswith(".part.npz"))
