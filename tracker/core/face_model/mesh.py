"""What of the ICT mesh the renderer draws, and per-frame vertex normals.

The renderer draws the UV-split mesh (one GPU vertex per (position, uv) pair) so the face skin can carry a
texture. It draws every triangle up to the first of ICT's overlay strips (lacrimal fluid, eye blend, eye
occlusion, eyelashes): those are meant for a game engine's translucent eye shaders and look wrong as
opaque surfaces. Because they come last in the mesh, the drawn triangles' GPU primitive ids equal their
index in :attr:`FaceModel.triangles`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tracker.core.errors import AssetError
from tracker.core.face_model import FaceModel

#: Materials left out of rendering (translucent overlays in the upstream engine setup).
SKIPPED_MATERIALS = ("M_LacrimalFluid", "M_EyeBlend", "M_EyeOcclusion", "M_EyeLashes")
#: Regions whose pixels are not "face" in the mask (the back of the head, neck, ears' back).
NON_FACE_REGIONS = ("head_and_neck",)
#: The face-skin material that a UV texture replaces.
FACE_MATERIAL = "M_Face"
#: Half-angle (deg, from the eye's optical axis) of the cornea cap cut out of the sclera mesh, so the iris
#: behind it shows (upstream renders the cornea as a refractive, transparent shell).
CORNEA_HALF_ANGLE_DEG = 30.0
#: Half-angles of the iris and the pupil on the inner eyeball (iris) mesh.
IRIS_HALF_ANGLE_DEG = 27.0
PUPIL_HALF_ANGLE_DEG = 9.0


@dataclasses.dataclass(frozen=True)
class Eye:
    """One eyeball in the neutral model frame (cm): its centre, optical axis and the vertex ids of its
    outer shell (sclera + cornea) and inner ball (iris)."""

    centre: np.ndarray
    axis: np.ndarray
    sclera_ids: np.ndarray
    iris_ids: np.ndarray

    def angle_deg(self, points: np.ndarray) -> np.ndarray:
        """Angle (deg) between the optical axis and the direction from the centre to each (N,3) point."""
        d = points - self.centre
        cos = d @ self.axis / np.maximum(np.linalg.norm(d, axis=1), 1e-9)
        return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def eyes(model: FaceModel) -> list[Eye]:
    """The model's eyeballs, left then right; empty if the materials are missing."""
    out = []
    v = model.neutral_cm
    for side in ("Left", "Right"):
        if f"M_Sclera{side}" not in model.materials or f"M_Iris{side}" not in model.materials:
            continue
        t0, t1 = model.materials[f"M_Sclera{side}"]
        sclera = np.unique(model.triangles[t0:t1])
        t0, t1 = model.materials[f"M_Iris{side}"]
        iris = np.unique(model.triangles[t0:t1])
        p = v[sclera].astype(np.float64)
        centre = (p.min(axis=0) + p.max(axis=0)) / 2
        # The cornea bulges out of the ball: its apex is the sclera vertex farthest from the centre.
        apex = p[np.argmax(np.linalg.norm(p - centre, axis=1))]
        axis = (apex - centre) / np.linalg.norm(apex - centre)
        out.append(Eye(centre, axis, sclera, iris))
    return out


