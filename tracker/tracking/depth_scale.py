"""Metric head scale from an aligned depth image (RGB-D frames).

From colour alone a head k times larger at k times the distance makes the same image, so the regressor's
depth is the true depth times (its face size / the true face size): a few percent, 20-30 mm at arm's
length (docs/benchmarks.md, "Tracking accuracy"). A depth image measures that factor directly. Scaling the
regressed head about the camera centre keeps every projection where it is, so the factor is found in one
closed-form step, without correspondences or iterations (no ICP): sample the depth image where the
regressed face's inner landmarks project and take the robust ratio of measured to predicted depth.

The factor is then applied as a change of size, not only of distance: :class:`HeadScaler` finds the
identity (and head-frame offset) whose face is the regressed one scaled by k, so the published mesh,
landmarks and translation stay consistent with the image and with the depth.
"""

from __future__ import annotations

import numpy as np

from tracker.core.face_model import FaceModel
from tracker.core.types import Frame

#: The 51 inner landmarks (brows, nose, eyes, mouth). The jaw contour lies on the face's silhouette, where
#: the depth pixel is as likely the background or the neck.
INNER_LANDMARKS = np.arange(17, 68)
#: A point counts when its measured/predicted depth ratio lies this close (relative) to the consensus ratio:
#: wider than the sensor's noise (~1 % at 1 m for a D435) and the regressor's pose error on the nose's
#: slopes, narrower than an occluding hand or the background.
INLIER_TOLERANCE = 0.04
#: Fewest inlier points for a measurement (fewer: the face is mostly unmeasured or occluded).
MIN_POINTS = 12
#: Scale factors outside this range are a wrong measurement (depth of something else), not a head size.
SCALE_RANGE = (0.75, 1.33)


def depth_scale(frame: Frame, points_cam_m: np.ndarray) -> float | None:
    """Ratio of measured to predicted depth over a face's points: the metric scale of the regressed head.

    Args:
        frame: A frame with ``depth`` aligned to ``color``.
        points_cam_m: (N,3) the regressed face's points in the camera frame, metres (z > 0).

    Returns:
        The factor k such that k x (the regressed head) matches the depth image, or None where the frame
        has no depth or too few points are measured (see :data:`MIN_POINTS`, :data:`SCALE_RANGE`).
    """
    depth = frame.depth  # sampled as stored: converting the whole image to metres costs more than the rest
    if depth is None:
        return None
    pts = np.asarray(points_cam_m, dtype=np.float64).reshape(-1, 3)
    pts = pts[pts[:, 2] > 1e-3]
    if len(pts) < MIN_POINTS:
        return None
    uv = np.rint(frame.intrinsics.project(pts)).astype(np.int64)
    h, w = depth.shape
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
    z_meas = np.zeros(len(pts))
    z_meas[inside] = depth[uv[inside, 1], uv[inside, 0]] * frame.depth_scale_m
    ok = z_meas > 0
    if ok.sum() < MIN_POINTS:
        return None
    ratio = z_meas[ok] / pts[ok, 2]
    ratio = ratio[(ratio >= SCALE_RANGE[0]) & (ratio <= SCALE_RANGE[1])]
    if len(ratio) < MIN_POINTS:
        return None
    # One-dimensional consensus: the ratio that most others agree with. A hand or the background covering
    # even most of the points forms its own, smaller or implausible, cluster (a median would land on it).
    support = (np.abs(ratio[:, None] / ratio[None, :] - 1.0) <= INLIER_TOLERANCE).sum(axis=1)
    best = ratio[np.argmax(support)]
    inliers = ratio[np.abs(ratio / best - 1.0) <= INLIER_TOLERANCE]
    return float(np.mean(inliers)) if len(inliers) >= MIN_POINTS else None


class HeadScaler:
    """Re-expresses a head scaled by k about the head origin as an identity plus a head-frame offset.

    The ICT identity modes span a uniform scale well (a 5 % scale of a random face is matched to 0.25 mm
    mean vertex error over the face region, against 3.7 mm of change), so the scaled head stays an ICT
    face. The fit is linear least squares over a subsample of the face region's vertices: with
    ``X(identity)`` the neutral face in head-frame metres, find ``delta, offset`` minimising
    ``|X(identity + delta) + offset - k X(identity)|``; the offset absorbs what the identity modes cannot
    (a shift of the whole face).

    Args:
        face_model: The loaded ICT model.
        num_identity: K, the identity modes the regressor predicts.
        vertex_stride: Use every this-many face-region vertex (the fit is smooth; ~1,200 suffice).
    """

    def __init__(self, face_model: FaceModel, num_identity: int, vertex_stride: int = 8) -> None:
        self.num_identity = int(num_identity)
        eye = np.eye(self.num_identity, dtype=np.float32)
        neutral = face_model.head_vertices_m(np.zeros(self.num_identity, np.float32), region="face")[::vertex_stride]
        modes = face_model.head_vertices_m(eye, region="face")[:, ::vertex_stride] - neutral  # (K,V,3)
        self._neutral = neutral.reshape(-1).astype(np.float64)
        self._basis = modes.reshape(self.num_identity, -1).T.astype(np.float64)  # (3V, K)
        design = np.concatenate([self._basis, np.tile(np.eye(3), (len(neutral), 1))], axis=1)
        self._solve = np.linalg.pinv(design)  # (K+3, 3V)

    def scaled(self, identity: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """The identity and head-frame offset of the face ``identity`` scaled by ``scale`` about the origin.

        Args:
            identity: (K,) identity coefficients.
            scale: k, e.g. from :func:`depth_scale`.

        Returns:
            ((K,) float32 identity, (3,) float64 offset in head-frame metres): a head point ``k X`` is
            ``X' + offset`` with X' the point of the returned identity. In the camera frame the scaled
            head is ``R X' + (k t + R offset)``.
        """
        ident = np.asarray(identity, dtype=np.float64)[: self.num_identity]
        x = self._neutral + self._basis[:, : len(ident)] @ ident
        sol = self._solve @ ((float(scale) - 1.0) * x)
        new = np.zeros(self.num_identity)
        new[: len(ident)] = ident
        new += sol[: self.num_identity]
        return new.astype(np.float32), sol[self.num_identity:]
