"""The ICT face model as a batched, differentiable torch layer.

``vertices = mean + identity @ B_id[:K] + expression @ B_exp`` (ARCHITECTURE §3, §6), returned directly in
**metres in the head frame** (y down, nose along -z): the model's centimetre, y-up bases are converted once
at construction (``MODEL_TO_HEAD * 0.01``), so the per-call cost is two small matmuls. A layer covers a
region (``face``, ``narrow_face``, ...) or any explicit vertex subset, which keeps landmark-only fitting cheap.
"""

from __future__ import annotations

import numpy as np
import torch

from tracker.core.errors import ConfigError
from tracker.core.face_model import NUM_ICT, FaceModel
from tracker.core.face_model.model import CM_TO_M
from tracker.core.geometry import MODEL_TO_HEAD


class FaceLayer(torch.nn.Module):
    """Batched ICT vertices for a region or vertex subset.

    Attributes:
        vertex_ids: (V,) int64 model vertex ids this layer produces, in output order.
        triangles: (F,3) int64 triangles indexing the layer's vertices (empty for a subset layer).
        num_identity: K, the number of identity modes used.
    """

    def __init__(
        self,
        model: FaceModel,
        num_identity: int = 50,
        region: str = "face",
        vertex_ids: np.ndarray | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        """Builds the layer.

        Args:
            model: The loaded ICT model.
            num_identity: K, the first K identity modes (<= 100).
            region: Region for the vertices and triangles; ignored when ``vertex_ids`` is given.
            vertex_ids: Explicit (V,) model vertex ids (a subset layer, e.g. only the landmark vertices).
            dtype: Floating dtype of the buffers.
        """
        super().__init__()
        if not 0 <= num_identity <= model.num_identities:
            raise ConfigError(f"num_identity must be in [0, {model.num_identities}], got {num_identity}")
        if vertex_ids is None:
            r = model.region(region)
            ids = np.arange(r.v0, r.v1, dtype=np.int64)
            tris = model.triangles_of(region).astype(np.int64)
        else:
            ids = np.asarray(vertex_ids, dtype=np.int64).ravel()
            if ids.size == 0 or ids.min() < 0 or ids.max() >= model.num_vertices:
                raise ConfigError(f"vertex_ids must be non-empty ids in [0, {model.num_vertices})")
            tris = np.zeros((0, 3), np.int64)
        self.num_identity = int(num_identity)
        cols = (ids[:, None] * 3 + np.arange(3)).ravel()
        # Convert to head-frame metres once: flipping y and z is a per-column sign, so it commutes with the
        # linear combination.
        sign = np.tile(np.diag(MODEL_TO_HEAD) * CM_TO_M, ids.size).astype(np.float32)
        mean = model.neutral_cm.reshape(-1)[cols] * sign
        b_id = model.identity_basis_cm[: self.num_identity][:, cols] * sign
        b_exp = model.expression_basis_cm[:, cols] * sign
        self.register_buffer("vertex_ids", torch.from_numpy(ids), persistent=False)
        self.register_buffer("triangles", torch.from_numpy(tris), persistent=False)
        self.register_buffer("mean", torch.from_numpy(np.ascontiguousarray(mean)).to(dtype), persistent=False)
        self.register_buffer("identity_basis", torch.from_numpy(np.ascontiguousarray(b_id)).to(dtype), persistent=False)
        self.register_buffer("expression_basis", torch.from_numpy(np.ascontiguousarray(b_exp)).to(dtype), persistent=False)

    @property
    def num_vertices(self) -> int:
        return int(self.vertex_ids.shape[0])

    def forward(self, identity: torch.Tensor | None, expression: torch.Tensor | None) -> torch.Tensor:
        """Head-frame vertices.

        Args:
            identity: (B,k) or (k,) coefficients of the first k <= K modes (~N(0,1)); None = mean shape.
                A (k,) vector is shared by the whole batch.
            expression: (B,53) ICT coefficients in [0,1]; None = neutral.

        Returns:
            (B,V,3) metres, head frame (B = 1 when both inputs are unbatched or None).
        """
        batch = 1
        for t in (identity, expression):
            if t is not None and t.dim() == 2:
                batch = max(batch, t.shape[0])
        out = self.mean.expand(batch, -1)
        if expression is not None:
            if expression.shape[-1] != NUM_ICT:
                raise ConfigError(f"expression must have {NUM_ICT} coefficients, got {tuple(expression.shape)}")
            out = out + expression.reshape(-1, NUM_ICT) @ self.expression_basis
        if identity is not None and identity.shape[-1] > 0:
            k = identity.shape[-1]
            if k > self.num_identity:
                raise ConfigError(f"identity has {k} coefficients; this layer was built with {self.num_identity}")
            out = out + identity.reshape(-1, k) @ self.identity_basis[:k]
        return out.reshape(batch, -1, 3)


def interpolate(values: torch.Tensor, corners: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
    """Barycentric interpolation of per-vertex values at surface points.

    Args:
        values: (B,V,C) per-vertex values (positions, colours, normals ...).
        corners: (N,3) int64 vertex indices (into V) of each point's triangle.
        bary: (N,3) barycentric weights (rows sum to 1).

    Returns:
        (B,N,C) interpolated values.
    """
    return (values[:, corners] * bary[None, :, :, None]).sum(-2)


class SurfacePoints(torch.nn.Module):
    """Model points defined on the surface (triangle + barycentric), e.g. mapped MediaPipe landmarks.

    Only the vertices those triangles touch are evaluated, so a few hundred points cost a few hundred
    vertices' worth of bases rather than the whole face.
    """

    def __init__(
        self,
        model: FaceModel,
        triangle_vertices: np.ndarray,
        bary: np.ndarray,
        num_identity: int = 50,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        """Builds the layer.

        Args:
            model: The loaded ICT model.
            triangle_vertices: (N,3) model vertex ids of each point's triangle (a vertex landmark may repeat
                one id three times with weights (1,0,0)).
            bary: (N,3) barycentric weights.
            num_identity: K identity modes.
            dtype: Floating dtype.
        """
        super().__init__()
        tv = np.asarray(triangle_vertices, dtype=np.int64)
        w = np.asarray(bary, dtype=np.float32)
        if tv.ndim != 2 or tv.shape[1] != 3 or w.shape != tv.shape:
            raise ConfigError(f"triangle_vertices and bary must both be (N,3), got {tv.shape} and {w.shape}")
        unique, inverse = np.unique(tv, return_inverse=True)
        self.layer = FaceLayer(model, num_identity, vertex_ids=unique, dtype=dtype)
        self.register_buffer("corners", torch.from_numpy(inverse.reshape(-1, 3).astype(np.int64)), persistent=False)
        self.register_buffer("bary", torch.from_numpy(w).to(dtype), persistent=False)

    @property
    def num_points(self) -> int:
        return int(self.corners.shape[0])

    def forward(self, identity: torch.Tensor | None, expression: torch.Tensor | None) -> torch.Tensor:
        """(B,N,3) head-frame points in metres; arguments as :meth:`FaceLayer.forward`."""
        return interpolate(self.layer(identity, expression), self.corners, self.bary)
