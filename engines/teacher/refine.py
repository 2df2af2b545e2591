"""Data-driven refinement of the MediaPipe <-> ICT correspondence from renders with known geometry.

Nearest-surface projection of the aligned canonical mesh leaves systematic offsets where the two face
shapes differ in depth (e.g. the eye sockets: MediaPipe's upper-orbit points land on ICT's eyelids). Here
the project renders ICT faces of known identity, expression and pose (:mod:`tracker.render`), runs the
MediaPipe teacher on them, and looks up *which surface point* lies under each detected landmark. Those
points, expressed on the neutral mesh through their triangle and barycentric weights (so they mean the
same spot for every identity and expression), are averaged robustly (coordinate-wise median) and
projected back onto the neutral surface: the refined triangle and weights.
"""

from __future__ import annotations

import dataclasses
import logging

import numpy as np

from engines.fitting.raster import rasterize
from engines.teacher.correspondence import NUM_MP_MESH, Correspondence
from engines.teacher.registration import closest_points_on_triangles
from engines.train.synth import RendererFactory
from tracker.core.face_model import FaceModel

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class RenderSample:
    """What one synthetic view contributes: per MediaPipe point, its surface location on the neutral
    mesh (cm, NaN where the landmark fell off the face) and the 2D error of the old correspondence.

    Attributes:
        neutral_points_cm: (468,3) float64.
        old_error_pct: (468,) float64 distance between the detection and the old mapped point, % face size.
    """

    neutral_points_cm: np.ndarray
    old_error_pct: np.ndarray