class MeshLayout:
    """Index data of the drawn mesh, derived once from a :class:`FaceModel`.

    Attributes:
        num_draw_triangles: Triangles drawn, [0, num_draw_triangles) of ``FaceModel.triangles``.
        gpu_vertex: (N,) int32 model vertex of each GPU vertex.
        gpu_uv: (N,2) float32 UV of each GPU vertex.
        gpu_triangles: (num_draw_triangles, 3) int32 triangles over GPU vertices.
        gpu_textured: (N,) float32 1 where the GPU vertex belongs to the face-skin material.
        gpu_hidden: (N,) float32 1 on the cornea caps of the sclera shells (the fragment shader discards
            pixels there, keeping triangle numbering intact).
        face_triangle: (num_draw_triangles + 1,) bool lookup, index ``id + 1``: whether a triangle id
            (or -1, the background) counts as face in the mask.
    """

    def __init__(self, model: FaceModel) -> None:
        skipped = [model.materials[m] for m in SKIPPED_MATERIALS if m in model.materials]
        n_draw = min((t0 for t0, _ in skipped), default=model.triangles.shape[0])
        for name, (_, t1) in model.materials.items():
            if name not in SKIPPED_MATERIALS and t1 > n_draw:
                raise AssetError(
                    f"material {name} lies after the skipped overlay strips; the mesh layout is unexpected"
                )
        self.num_draw_triangles = int(n_draw)
        tris = model.uv_triangles[:n_draw]
        used = np.unique(tris)
        # Compact the GPU vertex list to the vertices the drawn triangles use.
        remap = np.full(model.uv_vertex.shape[0], -1, np.int64)
        remap[used] = np.arange(used.size)
        self.gpu_triangles = remap[tris].astype(np.int32)
        self.gpu_vertex = model.uv_vertex[used].astype(np.int32)
        self.gpu_uv = model.uv_coords[used].astype(np.float32)
        f0, f1 = model.materials[FACE_MATERIAL]
        textured = np.zeros(used.size, np.float32)
        textured[self.gpu_triangles[f0:f1].ravel()] = 1.0
        self.gpu_textured = textured
        hidden = np.zeros(model.num_vertices, np.float32)
        for eye in eyes(model):
            cap = eye.angle_deg(model.neutral_cm[eye.sclera_ids]) < CORNEA_HALF_ANGLE_DEG
            hidden[eye.sclera_ids[cap]] = 1.0
        self.gpu_hidden = hidden[self.gpu_vertex]
        lut = np.ones(n_draw + 1, bool)
        lut[0] = False
        for r in NON_FACE_REGIONS:
            reg = model.region(r)
            lut[reg.t0 + 1 : reg.t1 + 1] = False
        self.face_triangle = lut
        t = model.triangles
        self._t0, self._t1, self._t2 = (np.ascontiguousarray(t[:, k]) for k in range(3))
        self._scatter = [(t[:, k, None].astype(np.int64) * 3 + np.arange(3)).ravel() for k in range(3)]
        self._num_vertices = model.num_vertices

    @property
    def num_gpu_vertices(self) -> int:
        return int(self.gpu_vertex.shape[0])

    def vertex_normals(self, vertices: np.ndarray) -> np.ndarray:
        """Area-weighted smooth vertex normals of the full mesh.

        Args:
            vertices: (V,3) model vertices (any unit, any rigid frame).

        Returns:
            (V,3) float32 unit normals, outward (the ICT winding is counter-clockwise seen from outside).
        """
        v = vertices.astype(np.float32, copy=False)
        # np.take is several times faster than fancy indexing for gathering rows.
        a = np.take(v, self._t0, axis=0)
        fn = np.cross(np.take(v, self._t1, axis=0) - a, np.take(v, self._t2, axis=0) - a).ravel()
        # Scatter-add every face normal to its three corners: one bincount per corner over (vertex,
        # component) slots, far faster than np.add.at.
        n = np.bincount(self._scatter[0], weights=fn, minlength=3 * self._num_vertices)
        n += np.bincount(self._scatter[1], weights=fn, minlength=3 * self._num_vertices)
        n += np.bincount(self._scatter[2], weights=fn, minlength=3 * self._num_vertices)
        n = n.reshape(-1, 3)
        n /= np.maximum(np.sqrt(np.einsum("ij,ij->i", n, n)), 1e-12)[:, None]
        return n.astype(np.float32)

    def mask_from_ids(self, triangle_ids: np.ndarray) -> np.ndarray:
        """(H,W) bool face mask from (H,W) int32 triangle ids (-1 = background)."""
        return self.face_triangle[triangle_ids + 1]

    def region_lookup(self, model: FaceModel, regions: tuple[str, ...]) -> np.ndarray:
        """(num_draw_triangles + 1,) bool lookup (index ``id + 1``) of triangles in any of ``regions``."""
        lut = np.zeros(self.num_draw_triangles + 1, bool)
        for name in regions:
            r = model.region(name)
            lut[r.t0 + 1 : min(r.t1, self.num_draw_triangles) + 1] = True
        return lut


