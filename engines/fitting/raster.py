"""A small vectorised triangle rasteriser in numpy (z-buffered), for UV unwrapping and visibility.

It answers "which triangle, at which barycentric weights, covers this pixel" for a whole image at once.
Pixel (i, j) is sampled at its centre (x = j, y = i: the 0-based pixel-centre convention). Barycentric
weights are perspective-correct when per-vertex depths are given. Triangles are grouped by their
bounding-box size so each group is one dense numpy evaluation; at face scale (a few thousand triangles of
a few pixels each) a 512x512 frame takes tens of milliseconds.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tracker.core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Raster:
    """Per-pixel rasterisation result.

    Attributes:
        triangle: (H,W) int32 triangle index, -1 where no triangle covers the pixel.
        bary: (H,W,3) float32 barycentric weights of the covering triangle (perspective-correct).
        depth: (H,W) float32 depth of the nearest surface (inf where empty).
    """

    triangle: np.ndarray
    bary: np.ndarray
    depth: np.ndarray

    @property
    def mask(self) -> np.ndarray:
        """(H,W) bool covered pixels."""
        return self.triangle >= 0

    def interpolate(self, values: np.ndarray, triangles: np.ndarray) -> np.ndarray:
        """Interpolates per-vertex values over covered pixels.

        Args:
            values: (V,C) per-vertex attributes.
            triangles: (F,3) the same triangles given to :func:`rasterize`.

        Returns:
            (H,W,C) float32 (zeros where empty).
        """
        vals = np.asarray(values, np.float32)
        out = np.zeros((*self.triangle.shape, vals.shape[1]), np.float32)
        m = self.mask
        corners = triangles[self.triangle[m]]  # (P,3)
        out[m] = (vals[corners] * self.bary[m][..., None]).sum(1)
        return out


def rasterize(
    xy: np.ndarray,
    triangles: np.ndarray,
    height: int,
    width: int,
    depth: np.ndarray | None = None,
    max_candidates: int = 4_000_000,
) -> Raster:
    """Rasterises triangles with a z-buffer.

    Args:
        xy: (V,2) vertex positions in px (pixel-centre convention).
        triangles: (F,3) int vertex ids.
        height: Output rows.
        width: Output columns.
        depth: (V,) positive per-vertex depth (camera z); None = flat (e.g. UV space; overlaps then resolve
            arbitrarily).
        max_candidates: Candidate pixels evaluated per batch (memory bound).

    Returns:
        The :class:`Raster`.
    """
    xy = np.asarray(xy, np.float64)
    tris = np.asarray(triangles, np.int64)
    if xy.ndim != 2 or xy.shape[1] != 2 or tris.ndim != 2 or tris.shape[1] != 3:
        raise ConfigError(f"rasterize needs (V,2) xy and (F,3) triangles, got {xy.shape} and {tris.shape}")
    z = np.ones(len(xy)) if depth is None else np.asarray(depth, np.float64)
    if z.shape != (len(xy),) or np.any(z[np.unique(tris)] <= 0):
        raise ConfigError("depth must be (V,) and positive for every vertex a triangle uses")
    p0, p1, p2 = xy[tris[:, 0]], xy[tris[:, 1]], xy[tris[:, 2]]
    area = (p1[:, 0] - p0[:, 0]) * (p2[:, 1] - p0[:, 1]) - (p1[:, 1] - p0[:, 1]) * (p2[:, 0] - p0[:, 0])
    lo = np.ceil(np.minimum(np.minimum(p0, p1), p2)).astype(np.int64)  # first pixel centre inside the box
    hi = np.floor(np.maximum(np.maximum(p0, p1), p2)).astype(np.int64)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [width - 1, height - 1])
    size = hi - lo + 1
    keep = (np.abs(area) > 1e-12) & np.all(size > 0, axis=1)

    pix_all, z_all, t_all, w_all = [], [], [], []
    ids = np.nonzero(keep)[0]
    span = np.maximum(size[ids, 0], size[ids, 1])
    # Bucket by bounding-box size so each bucket is a dense (n, S, S) evaluation with little waste.
    edges = [0, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1 << 30]
    for lo_s, hi_s in zip(edges[:-1], edges[1:], strict=True):
        sel = ids[(span > lo_s) & (span <= hi_s)]
        if sel.size == 0:
            continue
        s = int(min(hi_s, span[(span > lo_s) & (span <= hi_s)].max()))
        per = s * s
        step = max(1, max_candidates // per)
        oy, ox = np.mgrid[0:s, 0:s]
        ox, oy = ox.ravel(), oy.ravel()
        for k in range(0, sel.size, step):
            t = sel[k : k + step]
            px = lo[t, 0:1] + ox[None]
            py = lo[t, 1:2] + oy[None]
            inside_box = (px <= hi[t, 0:1]) & (py <= hi[t, 1:2])
            a0, a1, a2 = p0[t], p1[t], p2[t]
            # Edge functions = unnormalised barycentrics of the pixel centre.
            w0 = (a1[:, 0:1] - px) * (a2[:, 1:2] - py) - (a1[:, 1:2] - py) * (a2[:, 0:1] - px)
            w1 = (a2[:, 0:1] - px) * (a0[:, 1:2] - py) - (a2[:, 1:2] - py) * (a0[:, 0:1] - px)
            w2 = (a0[:, 0:1] - px) * (a1[:, 1:2] - py) - (a0[:, 1:2] - py) * (a1[:, 0:1] - px)
            ar = area[t][:, None]
            b0, b1, b2 = w0 / ar, w1 / ar, w2 / ar
            eps = -1e-7
            inside = inside_box & (b0 >= eps) & (b1 >= eps) & (b2 >= eps)
            ti, ci = np.nonzero(inside)
            if ti.size == 0:
                continue
            tt = t[ti]
            bb = np.stack([b0[ti, ci], b1[ti, ci], b2[ti, ci]], -1)
            zc = z[tris[tt]]
            # Perspective-correct: interpolate 1/z linearly in screen space.
            bz = bb / zc
            inv_z = bz.sum(-1)
            pix_all.append(py[ti, ci] * width + px[ti, ci])
            z_all.append(1.0 / inv_z)
            t_all.append(tt)
            w_all.append(bz / inv_z[:, None])

    tri_img = np.full(height * width, -1, np.int32)
    bary_img = np.zeros((height * width, 3), np.float32)
    depth_img = np.full(height * width, np.inf, np.float32)
    if pix_all:
        pix = np.concatenate(pix_all)
        zz = np.concatenate(z_all)
        order = np.lexsort((zz, pix))  # nearest first within each pixel
        first = order[np.r_[True, pix[order][1:] != pix[order][:-1]]]
        tri_img[pix[first]] = np.concatenate(t_all)[first]
        bary_img[pix[first]] = np.concatenate(w_all)[first]
        depth_img[pix[first]] = zz[first]
    return Raster(tri_img.reshape(height, width), bary_img.reshape(height, width, 3), depth_img.reshape(height, width))


def vertex_visibility(
    xy: np.ndarray, depth: np.ndarray, triangles: np.ndarray, height: int, width: int, tolerance: float = 0.01
) -> np.ndarray:
    """Z-buffer visibility of vertices (not hidden behind another part of the mesh, e.g. the nose).

    Args:
        xy: (V,2) projected vertices, px.
        depth: (V,) camera z, metres.
        triangles: (F,3) the mesh.
        height: Image rows.
        width: Image columns.
        tolerance: Depth slack in the depth's units (a vertex lies on its own surface, up to rounding of
            the nearest pixel centre).

    Returns:
        (V,) bool: inside the image and within ``tolerance`` of the front-most surface at its pixel.
    """
    r = rasterize(xy, triangles, height, width, depth)
    ix = np.round(xy[:, 0]).astype(np.int64)
    iy = np.round(xy[:, 1]).astype(np.int64)
    ok = (ix >= 0) & (iy >= 0) & (ix < width) & (iy < height)
    out = np.zeros(len(xy), bool)
    zb = r.depth[iy[ok], ix[ok]]
    out[ok] = depth[ok] <= zb + tolerance
    return out
