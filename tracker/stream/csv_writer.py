"""Streaming CSV export of tracking results: facetrack's ARKit table, or a Live Link Face take.

Rows are written and flushed one at a time, so a run that is killed keeps every row written before.

Formats:

* ``arkit`` (facetrack's own): one row per face per frame: ``frame_index,time_s,t_capture_ns,track_id,
  state,confidence,yaw_deg,pitch_deg,roll_deg,tx_m,ty_m,tz_m`` and the 52 ARKit weights in Apple order
  (camelCase names); angles in degrees in facetrack's convention (ARCHITECTURE §2).
* ``livelink``: the layout of a take exported by Epic's Live Link Face app, so that tools that read
  those takes read this one: ``Timecode,BlendShapeCount`` then the 61 curves with PascalCase names in the
  app's CSV column order (the ARKit order except ``JawRight,JawLeft`` and ``MouthRight,MouthLeft``,
  which the app's CSV swaps relative to its UDP packets), then ``HeadYaw,HeadPitch,HeadRoll,
  LeftEyeYaw,LeftEyePitch,LeftEyeRoll,RightEyeYaw,RightEyePitch,RightEyeRoll`` in radians with the Live
  Link signs (:mod:`tracker.stream.bridges.livelink`). ``Timecode`` is the capture time of day (local
  clock) as ``HH:MM:SS:FF.mmm``: FF the frame within the second at the take's rate, mmm the sub-frame
  in thousandths. ``BlendShapeCount`` is 61. A take holds one performer, so each frame gives one row:
  its primary face (the most confident face that is not lost); frames without one give no row.
"""

from __future__ import annotations

import csv
import datetime
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

import numpy as np

from tracker.core.errors import ConfigError, StreamError
from tracker.core.face_model.arkit import ARKIT_NAMES, NUM_ARKIT
from tracker.core.geometry import ypr_deg_from_rotation
from tracker.core.types import TrackResult
from tracker.stream.bridges.livelink import APP_SIGNS, EXTRA_CURVES, AngleSigns, live_link_curves

log = logging.getLogger(__name__)

CSV_FORMATS = ("arkit", "livelink")

#: Columns of the ``arkit`` format.
ARKIT_CSV_COLUMNS: tuple[str, ...] = (
    "frame_index", "time_s", "t_capture_ns", "track_id", "state", "confidence", "yaw_deg", "pitch_deg",
    "roll_deg", "tx_m", "ty_m", "tz_m", *ARKIT_NAMES,
)  # fmt: skip


def _pascal(name: str) -> str:
    return name[0].upper() + name[1:]


def _live_link_csv_order() -> tuple[str, ...]:
    """ARKit names in the Live Link Face CSV order: Apple's order with two left/right pairs swapped."""
    names = list(ARKIT_NAMES)
    for a, b in (("jawLeft", "jawRight"), ("mouthLeft", "mouthRight")):
        i, j = names.index(a), names.index(b)
        names[i], names[j] = names[j], names[i]
    return tuple(names)


#: ARKit names in the Live Link Face CSV's column order.
LIVELINK_CSV_ARKIT_ORDER: tuple[str, ...] = _live_link_csv_order()
#: Index into Apple-order ARKit arrays of each Live Link CSV blendshape column.
_LIVELINK_INDEX = np.array([ARKIT_NAMES.index(n) for n in LIVELINK_CSV_ARKIT_ORDER])
#: Columns of the ``livelink`` format (a Live Link Face take's header).
LIVELINK_CSV_COLUMNS: tuple[str, ...] = (
    "Timecode", "BlendShapeCount", *(_pascal(n) for n in LIVELINK_CSV_ARKIT_ORDER), *EXTRA_CURVES,
)  # fmt: skip
LIVELINK_BLENDSHAPE_COUNT = NUM_ARKIT + len(EXTRA_CURVES)  # 61


def live_link_timecode(t_unix_ns: int, fps: float) -> str:
    """``HH:MM:SS:FF.mmm`` of a Unix time in the local time zone, at ``fps`` frames per second."""
    t = datetime.datetime.fromtimestamp(t_unix_ns // 1_000_000_000).replace(microsecond=0)
    frames = (t_unix_ns % 1_000_000_000) / 1e9 * fps
    ff = min(int(frames), math.ceil(fps) - 1)
    sub_ms = min(999, int((frames - ff) * 1000))
    return f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}:{ff:02d}.{sub_ms:03d}"