@dataclasses.dataclass(frozen=True)
class WireGrid:
    """A coarse quad grid laid over the face in UV space, for a readable wireframe overlay.

    The real mesh is too dense to show as lines at camera resolution; a grid of ``cells`` x ``cells`` in
    the face's UV square, with each node bound to the model triangle under it, deforms with the model.

    Attributes:
        vertex_ids: (P,3) int32 model vertices of the triangle under each node.
        weights: (P,3) float32 barycentric weights of the node in that triangle.
        edges: (E,2) int32 node pairs joined by a line.
    """

    vertex_ids: np.ndarray
    weights: np.ndarray
    edges: np.ndarray

    def nodes(self, per_vertex: np.ndarray) -> np.ndarray:
        """(P,C) node values interpolated from (V,C) per-vertex values (positions, normals)."""
        return np.einsum("pk,pkc->pc", self.weights, per_vertex[self.vertex_ids])


def wire_grid(model: FaceModel, region: str = "narrow_face", cells: int = 40) -> WireGrid:
    """Builds the :class:`WireGrid` of a face region (``narrow_face`` or ``face``)."""
    reg = model.region(region)
    f0, f1 = model.materials[FACE_MATERIAL]
    t0, t1 = max(reg.t0, f0), min(reg.t1, f1)
    tri_v = model.triangles[t0:t1]
    uv = model.uv_coords[model.uv_triangles[t0:t1]].astype(np.float64)  # (T,3,2)
    lo, hi = uv.reshape(-1, 2).min(0), uv.reshape(-1, 2).max(0)
    g = np.linspace(0, 1, cells + 1)
    gu, gv = np.meshgrid(lo[0] + g * (hi[0] - lo[0]), lo[1] + g * (hi[1] - lo[1]))
    pts = np.stack([gu.ravel(), gv.ravel()], 1)
    a, b, c = uv[:, 0], uv[:, 1], uv[:, 2]
    v0, v1 = b - a, c - a
    den = v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0]
    den = np.where(np.abs(den) < 1e-15, 1e-15, den)
    found = np.full(len(pts), -1)
    wts = np.zeros((len(pts), 3))
    for s in range(0, len(pts), 64):  # chunks keep the (points x triangles) arrays small
        p = pts[s : s + 64, None, :] - a[None]
        w1 = (p[..., 0] * v1[:, 1] - p[..., 1] * v1[:, 0]) / den
        w2 = (v0[:, 0] * p[..., 1] - v0[:, 1] * p[..., 0]) / den
        inside = (w1 >= -1e-9) & (w2 >= -1e-9) & (w1 + w2 <= 1 + 1e-9)
        hit = inside.any(1)
        first = inside.argmax(1)
        rows = np.flatnonzero(hit)
        found[s + rows] = first[rows]
        wts[s + rows, 1] = w1[rows, first[rows]]
        wts[s + rows, 2] = w2[rows, first[rows]]
    wts[:, 0] = 1 - wts[:, 1] - wts[:, 2]
    ok = found >= 0
    node = np.full(len(pts), -1)
    node[ok] = np.arange(ok.sum())
    grid = node.reshape(cells + 1, cells + 1)
    edges = []
    for da, db in (
        ((slice(None), slice(0, -1)), (slice(None), slice(1, None))),
        ((slice(0, -1), slice(None)), (slice(1, None), slice(None))),
    ):
        e = np.stack([grid[da].ravel(), grid[db].ravel()], 1)
        edges.append(e[(e >= 0).all(1)])
    ids, weights, edges = tri_v[found[ok]].astype(np.int32), wts[ok].astype(np.float32), np.concatenate(edges)
    # Grid neighbours on different UV islands (e.g. across a seam) would draw a line through space.
    nodes = np.einsum("pk,pkc->pc", weights, model.neutral_cm[ids])
    length = np.linalg.norm(nodes[edges[:, 0]] - nodes[edges[:, 1]], axis=1)
    edges = edges[length < 2.0 * np.median(length)]
    return WireGrid(ids, weights, edges.astype(np.int32))
