"""Rotation parametrisations in torch: axis-angle, 6D, yaw/pitch/roll <-> 3x3 matrices.

All matrices map head coordinates into camera coordinates (ARCHITECTURE §2). The numpy reference for the
angle convention is :mod:`tracker.core.geometry`; these functions agree with it (tests check that) and are
differentiable, batched over any leading dimensions.
"""

from __future__ import annotations

import math

import torch


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula.

    Args:
        axis_angle: (..., 3) rotation vectors, radians (direction = axis, norm = angle).

    Returns:
        (..., 3, 3) rotation matrices.
    """
    theta2 = (axis_angle * axis_angle).sum(-1, keepdim=True)[..., None]  # (...,1,1)
    theta = torch.sqrt(theta2.clamp_min(1e-24))
    small = theta2 < 1e-8
    # Taylor series near zero keeps the gradient finite at the identity (where fits often start).
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2.clamp_min(1e-24))
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*axis_angle.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def matrix_to_axis_angle(rotation: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`axis_angle_to_matrix` (angle in [0, pi]).

    Args:
        rotation: (..., 3, 3) rotation matrices.

    Returns:
        (..., 3) rotation vectors, radians.
    """
    quat = matrix_to_quaternion(rotation)
    w, xyz = quat[..., :1], quat[..., 1:]
    sin_half = xyz.norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(sin_half, w)
    scale = torch.where(sin_half > 1e-8, angle / sin_half.clamp_min(1e-12), 2.0 / w.clamp_min(1e-12))
    return xyz * scale


def matrix_to_quaternion(rotation: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) rotations -> (..., 4) unit quaternions (w, x, y, z) with w >= 0."""
    m = rotation
    trace = m[..., 0, 0] + m[..., 1, 1] + m[..., 2, 2]
    # Four candidate solutions; take the best-conditioned one per matrix (Shepperd), as tracker.core.geometry does.
    cands = torch.stack(
        [
            torch.stack([1 + trace, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1),
            torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + 2 * m[..., 0, 0] - trace, m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1),
            torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 + 2 * m[..., 1, 1] - trace, m[..., 1, 2] + m[..., 2, 1]], -1),
            torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], 1 + 2 * m[..., 2, 2] - trace], -1),
        ],
        dim=-2,
    )  # fmt: skip
    diag = torch.stack([trace, m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]], -1)
    best = diag.argmax(-1)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


def sixd_to_matrix(sixd: torch.Tensor) -> torch.Tensor:
    """Gram-Schmidt of the 6D representation (Zhou et al. 2019), as :func:`tracker.core.geometry.rotation_from_6d`.

    Args:
        sixd: (..., 6) the first two columns of the matrix, concatenated.

    Returns:
        (..., 3, 3) rotation matrices (columns c1, c2, c1 x c2).
    """
    a1, a2 = sixd[..., 0:3], sixd[..., 3:6]
    c1 = torch.nn.functional.normalize(a1, dim=-1)
    c2 = torch.nn.functional.normalize(a2 - (c1 * a2).sum(-1, keepdim=True) * c1, dim=-1)
    c3 = torch.cross(c1, c2, dim=-1)
    return torch.stack([c1, c2, c3], dim=-1)


def matrix_to_sixd(rotation: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 6): the first two columns, concatenated (inverse of :func:`sixd_to_matrix`)."""
    return torch.cat([rotation[..., :, 0], rotation[..., :, 1]], dim=-1)


def _elementary(axis: int, angle: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    one, zero = torch.ones_like(angle), torch.zeros_like(angle)
    if axis == 0:
        rows = [one, zero, zero, zero, c, -s, zero, s, c]
    elif axis == 1:
        rows = [c, zero, s, zero, one, zero, -s, zero, c]
    else:
        rows = [c, -s, zero, s, c, zero, zero, zero, one]
    return torch.stack(rows, dim=-1).reshape(*angle.shape, 3, 3)


def ypr_deg_to_matrix(ypr_deg: torch.Tensor) -> torch.Tensor:
    """Head-pose angles -> rotation, ``R = Rx(-pitch) Ry(-yaw) Rz(roll)`` (ARCHITECTURE §2).

    Args:
        ypr_deg: (..., 3) yaw, pitch, roll in degrees.

    Returns:
        (..., 3, 3) head-to-camera rotations.
    """
    y, p, r = (ypr_deg * (math.pi / 180.0)).unbind(-1)
    return _elementary(0, -p) @ _elementary(1, -y) @ _elementary(2, r)


def matrix_to_ypr_deg(rotation: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`ypr_deg_to_matrix`: (..., 3, 3) -> (..., 3) yaw, pitch, roll in degrees."""
    m = rotation
    b = torch.asin(m[..., 0, 2].clamp(-1.0, 1.0))
    c = torch.atan2(-m[..., 0, 1], m[..., 0, 0])
    a = torch.atan2(-m[..., 1, 2], m[..., 2, 2])
    return torch.stack([-b, -a, c], dim=-1) * (180.0 / math.pi)


def rotation_angle_deg(r_a: torch.Tensor, r_b: torch.Tensor) -> torch.Tensor:
    """Geodesic angle between rotations, (..., 3, 3) x2 -> (...,) degrees."""
    rel = r_a.transpose(-1, -2) @ r_b
    cos = ((rel[..., 0, 0] + rel[..., 1, 1] + rel[..., 2, 2]) - 1.0) / 2.0
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))
