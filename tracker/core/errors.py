"""The one module of exception types for facetrack.

Every error the project raises on purpose derives from :class:`TrackerError`, so a caller can catch
the whole family in one place; the subclasses say which part of the system failed.
"""

from __future__ import annotations


class TrackerError(Exception):
    """Base class of every error facetrack raises on purpose."""


class ConfigError(TrackerError):
    """A configuration value or input argument is invalid (wrong shape, range, type or option)."""


class AssetError(TrackerError):
    """A third-party asset is missing, corrupt (hash mismatch) or cannot be converted."""


class CameraError(TrackerError):
    """A capture source could not be opened, disappeared, or delivered unreadable data."""


class CameraTimeoutError(CameraError):
    """No frame arrived within the requested time (the camera may just be slow; retrying is reasonable)."""


class EngineError(TrackerError):
    """An inference backend is unavailable or a model could not be loaded or run."""


class CalibrationError(TrackerError):
    """Camera or depth calibration data is missing or inconsistent."""


class RenderError(TrackerError):
    """An OpenGL context could not be created or a draw call failed."""


class StreamError(TrackerError):
    """A stream message is malformed, of an unknown version, or a socket failed."""
