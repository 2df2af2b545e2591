"""``run --jsonl PATH``: one JSON line per tracked frame, written and flushed as each frame completes.

A line holds the frame's index, media time (seconds from the start of the source) and capture time, and
for each face its track id, state, confidence, head pose (ARCHITECTURE §2 angles, the rotation as a
w,x,y,z quaternion, the translation in metres), the 52 ARKit values by name and the 68 landmarks in
pixels. Each line is flushed when written, so a run that is killed keeps every frame it finished. With
several cameras each line also holds ``source``, the camera's name, and the media time counts from that
camera's first frame.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tracker.core.errors import ConfigError
from tracker.core.face_model.arkit import ARKIT_NAMES
from tracker.core.types import FaceState, Frame, TrackResult


def face_record(face: FaceState) -> dict:
    """One face as plain JSON types (angles in degrees, translation in metres, landmarks in px)."""
    yaw, pitch, roll = face.ypr_deg
    return {
        "track_id": int(face.track_id),
        "state": face.state,
        "confidence": round(face.confidence, 4),
        "yaw_deg": round(yaw, 3), "pitch_deg": round(pitch, 3), "roll_deg": round(roll, 3),
        "rotation_wxyz": [round(float(v), 6) for v in face.quaternion],
        "translation_m": [round(float(v), 5) for v in face.translation_m],
        "arkit": {n: round(float(v), 4) for n, v in zip(ARKIT_NAMES, face.arkit, strict=True)},
        "landmarks68_px": [[round(float(x), 2), round(float(y), 2)] for x, y in face.landmarks68],
    }  # fmt: skip


class JsonlWriter:
    """A pipeline sink: ``writer(frame, result)`` appends one line per frame.

    Args:
        path: Output file (its folder is created); an existing file is replaced.

    Attributes:
        lines: Lines written so far; faces: face records written so far.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise ConfigError(f"cannot write {self.path}: {exc.strerror or exc}; choose another --jsonl path") from exc
        self._t0_ns: dict[str | None, int] = {}  # first media time per camera (None: the only one)
        self.lines = 0
        self.faces = 0

    def __call__(self, frame: Frame, result: TrackResult, source: str | None = None) -> None:
        """Appends the frame's line; ``source`` (several cameras) names the camera in the key ``source``."""
        t0_ns = self._t0_ns.setdefault(source, frame.t_media_ns)
        record = {
            "frame_index": int(result.frame_index),
            "t_media_s": round((frame.t_media_ns - t0_ns) / 1e9, 6),
            "t_capture_ns": int(result.t_capture_ns),
            "source_id": result.source_id,
            **({} if source is None else {"source": source}),
            "faces": [face_record(f) for f in result.faces],
        }
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")
        self._file.flush()
        self.lines += 1
        self.faces += len(result.faces)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> JsonlWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["JsonlWriter", "face_record"]
