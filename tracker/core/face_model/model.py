"""The ICT-FaceKit linear face model at run time.

``vertices = neutral + identity @ B_id + expression @ B_exp`` (ARCHITECTURE §3, §6). Inside this class
everything is in **centimetres in the model frame** (y up, nose along +z) as upstream ships it;
:meth:`FaceModel.head_vertices_m` gives **metres in the head frame** of ARCHITECTURE §2 (y down, nose along
-z), which is what the camera, renderer and tracker use.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from tracker.core.errors import AssetError, ConfigError
from tracker.core.face_model.arkit import NUM_ICT
from tracker.core.face_model.build import CACHE_FORMAT_VERSION, build_cache, default_cache_path
from tracker.core.geometry import MODEL_TO_HEAD

log = logging.getLogger(__name__)

CM_TO_M = 0.01


@dataclasses.dataclass(frozen=True)
class Region:
    """A contiguous part of the mesh: vertices [v0, v1) and triangles [t0, t1)."""

    name: str
    v0: int
    v1: int
    t0: int
    t1: int


class FaceModel:
    """ICT Face Model Light loaded from the compact cache.

    Attributes:
        neutral_cm: (V,3) float32 neutral mesh, cm, model frame.
        identity_basis_cm: (100, V*3) float32 identity deltas, cm.
        expression_basis_cm: (53, V*3) float32 expression deltas, cm.
        triangles: (F,3) int32 full-mesh triangles (quads split).
        landmark_ids: (68,) int32 vertex ids of the iBUG-68 landmarks.
        expression_names: the 53 ICT expression names.
        source_sha256: content hash of the upstream folder the cache was built from.
    """

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.neutral_cm = arrays["neutral_cm"]
        self.identity_basis_cm = arrays["identity_basis_cm"]
        self.expression_basis_cm = arrays["expression_basis_cm"]
        self.triangles = arrays["triangles"]
        self.triangle_uv = arrays["triangle_uv"]
        self.uv = arrays["uv"]
        self.uv_vertex = arrays["uv_vertex"]
        self.uv_coords = arrays["uv_coords"]
        self.uv_triangles = arrays["uv_triangles"]
        self.landmark_ids = arrays["landmarks68"]
        self.expression_names = tuple(str(n) for n in arrays["expression_names"])
        self.source_sha256 = str(arrays["source_sha256"])
        self.regions = {
            str(n): Region(str(n), *(int(x) for x in r))
            for n, r in zip(arrays["region_names"], arrays["region_ranges"], strict=True)
        }
        self.materials = {
            str(n): (int(r[0]), int(r[1]))
            for n, r in zip(arrays["material_names"], arrays["material_ranges"], strict=True)
        }
        # Per-region slices of the bases are views, so a region query never copies the full basis.
        self._bases: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, path: Path | None = None, build_if_missing: bool = True) -> FaceModel:
        """Loads the cache (building it from the registered asset on first use).

        Args:
            path: Cache ``.npz``; default :func:`~tracker.core.face_model.build.default_cache_path`.
            build_if_missing: Build the cache from the ICT asset if it is missing or of another version.

        Raises:
            AssetError: if the cache is missing and cannot be built, or is unreadable.
        """
        path = Path(path) if path is not None else default_cache_path()
        t0 = time.perf_counter()
        if not _cache_ok(path):
            if not build_if_missing:
                raise AssetError(f"face model cache {path} is missing or outdated; run `facetrack assets build`")
            log.info("building the face model cache at %s", path)
            build_cache(out=path, progress=False)
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError) as exc:
            raise AssetError(f"face model cache {path} is unreadable ({exc}); run `facetrack assets build`") from exc
        model = cls(arrays)
        log.debug("loaded %s in %.0f ms", path, (time.perf_counter() - t0) * 1e3)
        return model

    # ------------------------------------------------------------------ sizes
    @property
    def num_vertices(self) -> int:
        return int(self.neutral_cm.shape[0])

    @property
    def num_identities(self) -> int:
        return int(self.identity_basis_cm.shape[0])

    def region(self, name: str) -> Region:
        try:
            return self.regions[name]
        except KeyError:
            raise ConfigError(f"unknown region {name!r}; known: {', '.join(self.regions)}") from None

    def triangles_of(self, region: str = "full") -> np.ndarray:
        """(F,3) int32 triangles of a region, indexing that region's vertex array."""
        r = self.region(region)
        return self.triangles[r.t0 : r.t1] - r.v0

    # ------------------------------------------------------------------ geometry
    def _region_bases(self, region: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if region not in self._bases:
            r = self.region(region)
            self._bases[region] = (
                self.neutral_cm[r.v0 : r.v1].reshape(-1),
                self.identity_basis_cm[:, r.v0 * 3 : r.v1 * 3],
                self.expression_basis_cm[:, r.v0 * 3 : r.v1 * 3],
            )
        return self._bases[region]

    def check_coefficients(self, identity: np.ndarray | None, expression: np.ndarray | None):
        """Validates coefficient vectors (batched or not); returns them as float32 arrays."""
        ident = np.zeros((0,), np.float32) if identity is None else np.asarray(identity, dtype=np.float32)
        expr = np.zeros((NUM_ICT,), np.float32) if expression is None else np.asarray(expression, dtype=np.float32)
        if ident.shape[-1] > self.num_identities:
            raise ConfigError(
                f"identity has {ident.shape[-1]} coefficients, the model has {self.num_identities} modes"
            )
        if expr.shape[-1:] != (NUM_ICT,):
            raise ConfigError(f"expression must have {NUM_ICT} ICT coefficients, got shape {expr.shape}")
        return ident, expr

    def vertices(
        self, identity: np.ndarray | None = None, expression: np.ndarray | None = None, region: str = "full"
    ) -> np.ndarray:
        """Model vertices, **centimetres, model frame** (y up, nose +z).

        Args:
            identity: (K,) or (B,K) identity coefficients for the first K <= 100 modes; None = neutral.
            expression: (53,) or (B,53) ICT expression coefficients; None = neutral.
            region: ``full``, ``face``, ``narrow_face`` or an upstream geometry name (e.g. ``teeth``).

        Returns:
            (V,3) float32, or (B,V,3) when either input is batched.
        """
        ident, expr = self.check_coefficients(identity, expression)
        mean, b_id, b_exp = self._region_bases(region)
        k = ident.shape[-1]
        out = mean + expr @ b_exp
        if k:
            out = out + ident @ b_id[:k]
        return out.reshape(*out.shape[:-1], -1, 3).astype(np.float32, copy=False)

    def head_vertices_m(
        self, identity: np.ndarray | None = None, expression: np.ndarray | None = None, region: str = "full"
    ) -> np.ndarray:
        """Model vertices in **metres, head frame** (y down, nose -z; ARCHITECTURE §2). Shapes as :meth:`vertices`."""
        return self.vertices(identity, expression, region) @ (MODEL_TO_HEAD * CM_TO_M)

    def surface_m(self, identity: np.ndarray | None = None, expression: np.ndarray | None = None,
                  region: str = "narrow_face", stride: int = 8) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Every ``stride``-th vertex of a region with its unit normal (area-weighted over its triangles),
        **metres, head frame**: the surface a depth camera sees, for point-to-plane distances.

        Returns:
            ((P,3) float64 points, (P,3) float64 unit normals pointing out of the face).
        """
        v = self.head_vertices_m(identity, expression, region=region).astype(np.float64)
        tri_idx = self.triangles_of(region)
        tri = v[tri_idx]
        face_n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # area-weighted
        idx = tri_idx.reshape(-1)
        n = np.stack([np.bincount(idx, np.repeat(face_n[:, c], 3), minlength=len(v)) for c in range(3)], axis=1)
        n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        return v[::stride], n[::stride]

    def landmarks68(self, identity: np.ndarray | None = None, expression: np.ndarray | None = None) -> np.ndarray:
        """The 68 landmark vertices, (68,3) or (B,68,3) float32, **metres, head frame**."""
        ident, expr = self.check_coefficients(identity, expression)
        cols = (self.landmark_ids[:, None] * 3 + np.arange(3)).ravel()
        k = ident.shape[-1]
        out = self.neutral_cm.reshape(-1)[cols] + expr @ self.expression_basis_cm[:, cols]
        if k:
            out = out + ident @ self.identity_basis_cm[:k, cols]
        return out.reshape(*out.shape[:-1], 68, 3) @ (MODEL_TO_HEAD * CM_TO_M)


def _cache_ok(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            return int(z["format_version"]) == CACHE_FORMAT_VERSION
    except (OSError, ValueError, KeyError):
        return False
