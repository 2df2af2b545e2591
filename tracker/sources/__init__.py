"""Capture sources: one interface (:class:`FrameSource`) for webcams, files, RealSense and synthetic faces.

:func:`open_source` builds a source from the strings the command line takes (ARCHITECTURE §8). The
concrete modules are imported on demand, so importing this package needs neither the renderer nor
pyrealsense2.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from tracker.core.errors import ConfigError
from tracker.sources.base import FrameSource

#: The source strings :func:`open_source` accepts, for help texts and error messages.
SOURCE_FORMS: tuple[str, ...] = (
    "webcam:N", "video:PATH", "images:DIR", "synthetic", "synthetic:SEED", "realsense", "realsense:SERIAL",
    "realsense:RECORDING.bag|.db3",
)  # fmt: skip

RECORDING_SUFFIXES = (".bag", ".db3")

# kind -> (module, class); imported when used.
_CLASSES = {
    "webcam": ("tracker.sources.webcam", "WebcamSource"),
    "video": ("tracker.sources.video", "VideoFileSource"),
    "images": ("tracker.sources.images", "ImageFolderSource"),
    "synthetic": ("tracker.sources.synthetic", "SyntheticSource"),
    "realsense": ("tracker.sources.realsense", "RealSenseSource"),
    "realsense-playback": ("tracker.sources.realsense", "RealSensePlayback"),
}
# Friendlier option names -> constructor parameters.
_ALIASES = {"synthetic": {"frames": "n_frames"}}


def _forms() -> str:
    return ", ".join(SOURCE_FORMS)


def parse_source_spec(spec: str) -> tuple[str, dict]:
    """Splits a source string into the source class key and the arguments it fixes.

    Args:
        spec: e.g. ``"webcam:0"``, ``"video:clip.mp4"``, ``"synthetic:3"``, ``"realsense:rec.db3"``.

    Returns:
        (kind, arguments), kind being a key of the source classes.

    Raises:
        ConfigError: listing the valid forms.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(f"empty source; use one of {_forms()}")
    kind, sep, arg = spec.strip().partition(":")
    kind = kind.lower()
    if kind == "webcam":
        arg = arg or "0"
        return "webcam", {"device": int(arg) if arg.isdigit() else arg}
    if kind in ("video", "images"):
        if not arg:
            raise ConfigError(f"source {spec!r} needs a path: {kind}:{'PATH' if kind == 'video' else 'DIR'}")
        return kind, {"path" if kind == "video" else "folder": Path(arg).expanduser()}
    if kind == "synthetic":
        if not sep:
            return "synthetic", {}
        try:
            return "synthetic", {"seed": int(arg)}
        except ValueError:
            raise ConfigError(
                f"source {spec!r}: the synthetic source takes an integer seed (synthetic:3)"
            ) from None
    if kind == "realsense":
        if not arg:
            return "realsense", {}
        if arg.lower().endswith(RECORDING_SUFFIXES) or Path(arg).expanduser().is_file():
            return "realsense-playback", {"path": Path(arg).expanduser()}
        if arg.isalnum():
            return "realsense", {"serial": arg}
        raise ConfigError(f"source {spec!r}: expected realsense:RECORDING.bag|.db3 or realsense:SERIAL")
    hint = ""
    if Path(spec).expanduser().exists():
        hint = f" (for a file or folder write video:{spec} or images:{spec})"
    raise ConfigError(f"unknown source {spec!r}{hint}; use one of {_forms()}")


def open_source(spec: str, **options) -> FrameSource:
    """Creates the source a source string names; not connected yet (use it as a context manager).

    Args:
        spec: One of :data:`SOURCE_FORMS`.
        **options: Keyword arguments of the source's class, e.g. ``width``, ``height``, ``fps`` for a webcam,
            ``realtime`` for a video or recording, ``seed``, ``frames``, ``width``, ``height`` for the
            synthetic source, ``calibration`` (a JSON file) for webcams, videos and images. Options set to
            None are ignored, so command lines can pass theirs through.

    Returns:
        The source; call ``connect()`` or use ``with``.

    Raises:
        ConfigError: for an unknown source string or an option the source does not take.
    """
    kind, fixed = parse_source_spec(spec)
    module, name = _CLASSES[kind]
    cls = getattr(importlib.import_module(module), name)
    aliases = _ALIASES.get(kind, {})
    opts = {aliases.get(k, k): v for k, v in options.items() if v is not None}
    params = inspect.signature(cls.__init__).parameters
    accepted = {
        n for n, p in params.items() if n != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }
    clash = sorted(set(opts) & set(fixed))
    if clash:
        raise ConfigError(f"source {spec!r} already sets {', '.join(clash)}")
    accepted -= set(fixed)
    unknown = sorted(set(opts) - accepted)
    if unknown:
        shown = sorted(accepted | {a for a, t in aliases.items() if t in accepted})
        raise ConfigError(
            f"source {spec!r} does not take option(s) {', '.join(unknown)}; it takes: {', '.join(shown)}"
        )
    return cls(**fixed, **opts)


__all__ = ["FrameSource", "RECORDING_SUFFIXES", "SOURCE_FORMS", "open_source", "parse_source_spec"]
