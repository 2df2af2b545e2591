"""Procedural backgrounds: a soft room-like scene from a seed (no image assets)."""

from __future__ import annotations

import cv2
import numpy as np

from tracker.core.errors import ConfigError


def procedural_background(seed: int, width: int, height: int) -> np.ndarray:
    """A plausible indoor-looking background: a lit wall gradient, a few blurred furniture-like shapes,
    some straight edges (door/shelf/window frames) and fine noise.

    Args:
        seed: Any int; the same seed gives the same image.
        width, height: Size in pixels.

    Returns:
        (height, width, 3) uint8 RGB.
    """
    if width <= 0 or height <= 0:
        raise ConfigError(f"background size must be positive, got {width}x{height}")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xBAC6])
    wall = rng.uniform(0.25, 0.85, 3)
    wall = wall * 0.5 + wall.mean() * 0.5  # muted, wall-like colours
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    lx, ly = rng.uniform(0, width), rng.uniform(-0.5 * height, 0.5 * height)
    falloff = np.exp(
        -((xx - lx) ** 2 + (yy - ly) ** 2) / (2 * (rng.uniform(0.6, 1.4) * max(width, height)) ** 2)
    )
    img = wall[None, None, :] * (0.55 + 0.45 * falloff[..., None])
    # Floor/ceiling line and a few shapes, each with its own colour.
    for _ in range(int(rng.integers(3, 8))):
        colour = np.clip(rng.uniform(0.05, 0.95, 3) * 0.7 + wall * 0.3, 0, 1)
        x0, y0 = rng.uniform(-0.2, 1.0) * width, rng.uniform(-0.2, 1.0) * height
        w, h = rng.uniform(0.1, 0.6) * width, rng.uniform(0.1, 0.8) * height
        layer = np.zeros((height, width), np.float32)
        if rng.uniform() < 0.7:
            cv2.rectangle(layer, (int(x0), int(y0)), (int(x0 + w), int(y0 + h)), 1.0, -1)
        else:
            cv2.ellipse(
                layer,
                (int(x0), int(y0)),
                (int(w / 2), int(h / 2)),
                float(rng.uniform(0, 180)),
                0,
                360,
                1.0,
                -1,
            )
        layer = cv2.GaussianBlur(layer, (0, 0), rng.uniform(1.0, 8.0))
        img = img * (1 - layer[..., None]) + colour[None, None, :] * layer[..., None] * (
            0.6 + 0.4 * falloff[..., None]
        )
    for _ in range(int(rng.integers(1, 5))):
        colour = np.clip(wall * rng.uniform(0.4, 1.3), 0, 1)
        if rng.uniform() < 0.5:
            x = int(rng.uniform(0, width))
            cv2.line(img, (x, 0), (x, height), colour.tolist(), int(rng.integers(1, 6)))
        else:
            y = int(rng.uniform(0, height))
            cv2.line(img, (0, y), (width, y), colour.tolist(), int(rng.integers(1, 6)))
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.8)
    img = img * (1 + 0.03 * rng.standard_normal((height, width, 1)).astype(np.float32))
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
