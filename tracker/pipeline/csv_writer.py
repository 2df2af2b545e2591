"""``run --csv PATH``: one CSV row per face per frame, written and flushed as each frame completes.

The columns are ``facetrack stream export-csv``'s (:func:`tracker.stream.recording.csv_columns`), so a CSV
from a live run and one exported from its recording read the same; ``time_s`` is media time from the first
frame. Each frame's rows are flushed when written: a killed run keeps every frame it finished.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from tracker.core.errors import ConfigError
from tracker.core.types import Frame, TrackResult
from tracker.stream.recording import csv_columns


class CsvWriter:
    """A pipeline sink: ``writer(frame, result)`` appends one row per face (a frame without faces adds none).

    Args:
        path: Output file (its folder is created); an existing file is replaced.

    Attributes:
        rows: Rows written so far.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise ConfigError(f"cannot write {self.path}: {exc.strerror or exc}; choose another --csv path") from exc
        self._csv = csv.writer(self._file)
        self._csv.writerow(csv_columns())
        self._file.flush()
        self._t0_ns: int | None = None
        self.rows = 0

    def __call__(self, frame: Frame, result: TrackResult) -> None:
        self._t0_ns = frame.t_media_ns if self._t0_ns is None else self._t0_ns
        t_s = (frame.t_media_ns - self._t0_ns) / 1e9
        for face in result.faces:
            yaw, pitch, roll = face.ypr_deg
            self._csv.writerow([result.frame_index, f"{t_s:.6f}", result.t_capture_ns, face.track_id, face.state,
                                f"{face.confidence:.4f}", f"{yaw:.3f}", f"{pitch:.3f}", f"{roll:.3f}",
                                *(f"{v:.5f}" for v in face.translation_m), *(f"{v:.5f}" for v in face.arkit)])  # fmt: skip
            self.rows += 1
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> CsvWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["CsvWriter"]
