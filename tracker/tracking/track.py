"""One tracked face: its id, last landmarks, held identity and head scale, and temporal filter."""

from __future__ import annotations

import dataclasses

import numpy as np

from tracker.core.boxes import points_box
from tracker.tracking.filters import FaceFilter, FaceFilterParams


class HeldMean:
    """Confidence-weighted mean of a track's estimates of a constant, held once enough evidence is in.

    Used for identity and for the metric head scale: neither changes within a session, so per-frame
    estimates are noise around one value. Averaging them removes the noise, and freezing the result (E_same
    at run time) keeps the shape, and with it the landmarks and depth, from wobbling.

    Args:
        hold_after_weight: Total confidence after which the estimate is frozen (about that many good frames).
    """

    def __init__(self, hold_after_weight: float = 30.0) -> None:
        self.hold_after_weight = hold_after_weight
        self._sum: np.ndarray | None = None
        self._weight = 0.0

    @property
    def held(self) -> bool:
        return self._weight >= self.hold_after_weight

    @property
    def value(self) -> np.ndarray | None:
        return None if self._sum is None else (self._sum / max(self._weight, 1e-9)).astype(np.float32)

    def update(self, estimate: np.ndarray, confidence: float) -> np.ndarray:
        """Adds one (K,) estimate (unless held) and returns the current aggregate, (K,) float32."""
        w = float(np.clip(confidence, 0.0, 1.0))
        if self._sum is None:
            self._sum, self._weight = np.asarray(estimate, np.float64) * max(w, 1e-6), max(w, 1e-6)
        elif not self.held:
            self._sum += np.asarray(estimate, np.float64) * w
            self._weight += w
        return self.value


@dataclasses.dataclass
class Track:
    """State carried between frames for one face.

    Attributes:
        track_id: Stable id.
        landmarks68: (68,2) px landmarks of the last frame it was seen in.
        last_frame: Index of that frame.
        age_frames: Frames since the track started.
        misses: Consecutive frames with confidence below the threshold.
        identity: The held identity.
        log_head_scale: The held log of the depth-measured head scale (:mod:`tracker.tracking.depth_scale`), (1,);
            empty until a frame with depth was seen.
    """

    track_id: int
    landmarks68: np.ndarray
    last_frame: int
    filter_params: dataclasses.InitVar[FaceFilterParams | None] = None
    age_frames: int = 0
    misses: int = 0
    identity: HeldMean = dataclasses.field(default_factory=HeldMean)
    log_head_scale: HeldMean = dataclasses.field(default_factory=HeldMean)

    def __post_init__(self, filter_params: FaceFilterParams | None) -> None:
        self.filter = FaceFilter(filter_params)

    def box_xyxy(self) -> np.ndarray:
        return points_box(self.landmarks68)
