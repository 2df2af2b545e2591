"""An OpenGL projection that reproduces OpenCV's pinhole projection exactly.

OpenCV: a camera-frame point (x, y, z) lands at pixel ``u = fx x/z + cx``, ``v = fy y/z + cy`` where
(0,0) is the **centre** of the top-left pixel. OpenGL rasterises in window coordinates where pixel
column i spans [i, i+1), so its centre is at i + 0.5, and NDC x = -1 is the window's left edge.

We keep OpenCV's axes in the vertex shader (no model-view flip) and write the clip coordinates so that
window x = u + 0.5 and window y = v + 0.5. Window row y = 0 is therefore image row 0: reading the
framebuffer back with ``glReadPixels`` (which starts at window row 0) gives the image top row first, so no
flip is needed after read-back. Because this mirrors y relative to OpenGL's usual convention, triangle
winding flips too; the renderer does not rely on winding (no face culling).

Clip w is the camera z (z forward), and NDC depth maps [near, far] to [-1, 1] as in ``glFrustum``.
"""

from __future__ import annotations

import numpy as np

from tracker.core.errors import ConfigError
from tracker.core.types import Intrinsics


def projection_matrix(intrinsics: Intrinsics, near_m: float = 0.05, far_m: float = 20.0) -> np.ndarray:
    """The (4,4) matrix P with ``clip = P @ [x, y, z, 1]`` for OpenCV camera-frame points in metres.

    Args:
        intrinsics: Pinhole camera (distortion is ignored: rasterisation cannot bend straight edges;
            render undistorted and distort the image if needed).
        near_m: Near clipping distance, metres.
        far_m: Far clipping distance, metres.

    Returns:
        (4,4) float32, row-major (transpose it for GLSL's column-major ``mat4`` upload).
    """
    if not (0 < near_m < far_m):
        raise ConfigError(f"projection needs 0 < near_m < far_m, got near_m={near_m}, far_m={far_m}")
    w, h = float(intrinsics.width), float(intrinsics.height)
    # x_ndc = 2 (u + 0.5) / W - 1 with u = fx x/z + cx  =>  x_clip = (2 fx / W) x + (2 (cx + 0.5) / W - 1) z.
    a = (far_m + near_m) / (far_m - near_m)
    b = -2.0 * far_m * near_m / (far_m - near_m)
    return np.array(
        [
            [2.0 * intrinsics.fx / w, 0.0, 2.0 * (intrinsics.cx + 0.5) / w - 1.0, 0.0],
            [0.0, 2.0 * intrinsics.fy / h, 2.0 * (intrinsics.cy + 0.5) / h - 1.0, 0.0],
            [0.0, 0.0, a, b],
            [0.0, 0.0, 1.0, 0.0],
        ],
        dtype=np.float32,
    )


def project_with_matrix(matrix: np.ndarray, intrinsics: Intrinsics, points_m: np.ndarray) -> np.ndarray:
    """Pixels (0-based, pixel-centre) where :func:`projection_matrix` sends (N,3) camera points.

    Mirrors the GPU's clip -> NDC -> window mapping; used by the tests to check the matrix against
    :meth:`Intrinsics.project`.
    """
    p = np.concatenate([np.asarray(points_m, np.float64), np.ones((len(points_m), 1))], axis=1)
    clip = p @ matrix.astype(np.float64).T
    ndc = clip[:, :2] / clip[:, 3:4]
    win = (ndc + 1.0) * 0.5 * np.array([intrinsics.width, intrinsics.height])
    return win - 0.5