def _closest_in_triangles_2d(p: np.ndarray, tri_xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For one point p (2,) and candidate triangles (C,3,2): barycentric weights of the closest point in
    each triangle (C,3) and the distances (C,)."""
    a, b, c = tri_xy[:, 0], tri_xy[:, 1], tri_xy[:, 2]
    v0, v1, v2 = b - a, c - a, p[None] - a
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
    den = np.where(np.abs(d00 * d11 - d01 * d01) < 1e-12, 1e-12, d00 * d11 - d01 * d01)
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    bary = np.stack([1 - v - w, v, w], 1)
    # Outside: clamp to the triangle (good enough for the 1-2 px snaps this is used for).
    bary = np.clip(bary, 0, None)
    bary /= bary.sum(1, keepdims=True).clip(1e-12)
    q = (bary[:, :, None] * tri_xy).sum(1)
    return bary, np.linalg.norm(q - p[None], axis=1)


def surface_points_under(
    landmarks_px: np.ndarray,
    xy: np.ndarray,
    depth: np.ndarray,
    triangles: np.ndarray,
    neutral_cm: np.ndarray,
    height: int,
    width: int,
    snap_px: int = 2,
) -> np.ndarray:
    """The front-most face surface under each 2D point, as a point on the neutral mesh.

    Args:
        landmarks_px: (N,2) points.
        xy: (V,2) projected vertices of the rendered face, px.
        depth: (V,) their camera z.
        triangles: (F,3) face-region triangles.
        neutral_cm: (V,3) the neutral mesh (same vertex numbering).
        height: Image rows.
        width: Image columns.
        snap_px: Points off the surface by up to this many pixels (e.g. inside the eye opening) snap to
            the nearest covering triangle; farther ones give NaN.

    Returns:
        (N,3) float64 neutral-mesh points, NaN where no face surface lies under (or near) the point.
    """
    r = rasterize(xy, triangles, height, width, depth)
    out = np.full((len(landmarks_px), 3), np.nan)
    for i, p in enumerate(np.asarray(landmarks_px, np.float64)):
        x0, y0 = int(round(p[0])), int(round(p[1]))
        ys = slice(max(0, y0 - snap_px), min(height, y0 + snap_px + 1))
        xs = slice(max(0, x0 - snap_px), min(width, x0 + snap_px + 1))
        cand = np.unique(r.triangle[ys, xs])
        cand = cand[cand >= 0]
        if cand.size == 0:
            continue
        bary, dist = _closest_in_triangles_2d(p, xy[triangles[cand]])
        k = int(np.argmin(dist))
        if dist[k] > snap_px:
            continue
        out[i] = (neutral_cm[triangles[cand[k]]] * bary[k][:, None]).sum(0)
    return out


def render_samples(model: FaceModel, correspondence: Correspondence, renderer_factory: RendererFactory,
                   num_renders: int = 60, seed: int = 0, size_px: int = 320,
                   progress: bool = False) -> list[RenderSample]:  # fmt: skip
    """Renders ``num_renders`` random ICT faces, detects them with MediaPipe and locates each landmark.

    Faces: identity ~N(0, 0.7) over 50 modes, mild sparse expressions (no gaze channels: ICT's eyeballs
    do not move), yaw within +-30 deg, pitch +-15, roll +-10, random light, procedural albedo and a random
    background colour; a 30 degree camera at about 0.6 m.
    """
    import torch
    from tqdm import tqdm

    from engines.differentiable import SurfacePoints, head_to_camera, intrinsics_tensor, project
    from engines.teacher.mediapipe_landmarker import MediaPipeTeacher
    from tracker.core.face_model.albedo import procedural_albedo
    from tracker.core.face_model.sh import sh_ambient, sh_directional
    from tracker.core.geometry import rotation_from_ypr_deg
    from tracker.core.types import FaceCoefficients, Intrinsics

    rng = np.random.default_rng(seed)
    face = model.region("face")
    tris = model.triangles_of("face").astype(np.int64)
    neutral = model.neutral_cm[face.v0 : face.v1].astype(np.float64)
    names = model.expression_names
    allowed = [i for i, n in enumerate(names) if not n.startswith("eyeLook")]
    cam = Intrinsics.from_fov(size_px, size_px, 30.0)
    old_points = SurfacePoints(model, correspondence.triangle_vertices, correspondence.bary, num_identity=50)
    samples = []
    with renderer_factory(model) as renderer, MediaPipeTeacher() as teacher:
        for k in tqdm(range(num_renders), desc="correspondence renders", disable=not progress):
            ident = rng.normal(0.0, 0.7, 50).astype(np.float32)
            expr = np.zeros(len(names), np.float32)
            n_active = int(rng.integers(0, 4))
            if n_active:
                expr[rng.choice(allowed, n_active, replace=False)] = rng.uniform(0.1, 0.5, n_active)
            rot = rotation_from_ypr_deg(*rng.uniform([-30, -15, -10], [30, 15, 10]))
            trans = np.array([rng.uniform(-0.02, 0.02), rng.uniform(-0.02, 0.02), rng.uniform(0.55, 0.7)])
            light = sh_ambient((0.7,) * 3) + sh_directional(rng.normal(size=3) * [1, 1, 0.3] + [0, 0, -1], (0.35,) * 3)
            background = tuple(int(c) for c in rng.integers(0, 256, 3))
            out = renderer.render(FaceCoefficients(ident, expr, rot, trans, light), cam,
                                  albedo=procedural_albedo(model, seed=int(seed * 100000 + k)), background=background)  # fmt: skip
            faces = teacher.detect(out.rgb)
            if not faces:
                continue
            det = faces[0].landmarks_px[:NUM_MP_MESH].astype(np.float64)
            verts = model.head_vertices_m(ident, expr, region="face").astype(np.float64) @ rot.T + trans
            xy = cam.project(verts)
            pts = surface_points_under(det, xy, verts[:, 2], tris, neutral, size_px, size_px)
            with torch.no_grad():
                old = project(head_to_camera(old_points(torch.from_numpy(ident), torch.from_numpy(expr)[None]),
                                             torch.from_numpy(rot).float()[None], torch.from_numpy(trans).float()[None]),
                              intrinsics_tensor(cam))[0].numpy()  # fmt: skip
            size = np.sqrt(np.prod(old.max(0) - old.min(0)))
            samples.append(RenderSample(pts, np.linalg.norm(det - old, axis=1) / size * 100.0))
    return samples


def refine_correspondence(
    model: FaceModel, correspondence: Correspondence, samples: list[RenderSample], min_samples: int = 5
) -> tuple[Correspondence, dict]:
    """Moves each point to the median surface location MediaPipe picked across the renders.

    Points seen in fewer than ``min_samples`` renders keep their geometric location. Per-point weights
    become ``1 / (1 + (spread / 0.5 cm)^2)`` (the spread: median distance of the samples from their
    median), so points MediaPipe places inconsistently (face outline) count less in a fit.

    Returns:
        The refined :class:`Correspondence` and a report (moves in cm, spreads, counts).
    """
    face = model.region("face")
    tris = model.triangles_of("face").astype(np.int64)
    neutral = model.neutral_cm[face.v0 : face.v1].astype(np.float64)
    stack = np.stack([s.neutral_points_cm for s in samples])  # (K,468,3)
    counts = np.isfinite(stack[..., 0]).sum(0)
    old_pts = correspondence.points_cm(model.neutral_cm)
    median = np.nanmedian(np.where(counts[None, :, None] > 0, stack, 0.0), axis=0)
    use = counts >= min_samples
    target = np.where(use[:, None], median, old_pts)
    tri, bary, _ = closest_points_on_triangles(target, neutral, tris)
    spread = np.nanmedian(np.linalg.norm(stack - median[None], axis=-1), axis=0)
    spread = np.where(use, spread, np.nan)
    weights = np.where(use, 1.0 / (1.0 + (np.nan_to_num(spread, nan=1.0) / 0.5) ** 2), correspondence.weights * 0.5)
    new_pts = (neutral[tris[tri]] * bary[..., None]).sum(1)
    refined = Correspondence(
        triangle_ids=(tri + face.t0).astype(np.int32),
        triangle_vertices=(tris[tri] + face.v0).astype(np.int32),
        bary=bary.astype(np.float32),
        residual_cm=np.linalg.norm(new_pts - old_pts, axis=1).astype(np.float32),
        weights=weights.astype(np.float32),
        similarity_scale=correspondence.similarity_scale,
        num_identity=correspondence.num_identity,
    )
    report = {
        "renders_used": len(samples),
        "points_refined": int(use.sum()),
        "mean_move_cm": float(np.linalg.norm(new_pts - old_pts, axis=1)[use].mean()),
        "max_move_cm": float(np.linalg.norm(new_pts - old_pts, axis=1)[use].max()),
        "median_spread_cm": float(np.nanmedian(spread)),
        "old_error_pct": float(np.mean([s.old_error_pct.mean() for s in samples])),
    }
    return refined, report


def build_correspondence(model: FaceModel, renderer_factory: RendererFactory, num_renders: int = 120, seed: int = 0,
                         progress: bool = True) -> tuple[Correspondence, dict]:  # fmt: skip
    """The committed correspondence: geometric (:func:`compute_correspondence`), then refined from
    ``num_renders`` renders (0 = geometric only)."""
    from engines.teacher.correspondence import compute_correspondence

    corr, report = compute_correspondence(model)
    report = {"geometric": report}
    if num_renders > 0:
        samples = render_samples(model, corr, renderer_factory, num_renders, seed=seed, progress=progress)
        corr, report["refinement"] = refine_correspondence(model, corr, samples)
        report["refinement"]["seed"] = seed
    return corr, report
