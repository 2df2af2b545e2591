"""Per-user neutral-face profile: the held identity, and each ARKit channel's rest offset and full range.

A tracker's expression channels rarely read 0 on a person's relaxed face (a resting mouth that turns down, a
brow that sits low, the regressor's own bias) and rarely reach 1 on the person's strongest expression. The
profile removes both, as VSeeFace's, Live Link Face's and NVIDIA AR SDK's neutral calibrations do: a few
seconds of a rest face give each channel's **rest** value (a median, so a blink or a twitch during the
recording does not move it), an optional expression sweep gives each channel's **full** value (a high
percentile of what the person reached), and at run time every channel is mapped linearly so that rest reads
0 and full reads 1, clipped to [0, 1]::

    mapped = clip((raw - rest) / (full - rest), 0, 1)

A channel the sweep did not move by :data:`MIN_RANGE` (or every channel, without a sweep) keeps full = 1, so
only the rest offset is removed.

**Eyelids are handled separately** (``eyeBlinkLeft``, ``eyeBlinkRight``), because users report that a plain
linear map makes avatars' eyes flicker half-shut at rest and never close fully: a dead zone of
:data:`EYELID_DEADZONE` above rest reads fully open, and the "closed" level sits at
:data:`EYELID_CLOSED_FRACTION` of the way from rest to the sweep's observed blink (or to 1 without a sweep),
so a real blink saturates at 1.

The profile also holds the person's identity coefficients: ``run --profile`` starts every track with that
identity already held instead of averaging it over the first second. The file is JSON (see
:meth:`NeutralProfile.to_dict`); a bad file raises :class:`~tracker.core.errors.CalibrationError`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import numpy as np

from calibration.intrinsics import read_json, write_json
from tracker.core.errors import CalibrationError
from tracker.core.face_model.arkit import ARKIT_NAMES, ARKIT_TO_ICT, ICT_EXPRESSION_NAMES, NUM_ARKIT, NUM_ICT
from tracker.core.types import FaceState

log = logging.getLogger(__name__)

PROFILE_FORMAT = "facetrack-neutral-profile"
PROFILE_VERSION = 1
#: ARKit channels mapped with the eyelid rule (dead zone, saturating closed level).
EYELID_CHANNELS: tuple[str, ...] = ("eyeBlinkLeft", "eyeBlinkRight")
#: A sweep must move a channel this far above rest for its observed maximum to become the channel's full
#: value; less is noise, and full stays 1.
MIN_RANGE = 0.1
#: Smallest full - rest span a profile may hold (a larger gain would turn sensor noise into expressions).
MIN_SPAN = 0.05
#: Percentile of the sweep taken as a channel's full value: the top 2 % of frames are outliers or transients.
SWEEP_PERCENTILE = 98.0
#: Eyelid readings up to this far above rest read fully open (the eyelid channels jitter most at rest).
EYELID_DEADZONE = 0.03
#: The eyelids read closed (1) at this fraction of the way from rest to the observed (or maximal) blink.
EYELID_CLOSED_FRACTION = 0.8

_EYELID_ARKIT = np.array([ARKIT_NAMES.index(n) for n in EYELID_CHANNELS])
_EYELID_ICT = np.array([ICT_EXPRESSION_NAMES.index(n) for n in ("eyeBlink_L", "eyeBlink_R")])


def _vector(name: str, value, size: int | None) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"{name}: expected numbers, got {type(value).__name__}") from exc
    if arr.ndim != 1 or (size is not None and arr.shape[0] != size) or arr.shape[0] == 0:
        raise CalibrationError(f"{name}: expected ({size if size else 'K'},) values, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise CalibrationError(f"{name}: contains NaN or infinite values")
    return arr


@dataclasses.dataclass(frozen=True, eq=False)
class NeutralProfile:
    """One person's calibration.

    Attributes:
        identity: (K,) float32 identity coefficients to hold for this person.
        rest: (52,) float32 ARKit values (Apple order) of the person's rest face, in [0, 1).
        full: (52,) float32 ARKit values reached at the person's full expression, with full >= rest + MIN_SPAN;
            1 where no sweep measured the channel. For the eyelids: the observed blink (or 1).
        rest_frames: Frames the rest values were measured on.
        sweep_frames: Frames of the expression sweep (0 without one).
        name: Free text (whose profile it is).
    """

    identity: np.ndarray
    rest: np.ndarray
    full: np.ndarray
    rest_frames: int
    sweep_frames: int = 0
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "identity", _vector("profile identity", self.identity, None))
        rest = _vector("profile rest", self.rest, NUM_ARKIT)
        full = _vector("profile full", self.full, NUM_ARKIT)
        if np.any(rest < 0) or np.any(full > 1.0 + 1e-6) or np.any(full - rest < MIN_SPAN - 1e-6):
            bad = [ARKIT_NAMES[j] for j in np.flatnonzero((rest < 0) | (full > 1 + 1e-6) | (full - rest < MIN_SPAN - 1e-6))]
            raise CalibrationError(
                f"profile channels {', '.join(bad[:5])}{'...' if len(bad) > 5 else ''}: need 0 <= rest and "
                f"rest + {MIN_SPAN} <= full <= 1"
            )
        if int(self.rest_frames) < 1 or int(self.sweep_frames) < 0:
            raise CalibrationError(f"profile frame counts must be rest >= 1, sweep >= 0, got "
                                   f"{self.rest_frames}, {self.sweep_frames}")  # fmt: skip
        object.__setattr__(self, "rest", rest)
        object.__setattr__(self, "full", full)
        # The map runs on the tracker's 53 ICT channels (each takes its ARKit channel's values), so the
        # ARKit values derived from them, merged halves included, are mapped too.
        lo, hi = ARKIT_TO_ICT @ rest, ARKIT_TO_ICT @ full
        lo[_EYELID_ICT] = np.minimum(lo[_EYELID_ICT] + EYELID_DEADZONE, hi[_EYELID_ICT] - MIN_SPAN)
        hi[_EYELID_ICT] = lo[_EYELID_ICT] + EYELID_CLOSED_FRACTION * (hi[_EYELID_ICT] - lo[_EYELID_ICT])
        object.__setattr__(self, "_lo_ict", lo.astype(np.float32))
        object.__setattr__(self, "_gain_ict", (1.0 / (hi - lo)).astype(np.float32))

    @property
    def num_identity(self) -> int:
        return int(self.identity.shape[0])

    def apply(self, expression: np.ndarray) -> np.ndarray:
        """Maps the tracker's expression coefficients so the rest face reads 0 and the full range 1.

        Args:
            expression: (53,) ICT coefficients in [0, 1] (``FaceState.expression``).

        Returns:
            (53,) float32 mapped coefficients in [0, 1]; ``ict_to_arkit`` of them gives the mapped ARKit values.
        """
        e = np.asarray(expression, dtype=np.float32)
        if e.shape != (NUM_ICT,):
            raise CalibrationError(f"profile.apply: expected ({NUM_ICT},) ICT coefficients, got {e.shape}")
        return np.clip((e - self._lo_ict) * self._gain_ict, 0.0, 1.0)

    def to_dict(self) -> dict:
        """The JSON form: format, version, name, frame counts, identity and ``channels: {name: {rest, full}}``."""
        return {
            "format": PROFILE_FORMAT,
            "version": PROFILE_VERSION,
            "name": self.name,
            "rest_frames": int(self.rest_frames),
            "sweep_frames": int(self.sweep_frames),
            "identity": [round(float(v), 6) for v in self.identity],
            "channels": {
                n: {"rest": round(float(r), 5), "full": round(float(f), 5)}
                for n, r, f in zip(ARKIT_NAMES, self.rest, self.full, strict=True)
            },
        }

    @classmethod
    def from_dict(cls, data: dict, where: str = "profile") -> NeutralProfile:
        """Builds a profile from :meth:`to_dict`'s form.

        Raises:
            CalibrationError: naming what is missing or wrong.
        """
        if not isinstance(data, dict) or data.get("format") != PROFILE_FORMAT:
            raise CalibrationError(f"{where}: not a facetrack neutral profile (expected \"format\": "
                                   f"\"{PROFILE_FORMAT}\"; make one with `facetrack calibrate neutral`)")  # fmt: skip
        if data.get("version") != PROFILE_VERSION:
            raise CalibrationError(f"{where}: profile version {data.get('version')!r}, this facetrack reads "
                                   f"version {PROFILE_VERSION}")  # fmt: skip
        channels = data.get("channels")
        if not isinstance(channels, dict):
            raise CalibrationError(f"{where}: missing \"channels\" object")
        missing = [n for n in ARKIT_NAMES if n not in channels]
        if missing:
            raise CalibrationError(f"{where}: missing channel(s) {', '.join(missing[:5])}"
                                   f"{'...' if len(missing) > 5 else ''}")  # fmt: skip
        try:
            rest = [float(channels[n]["rest"]) for n in ARKIT_NAMES]
            full = [float(channels[n]["full"]) for n in ARKIT_NAMES]
            return cls(identity=data["identity"], rest=rest, full=full, rest_frames=int(data["rest_frames"]),
                       sweep_frames=int(data.get("sweep_frames", 0)), name=str(data.get("name", "")))  # fmt: skip
        except CalibrationError as exc:
            raise CalibrationError(f"{where}: {exc}") from exc
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationError(f"{where}: missing or invalid field {exc}") from exc


def save_profile(profile: NeutralProfile, path: str | Path) -> Path:
    """Writes ``profile`` as JSON (creating the folder); returns the path."""
    return write_json(path, profile.to_dict())


def load_profile(path: str | Path) -> NeutralProfile:
    """Reads a profile written by :func:`save_profile`.

    Raises:
        CalibrationError: if the file is missing, not JSON, or not a valid profile.
    """
    path = Path(path)
    data = read_json(path, "profile", " (make one with `facetrack calibrate neutral`)")
    return NeutralProfile.from_dict(data, where=f"profile {path}")


def build_profile(
    identity: np.ndarray, rest_arkit: np.ndarray, sweep_arkit: np.ndarray | None = None, name: str = ""
) -> NeutralProfile:
    """A profile from the tracker's readings of a rest face (and optionally of an expression sweep).

    Args:
        identity: (K,) the identity the tracker held for the person during the rest recording.
        rest_arkit: (N,52) ARKit values of the N rest frames (unmapped).
        sweep_arkit: (M,52) ARKit values of the sweep frames, or None.
        name: Stored with the profile.

    Returns:
        rest = the per-channel median of the rest frames; full = the sweep's :data:`SWEEP_PERCENTILE`
        percentile where it exceeds rest by :data:`MIN_RANGE`, else 1.

    Raises:
        CalibrationError: on empty or malformed readings.
    """
    rest_arkit = np.asarray(rest_arkit, dtype=np.float64)
    if rest_arkit.ndim != 2 or rest_arkit.shape[1] != NUM_ARKIT or len(rest_arkit) == 0:
        raise CalibrationError(f"rest readings: expected (N,{NUM_ARKIT}) with N >= 1, got {rest_arkit.shape}")
    rest = np.clip(np.median(rest_arkit, axis=0), 0.0, 1.0 - MIN_SPAN)
    full = np.ones(NUM_ARKIT)
    n_sweep = 0
    if sweep_arkit is not None and len(sweep_arkit):
        sweep = np.asarray(sweep_arkit, dtype=np.float64)
        if sweep.ndim != 2 or sweep.shape[1] != NUM_ARKIT:
            raise CalibrationError(f"sweep readings: expected (M,{NUM_ARKIT}), got {sweep.shape}")
        n_sweep = len(sweep)
        top = np.percentile(sweep, SWEEP_PERCENTILE, axis=0)
        moved = top >= rest + MIN_RANGE
        full[moved] = top[moved]
        log.info("sweep moved %d of %d channels", int(moved.sum()), NUM_ARKIT)
    full = np.clip(np.maximum(full, rest + MIN_SPAN), 0.0, 1.0)
    return NeutralProfile(identity, rest, full, rest_frames=len(rest_arkit), sweep_frames=n_sweep, name=name)


@dataclasses.dataclass
class NeutralRecorder:
    """Collects the tracker's readings of one person for :func:`build_profile`.

    Feed it each frame's faces in the rest phase, then (optionally) in the sweep phase; it follows the face
    it saw first (by track id) and, should that track be lost, the most confident face of later frames.

    Attributes:
        rest: ARKit readings of the rest phase, each (52,).
        sweep: ARKit readings of the sweep phase, each (52,).
        frames_seen: Frames offered per phase, tracked or not.
    """

    rest: list[np.ndarray] = dataclasses.field(default_factory=list)
    sweep: list[np.ndarray] = dataclasses.field(default_factory=list)
    frames_seen: dict[str, int] = dataclasses.field(default_factory=lambda: {"rest": 0, "sweep": 0})
    track_id: int | None = None

    def add(self, faces: list[FaceState], phase: str) -> FaceState | None:
        """Records the followed face of one frame; returns it (None when no face was tracked)."""
        if phase not in ("rest", "sweep"):
            raise CalibrationError(f"phase must be 'rest' or 'sweep', got {phase!r}")
        self.frames_seen[phase] += 1
        live = [f for f in faces if f.state != "lost"]
        if not live:
            return None
        face = next((f for f in live if f.track_id == self.track_id), None) or max(live, key=lambda f: f.confidence)
        self.track_id = face.track_id
        (self.rest if phase == "rest" else self.sweep).append(face.arkit.astype(np.float64))
        return face

    def profile(self, identity: np.ndarray, min_tracked_fraction: float = 0.5, name: str = "") -> NeutralProfile:
        """The profile of what was recorded.

        Args:
            identity: (K,) the person's held identity (the tracker's, for :attr:`track_id`).
            min_tracked_fraction: Fewest rest frames (fraction) that must show a tracked face.
            name: Stored with the profile.

        Raises:
            CalibrationError: when too few rest frames showed a face.
        """
        seen = self.frames_seen["rest"]
        need = max(1, math.ceil(min_tracked_fraction * seen))
        if len(self.rest) < need:
            raise CalibrationError(
                f"a face was tracked in {len(self.rest)} of {seen} rest frames (need {need}); face the camera, "
                "well lit, and hold still for the whole recording"
            )
        return build_profile(identity, np.stack(self.rest), np.stack(self.sweep) if self.sweep else None, name)


__all__ = [
    "EYELID_CHANNELS", "EYELID_CLOSED_FRACTION", "EYELID_DEADZONE", "MIN_RANGE", "MIN_SPAN", "NeutralProfile",
    "NeutralRecorder", "PROFILE_FORMAT", "PROFILE_VERSION", "build_profile", "load_profile", "save_profile",
]  # fmt: skip
