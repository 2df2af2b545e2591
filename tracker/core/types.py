"""Typed objects that cross stage boundaries (ARCHITECTURE §2).

Every container validates shapes and dtypes at construction, so a bad array fails where it is made with
a message such as ``"Frame.color: expected (H,W,3) uint8, got (480, 640) float32"`` rather than deep
inside a later stage. Pixels are 0-based with (0,0) the centre of the top-left pixel; the camera frame is
OpenCV's (x right, y down, z forward); translations are in metres.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np

from tracker.core.errors import ConfigError
from tracker.core.face_model.arkit import NUM_ARKIT, NUM_ICT, ict_to_arkit
from tracker.core.face_model.sh import AMBIENT_WHITE, check_lighting
from tracker.core.geometry import quaternion_from_rotation, ypr_deg_from_rotation

NUM_LANDMARKS = 68
NUM_SH = 27
#: Field of view (degrees, across the longer image side) assumed for photos and clips of unknown cameras.
ASSUMED_FOV_DEG = 50.0


def _describe(a: object) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.shape} {a.dtype}"
    return type(a).__name__


def check_array(
    name: str, value: object, shape: Sequence[int | None], dtype: np.dtype | type | None = None
) -> np.ndarray:
    """Validates an array's rank, fixed dims and (optionally) dtype.

    Args:
        name: What the array is, for the error message (e.g. ``"Frame.color"``).
        value: The array.
        shape: Expected shape; ``None`` matches any size along that axis.
        dtype: Required dtype, or None to accept any numeric dtype.

    Returns:
        The array, unchanged.

    Raises:
        ConfigError: naming the expected and the actual shape/dtype.
    """
    want = "(" + ",".join("*" if s is None else str(s) for s in shape) + ")"
    want_dt = f" {np.dtype(dtype)}" if dtype is not None else ""
    ok = isinstance(value, np.ndarray) and value.ndim == len(shape)
    ok = ok and all(s is None or s == d for s, d in zip(shape, value.shape, strict=True))
    ok = ok and (dtype is None or value.dtype == np.dtype(dtype))
    if not ok:
        raise ConfigError(f"{name}: expected {want}{want_dt}, got {_describe(value)}")
    return value


def as_float_array(name: str, value: object, shape: Sequence[int | None], dtype=np.float32) -> np.ndarray:
    """Converts ``value`` to a float array and validates its shape and finiteness."""
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name}: cannot convert {type(value).__name__} to {np.dtype(dtype)}: {exc}") from exc
    check_array(name, arr, shape)
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{name}: contains NaN or infinite values")
    return arr


@dataclasses.dataclass(frozen=True)
class Intrinsics:
    """Pinhole camera intrinsics with optional OpenCV distortion.

    Attributes:
        fx, fy: Focal lengths in pixels.
        cx, cy: Principal point in pixels (0-based, pixel-centre convention).
        width, height: Image size in pixels.
        distortion: (5,) OpenCV coefficients k1 k2 p1 p2 k3; zeros for an ideal pinhole.
    """

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    distortion: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        for n in ("fx", "fy"):
            v = getattr(self, n)
            if not (np.isfinite(v) and v > 0):
                raise ConfigError(f"Intrinsics.{n} must be a positive focal length in px, got {v}")
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise ConfigError(f"Intrinsics size must be positive, got {self.width}x{self.height}")
        if len(self.distortion) not in (4, 5, 8, 12, 14):
            raise ConfigError(f"Intrinsics.distortion must have 4, 5, 8, 12 or 14 terms, got {len(self.distortion)}")
        object.__setattr__(self, "distortion", tuple(float(d) for d in self.distortion))

    @classmethod
    def from_fov(cls, width: int, height: int, fov_y_deg: float) -> Intrinsics:
        """A centred pinhole camera with square pixels and the given vertical field of view."""
        f = 0.5 * height / np.tan(np.deg2rad(fov_y_deg) / 2)
        return cls(f, f, (width - 1) / 2, (height - 1) / 2, width, height)

    @classmethod
    def assumed(cls, width: int, height: int, fov_deg: float = ASSUMED_FOV_DEG) -> Intrinsics:
        """A centred pinhole for an image of unknown camera: ``fx = fy = max(w, h) / (2 tan(fov / 2))``.

        The value sets how near the face is taken to be, and so how much perspective its shape shows: a
        fitted face barely depends on it (it mostly scales the recovered distance), the regressor's landmarks
        somewhat (on the 2x-face-box crops of ``eval landmarks`` 50° puts the face at ~0.32 m, where the jaw
        contour looks narrower than at 30°, ~0.56 m; docs/benchmarks.md has both).

        Args:
            width: Image width in px.
            height: Image height in px.
            fov_deg: Field of view across the longer side, degrees.
        """
        if not 1.0 <= fov_deg <= 170.0:
            raise ConfigError(f"fov_deg must be in [1, 170], got {fov_deg}")
        f = max(width, height) / (2.0 * np.tan(np.deg2rad(fov_deg) / 2.0))
        return cls(f, f, (width - 1) / 2.0, (height - 1) / 2.0, int(width), int(height))

    @property
    def matrix(self) -> np.ndarray:
        """(3,3) float64 camera matrix K."""
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1]], dtype=np.float64)

    @property
    def has_distortion(self) -> bool:
        return any(d != 0.0 for d in self.distortion)

    def project(self, points_m: np.ndarray) -> np.ndarray:
        """Projects camera-frame points to pixels.

        Args:
            points_m: (N,3) points in the camera frame, metres, z > 0.

        Returns:
            (N,2) float64 pixel coordinates.
        """
        p = np.asarray(points_m, dtype=np.float64).reshape(-1, 3)
        if self.has_distortion:
            uv, _ = cv2.projectPoints(p, np.zeros(3), np.zeros(3), self.matrix, np.asarray(self.distortion))
            return uv.reshape(-1, 2)
        z = p[:, 2]
        return np.stack([self.fx * p[:, 0] / z + self.cx, self.fy * p[:, 1] / z + self.cy], axis=1)

    def unproject(self, pixels: np.ndarray, depth_m: np.ndarray | float) -> np.ndarray:
        """Lifts pixels with known depth (z, not ray length) back into the camera frame.

        Args:
            pixels: (N,2) pixel coordinates.
            depth_m: (N,) or scalar z in metres.

        Returns:
            (N,3) float64 camera-frame points in metres.
        """
        uv = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        z = np.broadcast_to(np.asarray(depth_m, dtype=np.float64), (uv.shape[0],))
        if self.has_distortion:
            norm = cv2.undistortPoints(uv.reshape(-1, 1, 2), self.matrix, np.asarray(self.distortion)).reshape(-1, 2)
        else:
            norm = np.stack([(uv[:, 0] - self.cx) / self.fx, (uv[:, 1] - self.cy) / self.fy], axis=1)
        return np.concatenate([norm * z[:, None], z[:, None]], axis=1)

    def scaled(self, sx: float, sy: float | None = None) -> Intrinsics:
        """Intrinsics of the same camera with the image resized by (sx, sy) (pixel-centre exact)."""
        sy = sx if sy is None else sy
        return Intrinsics(
            self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5,
            round(self.width * sx), round(self.height * sy), self.distortion,
        )  # fmt: skip

    def to_dict(self) -> dict:
        return dataclasses.asdict(self) | {"distortion": list(self.distortion)}


@dataclasses.dataclass
class FaceCoefficients:
    """The face model's coefficients for one face: shape, expression, pose and lighting.

    The one container of these values: :class:`FaceState` (the tracker's estimate), :class:`GroundTruth` (what
    made a synthetic frame) and the regressor's per-crop estimate hold one, and the renderer draws one.

    Attributes:
        identity: (K,) float32 identity coefficients of the first K <= 100 ICT modes (K may be 0).
        expression: (53,) float32 ICT expression coefficients (nominally 0..1).
        rotation: (3,3) float64 head-to-camera rotation (ARCHITECTURE §2).
        translation_m: (3,) float64 head origin in the camera frame, metres (z > 0 in front).
        lighting: (27,) float32 SH lighting, 9 per channel, RGB-major (:mod:`tracker.core.face_model.sh`).
    """

    identity: np.ndarray
    expression: np.ndarray
    rotation: np.ndarray
    translation_m: np.ndarray
    lighting: np.ndarray = dataclasses.field(default_factory=lambda: AMBIENT_WHITE.copy())

    def __post_init__(self) -> None:
        self.identity = as_float_array("FaceCoefficients.identity", self.identity, (None,))
        expr = np.asarray(self.expression)
        if expr.shape != (NUM_ICT,):
            raise ConfigError(
                f"FaceCoefficients.expression: expected ({NUM_ICT},) ICT coefficients, got shape {expr.shape}"
            )
        self.expression = as_float_array("FaceCoefficients.expression", expr, (NUM_ICT,))
        self.rotation = as_float_array("FaceCoefficients.rotation", self.rotation, (3, 3), np.float64)
        if not np.allclose(self.rotation @ self.rotation.T, np.eye(3), atol=1e-4) or np.linalg.det(self.rotation) < 0:
            raise ConfigError("FaceCoefficients.rotation is not orthonormal with det +1 (not a rotation)")
        self.translation_m = as_float_array("FaceCoefficients.translation_m", self.translation_m, (3,), np.float64)
        self.lighting = check_lighting(self.lighting, "FaceCoefficients.lighting")

    @property
    def arkit(self) -> np.ndarray:
        """(52,) float32 ARKit values in Apple order."""
        return ict_to_arkit(self.expression)

    @property
    def quaternion(self) -> np.ndarray:
        """(4,) float64 rotation as (w, x, y, z)."""
        return quaternion_from_rotation(self.rotation)

    @property
    def ypr_deg(self) -> tuple[float, float, float]:
        """(yaw, pitch, roll) in degrees, ARCHITECTURE §2 convention."""
        return ypr_deg_from_rotation(self.rotation)


class HoldsCoefficients:
    """Read access to a ``coefficients`` attribute's values, for the types that compose one."""

    coefficients: FaceCoefficients

    identity = property(lambda self: self.coefficients.identity, doc="(K,) float32 identity coefficients.")
    expression = property(lambda self: self.coefficients.expression, doc="(53,) float32 ICT expression.")
    rotation = property(lambda self: self.coefficients.rotation, doc="(3,3) float64 head-to-camera rotation.")
    translation_m = property(lambda self: self.coefficients.translation_m, doc="(3,) float64 head origin, m.")
    lighting = property(lambda self: self.coefficients.lighting, doc="(27,) float32 SH lighting.")
    arkit = property(lambda self: self.coefficients.arkit, doc="(52,) float32 ARKit values, Apple order.")
    quaternion = property(lambda self: self.coefficients.quaternion, doc="(4,) float64 (w, x, y, z).")
    ypr_deg = property(lambda self: self.coefficients.ypr_deg, doc="(yaw, pitch, roll) degrees.")


