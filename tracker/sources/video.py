"""``video:PATH``: a video file decoded with OpenCV (FFmpeg), as fast as possible or at its own pace.

With ``realtime=True`` frames are released at their presentation timestamps (so variable-frame-rate files
and odd rates such as 22.13 fps keep their true timing); otherwise every frame is returned as soon as it
is decoded. Each frame's ``t_media_ns`` is its presentation time. A file that is missing, not a video, or cut
short is a :class:`~tracker.core.errors.CameraError` naming the file. Cut short means that decoding stopped
before the container's stated *duration*: the coded frame count is no test, because an MP4 with an edit list
(phones and editors write these) codes more frames than it presents.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import shutil
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np

from calibration.intrinsics import resolve_intrinsics
from tracker.core.errors import CameraError
from tracker.core.types import Frame, Intrinsics
from tracker.sources.base import FrameSource

log = logging.getLogger(__name__)

#: Frame rate assumed when the container does not state a usable one.
FALLBACK_FPS = 30.0


class VideoFileSource(FrameSource):
    """Frames of a video file, RGB, with intrinsics from a calibration file or the default FOV guess.

    Args:
        path: The video file.
        realtime: Release each frame at its presentation time (like a camera); False returns frames as
            fast as they decode.
        calibration: Calibration JSON file or :class:`Intrinsics` of the camera that filmed it.
        truncation_tolerance: Frames the stream may fall short of the container's declared count before
            the shortfall counts as a truncated file (declared counts of some containers are estimates);
            the default allows max(3, 2 %).

    Attributes:
        fps: Frame rate declared by the file (``FALLBACK_FPS`` when it declares none).
        frame_count: Frames declared by the container (0 when unknown).
        position_ms: Presentation time of the last frame read, milliseconds from the start.
    """

    is_live = False

    def __init__(
        self,
        path: str | Path,
        *,
        realtime: bool = False,
        calibration: str | Path | Intrinsics | None = None,
        truncation_tolerance: int | None = None,
    ) -> None:
        self.path = Path(path)
        super().__init__(f"video:{self.path}")
        self.realtime = bool(realtime)
        self.calibration = calibration
        self.truncation_tolerance = truncation_tolerance
        self._cap: cv2.VideoCapture | None = None
        self._intrinsics: Intrinsics | None = None
        self._pending: tuple[np.ndarray, float] | None = None
        self._index = 0
        self._t0 = 0.0
        self.fps = FALLBACK_FPS
        self.frame_count = 0
        self.position_ms = 0.0

    @property
    def expected_frames(self) -> int | None:
        """Presented frames: the stated duration times the frame rate (an edit list codes more frames)."""
        if not self.is_connected or not self.frame_count:
            return None
        duration_s = self._stated_duration_s
        stated = round(duration_s * self.fps) if duration_s is not None else self.frame_count
        return min(self.frame_count, max(1, stated))

    @functools.cached_property
    def _stated_duration_s(self) -> float | None:
        """:func:`container_duration_s` of this file, asked of ffprobe once."""
        return container_duration_s(self.path)

    def _open(self) -> None:
        if not self.path.is_file():
            raise CameraError(f"video file not found: {self.path}")
        cap = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        if not cap.isOpened():
            cap.release()
            raise CameraError(
                f"cannot open {self.path} as a video: FFmpeg (through OpenCV) does not recognise it, or the file "
                "is truncated or corrupt (an MP4 cut short loses its index); check it plays in another player"
            )
        first = self._decode(cap)
        if first is None:
            cap.release()
            raise CameraError(
                f"{self.path}: the file opens as a video but no frame decodes; it is corrupt or truncated"
            )
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if not (math.isfinite(fps) and 0.1 <= fps <= 1000.0):
            log.warning(
                "%s: no usable frame rate in the file (%s); assuming %.0f fps", self.path, fps, FALLBACK_FPS
            )
            fps = FALLBACK_FPS
        self.fps = fps
        self.frame_count = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))
        h, w = first[0].shape[:2]
        self._intrinsics = resolve_intrinsics(w, h, self.calibration)
        self._cap, self._pending = cap, first
        self._index = 0
        self.position_ms = 0.0

    def _release(self) -> None:
        cap, self._cap = self._cap, None
        self._pending = None
        if cap is not None:
            cap.release()

    def _decode(self, cap: cv2.VideoCapture) -> tuple[np.ndarray, float] | None:
        """The next frame as (BGR image, presentation time ms), or None when decoding stops."""
        ok, bgr = cap.read()
        if not ok or bgr is None or bgr.size == 0:
            return None
        pts_ms = float(cap.get(cv2.CAP_PROP_POS_MSEC) or 0.0)
        return bgr, pts_ms

    def _frame_time_s(self, pts_ms: float) -> float:
        # Presentation timestamps carry the true timing of variable-frame-rate files; fall back to index/fps
        # where a backend reports none (all zero) or they run backwards.
        if self._index > 0 and pts_ms <= self.position_ms:
            return self._index / self.fps
        return pts_ms / 1e3

    def _read_next(self) -> Frame | None:
        if self._cap is None:
            return None
        if self._pending is not None:
            decoded, self._pending = self._pending, None
        else:
            decoded = self._decode(self._cap)
        if decoded is None:
            self._check_complete()
            return None
        bgr, pts_ms = decoded
        t = self._frame_time_s(pts_ms)
        if self.realtime:
            if self._index == 0:
                self._t0 = time.monotonic() - t
            wait = self._t0 + t - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return None  # closing
        self.position_ms = pts_ms
        frame = Frame(
            index=self._index,
            t_capture_ns=time.monotonic_ns(),
            color=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
            intrinsics=self._intrinsics,
            source_id=self.source_id,
            t_media_ns=round(t * 1e9),
        )
        self._index += 1
        return frame

    def _check_complete(self) -> None:
        """Raises CameraError when decoding stopped well before the stated end (a cut or damaged file)."""
        declared, got = self.frame_count, self._index
        tol = self.truncation_tolerance
        tol = max(3, int(0.02 * declared)) if tol is None else tol
        if not declared or got >= declared - tol:
            if declared and got != declared:
                log.info("%s: %d frames decoded, the container declared %d", self.path, got, declared)
            return
        # Fewer frames than coded: an edit list presents only part of the coded frames, so compare the time
        # span decoded with the duration the container states (what every player shows).
        duration_s = self._stated_duration_s
        decoded_s = self.position_ms / 1e3 + 1.0 / self.fps
        if duration_s is not None and decoded_s >= duration_s - max(tol, 1) / self.fps:
            log.info("%s: %d of %d coded frames are presented (an edit list); %.2f s of %.2f s decoded",
                     self.path, got, declared, decoded_s, duration_s)  # fmt: skip
            return
        stated = f"{duration_s:.2f} s" if duration_s is not None else f"{declared} frames"
        raise CameraError(
            f"{self.path}: decoding stopped at frame {got} ({decoded_s:.2f} s) of the {stated} the container "
            "states; the file is truncated or corrupt"
        )


def container_duration_s(path: Path) -> float | None:
    """The duration the container states (after edit lists), from ``ffprobe``; None when unknown.

    OpenCV exposes only the coded frame count, which an edit list makes larger than what is presented.
    """
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        log.warning("ffprobe not found (install ffmpeg): cannot read %s's stated duration", path)
        return None
    try:
        out = subprocess.run([ffprobe, "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
                             capture_output=True, text=True, timeout=20, check=True).stdout  # fmt: skip
        duration = float(json.loads(out)["format"]["duration"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        return None
    return duration if math.isfinite(duration) and duration > 0 else None
