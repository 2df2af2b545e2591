"""Eye and mouth patches: where the detail networks look (ARCHITECTURE §6, "resolution where it matters").

CoarseNet sees the whole face at 128 px, where an eye is ~20 px wide: too coarse to tell a closed lid from
an open one (a linear probe of its features reads eye closure at r 0.3). The detail networks see each eye
(with its brow) and the mouth in patches cut from the full-resolution frame, placed by six anchor points
that every landmark set has: the four eye corners and the two mouth corners.

The patch frame is built from the eyes alone (their line gives the roll, the eye-to-mouth distance and the
eye distance the scale), so an eye that closes or a mouth that opens moves inside its patch instead of
moving the patch. The subject's left eye is cut mirrored, so one eye network, seeing a right eye, serves
both, and a face mirrored left to right gives the same numbers swapped by construction.
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from tracker.core.errors import ConfigError
from tracker.core.face_model.arkit import ARKIT_NAMES

#: Anchor indices (right eye outer, right eye inner, left eye inner, left eye outer, mouth right corner,
#: mouth left corner; "right" = the subject's right, on the image's left) in iBUG-68 and MediaPipe-478.
IBUG68_ANCHORS = (36, 39, 42, 45, 48, 54)
MEDIAPIPE_ANCHORS = (33, 133, 362, 263, 61, 291)

EYE_PATCH_PX = 48
MOUTH_PATCH_PX = 64

#: Per-eye outputs of the eye network, as ARKit names for the subject's right eye; the left eye's are the
#: same names with ``Left`` (the mirrored patch).
EYE_CHANNELS_RIGHT: tuple[str, ...] = (
    "eyeBlinkRight", "eyeSquintRight", "eyeWideRight", "eyeLookUpRight", "eyeLookDownRight", "eyeLookInRight",
    "eyeLookOutRight", "browDownRight", "browOuterUpRight", "browInnerUp",
)  # fmt: skip
EYE_CHANNELS_LEFT: tuple[str, ...] = tuple(n.replace("Right", "Left") for n in EYE_CHANNELS_RIGHT)
#: Outputs of the mouth network (ARKit names).
MOUTH_CHANNELS: tuple[str, ...] = (
    "jawOpen", "jawForward", "jawLeft", "jawRight", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft",
    "mouthRight", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft",
    "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight",
)  # fmt: skip


def arkit_indices(names: tuple[str, ...]) -> np.ndarray:
    """(K,) int64 indices of ``names`` in ARKit's order."""
    index = {n: i for i, n in enumerate(ARKIT_NAMES)}
    return np.array([index[n] for n in names], dtype=np.int64)


def mirror_channels(names: tuple[str, ...]) -> np.ndarray:
    """(K,) int64: for each channel, the position in ``names`` of its left-right mirror image."""
    index = {n: i for i, n in enumerate(names)}

    def mirror(n: str) -> str:
        for a, b in (("Left", "Right"), ("Right", "Left")):
            if n.endswith(a):
                return n[: -len(a)] + b
        return n

    return np.array([index[mirror(n)] for n in names], dtype=np.int64)


@dataclasses.dataclass(frozen=True)
class RegionGeometry:
    """Where the patches sit, in units of the face scale ``s`` (see :func:`face_frame`).

    Attributes:
        eye_size: Eye patch side / s.
        eye_up: How far the eye patch centre sits above the eye centre / s (so the brow is inside).
        mouth_size: Mouth patch side / s.
        mouth_down: How far the mouth patch centre sits below the mouth corners' midpoint / s (room for an
            open jaw).
    """

    eye_size: float = 0.95
    eye_up: float = 0.18
    mouth_size: float = 1.25
    mouth_down: float = 0.18


DEFAULT_GEOMETRY = RegionGeometry()