@dataclasses.dataclass
class GroundTruth(HoldsCoefficients):
    """What made a synthetic frame, for evaluation and training.

    Attributes:
        coefficients: The rendered face's coefficients (identity, expression, pose, lighting).
        landmarks68: (68,2) float32 px, projections of the model's 68 landmark vertices.
    """

    coefficients: FaceCoefficients
    landmarks68: np.ndarray

    def __post_init__(self) -> None:
        if not isinstance(self.coefficients, FaceCoefficients):
            raise ConfigError(f"GroundTruth.coefficients must be FaceCoefficients, got {type(self.coefficients).__name__}")
        self.landmarks68 = as_float_array("GroundTruth.landmarks68", self.landmarks68, (NUM_LANDMARKS, 2))


@dataclasses.dataclass(frozen=True)
class Frame:
    """One captured image (and depth) with its timing. Immutable: stages share it across threads.

    Attributes:
        index: Frame number within its source, from 0.
        t_capture_ns: ``time.monotonic_ns()`` when the frame was captured (latency is measured from it).
        color: (H,W,3) uint8 **RGB** image.
        intrinsics: Camera intrinsics of ``color``.
        depth: (H,W) uint16 depth aligned to ``color``, or None; 0 means no measurement.
        depth_scale_m: Metres per depth unit (0.001 for a RealSense D435).
        ground_truth: Exact parameters for synthetic frames, else None.
        source_id: Which source produced the frame (e.g. ``"synthetic"``, ``"webcam:0"``).
        t_media_ns: Media time: the file's presentation timestamp, the recording's or camera's timestamp,
            ``index / fps`` for generated frames. Temporal filters use it, never the host clock, so results do
            not depend on how fast the machine decodes. Defaults to ``t_capture_ns`` (a camera without its
            own clock).
    """

    index: int
    t_capture_ns: int
    color: np.ndarray
    intrinsics: Intrinsics
    depth: np.ndarray | None = None
    depth_scale_m: float = 0.001
    ground_truth: GroundTruth | None = None
    source_id: str = ""
    t_media_ns: int | None = None

    def __post_init__(self) -> None:
        if self.t_media_ns is None:
            object.__setattr__(self, "t_media_ns", int(self.t_capture_ns))
        check_array("Frame.color", self.color, (None, None, 3), np.uint8)
        h, w = self.color.shape[:2]
        if (w, h) != (self.intrinsics.width, self.intrinsics.height):
            raise ConfigError(
                f"Frame.color is {w}x{h} but its intrinsics describe {self.intrinsics.width}x{self.intrinsics.height}"
            )
        if self.depth is not None:
            check_array("Frame.depth", self.depth, (h, w), np.uint16)
            if not (self.depth_scale_m > 0):
                raise ConfigError(f"Frame.depth_scale_m must be > 0, got {self.depth_scale_m}")

    @property
    def depth_m(self) -> np.ndarray | None:
        """(H,W) float32 depth in metres (0 where unmeasured), or None."""
        if self.depth is None:
            return None
        return self.depth.astype(np.float32) * np.float32(self.depth_scale_m)


