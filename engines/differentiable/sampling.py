"""Vertex-based photometric sampling and visibility, in torch.

The photometric term compares each visible vertex's shaded colour with the image colour at its projection
(bilinear), the "vertex-based sampling" of inverse-rendering fits: no rasteriser in the loop, gradients
flow into the geometry through the image gradient at the projected points.
"""

from __future__ import annotations

import torch

from tracker.core.errors import ConfigError


def image_to_tensor(image_rgb_u8, dtype=torch.float32) -> torch.Tensor:
    """(H,W,3) or (B,H,W,3) uint8 RGB numpy -> (B,3,H,W) float in [0,1]."""
    t = torch.as_tensor(image_rgb_u8)
    if t.dim() == 3:
        t = t[None]
    if t.dim() != 4 or t.shape[-1] != 3:
        raise ConfigError(f"expected (H,W,3) or (B,H,W,3) RGB images, got {tuple(t.shape)}")
    return t.permute(0, 3, 1, 2).to(dtype) / 255.0


def sample_image(image: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Bilinear samples at sub-pixel positions (pixel-centre convention; outside = border colour).

    Args:
        image: (B,C,H,W) float image.
        pixels: (B,N,2) positions in px, (0,0) = centre of the top-left pixel.

    Returns:
        (B,N,C) samples.
    """
    h, w = image.shape[-2:]
    scale = pixels.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)])
    grid = (pixels * scale - 1.0)[:, :, None, :]  # (B,N,1,2); align_corners=True: -1/+1 = first/last pixel centres
    out = torch.nn.functional.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out[..., 0].transpose(1, 2)


def inside_image(pixels: torch.Tensor, width: int, height: int, margin_px: float = 1.0) -> torch.Tensor:
    """(B,N) bool: the point projects inside the image, at least ``margin_px`` from the border."""
    x, y = pixels.unbind(-1)
    return (x >= margin_px) & (y >= margin_px) & (x <= width - 1 - margin_px) & (y <= height - 1 - margin_px)


def facing_camera(normals_cam: torch.Tensor, points_cam: torch.Tensor, min_cos: float = 0.0) -> torch.Tensor:
    """(B,N) bool: the surface faces the camera (cosine between normal and view ray above ``min_cos``).

    Args:
        normals_cam: (B,N,3) unit normals, camera frame.
        points_cam: (B,N,3) positions, camera frame (the camera sits at the origin).
        min_cos: Threshold; > 0 drops grazing surfaces whose colour is unreliable.
    """
    view = torch.nn.functional.normalize(-points_cam, dim=-1)
    return (normals_cam * view).sum(-1) > min_cos
