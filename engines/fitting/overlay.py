"""Pictures of a fit, for checking it by eye: the shaded model blended over the image, and the points."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from engines.differentiable import head_to_camera, intrinsics_tensor, project, sh_irradiance, vertex_normals
from engines.fitting.fit import FitResult, Fitter
from engines.fitting.raster import rasterize


def render_fit(
    fitter: Fitter, fit: FitResult, index: int, height: int, width: int, textured: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Renders frame ``index`` of a fit with its lighting and its albedo (``textured``) or a flat grey one.

    Returns:
        (H,W,3) float32 colours in [0,1] and (H,W) bool coverage.
    """
    layer = fitter.dense
    with torch.no_grad():
        ident = torch.from_numpy(fit.identity)
        expr = torch.from_numpy(fit.expression[index : index + 1])
        cam = head_to_camera(layer(ident, expr), torch.from_numpy(fit.rotation[index : index + 1]),
                             torch.from_numpy(fit.translation_m[index : index + 1]))  # fmt: skip
        px = project(cam, intrinsics_tensor(fit.intrinsics[index]))[0].numpy()
        normals = vertex_normals(cam, layer.triangles)
        if textured and fit.albedo is not None:
            albedo = torch.from_numpy(fit.albedo)
        else:
            # Grey with the fit's mean brightness, so the geometry reads clearly under the fitted light.
            grey = float(fit.albedo.mean()) if fit.albedo is not None else 0.6
            albedo = torch.full((layer.num_vertices, 3), grey)
        colour = (albedo[None] * sh_irradiance(normals, torch.from_numpy(fit.sh[index : index + 1])))[0].numpy()
    r = rasterize(px, fitter.dense_triangles_np, height, width, cam[0, :, 2].numpy())
    return np.clip(r.interpolate(colour, fitter.dense_triangles_np), 0.0, 1.0), r.mask


def overlay_image(
    fitter: Fitter,
    fit: FitResult,
    image_rgb: np.ndarray,
    teacher_px: np.ndarray | None = None,
    index: int = 0,
    reference68_px: np.ndarray | None = None,
) -> np.ndarray:
    """Three panels: the image with points; the fitted geometry (grey, fitted light) over the image; the
    textured fit (per-vertex albedo) over the image.

    Points: teacher (MediaPipe) green, fitted mapped points red, fitted ICT-68 blue, reference 68 yellow.

    Returns:
        (H, 3W, 3) uint8 RGB.
    """
    h, w = image_rgb.shape[:2]
    panels = []
    for textured in (False, True):
        colour, mask = render_fit(fitter, fit, index, h, w, textured)
        blend = image_rgb.astype(np.float32) / 255.0
        blend[mask] = 0.15 * blend[mask] + 0.85 * colour[mask]
        panels.append((blend * 255).round().astype(np.uint8))
    left = image_rgb.copy()
    radius = max(1, round(max(h, w) / 400))

    def dots(img, pts, col):
        for x, y in np.asarray(pts, np.float64):
            if np.isfinite(x) and np.isfinite(y):
                cv2.circle(img, (round(x), round(y)), radius, col, -1, lineType=cv2.LINE_AA)

    if teacher_px is not None:
        dots(left, teacher_px[:468], (0, 255, 0))
    dots(left, fit.points_px[index], (255, 0, 0))
    if reference68_px is not None:
        dots(left, reference68_px, (255, 255, 0))
    dots(left, fit.landmarks68_px[index], (0, 80, 255))
    return np.concatenate([left, *panels], axis=1)