@dataclasses.dataclass
class Detections:
    """Face detections in one image, in the manner of supervision's ``Detections``.

    Attributes:
        boxes: (N,4) float32 xyxy px.
        scores: (N,) float32 confidence in [0,1].
        landmarks: (N,5,2) float32 px: right eye, left eye, nose tip, right and left mouth corner
            (the subject's right and left, YuNet's order).
    """

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __post_init__(self) -> None:
        self.boxes = as_float_array("Detections.boxes", self.boxes, (None, 4))
        n = self.boxes.shape[0]
        self.scores = as_float_array("Detections.scores", self.scores, (n,))
        self.landmarks = as_float_array("Detections.landmarks", self.landmarks, (n, 5, 2))

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros((0,)), np.zeros((0, 5, 2)))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __getitem__(self, index) -> Detections:
        """Selects detections by int, slice, index array or boolean mask."""
        if isinstance(index, int | np.integer):
            index = [int(index)]
        return Detections(self.boxes[index], self.scores[index], self.landmarks[index])


TrackingState = Literal["tracking", "new", "lost"]
TRACKING_STATES: tuple[str, ...] = ("tracking", "new", "lost")


@dataclasses.dataclass
class FaceState(HoldsCoefficients):
    """One tracked face in one frame.

    Attributes:
        track_id: Stable id of the tracked person within a session.
        coefficients: The face's coefficients: identity (aggregated per track, then held), expression (53 ICT
            channels in [0,1]), head pose (rotation, translation in metres) and SH lighting.
        landmarks68: (68,2) float32 px.
        confidence: In [0,1].
        state: ``"tracking"``, ``"new"`` (first frame of a track) or ``"lost"``.
        timings_ms: This face's own share of the frame's work, milliseconds (``regress`` = the batched
            network call divided among its faces, ``filter`` = its temporal filter and head scaling).
    """

    track_id: int
    coefficients: FaceCoefficients
    landmarks68: np.ndarray
    confidence: float
    state: TrackingState = "tracking"
    timings_ms: dict[str, float] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.coefficients, FaceCoefficients):
            raise ConfigError(f"FaceState.coefficients must be FaceCoefficients, got {type(self.coefficients).__name__}")
        self.landmarks68 = as_float_array("FaceState.landmarks68", self.landmarks68, (NUM_LANDMARKS, 2))
        if self.state not in TRACKING_STATES:
            raise ConfigError(f"FaceState.state must be one of {TRACKING_STATES}, got {self.state!r}")
        self.confidence = float(self.confidence)


