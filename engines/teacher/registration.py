"""Small rigid/surface registration tools in numpy: Umeyama similarity and closest points on a mesh."""

from __future__ import annotations

import dataclasses

import numpy as np

from tracker.core.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Similarity:
    """``y = scale * R @ x + t``.

    Attributes:
        scale: Isotropic scale.
        rotation: (3,3) proper rotation.
        translation: (3,) offset, in the target's units.
    """

    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(N,3) -> (N,3) float64."""
        return self.scale * np.asarray(points, np.float64) @ self.rotation.T + self.translation


def umeyama(source: np.ndarray, target: np.ndarray, with_scale: bool = True) -> Similarity:
    """Least-squares similarity taking ``source`` onto ``target`` (Umeyama 1991), never a reflection.

    Args:
        source: (N,3) points.
        target: (N,3) corresponding points (N >= 3, not collinear).
        with_scale: Estimate the scale (else 1).

    Returns:
        The :class:`Similarity`.
    """
    x = np.asarray(source, np.float64)
    y = np.asarray(target, np.float64)
    if x.shape != y.shape or x.ndim != 2 or x.shape[1] != 3 or x.shape[0] < 3:
        raise ConfigError(f"umeyama needs two (N>=3,3) arrays of equal shape, got {x.shape} and {y.shape}")
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    cov = yc.T @ xc / x.shape[0]
    u, d, vt = np.linalg.svd(cov)
    s = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        s[2] = -1.0  # the closest rotation, not the reflection an SVD may return
    rot = u @ np.diag(s) @ vt
    var_x = (xc**2).sum() / x.shape[0]
    scale = float((d * s).sum() / var_x) if with_scale else 1.0
    return Similarity(scale, rot, my - scale * rot @ mx)


def closest_points_on_triangles(
    points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray, max_pairs: int = 2_000_000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact closest point on a triangle mesh for each query point.

    Candidate triangles are pruned with a bounding-sphere lower bound against the nearest vertex's distance
    (an upper bound), so the exact test (Ericson's Voronoi regions, "Real-Time Collision Detection"
    §5.1.5, vectorised) runs on a few dozen triangles per point instead of all of them.

    Args:
        points: (N,3) query points.
        vertices: (V,3) mesh vertices.
        triangles: (F,3) vertex ids.
        max_pairs: Query-triangle distance pairs evaluated per batch (memory bound).

    Returns:
        triangle ids (N,) int64, barycentric weights (N,3) float64, distances (N,) float64.
    """
    p_all = np.asarray(points, np.float64)
    v = np.asarray(vertices, np.float64)
    tris = np.asarray(triangles, np.int64)
    a, b, c = v[tris[:, 0]], v[tris[:, 1]], v[tris[:, 2]]
    centre = (a + b + c) / 3.0
    radius = np.sqrt(np.max([((x - centre) ** 2).sum(1) for x in (a, b, c)], axis=0))
    used = np.unique(tris)
    best_t = np.empty(len(p_all), np.int64)
    best_w = np.empty((len(p_all), 3))
    best_d = np.full(len(p_all), np.inf)
    rows = max(1, max_pairs // max(len(tris), 1))
    for s in range(0, len(p_all), rows):
        p = p_all[s : s + rows]
        upper = np.sqrt(((p[:, None] - v[used][None]) ** 2).sum(-1).min(1))  # nearest vertex: an upper bound
        lower = np.sqrt(((p[:, None] - centre[None]) ** 2).sum(-1)) - radius[None]
        qi, ti = np.nonzero(lower <= upper[:, None] + 1e-9)
        for s2 in range(0, len(qi), max_pairs):
            q, t = qi[s2 : s2 + max_pairs], ti[s2 : s2 + max_pairs]
            pp = p[q]
            w = _closest_bary(pp, a[t], b[t], c[t], b[t] - a[t], c[t] - a[t])
            d = np.sqrt((((w[:, 0:1] * a[t] + w[:, 1:2] * b[t] + w[:, 2:3] * c[t]) - pp) ** 2).sum(-1))
            # Keep the per-point minimum: sort by (point, distance) and take each point's first pair.
            order = np.lexsort((d, q))
            first = order[np.r_[True, q[order][1:] != q[order][:-1]]]
            gi = s + q[first]
            better = d[first] < best_d[gi]
            gi = gi[better]
            best_d[gi] = d[first][better]
            best_t[gi] = t[first][better]
            best_w[gi] = w[first][better]
    return best_t, best_w, best_d


def _closest_bary(p, a, b, c, ab, ac) -> np.ndarray:
    def dot(x, y):
        return (x * y).sum(-1)

    ap, bp, cp = p - a, p - b, p - c
    d1, d2 = dot(ab, ap), dot(ac, ap)
    d3, d4 = dot(ab, bp), dot(ac, bp)
    d5, d6 = dot(ab, cp), dot(ac, cp)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        denom = va + vb + vc
        v_in, w_in = vb / denom, vc / denom
        t_ab = d1 / (d1 - d3)
        t_ac = d2 / (d2 - d6)
        t_bc = (d4 - d3) / ((d4 - d3) + (d5 - d6))
    zero, one = np.zeros_like(d1), np.ones_like(d1)
    # Interior first, then override by regions in reverse order of Ericson's early returns so the first
    # matching test wins, exactly as in the scalar code.
    u, vv, ww = 1 - v_in - w_in, v_in, w_in
    cases = [
        ((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), (zero, 1 - t_bc, t_bc)),
        ((vb <= 0) & (d2 >= 0) & (d6 <= 0), (1 - t_ac, zero, t_ac)),
        ((d6 >= 0) & (d5 <= d6), (zero, zero, one)),
        ((vc <= 0) & (d1 >= 0) & (d3 <= 0), (1 - t_ab, t_ab, zero)),
        ((d3 >= 0) & (d4 <= d3), (zero, one, zero)),
        ((d1 <= 0) & (d2 <= 0), (one, zero, zero)),
    ]
    for mask, (cu, cv, cw) in cases:
        u, vv, ww = np.where(mask, cu, u), np.where(mask, cv, vv), np.where(mask, cw, ww)
    w = np.stack([u, vv, ww], -1)
    return np.nan_to_num(w, nan=1.0 / 3.0)