class CsvWriter:
    """Writes tracking results to a CSV file as they come, one flushed row at a time.

    Example::

        with CsvWriter("take.csv", format="livelink", fps=30) as w:
            for result in results:
                w.write(result)

    Args:
        path: File to create (replaced if it exists; parent folders are made).
        format: ``"arkit"`` or ``"livelink"`` (module docstring).
        fps: The take's frame rate, for ``livelink`` timecodes (frames per second).
        unix_offset_ns: Added to the results' monotonic capture times to get Unix time; None takes this
            host's offset now (right for results tracked in this process).
        signs: Live Link angle axes to invert (``livelink`` only).
        source_column: Several cameras (``arkit`` only): a first column ``source`` holds each row's camera
            name (:meth:`write`'s ``source``).

    Raises:
        ConfigError: on an unknown format or a bad fps.
        StreamError: if the file cannot be created.
    """

    def __init__(self, path: str | os.PathLike, format: str = "arkit", fps: float = 60.0, *,  # noqa: A002
                 unix_offset_ns: int | None = None, signs: AngleSigns = APP_SIGNS,
                 source_column: bool = False) -> None:  # fmt: skip
        if format not in CSV_FORMATS:
            raise ConfigError(f"CSV format must be one of {', '.join(CSV_FORMATS)}, got {format!r}")
        if source_column and format != "arkit":
            raise ConfigError("a Live Link take holds one performer: write several cameras with --csv-format arkit")
        self.source_column = bool(source_column)
        if not (math.isfinite(fps) and 0 < fps < 1000):
            raise ConfigError(f"CSV fps must be in (0, 1000), got {fps}")
        self.path = Path(path)
        self.format = format
        self.fps = float(fps)
        self.unix_offset_ns = time.time_ns() - time.monotonic_ns() if unix_offset_ns is None else int(unix_offset_ns)
        self.signs = signs
        self.rows = 0
        self._t_first_ns: int | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file: TextIO | None = open(self.path, "w", newline="")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise StreamError(f"cannot write CSV {self.path}: {exc.strerror or exc}") from exc
        # Live Link Face takes come from iOS with Unix line ends; facetrack's own table keeps csv's default.
        self._csv = csv.writer(self._file, lineterminator="\n") if format == "livelink" else csv.writer(self._file)
        self._csv.writerow(self.columns)
        self._file.flush()

    @property
    def columns(self) -> tuple[str, ...]:
        if self.source_column:
            return ("source", *ARKIT_CSV_COLUMNS)
        return ARKIT_CSV_COLUMNS if self.format == "arkit" else LIVELINK_CSV_COLUMNS

    def write(self, result: TrackResult, *, arkit: Sequence[np.ndarray] | np.ndarray | None = None,
              unix_offset_ns: int | None = None, source: str | None = None) -> int:  # fmt: skip
        """Writes one frame's rows and flushes them; returns how many rows were written.

        Args:
            result: The frame.
            arkit: (N,52) ARKit weights of ``result.faces`` to write instead of ``face.arkit`` (a stream's
                received values); None uses each face's own.
            unix_offset_ns: This frame's monotonic -> Unix offset (a stream message's), else the writer's.
            source: The camera's name, for the ``source`` column (``source_column`` only).
        """
        if self._file is None:
            raise StreamError(f"{self.path} is closed")
        weights = [f.arkit for f in result.faces] if arkit is None else [np.asarray(a) for a in arkit]
        if len(weights) != len(result.faces):
            raise ConfigError(f"got {len(weights)} ARKit rows for {len(result.faces)} faces")
        if self._t_first_ns is None:
            self._t_first_ns = result.t_capture_ns
        if self.format == "arkit":
            rows = [self._arkit_row(result, face, w) for face, w in zip(result.faces, weights, strict=True)]
            if self.source_column:
                rows = [[source or "", *row] for row in rows]
        else:
            i = result.primary_index()
            rows = []
            if i is not None:
                face = result.faces[i]
                offset = self.unix_offset_ns if unix_offset_ns is None else int(unix_offset_ns)
                curves = live_link_curves(weights[i], face.rotation, self.signs)
                rows.append([live_link_timecode(result.t_capture_ns + offset, self.fps), LIVELINK_BLENDSHAPE_COUNT,
                             *(f"{v:.9g}" for v in curves[:NUM_ARKIT][_LIVELINK_INDEX]),
                             *(f"{v:.9g}" for v in curves[NUM_ARKIT:])])  # fmt: skip
        for row in rows:
            self._csv.writerow(row)
            self._file.flush()  # a killed run keeps every row written so far
        self.rows += len(rows)
        return len(rows)

    def _arkit_row(self, result: TrackResult, face, weights: np.ndarray) -> list:
        yaw, pitch, roll = ypr_deg_from_rotation(face.rotation)
        return [result.frame_index, f"{(result.t_capture_ns - self._t_first_ns) / 1e9:.6f}", result.t_capture_ns,
                face.track_id, face.state, f"{face.confidence:.4f}", f"{yaw:.3f}", f"{pitch:.3f}", f"{roll:.3f}",
                *(f"{v:.5f}" for v in face.translation_m), *(f"{v:.5f}" for v in weights)]  # fmt: skip

    def close(self) -> None:
        """Closes the file. Idempotent."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> CsvWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["ARKIT_CSV_COLUMNS", "CSV_FORMATS", "LIVELINK_CSV_COLUMNS", "CsvWriter", "live_link_timecode"]
