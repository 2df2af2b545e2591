"""Where the photometric term may look: a model-side vertex weight and an image-side face mask."""

from __future__ import annotations

from collections import defaultdict

import cv2
import numpy as np

from tracker.core.face_model import FaceModel


def boundary_loops(triangles: np.ndarray) -> list[np.ndarray]:
    """Vertex sets of the mesh's boundary components (edges used by exactly one triangle), largest first."""
    t = np.asarray(triangles, np.int64)
    e = np.sort(np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]]), axis=1)
    uniq, count = np.unique(e, axis=0, return_counts=True)
    adj: dict[int, list[int]] = defaultdict(list)
    for a, b in uniq[count == 1]:
        adj[int(a)].append(int(b))
        adj[int(b)].append(int(a))
    seen: set[int] = set()
    loops = []
    for start in adj:
        if start in seen:
            continue
        stack, comp = [start], []
        while stack:
            x = stack.pop()
            if x in seen:
                continue
            seen.add(x)
            comp.append(x)
            stack.extend(adj[x])
        loops.append(np.array(sorted(comp), np.int64))
    return sorted(loops, key=len, reverse=True)


def hole_distance_weights(model: FaceModel, region: str = "narrow_face", inner_cm: float = 0.25,
                          outer_cm: float = 0.6) -> np.ndarray:  # fmt: skip
    """Per-vertex photometric weight that fades out toward the eye and mouth openings.

    The eyelid and lip margins border eyeballs, lashes, teeth and mouth interior, which the face region
    does not model; their image colours would pull the fit. Distances are Euclidean on the neutral mesh.

    Args:
        model: The ICT model.
        region: Region whose holes (every boundary loop but the outer one) are faded.
        inner_cm: Weight 0 closer than this to a hole's rim.
        outer_cm: Weight 1 beyond this.

    Returns:
        (V_region,) float32 weights in [0, 1].
    """
    r = model.region(region)
    tris = model.triangles_of(region)
    v = model.neutral_cm[r.v0 : r.v1]
    holes = boundary_loops(tris)[1:]
    if not holes:
        return np.ones(len(v), np.float32)
    rim = v[np.concatenate(holes)]
    d = np.full(len(v), np.inf)
    for s in range(0, len(v), 2048):
        d[s : s + 2048] = np.sqrt(((v[s : s + 2048, None] - rim[None]) ** 2).sum(-1)).min(1)
    return np.clip((d - inner_cm) / (outer_cm - inner_cm), 0.0, 1.0).astype(np.float32)


def landmark_hull_mask(landmarks_px: np.ndarray, height: int, width: int, shrink: float = 0.03) -> np.ndarray:
    """(H,W) bool: inside the convex hull of the teacher's face landmarks, shrunk toward its centroid.

    MediaPipe's 468 points cover the face from chin to mid-forehead; outside them lie hair, ears and
    background, whose colours the face model cannot explain.

    Args:
        landmarks_px: (N,2) px.
        height: Image rows.
        width: Image columns.
        shrink: Fraction of the hull's size to pull it in by (keeps silhouette pixels out).
    """
    p = np.asarray(landmarks_px, np.float64)
    c = p.mean(0)
    p = c + (p - c) * (1.0 - shrink)
    hull = cv2.convexHull(np.round(p).astype(np.int32))
    mask = np.zeros((height, width), np.uint8)
    cv2.fillConvexPoly(mask, hull, 1)
    return mask.astype(bool)
