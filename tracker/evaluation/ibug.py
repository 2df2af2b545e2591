"""Reading iBUG/300W 68-point annotations (``.pts``) and finding the images they belong to.

The ``.pts`` files store **1-based** pixel coordinates (Matlab convention: the centre of the top-left pixel
is (1, 1)); :func:`read_pts` returns the project's 0-based pixel-centre coordinates (subtracts 1).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from tracker.core.errors import ConfigError

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp")


def read_pts(path: Path | str, one_based: bool = True) -> np.ndarray:
    """Reads an iBUG ``.pts`` file.

    Args:
        path: The file (``version: 1``, ``n_points: N``, ``{``, N lines ``x y``, ``}``); files with only
            the coordinate lines are accepted too.
        one_based: The file uses 1-based coordinates (iBUG/300W); converted to 0-based.

    Returns:
        (N,2) float64 px, 0-based pixel-centre coordinates.

    Raises:
        ConfigError: naming the file when it cannot be parsed.
    """
    path = Path(path)
    try:
        lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the .pts file ({exc})") from exc
    n_points = None
    coords = []
    try:
        for ln in lines:
            key = ln.split(":")[0].strip().lower()
            if key == "version" or ln in ("{", "}"):
                continue
            if key == "n_points":
                n_points = int(ln.split(":")[1])
                continue
            x, y = ln.split()[:2]
            coords.append((float(x), float(y)))
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"{path}: malformed .pts line ({exc})") from exc
    pts = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    if n_points is not None and len(pts) != n_points:
        raise ConfigError(f"{path}: header says {n_points} points, found {len(pts)}")
    if len(pts) == 0:
        raise ConfigError(f"{path}: no points")
    return pts - 1.0 if one_based else pts


@dataclasses.dataclass(frozen=True)
class AnnotatedImage:
    """An image and its ``.pts`` annotation.

    Attributes:
        name: Path of the image relative to the dataset root, without suffix (e.g. ``afw/1051618982_1``).
        image_path: The image file.
        pts_path: The annotation file.
    """

    name: str
    image_path: Path
    pts_path: Path


def find_annotated_images(root: Path | str) -> list[AnnotatedImage]:
    """Every image under ``root`` (recursively) that has a ``.pts`` beside it, sorted by name.

    Raises:
        ConfigError: when ``root`` is not a folder or holds no annotated image.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder")
    out = []
    for pts in sorted(root.rglob("*.pts")):
        image = next((pts.with_suffix(s) for s in IMAGE_SUFFIXES if pts.with_suffix(s).is_file()), None)
        if image is not None:
            out.append(AnnotatedImage(pts.relative_to(root).with_suffix("").as_posix(), image, pts))
    if not out:
        raise ConfigError(f"{root}: no images with .pts annotations found")
    return out


def evenly_spaced(items: list, limit: int | None) -> list:
    """At most ``limit`` items spread evenly over the list (all when ``limit`` is None)."""
    if limit is None or limit >= len(items):
        return list(items)
    if limit <= 0:
        return []
    idx = np.linspace(0, len(items) - 1, limit).round().astype(int)
    return [items[i] for i in idx]


__all__ = ["AnnotatedImage", "evenly_spaced", "find_annotated_images", "read_pts"]