@dataclasses.dataclass
class TrackResult:
    """Everything the tracker found in one frame.

    Attributes:
        frame_index: The frame's index.
        t_capture_ns: Capture time of the frame (monotonic ns).
        t_done_ns: When tracking finished (monotonic ns).
        faces: Tracked faces, including ones reported ``"lost"`` this frame.
        timings_ms: Per-stage times for the frame, milliseconds.
        source_id: The frame's source.
    """

    frame_index: int
    t_capture_ns: int
    t_done_ns: int
    faces: list[FaceState] = dataclasses.field(default_factory=list)
    timings_ms: dict[str, float] = dataclasses.field(default_factory=dict)
    source_id: str = ""

    def __post_init__(self) -> None:
        for f in self.faces:
            if not isinstance(f, FaceState):
                raise ConfigError(f"TrackResult.faces must hold FaceState, got {type(f).__name__}")

    def primary_index(self) -> int | None:
        """Index of the primary face: the most confident one that is not lost; None when none is tracked.

        The one rule for "the" face of a frame: the face that drives a single avatar (VMC, Live Link, a Live
        Link CSV take) and the face scored in single-person evaluations.
        """
        live = [i for i, f in enumerate(self.faces) if f.state != "lost"]
        return max(live, key=lambda i: self.faces[i].confidence) if live else None

    def primary_face(self) -> FaceState | None:
        """The face :meth:`primary_index` picks, or None."""
        i = self.primary_index()
        return None if i is None else self.faces[i]


__all__ = [
    "ASSUMED_FOV_DEG", "NUM_ARKIT", "NUM_ICT", "NUM_LANDMARKS", "NUM_SH", "Detections", "FaceCoefficients", "FaceState", "HoldsCoefficients", "Frame", "GroundTruth",
    "Intrinsics", "TrackResult", "TRACKING_STATES", "as_float_array", "check_array",
]  # fmt: skip
