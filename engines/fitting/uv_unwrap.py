"""Unwrapping a fitted image into ICT's face UV map, with symmetric and smooth hole filling.

UV convention (the renderer's, :class:`tracker.render.Albedo`): the face texture covers UDIM tile 0 of
material ``M_Face``; texel (row i, column j) has its centre at ``u = (j + 0.5) / T``, ``v = 1 - (i + 0.5) / T``
(row 0 is the top, v = 1, as image files store it). Colours are display-referred RGB in [0, 1].
"""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import torch

from engines.differentiable import FaceLayer, head_to_camera, sh_irradiance, vertex_normals
from engines.fitting.fit import FitResult
from engines.fitting.masks import hole_distance_weights, landmark_hull_mask
from engines.fitting.raster import Raster, rasterize
from tracker.core.errors import ConfigError
from tracker.core.face_model import FaceModel

#: Texel states in a bank's mask PNG.
MASK_VISIBLE, MASK_MIRRORED, MASK_FILLED = 255, 128, 0


class UVLayout:
    """Per-texel surface location of the ICT face UV map at one resolution (built once, reused).

    Attributes:
        size: T, the texture side in texels.
        opening_margin: (T,T) bool texels next to the eye and mouth openings (never taken from an image).
        raster: Which face triangle (index into ``FaceModel.triangles``) and barycentric weights cover each
            texel; -1 outside the UV islands.
        mirror_uv_px: (T,T,2) float32 texel coordinates (x, y) of each texel's left/right mirror point,
            found from the mesh geometry (-1 outside the islands): ready for ``cv2.remap``.
    """

    def __init__(self, model: FaceModel, size: int = 512) -> None:
        if not 16 <= size <= 4096:
            raise ConfigError(f"UV size must be in [16, 4096], got {size}")
        self.model = model
        self.size = int(size)
        face = model.region("face")
        self.triangles = model.triangles[face.t0 : face.t1].astype(np.int64)
        uv_tris = model.uv_triangles[face.t0 : face.t1]
        self.raster: Raster = rasterize(self.uv_to_px(model.uv_coords), uv_tris, self.size, self.size)
        self.mirror_uv_px = self._mirror_map(model, uv_tris)
        # Texels at the eye and mouth openings (eyelid margins, inner lips) show eyeballs and teeth in
        # photos whenever the fit is a little off; they are refilled from their surroundings instead.
        rim = hole_distance_weights(model, "face", inner_cm=0.15, outer_cm=0.3)
        (rows, cols), corners, bary = self.texel_corners()
        self.opening_margin = np.zeros((self.size, self.size), bool)
        self.opening_margin[rows, cols] = (rim[corners] * bary).sum(1) < 0.999

    def uv_to_px(self, uv: np.ndarray) -> np.ndarray:
        """(N,2) UV -> (N,2) texel coordinates (x, y) in the pixel-centre convention."""
        uv = np.asarray(uv, np.float64)
        return np.stack([uv[:, 0] * self.size - 0.5, (1.0 - uv[:, 1]) * self.size - 0.5], axis=1)

    @property
    def mask(self) -> np.ndarray:
        """(T,T) bool texels inside the face UV islands."""
        return self.raster.mask

    def texel_corners(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Covered texels' (rows, cols), their triangles' model vertex ids (P,3) and weights (P,3)."""
        rows, cols = np.nonzero(self.raster.mask)
        tri = self.raster.triangle[rows, cols]
        return (rows, cols), self.triangles[tri], self.raster.bary[rows, cols]

    def _mirror_map(self, model: FaceModel, uv_tris: np.ndarray) -> np.ndarray:
        """Mirror each texel through the face's symmetry plane (x = 0 in the model frame).

        Every face vertex is paired with the vertex nearest to its mirror image; a texel's mirror point is
        then its barycentric combination of the paired vertices' UVs (the UV of the occurrence inside the
        mirrored triangle when one exists, so UV seams resolve consistently).
        """
        face = model.region("face")
        v = model.neutral_cm[face.v0 : face.v1].astype(np.float64)
        mirrored = v * np.array([-1.0, 1.0, 1.0])
        v_t, m_t = torch.from_numpy(v), torch.from_numpy(mirrored)
        pair = torch.cat([torch.cdist(m_t[s : s + 2048], v_t).argmin(1) for s in range(0, len(v), 2048)]).numpy()
        pair += face.v0
        # One UV per model vertex (first occurrence), overridden per triangle where the mirrored triangle exists.
        uv_of = np.zeros((model.num_vertices, 2))
        uv_of[self.triangles.ravel()[::-1]] = model.uv_coords[uv_tris.ravel()[::-1]]
        by_set = {tuple(sorted(t)): i for i, t in enumerate(self.triangles.tolist())}
        (rows, cols), corners, bary = self.texel_corners()
        tri = self.raster.triangle[rows, cols]
        corner_uv = uv_of[pair[corners]]  # (P,3,2)
        mirror_tri = np.array([by_set.get(tuple(sorted(t)), -1) for t in pair[self.triangles].tolist()])
        has = mirror_tri[tri] >= 0
        if has.any():
            mt = mirror_tri[tri[has]]
            # Match corners: the mirrored triangle holds the same vertex set in some order.
            target = pair[corners[has]]  # (Q,3) model ids we want, in our corner order
            mt_v = self.triangles[mt]  # (Q,3)
            mt_uv = model.uv_coords[uv_tris[mt]]  # (Q,3,2)
            order = np.argmax(target[:, :, None] == mt_v[:, None, :], axis=2)  # (Q,3)
            corner_uv[has] = np.take_along_axis(mt_uv, order[..., None], axis=1)
        uv = (corner_uv * bary[..., None]).sum(1)
        out = np.full((self.size, self.size, 2), -1.0, np.float32)
        out[rows, cols] = self.uv_to_px(uv).astype(np.float32)
        return out


@dataclasses.dataclass(frozen=True)
class UnwrapResult:
    """An unwrapped face texture.

    Attributes:
        texture: (T,T,3) float32 albedo in [0,1] where ``visible``; 0 elsewhere.
        visible: (T,T) bool texels seen in the image (facing the camera, unoccluded, inside the face).
        cosine: (T,T) float32 cosine between surface normal and view ray (0 where not visible).
    """

    texture: np.ndarray
    visible: np.ndarray
    cosine: np.ndarray


def unwrap_albedo(
    layout: UVLayout,
    face_layer: FaceLayer,
    fit: FitResult,
    image_rgb: np.ndarray,
    index: int = 0,
    teacher_px: np.ndarray | None = None,
    min_cos: float = 0.3,
    min_shading: float = 0.15,
    min_fraction: float = 0.02,
) -> UnwrapResult:
    """Albedo = image colour / fitted SH shading at each texel's surface point, where it is visible.

    Args:
        layout: The UV layout.
        face_layer: A :class:`FaceLayer` over the ``face`` region with at least the fit's identity modes.
        fit: The fit of ``image_rgb``.
        image_rgb: (H,W,3) uint8 RGB.
        index: Which frame of ``fit``.
        teacher_px: (>=468,2) teacher landmarks; texels projecting outside their hull are not trusted
            (hair, background, ears). None = no such limit.
        min_cos: Grazing texels (normal vs view ray cosine below this) count as not visible.
        min_shading: Floor of the shading divisor (dark, badly lit texels would blow up).
        min_fraction: Visible patches smaller than this fraction of all visible texels are dropped.
    """
    if face_layer.vertex_ids[0] != 0 or face_layer.num_vertices != layout.model.region("face").v1:
        raise ConfigError("unwrap_albedo needs a FaceLayer over the 'face' region")
    h, w = image_rgb.shape[:2]
    with torch.no_grad():
        verts = face_layer(torch.from_numpy(fit.identity), torch.from_numpy(fit.expression[index : index + 1]))
        cam = head_to_camera(verts, torch.from_numpy(fit.rotation[index : index + 1]),
                             torch.from_numpy(fit.translation_m[index : index + 1]))  # fmt: skip
        tris = torch.from_numpy(layout.triangles)
        normals = vertex_normals(cam, tris)[0].numpy()
        cam = cam[0].numpy().astype(np.float64)
    k = fit.intrinsics[index]
    xy = np.stack([k.fx * cam[:, 0] / cam[:, 2] + k.cx, k.fy * cam[:, 1] / cam[:, 2] + k.cy], 1)
    img_raster = rasterize(xy, layout.triangles, h, w, cam[:, 2])

    (rows, cols), corners, bary = layout.texel_corners()
    p = (cam[corners] * bary[..., None]).sum(1)  # texel surface points, camera frame
    n = (normals[corners] * bary[..., None]).sum(1)
    n /= np.linalg.norm(n, axis=1, keepdims=True).clip(1e-9)
    cos = (n * (-p / np.linalg.norm(p, axis=1, keepdims=True))).sum(1)
    u = k.fx * p[:, 0] / p[:, 2] + k.cx
    v = k.fy * p[:, 1] / p[:, 2] + k.cy
    ix, iy = np.round(u).astype(np.int64), np.round(v).astype(np.int64)
    inside = (ix >= 0) & (iy >= 0) & (ix < w) & (iy < h) & (p[:, 2] > 0)
    vis = inside & (cos > min_cos)
    ixc, iyc = ix.clip(0, w - 1), iy.clip(0, h - 1)
    # Unoccluded: the texel's depth is (close to) the front-most surface at its pixel.
    vis &= p[:, 2] <= img_raster.depth[iyc, ixc] + 0.004
    if teacher_px is not None:
        vis &= landmark_hull_mask(np.asarray(teacher_px)[:468], h, w)[iyc, ixc]

    t = layout.size
    map_x = np.full((t, t), -1.0, np.float32)
    map_y = np.full((t, t), -1.0, np.float32)
    map_x[rows, cols], map_y[rows, cols] = u, v
    colour = cv2.remap(image_rgb, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    colour = colour[rows, cols].astype(np.float32) / 255.0
    with torch.no_grad():
        shading = sh_irradiance(torch.from_numpy(n[None]).float(), torch.from_numpy(fit.sh[index : index + 1]))[0].numpy()
    albedo = np.clip(colour / np.maximum(shading, min_shading), 0.0, 1.0)

    texture = np.zeros((t, t, 3), np.float32)
    visible = np.zeros((t, t), bool)
    cosine = np.zeros((t, t), np.float32)
    texture[rows[vis], cols[vis]] = albedo[vis]
    visible[rows[vis], cols[vis]] = True
    visible &= ~layout.opening_margin
    visible = _drop_specks(visible, min_fraction)
    cosine[rows[vis], cols[vis]] = cos[vis]
    cosine[~visible] = 0.0
    texture[~visible] = 0.0
    return UnwrapResult(texture, visible, cosine)


def _drop_specks(mask: np.ndarray, min_fraction: float) -> np.ndarray:
    """Removes connected components smaller than ``min_fraction`` of the mask (stray ear/neck texels)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 1:
        return mask
    area = stats[1:, cv2.CC_STAT_AREA]
    keep = np.zeros(n, bool)
    keep[1:] = area >= min_fraction * area.sum()
    return keep[labels]


