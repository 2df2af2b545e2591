"""Rotations and the head-pose angle convention (ARCHITECTURE §2).

Camera frame: OpenCV (x right, y down, z forward). A rotation matrix ``R`` maps head coordinates into
camera coordinates; the head frame of a frontal face looking into the camera equals the camera frame
(its nose points along -z). Angles in degrees:

* **yaw** > 0 when the nose turns toward the image's right (+x),
* **pitch** > 0 when the nose turns up (-y),
* **roll** > 0 when the face's up-vector turns clockwise in the image,

composed as ``R = Rx(-pitch) @ Ry(-yaw) @ Rz(roll)``. This is AFLW2000-3D's composition with the yaw
sign flipped, so angles stay comparable at large poses. :func:`rotation_from_ypr_deg` and
:func:`ypr_deg_from_rotation` are the only place that convention is written down in code.
"""

from __future__ import annotations

import numpy as np

from tracker.core.errors import ConfigError

# The ICT model's OBJs have y up and the nose along +z; this flip takes model coordinates into the head
# frame above (y down, nose along -z) without mirroring left and right.
MODEL_TO_HEAD = np.diag([1.0, -1.0, -1.0]).astype(np.float32)


def _rx(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)


def _ry(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)


def _rz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


def rotation_from_ypr_deg(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """Builds the head-to-camera rotation from head-pose angles.

    Args:
        yaw_deg: Yaw in degrees, > 0 when the nose turns toward the image's right.
        pitch_deg: Pitch in degrees, > 0 when the nose turns up.
        roll_deg: Roll in degrees, > 0 when the face's up-vector turns clockwise in the image.

    Returns:
        (3,3) float64 rotation matrix ``Rx(-pitch) @ Ry(-yaw) @ Rz(roll)``.
    """
    y, p, r = np.deg2rad([yaw_deg, pitch_deg, roll_deg])
    return _rx(-p) @ _ry(-y) @ _rz(r)


def ypr_deg_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """Inverse of :func:`rotation_from_ypr_deg`.

    Args:
        rotation: (3,3) rotation matrix, head to camera.

    Returns:
        (yaw, pitch, roll) in degrees; yaw in [-90, 90], pitch and roll in (-180, 180].
    """
    m = np.asarray(rotation, dtype=np.float64)
    if m.shape != (3, 3):
        raise ConfigError(f"rotation must be (3,3), got {m.shape}")
    # R = Rx(a) Ry(b) Rz(c): R[0,2] = sin b, R[0,0] = cos b cos c, R[0,1] = -cos b sin c,
    # R[1,2] = -sin a cos b, R[2,2] = cos a cos b.
    b = np.arcsin(np.clip(m[0, 2], -1.0, 1.0))
    c = np.arctan2(-m[0, 1], m[0, 0])
    a = np.arctan2(-m[1, 2], m[2, 2])
    yaw, pitch, roll = np.rad2deg([-b, -a, c])
    return float(yaw), float(pitch), float(roll)


def quaternion_from_rotation(rotation: np.ndarray) -> np.ndarray:
    """Converts a rotation matrix to a unit quaternion.

    Args:
        rotation: (3,3) rotation matrix.

    Returns:
        (4,) float64 quaternion (w, x, y, z) with w >= 0.
    """
    m = np.asarray(rotation, dtype=np.float64)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    # Shepperd's method: pick the largest diagonal term to stay numerically stable near 180 degrees.
    if tr > 0:
        s = np.sqrt(tr + 1.0) * 2
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    return -q if q[0] < 0 else q


def rotation_from_quaternion(quaternion: np.ndarray) -> np.ndarray:
    """Converts a quaternion (w, x, y, z) to a (3,3) float64 rotation matrix (normalising it first)."""
    q = np.asarray(quaternion, dtype=np.float64)
    n = np.linalg.norm(q)
    if q.shape != (4,) or not np.isfinite(n) or n < 1e-12:
        raise ConfigError(f"quaternion must be a finite non-zero (4,) vector, got {q!r}")
    w, x, y, z = q / n
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )


def rotation_angle_deg(r_a: np.ndarray, r_b: np.ndarray) -> float:
    """Geodesic angle between two rotations, in degrees."""
    rel = np.asarray(r_a, np.float64).T @ np.asarray(r_b, np.float64)
    return float(np.rad2deg(np.arccos(np.clip((np.trace(rel) - 1.0) / 2.0, -1.0, 1.0))))


def nearest_rotation(matrix: np.ndarray) -> np.ndarray:
    """The rotation nearest (Frobenius) to a (3,3) matrix, e.g. a weighted sum of rotations (their chordal
    mean): ``U V^T`` of its SVD, with the sign fixed so the determinant is +1."""
    u, _, vt = np.linalg.svd(np.asarray(matrix, dtype=np.float64))
    if np.linalg.det(u @ vt) < 0:
        u[:, -1] *= -1
    return u @ vt


def rotation_from_6d(sixd: np.ndarray) -> np.ndarray:
    """Gram-Schmidt of the 6D rotation representation (Zhou et al. 2019).

    Args:
        sixd: (..., 6) the first two columns of the rotation matrix, concatenated.

    Returns:
        (..., 3, 3) rotation matrices.
    """
    a = np.asarray(sixd, dtype=np.float64)
    c1 = a[..., 0:3] / np.linalg.norm(a[..., 0:3], axis=-1, keepdims=True)
    c2 = a[..., 3:6] - np.sum(c1 * a[..., 3:6], axis=-1, keepdims=True) * c1
    c2 /= np.linalg.norm(c2, axis=-1, keepdims=True)
    c3 = np.cross(c1, c2)
    return np.stack([c1, c2, c3], axis=-1)


def transform_points(rotation: np.ndarray, translation: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Applies ``p' = R p + t`` to (N,3) points; returns (N,3) in the points' dtype."""
    p = np.asarray(points)
    return (p @ np.asarray(rotation, dtype=p.dtype).T + np.asarray(translation, dtype=p.dtype)).astype(p.dtype)
