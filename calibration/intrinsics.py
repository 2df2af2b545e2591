"""Camera intrinsics files; without one, the project's one assumed camera (:meth:`Intrinsics.assumed`).

A calibration file is JSON with the fields of :class:`~tracker.core.types.Intrinsics`::

    {"fx": 600.0, "fy": 600.0, "cx": 319.5, "cy": 239.5, "width": 640, "height": 480,
     "distortion": [0.0, 0.0, 0.0, 0.0, 0.0]}

Pixels are 0-based with (0,0) the centre of the top-left pixel (OpenCV's convention, so the output of
``cv2.calibrateCamera`` can be written as is); ``distortion`` holds OpenCV's coefficients (k1 k2 p1 p2
[k3 ...]) and may be omitted for an ideal pinhole. A file made at one resolution also serves another with
the same aspect ratio (the camera's driver scales the sensor image): :func:`resolve_intrinsics` rescales it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from tracker.core.errors import CalibrationError, ConfigError
from tracker.core.types import Intrinsics

log = logging.getLogger(__name__)

_REQUIRED = ("fx", "fy", "cx", "cy", "width", "height")


def intrinsics_from_dict(data: dict, where: str = "intrinsics") -> Intrinsics:
    """Builds :class:`Intrinsics` from a dict with the calibration file's fields.

    Raises:
        CalibrationError: naming the missing or invalid field.
    """
    if not isinstance(data, dict):
        raise CalibrationError(
            f"{where}: expected a JSON object with {', '.join(_REQUIRED)}, got {type(data).__name__}"
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CalibrationError(
            f"{where}: missing field(s) {', '.join(missing)} (needs {', '.join(_REQUIRED)}[, distortion])"
        )
    try:
        return Intrinsics(
            fx=float(data["fx"]), fy=float(data["fy"]), cx=float(data["cx"]), cy=float(data["cy"]),
            width=int(data["width"]), height=int(data["height"]),
            distortion=tuple(float(d) for d in data.get("distortion") or (0.0,) * 5),
        )  # fmt: skip
    except (TypeError, ValueError, ConfigError) as exc:
        raise CalibrationError(f"{where}: {exc}") from exc


def load_intrinsics(path: str | Path) -> Intrinsics:
    """Reads a calibration JSON file.

    Raises:
        CalibrationError: if the file is missing, not JSON, or lacks a field.
    """
    path = Path(path)
    return intrinsics_from_dict(read_json(path, "calibration file"), where=f"calibration file {path}")


def read_json(path: Path, what: str, make_hint: str = "") -> object:
    """The JSON value in ``path``, for calibration files of any kind.

    Raises:
        CalibrationError: naming ``what`` and the file when it is missing or not readable JSON.
    """
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise CalibrationError(f"{what} not found: {path}{make_hint}") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CalibrationError(f"{what} {path} is not readable JSON: {exc}") from exc


def save_intrinsics(intrinsics: Intrinsics, path: str | Path) -> Path:
    """Writes ``intrinsics`` as a calibration JSON file (creating the folder); returns the path."""
    return write_json(path, intrinsics.to_dict())


def write_json(path: str | Path, data: object) -> Path:
    """Writes a calibration file (creating its folder); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def resolve_intrinsics(
    width: int, height: int, calibration: str | Path | Intrinsics | None = None
) -> Intrinsics:
    """Intrinsics for an image of ``width`` x ``height`` from a camera that may have a calibration.

    Args:
        width, height: The actual image size, px.
        calibration: A calibration file, an :class:`Intrinsics`, or None for the assumed camera (:meth:`Intrinsics.assumed`).

    Returns:
        The calibration, rescaled when it was made at another resolution of the same aspect ratio.

    Raises:
        CalibrationError: if the calibration's aspect ratio differs from the image's.
    """
    if calibration is None:
        return Intrinsics.assumed(width, height)
    k = calibration if isinstance(calibration, Intrinsics) else load_intrinsics(calibration)
    if (k.width, k.height) == (width, height):
        return k
    sx, sy = width / k.width, height / k.height
    if abs(sx - sy) > 0.01 * max(sx, sy):
        raise CalibrationError(
            f"calibration is for {k.width}x{k.height} but the images are {width}x{height} (another aspect "
            "ratio, so it cannot be rescaled); calibrate at this resolution or capture at the calibrated one"
        )
    log.info("rescaling calibration from %dx%d to %dx%d", k.width, k.height, width, height)
    return k.scaled(sx, sy)


__all__ = [
    "intrinsics_from_dict", "load_intrinsics", "read_json", "resolve_intrinsics",
    "save_intrinsics", "write_json",
]  # fmt: skip
