"""Typed inputs and outputs of the renderer (besides :class:`~tracker.core.types.FaceCoefficients`)."""

from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from tracker.core.errors import ConfigError
from tracker.core.types import FaceCoefficients, Intrinsics, as_float_array, check_array


@dataclasses.dataclass
class Albedo:
    """Surface colour of the model.

    Colours are display-referred RGB in [0, 1] (the renderer multiplies them by the SH shading and
    writes the result without a gamma curve).

    Attributes:
        vertex_rgb: (V,3) float32 per-vertex colour for the full mesh (V = FaceModel.num_vertices);
            used wherever no texture applies (eyes, teeth, mouth, back of the head).
        face_texture: optional (H,W,3) uint8 RGB texture of the face skin in ICT's UV layout (UDIM tile 0,
            material ``M_Face``; texture row 0 is v = 1, the top of the UV square, as image files store it).
            When given it replaces ``vertex_rgb`` on the face material.
    """

    vertex_rgb: np.ndarray
    face_texture: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.vertex_rgb = as_float_array("Albedo.vertex_rgb", self.vertex_rgb, (None, 3))
        if self.vertex_rgb.size and (self.vertex_rgb.min() < 0 or self.vertex_rgb.max() > 1):
            raise ConfigError("Albedo.vertex_rgb: colours must lie in [0, 1]")
        if self.face_texture is not None:
            check_array("Albedo.face_texture", self.face_texture, (None, None, 3), np.uint8)
            self.face_texture = np.ascontiguousarray(self.face_texture)


@dataclasses.dataclass
class RenderOutput:
    """One rendered view.

    Attributes:
        rgb: (H,W,3) uint8 RGB image.
        depth_m: (H,W) float32 camera-frame z in metres of the visible surface; 0 on the background.
        mask: (H,W) bool, pixels where the face is visible (face skin, eyes and mouth interior; not the
            back of the head, neck or ears' back).
        intrinsics: The camera the view was rendered with.
        triangle_ids: (H,W) int32 index into ``FaceModel.triangles`` of the visible triangle, -1 on the
            background; None unless asked for.
    """

    rgb: np.ndarray
    depth_m: np.ndarray
    mask: np.ndarray
    intrinsics: Intrinsics
    triangle_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        check_array(
            "RenderOutput.rgb", self.rgb, (self.intrinsics.height, self.intrinsics.width, 3), np.uint8
        )
        check_array("RenderOutput.depth_m", self.depth_m, self.rgb.shape[:2], np.float32)
        check_array("RenderOutput.mask", self.mask, self.rgb.shape[:2], np.bool_)
        if self.triangle_ids is not None:
            check_array("RenderOutput.triangle_ids", self.triangle_ids, self.rgb.shape[:2], np.int32)

    def depth_u16(self, depth_scale_m: float = 0.001) -> np.ndarray:
        """(H,W) uint16 depth in units of ``depth_scale_m`` (rounded; 0 = no surface), as a depth camera gives."""
        return depth_to_u16(self.depth_m, depth_scale_m)


def depth_to_u16(depth_m: np.ndarray, depth_scale_m: float = 0.001) -> np.ndarray:
    """(H,W) float metres -> uint16 in units of ``depth_scale_m``, rounded and clipped (0 = no depth)."""
    if not depth_scale_m > 0:
        raise ConfigError(f"depth_scale_m must be > 0, got {depth_scale_m}")
    d = np.rint(np.asarray(depth_m, np.float32) / np.float32(depth_scale_m))
    return np.clip(d, 0, np.iinfo(np.uint16).max).astype(np.uint16)


class FaceRenderer(Protocol):
    """What training-data synthesis needs of a renderer (:class:`tracker.render.Renderer` is one).

    ``engines/`` stands on :mod:`tracker.core` alone, so the OpenGL renderer is handed to it by the caller
    (a ``renderer_factory``: ``FaceModel -> FaceRenderer``) instead of being imported there.
    """

    def render(self, params: FaceCoefficients, intrinsics: Intrinsics, albedo: Albedo | None = None,
               background=None, *, triangle_ids: bool = False) -> RenderOutput: ...  # fmt: skip

    def render_batch(self, params, intrinsics, albedo=None, backgrounds=None, *,
                     triangle_ids: bool = False) -> list[RenderOutput]: ...  # fmt: skip

    def close(self) -> None: ...

    def __enter__(self) -> FaceRenderer: ...

    def __exit__(self, *exc) -> None: ...
