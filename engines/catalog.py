"""The models the tracker runs: where each file comes from and the shapes to build and benchmark it at.

Adding a model is one line in :data:`CATALOG`: a third-party model is found through the asset registry
(``asset="..."``), the project's own networks as files under ``engines/weights/`` (``weights="..."``).
An entry whose file does not exist yet (a network not trained yet) is skipped by ``facetrack engines
build|bench`` with a note instead of failing the command.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

from engines.options import DEFAULT_TRITON_URL, EngineOptions, OrtOptions, TensorRTOptions, TritonOptions
from tracker.core import assets
from tracker.core.errors import AssetError, EngineError

#: Folder of the project's own trained networks.
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

Shape = tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """One model of the tracker.

    Attributes:
        name: Catalog key (``facetrack engines bench --models NAME``).
        bench_shapes: Representative batch-1 input shapes (input name -> shape), used by benchmarks,
            warm-up and as the TensorRT profile's ``opt`` shape. A dynamic batch is the first dimension.
        asset: Registry name of a third-party model (``tracker.core.assets.require``), or None.
        weights: File name under ``engines/weights/`` of a project network, or None.
        max_shapes: Largest shapes the TensorRT profile must accept (for inputs with dynamic dimensions
            other than the batch); the batch dimension is raised to the build's max batch.
        min_shapes: Smallest shapes of the profile; default: the batch-1 ``bench_shapes`` with batch 1.
        dynamic_batch: True when the first dimension of every input is dynamic.
        per_face: True for a network the tracker runs once per tick on every tracked face's crop (its
            run-time batch is up to ``--max-faces`` times ``crops_per_face``); False for one that sees whole
            frames (batch 1).
        crops_per_face: Inputs a per-face network gets per face (2 for the eye network: both eyes; 2 for
            the mouth network: the patch and its mirror image).
        description: One line for ``facetrack engines list``.
    """

    name: str
    bench_shapes: Mapping[str, Shape]
    asset: str | None = None
    weights: str | None = None
    max_shapes: Mapping[str, Shape] = dataclasses.field(default_factory=dict)
    min_shapes: Mapping[str, Shape] = dataclasses.field(default_factory=dict)
    dynamic_batch: bool = True
    per_face: bool = False
    crops_per_face: int = 1
    description: str = ""

    def __post_init__(self) -> None:
        if (self.asset is None) == (self.weights is None):
            raise EngineError(f"catalog entry {self.name!r}: give exactly one of asset= or weights=")
        for field in ("bench_shapes", "max_shapes", "min_shapes"):
            shapes = {k: tuple(int(d) for d in v) for k, v in getattr(self, field).items()}
            object.__setattr__(self, field, MappingProxyType(shapes))

    @property
    def source(self) -> str:
        return f"asset:{self.asset}" if self.asset else f"weights/{self.weights}"

    def locate(self) -> Path | None:
        """The model file, or None when it is not there (yet). Never raises for a missing file."""
        if self.weights is not None:
            path = WEIGHTS_DIR / self.weights
            return path if path.is_file() else None
        return assets.locate(assets.get_asset(self.asset))

    def require(self) -> Path:
        """The (verified) model file.

        Raises:
            EngineError: when it is missing, saying how to get it.
        """
        if self.weights is not None:
            path = self.locate()
            if path is None:
                raise EngineError(
                    f"model {self.name!r}: {WEIGHTS_DIR / self.weights} does not exist yet (train and export "
                    f"it first; see engines/weights/)"
                )
            return path
        try:
            return assets.require(self.asset)
        except AssetError as exc:
            raise EngineError(f"model {self.name!r}: {exc}") from exc

    def shapes_for_batch(self, batch: int) -> dict[str, Shape]:
        """:attr:`bench_shapes` with the batch dimension set to ``batch``."""
        if batch != 1 and not self.dynamic_batch:
            raise EngineError(f"model {self.name!r} has a fixed batch of 1")
        return {k: (batch, *v[1:]) for k, v in self.bench_shapes.items()}

    def trt_profile(self, max_batch: int = 8) -> dict[str, tuple[Shape, Shape, Shape]]:
        """TensorRT optimisation profile: input -> (min, opt, max) shapes."""
        profile = {}
        for name, opt in self.bench_shapes.items():
            lo = self.min_shapes.get(name, (1, *opt[1:]))
            hi = self.max_shapes.get(name, opt)
            if self.dynamic_batch:
                hi = (max(1, max_batch), *hi[1:])
            else:
                lo, hi = (1, *lo[1:]), (1, *hi[1:])
            profile[name] = (lo, opt, hi)
        return profile


CATALOG: tuple[ModelEntry, ...] = (
    # bench/opt shape: what YuNetDetector feeds for a 640x480 frame at its default input size (320x256).
    ModelEntry("yunet", asset="yunet-dynamic", bench_shapes={"input": (1, 3, 256, 320)},
               min_shapes={"input": (1, 3, 32, 32)}, max_shapes={"input": (1, 3, 1088, 1920)},
               description="YuNet face detector, dynamic batch/size (the detector's default)"),
    ModelEntry("yunet-640", asset="yunet", bench_shapes={"input": (1, 3, 640, 640)}, dynamic_batch=False,
               description="YuNet face detector, fixed 1x3x640x640 (opencv_zoo export)"),
    # The project's own networks (exported by `facetrack train export` into engines/weights/; skipped with a
    # note until the file exists).
    ModelEntry("coarsenet", weights="coarsenet_v1.onnx", bench_shapes={"image": (1, 3, 128, 128)}, per_face=True,
               description="CoarseNet regressor, 128 px RGB face crop -> face-model coefficients"),
    ModelEntry("eyenet", weights="eyenet_v1.onnx", bench_shapes={"patch": (1, 1, 48, 48)}, per_face=True,
               crops_per_face=2, description="eye detail network, 48 px grey eye+brow patch -> 10 ARKit channels"),
    ModelEntry("mouthnet", weights="mouthnet_v1.onnx", bench_shapes={"patch": (1, 1, 64, 64)}, per_face=True,
               crops_per_face=2, description="mouth detail network, 64 px grey mouth patch -> 27 ARKit mouth and jaw channels"),
    ModelEntry("coarsenet_d", weights="coarsenet_d_v1.onnx", bench_shapes={"image": (1, 5, 64, 64)}, per_face=True,
               crops_per_face=2, description="CoarseNet-D, 64 px RGB + relative depth + validity crop -> rigid head pose (RGB-D frames)"),
)  # fmt: skip


#: The tracker's default ``--max-faces`` (tracker.tracking.TrackerConfig.max_faces): the largest CoarseNet
#: batch of one camera, and what ``facetrack engines build`` builds for unless told otherwise.
DEFAULT_MAX_FACES = 4


def runtime_max_batch(entry: ModelEntry, max_faces: int = DEFAULT_MAX_FACES) -> int:
    """The largest batch the tracker feeds ``entry``: ``max_faces`` x its crops per face for a per-face
    network, else 1."""
    if max_faces < 1:
        raise EngineError(f"max_faces must be >= 1, got {max_faces}")
    return int(max_faces) * entry.crops_per_face if entry.per_face and entry.dynamic_batch else 1


def runtime_profile(entry: ModelEntry | str, max_faces: int = DEFAULT_MAX_FACES) -> dict[str, tuple[Shape, Shape, Shape]]:
    """The TensorRT optimisation profile the tracker runs ``entry`` with.

    The one function that both ``facetrack engines build`` and the runtime (``create_tracker``) call, so the
    engine cache key (which holds the profile) is the same and an engine built ahead of time is reused.
    min = batch 1, opt = the usual batch (1: one face, one frame), max = :func:`runtime_max_batch`.
    """
    if isinstance(entry, str):
        entry = get_entry(entry)
    return entry.trt_profile(runtime_max_batch(entry, max_faces))


def engine_options_for(entry: ModelEntry | str, max_faces: int = DEFAULT_MAX_FACES, *, threads: int | None = None,
                       precision: str = "fp16", device_index: int = 0,
                       triton_url: str = DEFAULT_TRITON_URL) -> EngineOptions:  # fmt: skip
    """Typed options of every backend for running ``entry`` in the tracker.

    TensorRT gets :func:`runtime_profile` (so the engine ``facetrack engines build`` made is found), Triton
    the model's catalog name (what ``facetrack engines export-triton`` calls it), ONNX Runtime the threads.
    """
    if isinstance(entry, str):
        entry = get_entry(entry)
    return EngineOptions(
        onnxruntime=OrtOptions(intra_op_threads=threads, device_index=device_index),
        tensorrt=TensorRTOptions(precision=precision, device_index=device_index,
                                 max_batch=runtime_max_batch(entry, max_faces),
                                 profile=runtime_profile(entry, max_faces)),
        triton=TritonOptions(url=triton_url, model_name=entry.name),
    )  # fmt: skip


def get_entry(name: str) -> ModelEntry:
    for entry in CATALOG:
        if entry.name == name:
            return entry
    raise EngineError(f"unknown model {name!r}; the catalog has: {', '.join(e.name for e in CATALOG)}")


def select(names: list[str] | None = None) -> list[ModelEntry]:
    """Catalog entries by name (all when ``names`` is empty)."""
    return [get_entry(n) for n in names] if names else list(CATALOG)


__all__ = ["CATALOG", "DEFAULT_MAX_FACES", "ModelEntry", "WEIGHTS_DIR", "engine_options_for", "get_entry", "runtime_max_batch",
           "runtime_profile", "select"]  # fmt: skip