def mirror_fill(layout: UVLayout, texture: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fills texels not seen with their left/right mirror texel where that one was seen.

    Returns:
        The texture and a (T,T) uint8 state mask (:data:`MASK_VISIBLE`, :data:`MASK_MIRRORED`, :data:`MASK_FILLED`).
    """
    mx, my = layout.mirror_uv_px[..., 0], layout.mirror_uv_px[..., 1]
    mirrored = cv2.remap(texture, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    # A mirror texel counts as seen only if all its bilinear neighbours were (no blending with black).
    seen = cv2.remap(visible.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT) > 0.999
    use = layout.mask & ~visible & seen & (mx >= 0)
    out = texture.copy()
    out[use] = mirrored[use]
    state = np.full(visible.shape, MASK_FILLED, np.uint8)
    state[visible] = MASK_VISIBLE
    state[use] = MASK_MIRRORED
    return out, state


def pull_push_fill(texture: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Smoothly fills unknown texels from known ones (pull-push / push-pull pyramid interpolation).

    Args:
        texture: (T,T,C) float image.
        known: (T,T) bool texels to keep.

    Returns:
        (T,T,C) float32 with every texel defined (known texels unchanged).
    """
    w = known.astype(np.float32)
    cw = texture.astype(np.float32) * w[..., None]
    levels = [(cw, w)]
    while min(levels[-1][1].shape) > 1:
        c, k = levels[-1]
        size = (max(1, c.shape[1] // 2), max(1, c.shape[0] // 2))
        levels.append((cv2.resize(c, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1),
                       cv2.resize(k, size, interpolation=cv2.INTER_AREA)))  # fmt: skip
    c, k = levels[-1]
    fill = c / np.maximum(k, 1e-6)[..., None]
    for c, k in reversed(levels[:-1]):
        up = cv2.resize(fill, (c.shape[1], c.shape[0]), interpolation=cv2.INTER_LINEAR).reshape(c.shape)
        alpha = np.clip(k, 0.0, 1.0)[..., None]
        fill = alpha * (c / np.maximum(k, 1e-6)[..., None]) + (1.0 - alpha) * up
    out = texture.astype(np.float32).copy()
    out[~known] = fill[~known]
    return out


def complete_texture(layout: UVLayout, unwrap: UnwrapResult) -> tuple[np.ndarray, np.ndarray]:
    """Unwrapped texture -> a full texture: mirror what one side saw, then pull-push the rest.

    Returns:
        (T,T,3) uint8 RGB texture (row 0 = v 1) and (T,T) uint8 state mask.
    """
    tex, state = mirror_fill(layout, unwrap.texture, unwrap.visible)
    filled = pull_push_fill(tex, state != MASK_FILLED)
    return (np.clip(filled, 0, 1) * 255).round().astype(np.uint8), state
