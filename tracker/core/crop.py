"""Face crops as images from a virtual camera, and the pose parametrisation relative to them.

A face away from the image centre is seen obliquely: cutting an axis-aligned square out of the frame
would make the same head pose look different depending on where the face is. So a crop is the image of a
**virtual camera** at the real camera's centre, rotated (``R_ray``) to look along the ray through the crop
centre, with a focal length chosen so the crop spans ``size_px`` pixels of the real image. The regressor
predicts the pose in that virtual camera (rotation ``R_local``, and the offset and scale of a point of the
face, :data:`POSE_ANCHOR_HEAD_M`), and :func:`decode_pose` takes it back to the real camera:
``R = R_ray @ R_local``, ``t = R_ray @ t_local``.

Training renders crops directly with the virtual camera (:meth:`PerspectiveCrop.virtual_intrinsics`),
and the tracker warps camera frames with :meth:`PerspectiveCrop.warp`, so both see identical geometry.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from tracker.core.errors import ConfigError
from tracker.core.types import Intrinsics

#: Regressor input side, px.
CROP_SIZE_PX = 128
#: Crop side relative to the side of the 68 landmarks' bounding square (max of width and height).
LANDMARK_BOX_SCALE = 1.55
#: Crop side and centre offset relative to a YuNet box (its box runs from above the brows to the chin), so
#: that a crop from a detection matches the crop from the same face's 68 landmarks: medians over 100
#: synthetic-source frames (seed 1234) were 1.21 and 0.11 box sides; 225 real AFW/HELEN faces gave 1.24
#: and 0.125, so the synthetic calibration holds on real faces.
DETECTION_BOX_SCALE = 1.21
DETECTION_CENTRE_DY = 0.11


@dataclasses.dataclass(frozen=True)
class CropBox:
    """A square region of the real image: centre and side in pixels (0-based pixel-centre coordinates)."""

    cx: float
    cy: float
    size_px: float

    def __post_init__(self) -> None:
        if not (np.isfinite([self.cx, self.cy, self.size_px]).all() and self.size_px > 1.0):
            raise ConfigError(f"invalid crop box {self}")

    @classmethod
    def from_landmarks(cls, landmarks_px: np.ndarray, scale: float = LANDMARK_BOX_SCALE) -> CropBox:
        """Square around (N,2) landmarks: centre of their bounding box, side ``scale`` x its larger side."""
        pts = np.asarray(landmarks_px, dtype=np.float64).reshape(-1, 2)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        c = (lo + hi) / 2
        return cls(float(c[0]), float(c[1]), float(max(hi - lo) * scale))

    @classmethod
    def from_detection(cls, box_xyxy: np.ndarray) -> CropBox:
        """Square from a face-detector box (xyxy px)."""
        x0, y0, x1, y1 = (float(v) for v in box_xyxy)
        side = max(x1 - x0, y1 - y0)
        return cls((x0 + x1) / 2, (y0 + y1) / 2 + DETECTION_CENTRE_DY * side, side * DETECTION_BOX_SCALE)

    def corners(self) -> np.ndarray:
        """(4,2) corners xy px (top-left, top-right, bottom-right, bottom-left)."""
        h = self.size_px / 2
        return np.array([[self.cx - h, self.cy - h], [self.cx + h, self.cy - h],
                         [self.cx + h, self.cy + h], [self.cx - h, self.cy + h]])  # fmt: skip


def ray_rotation(intrinsics: Intrinsics, u_px: float, v_px: float) -> np.ndarray:
    """Rotation taking the optical axis (0,0,1) onto the ray through pixel (u, v), without roll.

    Built as yaw about the camera's y axis then pitch about the rotated x axis, so the virtual camera's
    x axis stays horizontal (the image's rows stay rows).

    Returns:
        (3,3) float64 rotation (virtual camera -> real camera).
    """
    ray = intrinsics.unproject(np.array([[u_px, v_px]]), 1.0)[0]
    ray /= np.linalg.norm(ray)
    yaw = np.arctan2(ray[0], ray[2])
    pitch = np.arcsin(np.clip(ray[1], -1.0, 1.0))
    cy, sy, cp, sp = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch)
    r_yaw = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    r_pitch = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])
    return r_yaw @ r_pitch


@dataclasses.dataclass(frozen=True)
class PerspectiveCrop:
    """The virtual camera of one crop.

    Attributes:
        intrinsics: The real camera.
        box: The crop region in the real image.
        out_size_px: Side of the crop image (the regressor's input).
        r_ray: (3,3) virtual -> real camera rotation.
    """

    intrinsics: Intrinsics
    box: CropBox
    out_size_px: int = CROP_SIZE_PX
    r_ray: np.ndarray = dataclasses.field(default=None, repr=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.r_ray is None:
            object.__setattr__(self, "r_ray", ray_rotation(self.intrinsics, self.box.cx, self.box.cy))

    @property
    def focal_px(self) -> float:
        """Virtual focal length: the crop samples the real image at its native scale times out/size."""
        return float(np.sqrt(self.intrinsics.fx * self.intrinsics.fy)) * self.out_size_px / self.box.size_px

    def virtual_intrinsics(self) -> Intrinsics:
        c = (self.out_size_px - 1) / 2
        return Intrinsics(self.focal_px, self.focal_px, c, c, self.out_size_px, self.out_size_px)

    def homography(self) -> np.ndarray:
        """(3,3) homography mapping real-image pixels to crop pixels (pixel-centre coordinates)."""
        k_real = self.intrinsics.matrix
        k_virtual = self.virtual_intrinsics().matrix
        return k_virtual @ self.r_ray.T @ np.linalg.inv(k_real)

    def warp(self, image: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """Samples the crop from a real image (H,W,C) -> (N,N,C), black outside the image."""
        n = self.out_size_px
        return cv2.warpPerspective(image, self.homography(), (n, n), flags=interpolation,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0)  # fmt: skip

    def to_crop(self, points_px: np.ndarray) -> np.ndarray:
        """(N,2) real-image pixels -> crop pixels."""
        return _apply_h(self.homography(), points_px)

    def from_crop(self, points_px: np.ndarray) -> np.ndarray:
        """(N,2) crop pixels -> real-image pixels."""
        return _apply_h(np.linalg.inv(self.homography()), points_px)


def _apply_h(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    q = np.c_[p, np.ones(len(p))] @ h.T
    return q[:, :2] / q[:, 2:3]


#: (3,) head-frame point (metres) that the crop-relative offset and scale refer to: near the centroid of the
#: neutral face's 68 landmarks, (0, 0.003, -0.094). The head origin lies ~9.5 cm behind the face, so a scale
#: referred to it would depend on the face's distance (its front is magnified by z / (z - 0.095)), which the
#: network cannot see in a crop whose focal length it is not told; referred to the face itself, the scale is
#: what the crop shows, whatever the camera (a still photo's assumed field of view included).
POSE_ANCHOR_HEAD_M = np.array([0.0, 0.0, -0.095])


@dataclasses.dataclass(frozen=True)
class CropPose:
    """Pose targets relative to a crop's virtual camera (what the regressor predicts).

    Attributes:
        rotation_local: (3,3) head -> virtual camera rotation.
        offset: (2,) projection of the pose anchor (:data:`POSE_ANCHOR_HEAD_M`) in the crop, relative to the
            crop centre, in crop sides.
        log_scale: log(focal_px / (out_size_px * z_m)) with z_m the anchor's depth: how large 1 m at the
            face's depth appears, in crop sides; the depth follows as z = focal_px / (out_size_px * exp(log_scale)).
    """

    rotation_local: np.ndarray
    offset: np.ndarray
    log_scale: float


def point_from_offset_scale(offset: np.ndarray, log_scale: np.ndarray, focal_px: np.ndarray, size_px: int) -> np.ndarray:
    """The virtual-camera point that a crop-relative offset and log-scale place (the parametrisation of
    :class:`CropPose`), batched.

    Args:
        offset: (...,2) in crop sides.
        log_scale: (...) log(focal_px / (size_px * z)).
        focal_px: (...) virtual focal length.
        size_px: Crop side.

    Returns:
        (...,3) float64 metres in the virtual camera.
    """
    f = np.asarray(focal_px, dtype=np.float64)
    z = f / (size_px * np.exp(np.asarray(log_scale, dtype=np.float64)))
    xy = np.asarray(offset, dtype=np.float64) * (size_px * z / f)[..., None]
    return np.concatenate([xy, z[..., None]], axis=-1)


def offset_scale_from_point(point_m: np.ndarray, focal_px: np.ndarray, size_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`point_from_offset_scale`: (...,3) virtual-camera points -> offsets (...,2) and
    log-scales (...)."""
    p = np.asarray(point_m, dtype=np.float64)
    f = np.asarray(focal_px, dtype=np.float64)
    return f[..., None] * p[..., :2] / p[..., 2:3] / size_px, np.log(f / (size_px * p[..., 2]))


def encode_pose(crop: PerspectiveCrop, rotation: np.ndarray, translation_m: np.ndarray,
                anchor_head_m: np.ndarray = POSE_ANCHOR_HEAD_M) -> CropPose:  # fmt: skip
    """Expresses a camera-frame head pose relative to ``crop``'s virtual camera.

    Args:
        crop: The crop.
        rotation: (3,3) head -> camera.
        translation_m: (3,) head origin in the camera.
        anchor_head_m: (3,) the head-frame point the offset and scale refer to (a model's own, see
            :func:`engines.onnx_file.pose_anchor_of`).
    """
    r_local = crop.r_ray.T @ np.asarray(rotation, dtype=np.float64)
    t_local = crop.r_ray.T @ np.asarray(translation_m, dtype=np.float64) + r_local @ np.asarray(anchor_head_m, np.float64)
    if t_local[2] <= 0:
        raise ConfigError("the head is behind the virtual camera")
    offset, log_scale = offset_scale_from_point(t_local, crop.focal_px, crop.out_size_px)
    return CropPose(r_local, offset, float(log_scale))


def decode_pose(crop: PerspectiveCrop, pose: CropPose,
                anchor_head_m: np.ndarray = POSE_ANCHOR_HEAD_M) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Inverse of :func:`encode_pose`: returns (rotation (3,3), translation_m (3,)) in the real camera."""
    r_local = np.asarray(pose.rotation_local, np.float64)
    anchor = point_from_offset_scale(pose.offset, pose.log_scale, crop.focal_px, crop.out_size_px)
    t_local = anchor - r_local @ np.asarray(anchor_head_m, np.float64)
    return crop.r_ray @ r_local, crop.r_ray @ t_local
