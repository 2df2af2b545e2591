"""The RGB-D network's input: colour and depth of one face crop, depth expressed relative to the crop.

CoarseNet-D (:mod:`engines.models.coarsenet_d`) reads the same :class:`~tracker.core.crop.PerspectiveCrop` the
colour regressor reads, at :data:`DEPTH_CROP_PX`, with two more channels:

* **relative depth** ``(z - z_ref) / DEPTH_RANGE_M``, clipped to ±:data:`DEPTH_CLIP`, with ``z`` the depth
  along the crop's virtual optical axis and ``z_ref`` the median measured depth in the crop's central half.
  Relative, because a face looks the same at 0.4 m and 1.2 m in a crop that is normalised for size: the
  network reads shape and pose, and the distance comes back as ``z_ref`` plus its predicted offset.
* **validity**: 1 where the sensor measured depth, 0 in holes (the relative depth is 0 there too), so a
  hole is never read as a surface at ``z_ref``.

Training renders depth straight through the virtual camera; at run time the aligned depth image is warped
with the crop's homography (nearest neighbour: interpolating across a hole or a silhouette invents surfaces)
and each pixel's camera z is converted to the virtual camera's z (the virtual camera is rotated to look at
the crop centre, so the two differ by the cosine between the pixel's ray and each optical axis).
"""

from __future__ import annotations

import cv2
import numpy as np

from tracker.core.crop import CropBox, PerspectiveCrop
from tracker.core.errors import ConfigError
from tracker.core.types import Frame

#: Side of CoarseNet-D's input crop: pose needs the face's shape, not its detail.
DEPTH_CROP_PX = 64
#: Metres of depth per unit of the relative-depth channel (a face is ~10 cm deep).
DEPTH_RANGE_M = 0.1
#: The relative-depth channel is clipped to ± this (the background and near occluders saturate).
DEPTH_CLIP = 2.0
#: Fewest measured pixels in the crop's central half for a usable depth reference.
MIN_CENTRE_PIXELS = 32


def reference_depth_m(z_virtual_m: np.ndarray) -> float | None:
    """Median measured depth in the central half of a crop's depth (None: too few pixels measured)."""
    s = z_virtual_m.shape[0]
    centre = z_virtual_m[s // 4 : s - s // 4, s // 4 : s - s // 4]
    vals = centre[centre > 0]
    return float(np.median(vals)) if len(vals) >= MIN_CENTRE_PIXELS else None


def depth_channels(z_virtual_m: np.ndarray, z_ref_m: float) -> np.ndarray:
    """(2,S,S) float32: relative depth and validity of a crop's depth (see the module docstring).

    Args:
        z_virtual_m: (S,S) depth along the virtual optical axis, metres, 0 = no measurement.
        z_ref_m: The crop's reference depth (:func:`reference_depth_m`).
    """
    valid = z_virtual_m > 0
    rel = np.clip((z_virtual_m - np.float32(z_ref_m)) / np.float32(DEPTH_RANGE_M), -DEPTH_CLIP, DEPTH_CLIP)
    return np.stack([np.where(valid, rel, 0), valid]).astype(np.float32)


def virtual_depth_m(frame: Frame, crop: PerspectiveCrop) -> np.ndarray:
    """(S,S) float32 depth of ``frame`` seen through ``crop``'s virtual camera, metres (0 = none).

    Args:
        frame: A frame whose ``depth`` is aligned to its colour.
        crop: The crop (its ``out_size_px`` sets S).
    """
    if frame.depth is None:
        raise ConfigError("virtual_depth_m needs a frame with depth")
    s = crop.out_size_px
    z_cam = crop.warp(frame.depth, interpolation=cv2.INTER_NEAREST).astype(np.float32) * np.float32(frame.depth_scale_m)
    # z_virtual = z_camera / (the camera-frame z of the pixel's ray whose virtual z is 1): that z is linear in
    # the pixel's coordinates, r20 x + r21 y + r22 with x, y the ray's virtual-plane coordinates.
    k = crop.virtual_intrinsics()
    r = crop.r_ray
    x = (np.arange(s, dtype=np.float32) - np.float32(k.cx)) / np.float32(k.fx)
    y = (np.arange(s, dtype=np.float32) - np.float32(k.cy)) / np.float32(k.fy)
    cos = np.float32(r[2, 0]) * x[None, :] + (np.float32(r[2, 1]) * y + np.float32(r[2, 2]))[:, None]
    return z_cam / cos


def rgbd_input(frame: Frame, box: CropBox) -> tuple[np.ndarray, PerspectiveCrop, float] | None:
    """CoarseNet-D's input for one face: (5,S,S) float32 (RGB in [0,1], relative depth, validity), its crop,
    and the reference depth in metres. None where the crop's centre has too little depth."""
    crop = PerspectiveCrop(frame.intrinsics, box, DEPTH_CROP_PX)
    z = virtual_depth_m(frame, crop)
    z_ref = reference_depth_m(z)
    if z_ref is None:
        return None
    rgb = crop.warp(frame.color).astype(np.float32).transpose(2, 0, 1) / 255.0
    return np.concatenate([rgb, depth_channels(z, z_ref)]), crop, z_ref


__all__ = ["DEPTH_CLIP", "DEPTH_CROP_PX", "DEPTH_RANGE_M", "MIN_CENTRE_PIXELS", "depth_channels", "reference_depth_m",
           "rgbd_input", "virtual_depth_m"]  # fmt: skip
