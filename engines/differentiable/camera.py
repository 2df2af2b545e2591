"""Rigid transform into the camera frame and pinhole projection, in torch.

Conventions (ARCHITECTURE §2): OpenCV camera frame (x right, y down, z forward), translations in metres,
pixels 0-based with (0,0) the centre of the top-left pixel. :func:`project` is the differentiable twin of
:meth:`tracker.core.types.Intrinsics.project` for a camera without distortion.
"""

from __future__ import annotations

import torch

from tracker.core.errors import ConfigError
from tracker.core.types import Intrinsics


def intrinsics_tensor(intrinsics: Intrinsics | torch.Tensor, dtype=torch.float32, device=None) -> torch.Tensor:
    """(4,) or (B,4) tensor ``(fx, fy, cx, cy)`` from an :class:`Intrinsics` (or a tensor, passed through).

    Raises:
        ConfigError: if the intrinsics carry lens distortion, which this pinhole projection ignores.
    """
    if isinstance(intrinsics, torch.Tensor):
        if intrinsics.shape[-1] != 4:
            raise ConfigError(f"intrinsics tensor must end in 4 values (fx, fy, cx, cy), got {tuple(intrinsics.shape)}")
        return intrinsics.to(dtype=dtype, device=device)
    if intrinsics.has_distortion:
        raise ConfigError("the differentiable projection is a pure pinhole; undistort the image first")
    return torch.tensor([intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy], dtype=dtype, device=device)


def head_to_camera(points_head_m: torch.Tensor, rotation: torch.Tensor, translation_m: torch.Tensor) -> torch.Tensor:
    """``p_cam = R p_head + t``.

    Args:
        points_head_m: (B,N,3) head-frame points, metres (see :meth:`FaceLayer.forward`).
        rotation: (B,3,3) head-to-camera rotations.
        translation_m: (B,3) head origin in the camera frame, metres.

    Returns:
        (B,N,3) camera-frame points, metres.
    """
    return points_head_m @ rotation.transpose(-1, -2) + translation_m[..., None, :]


def project(points_cam_m: torch.Tensor, intrinsics: torch.Tensor, min_depth_m: float = 1e-3) -> torch.Tensor:
    """Pinhole projection ``u = fx x / z + cx``, ``v = fy y / z + cy``.

    Args:
        points_cam_m: (B,N,3) camera-frame points, metres.
        intrinsics: (4,) or (B,4) ``(fx, fy, cx, cy)`` px (see :func:`intrinsics_tensor`).
        min_depth_m: Depth clamp that keeps points behind the camera from producing inf/NaN gradients.

    Returns:
        (B,N,2) pixel coordinates.
    """
    k = intrinsics if intrinsics.dim() > 1 else intrinsics[None]
    z = points_cam_m[..., 2:3].clamp_min(min_depth_m)
    xy = points_cam_m[..., :2] / z
    return xy * k[:, None, 0:2] + k[:, None, 2:4]
