"""Point-to-plane ICP of the regressed face against the aligned depth image: the baseline ``--depth icp``.

For comparison with the learned rigid alignment only (issue 17: the RGB-D network must beat it). Starting
from the colour regressor's pose (after the depth scale of :mod:`tracker.tracking.depth_scale`, so the head
already has its measured size), each iteration

1. transforms the model's narrow-face vertices (the held identity and this frame's expression) into the
   camera and keeps those whose normal faces the camera;
2. associates each with the depth pixel it projects to (projective association: no nearest-neighbour search,
   the usual choice for depth cameras, as in KinectFusion), dropping pixels without depth and pairs farther
   apart along the ray than :data:`MAX_PAIR_M` (hair, a hand, the background);
3. takes one Gauss-Newton step of the robust (Huber) point-to-plane distance ``n . (R X + t - Q)`` with the
   model's normals, in the 6 parameters of a small rotation and translation.

It stops after ``iterations`` steps or when a step moves less than 0.05 mm / 0.01 deg. The cost per face is
that of the loop: a few projections and one 6x6 solve per iteration over ~800 points.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from tracker.core.face_model import FaceModel
from tracker.core.geometry import nearest_rotation
from tracker.core.types import Frame

#: Pairs farther apart than this along the ray are not the face (metres).
MAX_PAIR_M = 0.02
#: Huber threshold of the point-to-plane residual, metres (a few times a D435's noise at arm's length).
HUBER_M = 0.003
#: Fewest associated points for a step; fewer: the pose is left as it was.
MIN_POINTS = 50


@dataclasses.dataclass
class IcpResult:
    """A refined pose.

    Attributes:
        rotation: (3,3) float64 head -> camera.
        translation_m: (3,) float64.
        iterations: Steps taken.
        points: Associated points in the last step.
        rms_m: RMS point-to-plane residual of the inliers in the last step, metres.
    """

    rotation: np.ndarray
    translation_m: np.ndarray
    iterations: int
    points: int
    rms_m: float


class DepthIcp:
    """Point-to-plane ICP of a face model against depth (see the module docstring).

    Args:
        face_model: The ICT model.
        region: Model region whose vertices take part (``narrow_face``: skin the depth camera sees well).
        vertex_stride: Use every this-many vertex of the region.
        iterations: Most Gauss-Newton steps per frame.
    """

    def __init__(self, face_model: FaceModel, region: str = "narrow_face", vertex_stride: int = 8,
                 iterations: int = 10) -> None:  # fmt: skip
        self.face_model = face_model
        self.region = region
        self.vertex_stride = int(vertex_stride)
        self.iterations = int(iterations)

    def refine(self, frame: Frame, identity: np.ndarray, expression: np.ndarray, rotation: np.ndarray,
               translation_m: np.ndarray) -> IcpResult:  # fmt: skip
        """Refines a head pose against ``frame.depth`` (returned unchanged where the frame has too little depth).

        Args:
            frame: A frame with depth aligned to colour.
            identity: (K,) identity of the head (metric, e.g. after the depth scale).
            expression: (53,) this frame's expression.
            rotation: (3,3) starting head -> camera rotation.
            translation_m: (3,) starting translation, metres.
        """
        r = np.asarray(rotation, np.float64).copy()
        t = np.asarray(translation_m, np.float64).copy()
        if frame.depth is None:
            return IcpResult(r, t, 0, 0, float("nan"))
        x_head, n_head = self.face_model.surface_m(identity, expression, self.region, self.vertex_stride)
        depth = frame.depth
        h, w = depth.shape
        k = frame.intrinsics
        points, rms, steps = 0, float("nan"), 0
        while steps < self.iterations:
            steps += 1
            p = x_head @ r.T + t
            n = n_head @ r.T
            facing = np.einsum("ij,ij->i", n, p) < 0  # normal toward the camera: visible side
            uv = np.rint(k.project(p)).astype(np.int64)
            inside = facing & (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h) & (p[:, 2] > 0)
            z = np.zeros(len(p))
            z[inside] = depth[uv[inside, 1], uv[inside, 0]] * frame.depth_scale_m
            ok = inside & (z > 0)
            ok &= np.abs(z - p[:, 2]) < MAX_PAIR_M
            points = int(ok.sum())
            if points < MIN_POINTS:
                break
            q = k.unproject(uv[ok].astype(np.float64), z[ok])
            pk, nk = p[ok], n[ok]
            res = np.einsum("ij,ij->i", nk, pk - q)
            jac = np.concatenate([np.cross(pk, nk), nk], axis=1)  # d res / d (omega, dt)
            weight = np.minimum(1.0, HUBER_M / np.maximum(np.abs(res), 1e-12))
            jw = jac * weight[:, None]
            delta = np.linalg.solve(jw.T @ jac + 1e-9 * np.eye(6), -jw.T @ res)
            rms = float(np.sqrt(np.mean(res[np.abs(res) < HUBER_M] ** 2))) if np.any(np.abs(res) < HUBER_M) else rms
            d_r, _ = cv2.Rodrigues(delta[:3].reshape(3, 1))
            r = d_r @ r
            t = d_r @ t + delta[3:]
            if np.linalg.norm(delta[3:]) < 5e-5 and np.degrees(np.linalg.norm(delta[:3])) < 0.01:
                break
        return IcpResult(nearest_rotation(r), t, steps, points, rms)  # exactly orthonormal after the steps


__all__ = ["DepthIcp", "HUBER_M", "IcpResult", "MAX_PAIR_M", "MIN_POINTS"]