def face_frame(anchors_px: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """The patch frame of one face.

    Args:
        anchors_px: (6,2) px, in the :data:`IBUG68_ANCHORS` order.

    Returns:
        ``(u, v, s)``: (2,) unit vector from the subject's right eye to the left eye, (2,) unit vector
        "down" (perpendicular), and the face scale in px: the mean of the eye distance and the eye-to-mouth
        distance (their mean stays put when the head turns or nods, where each alone shrinks).
    """
    a = np.asarray(anchors_px, np.float64)
    if a.shape != (6, 2) or not np.isfinite(a).all():
        raise ConfigError(f"anchors must be (6,2) finite px, got {a.shape}")
    eye_r, eye_l = a[0:2].mean(axis=0), a[2:4].mean(axis=0)
    mouth = a[4:6].mean(axis=0)
    across = eye_l - eye_r
    d_eyes = float(np.linalg.norm(across))
    if d_eyes < 1e-6:
        raise ConfigError("the two eyes coincide; no patch frame")
    u = across / d_eyes
    v = np.array([-u[1], u[0]])  # image y runs down, so this points from the eyes towards the mouth
    d_mouth = float(abs(np.dot(mouth - 0.5 * (eye_r + eye_l), v)))
    return u, v, 0.5 * (d_eyes + d_mouth)


def patch_sizes_px(context: float = 1.0) -> tuple[int, int]:
    """(eye, mouth) patch sides in px for a ``context`` (see :func:`patch_affines`)."""
    return round(EYE_PATCH_PX * context), round(MOUTH_PATCH_PX * context)


def patch_affines(anchors_px: np.ndarray, context: float = 1.0,
                  geometry: RegionGeometry = DEFAULT_GEOMETRY) -> np.ndarray:  # fmt: skip
    """The three patch -> image affine maps of one face: subject's right eye, left eye (mirrored), mouth.

    Args:
        anchors_px: (6,2) px anchors (:data:`IBUG68_ANCHORS` order).
        context: > 1 cuts a wider patch around the same centre at the same resolution, with
            :func:`patch_sizes_px` pixels a side (training data keeps room to jitter the patch in).
        geometry: Patch placement.

    Returns:
        (3,2,3) float64: ``image_xy = A @ [patch_x, patch_y, 1]`` at pixel centres.
    """
    a = np.asarray(anchors_px, np.float64)
    u, v, s = face_frame(a)
    eye_r, eye_l, mouth = a[0:2].mean(axis=0), a[2:4].mean(axis=0), a[4:6].mean(axis=0)
    eye_px, mouth_px = patch_sizes_px(context)
    specs = (
        (eye_r - geometry.eye_up * s * v, u, geometry.eye_size * s / EYE_PATCH_PX, eye_px),
        (eye_l - geometry.eye_up * s * v, -u, geometry.eye_size * s / EYE_PATCH_PX, eye_px),  # mirrored
        (mouth + geometry.mouth_down * s * v, u, geometry.mouth_size * s / MOUTH_PATCH_PX, mouth_px),
    )
    out = np.empty((3, 2, 3))
    for k, (centre, x_axis, step_px, side_px) in enumerate(specs):
        out[k, :, 0] = x_axis * step_px
        out[k, :, 1] = v * step_px
        out[k, :, 2] = centre - (side_px - 1) / 2.0 * step_px * (x_axis + v)
    return out


def cut_patches(image: np.ndarray, anchors_px: np.ndarray, context: float = 1.0,
                geometry: RegionGeometry = DEFAULT_GEOMETRY) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Cuts one face's grey patches out of a grey or RGB image.

    Args:
        image: (H,W) uint8 grey, or (H,W,3) uint8 RGB (converted after cutting: cheaper than converting a
            whole frame, and the same up to rounding since both steps are linear).
        anchors_px: (6,2) px anchors (:data:`IBUG68_ANCHORS` order).
        context: See :func:`patch_affines`.
        geometry: Patch placement.

    Returns:
        ``eyes`` (2,E,E) uint8 (subject's right eye, left eye mirrored) and ``mouth`` (M,M) uint8, with
        (E, M) = :func:`patch_sizes_px`.
    """
    affines = patch_affines(anchors_px, context, geometry)
    eye_px, mouth_px = patch_sizes_px(context)
    # Bilinear sampling: the patches shrink at most ~3x from a close face, where its aliasing does not
    # matter to the networks, and an area filter per patch would cost more than the networks do.
    patches = [cv2.warpAffine(image, m, (px, px), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)
               for m, px in zip(affines, (eye_px, eye_px, mouth_px), strict=True)]  # fmt: skip
    if image.ndim == 3:
        patches = [cv2.cvtColor(p, cv2.COLOR_RGB2GRAY) for p in patches]
    return np.stack(patches[:2]), patches[2]


__all__ = [
    "DEFAULT_GEOMETRY", "EYE_CHANNELS_LEFT", "EYE_CHANNELS_RIGHT", "EYE_PATCH_PX", "IBUG68_ANCHORS",
    "MEDIAPIPE_ANCHORS", "MOUTH_CHANNELS", "MOUTH_PATCH_PX", "RegionGeometry", "arkit_indices", "cut_patches",
    "face_frame", "mirror_channels", "patch_affines", "patch_sizes_px",
]  # fmt: skip
