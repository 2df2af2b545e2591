"""A synthetic RGB-D camera: a rendered, scripted face performance with exact ground truth.

Frames are a deterministic function of the seed and the frame index (the same seed gives bit-identical
colour and depth on the same machine and software stack): the performance comes from
:func:`tracker.sources.performance.performance_frame`, the albedo from
:func:`tracker.render.procedural_albedo`, the background from
:func:`engines.train.background.procedural_background`, and sensor noise from a generator seeded by
(seed, frame index). Depth is uint16 in millimetres like a RealSense D435's, aligned to colour; with
``sensor_noise`` it passes :class:`~tracker.core.depth_sensor.DepthSensorModel` (noise ~ z², holes at grazing
angles and silhouettes, speckle, a depth-to-colour misalignment fixed per clip), and with ``occluder`` a hand
(:func:`~tracker.core.depth_sensor.paint_hand`) moves slowly over the face in colour and depth.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from engines.train.background import procedural_background
from tracker.core.depth_sensor import DepthSensorModel, Hand, paint_hand
from tracker.core.errors import ConfigError
from tracker.core.face_model import FaceModel
from tracker.core.render_types import Albedo, RenderOutput, depth_to_u16
from tracker.core.types import FaceCoefficients, Frame, GroundTruth, Intrinsics
from tracker.render.renderer import Renderer
from tracker.sources.base import FrameSource
from tracker.sources.performance import performance_at, performance_subject

log = logging.getLogger(__name__)

DEPTH_SCALE_M = 0.001
#: Share of the face's landmark box the occluding hand covers.
HAND_COVERAGE = 1.0 / 3.0
#: The hand is this far in front of the face's median depth, metres (it drifts between the two).
HAND_GAP_M = (0.03, 0.10)
# Tags that split one seed into independent random streams (per-frame noise, per-clip sensor shift and hand).
_NOISE_STREAM, _SHIFT_STREAM, _HAND_STREAM = 0x7015E, 0x5A1F7, 0x4A2D0


@dataclasses.dataclass(frozen=True)
class HandPath:
    """The slow, smooth motion of an occluding hand over the face during one clip (drawn once per seed).

    The palm centre follows a Lissajous path around the face centre (amplitudes in face sizes, so the hand
    stays over the face as the head moves and scales), the fingers sway a little, and the hand drifts between
    :data:`HAND_GAP_M` in front of the face.

    Attributes:
        amplitude: (x, y) half-extent of the palm centre's path, face sizes (0.15-0.4).
        freq_hz: (x, y) frequencies of the path (0.08-0.2 Hz: one sweep takes seconds).
        phase_rad: (x, y) phases of the path.
        angle_deg: Mean finger direction (0 = up, clockwise).
        sway_deg: Amplitude of the fingers' sway.
        sway_hz: Frequency of the sway.
        gap_hz: Frequency of the in-front distance's drift.
        gap_phase_rad: Phase of that drift.
        rgb: Skin colour.
    """

    amplitude: tuple[float, float]
    freq_hz: tuple[float, float]
    phase_rad: tuple[float, float]
    angle_deg: float
    sway_deg: float
    sway_hz: float
    gap_hz: float
    gap_phase_rad: float
    rgb: tuple[int, int, int]

    @classmethod
    def random(cls, rng: np.random.Generator) -> HandPath:
        tone = rng.uniform(0.55, 1.1)
        return cls(
            amplitude=tuple(float(v) for v in rng.uniform(0.15, 0.4, 2)),
            freq_hz=tuple(float(v) for v in rng.uniform(0.08, 0.2, 2)),
            phase_rad=tuple(float(v) for v in rng.uniform(0, 2 * np.pi, 2)),
            angle_deg=float(rng.uniform(-40, 40)),
            sway_deg=float(rng.uniform(5, 20)),
            sway_hz=float(rng.uniform(0.05, 0.15)),
            gap_hz=float(rng.uniform(0.05, 0.15)),
            gap_phase_rad=float(rng.uniform(0, 2 * np.pi)),
            rgb=tuple(int(np.clip(c * tone, 0, 255)) for c in (205, 155, 125)),
        )

    def hand(self, t_s: float, face_centre_px: np.ndarray, face_size_px: float, face_depth_m: float) -> Hand:
        """The hand at time ``t_s`` (seconds) over a face (landmark-box centre (x, y) and side, px; median
        depth, metres)."""
        w = 2 * np.pi * t_s
        dx, dy = (a * np.sin(w * f + p) for a, f, p in zip(self.amplitude, self.freq_hz, self.phase_rad, strict=True))
        lo, hi = HAND_GAP_M
        gap = lo + (hi - lo) * (0.5 + 0.5 * np.sin(w * self.gap_hz + self.gap_phase_rad))
        return Hand(
            centre_px=(float(face_centre_px[0] + dx * face_size_px), float(face_centre_px[1] + dy * face_size_px)),
            palm_px=Hand.palm_px_for(face_size_px, HAND_COVERAGE),
            angle_deg=float(self.angle_deg + self.sway_deg * np.sin(w * self.sway_hz)),
            depth_m=float(face_depth_m - gap),
            rgb=self.rgb,
        )


def ground_truth_for(model: FaceModel, params: FaceCoefficients, intrinsics: Intrinsics) -> GroundTruth:
    """Exact ground truth of a rendered face: its parameters and its 68 landmarks projected to pixels."""
    lm_head = model.landmarks68(params.identity, params.expression).astype(np.float64)
    lm_cam = lm_head @ params.rotation.T + params.translation_m
    return GroundTruth(params, intrinsics.project(lm_cam).astype(np.float32))


class SyntheticSource(FrameSource):
    """Renders the scripted performance of ``seed`` as a capture source.

    Args:
        seed: Chooses the subject, the script, the background and the noise.
        n_frames: Frames before end of stream; None for endless.
        width, height: Image size, px.
        fov_y_deg: Vertical field of view (a centred pinhole camera with square pixels).
        fps: Frame rate of the script (and of the pacing when ``realtime``).
        realtime: Pace ``read()`` to ``fps`` like a camera; off by default (as fast as it renders).
        sensor_noise: Add colour noise (Gaussian, ~2 DN plus signal-dependent) and pass the depth through the
            D4xx-like :class:`~tracker.core.depth_sensor.DepthSensorModel` (noise ~ z², holes, speckle), both
            seeded by (seed, frame index); the depth-to-colour misalignment is one per seed, fixed over the clip
            like a real calibration error (:attr:`depth_shift_px`).
        occluder: Hold a hand over about a third of the face on every frame, in colour and depth (3-10 cm in
            front of the face), moving slowly over it (:class:`HandPath`, drawn from the seed). The ground
            truth stays the face's.
        motion_blur_samples: Average this many sub-frame renders over half a frame interval (1 = off).
            Ground truth and depth are those of the frame time itself.
        background: ``"procedural"`` (seeded room-like image), an RGB colour, or an (H,W,3) uint8 image.
        model: A loaded face model to share; loaded from the cache when None.
        renderer: A renderer to share (not closed by this source); else the source owns one.
    """

    def __init__(
        self,
        seed: int = 0,
        n_frames: int | None = 300,
        *,
        width: int = 640,
        height: int = 480,
        fov_y_deg: float = 60.0,
        fps: float = 30.0,
        realtime: bool = False,
        sensor_noise: bool = False,
        occluder: bool = False,
        motion_blur_samples: int = 1,
        background: str | tuple[int, int, int] | np.ndarray = "procedural",
        model: FaceModel | None = None,
        renderer: Renderer | None = None,
    ) -> None:
        super().__init__(f"synthetic:{seed}")
        if n_frames is not None and n_frames < 0:
            raise ConfigError(f"n_frames must be >= 0 or None, got {n_frames}")
        if not fps > 0:
            raise ConfigError(f"fps must be > 0, got {fps}")
        if not 1 <= int(motion_blur_samples) <= 32:
            raise ConfigError(f"motion_blur_samples must be in 1..32, got {motion_blur_samples}")
        if not 1.0 < fov_y_deg < 170.0:
            raise ConfigError(f"fov_y_deg must be in (1, 170), got {fov_y_deg}")
        self.seed = int(seed)
        self.n_frames = n_frames
        self.fps = float(fps)
        self.realtime = bool(realtime)
        self.sensor_noise = bool(sensor_noise)
        self.occluder = bool(occluder)
        self._sensor = DepthSensorModel()
        seed32 = self.seed & 0xFFFFFFFF
        self._depth_shift_px = self._sensor.shift_px(np.random.default_rng([seed32, _SHIFT_STREAM]))
        self._hand_path = HandPath.random(np.random.default_rng([seed32, _HAND_STREAM]))
        self.motion_blur_samples = int(motion_blur_samples)
        self._intrinsics = Intrinsics.from_fov(int(width), int(height), float(fov_y_deg))
        if isinstance(background, str) and background != "procedural":
            raise ConfigError(f"background must be 'procedural', a colour or an image, got {background!r}")
        if isinstance(background, np.ndarray) and background.shape != (height, width, 3):
            raise ConfigError(f"background image must be ({height},{width},3) uint8, got {background.shape}")
        self._background_arg = background
        self._model = model
        self._renderer = renderer
        self._owns_renderer = renderer is None
        self._index = 0
        self._t_start = 0.0
        self._albedo: Albedo | None = None
        self._background = None
        self._subject = performance_subject(self.seed)

    @property
    def intrinsics(self) -> Intrinsics:
        return self._intrinsics

    @property
    def depth_shift_px(self) -> tuple[float, float]:
        """(dx, dy) pixels the noisy depth is misaligned against colour (this seed's; used with ``sensor_noise``)."""
        return self._depth_shift_px

    @property
    def model(self) -> FaceModel:
        if self._model is None:
            self._model = FaceModel.load()
        return self._model

    @property
    def expected_frames(self) -> int | None:
        return self.n_frames

    def _open(self) -> None:
        from tracker.core.face_model.albedo import procedural_albedo

        if self._renderer is None:
            self._renderer = Renderer(self.model)
            self._owns_renderer = True
        self._albedo = procedural_albedo(self.model, self.seed)
        bg = self._background_arg
        k = self._intrinsics
        self._background = procedural_background(self.seed, k.width, k.height) if isinstance(bg, str) else bg
        self._index = 0
        self._t_start = time.monotonic()

    def _release(self) -> None:
        if self._owns_renderer and self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def params_at(self, frame_index: int) -> FaceCoefficients:
        """The exact face parameters of a frame (without rendering)."""
        return performance_at(self.seed, frame_index / self.fps, self._subject)

    def hand_at(self, index: int, landmarks68_px: np.ndarray, face_depth_m: float) -> Hand | None:
        """The occluding hand of frame ``index`` over a face with these (68,2) landmarks and median depth
        (metres); None without ``occluder``."""
        if not self.occluder:
            return None
        lo, hi = landmarks68_px.min(axis=0), landmarks68_px.max(axis=0)
        return self._hand_path.hand(index / self.fps, (lo + hi) / 2, float(max(hi - lo)), face_depth_m)

    def render_frame(self, index: int) -> Frame:
        """Renders frame ``index`` (any order; the result depends only on seed and index)."""
        if self._renderer is None:
            raise ConfigError("SyntheticSource.render_frame() before connect()")
        k = self._intrinsics
        params = self.params_at(index)
        truth = ground_truth_for(self.model, params, k)
        out = self._renderer.render(params, k, self._albedo, self._background)
        color = out.rgb
        if self.motion_blur_samples > 1:
            color = self._motion_blur(index, out)
        depth_m = out.depth_m
        if self.occluder:
            color, depth_m = color.copy(), depth_m.copy()
            paint_hand(self.hand_at(index, truth.landmarks68, _face_depth_m(depth_m, truth, params)), color, depth_m)
        if self.sensor_noise:
            color, depth = self._add_noise(index, color, depth_m)
        else:
            depth = depth_to_u16(depth_m, DEPTH_SCALE_M)
        return Frame(
            index=index,
            t_capture_ns=time.monotonic_ns(),
            color=color,
            intrinsics=k,
            depth=depth,
            depth_scale_m=DEPTH_SCALE_M,
            ground_truth=truth,
            source_id=self.source_id,
            t_media_ns=round(index * 1e9 / self.fps),
        )

    def _motion_blur(self, index: int, centre: RenderOutput) -> np.ndarray:
        # Shutter open for half the frame interval, centred on the frame time.
        n = self.motion_blur_samples
        acc = np.zeros(centre.rgb.shape, np.float32)
        for j in range(n):
            t = max(0.0, (index + (j + 0.5) / n * 0.5 - 0.25) / self.fps)
            p = performance_at(self.seed, t, self._subject)
            acc += self._renderer.render(p, self._intrinsics, self._albedo, self._background).rgb
        return np.clip(acc / n + 0.5, 0, 255).astype(np.uint8)

    def _add_noise(self, index: int, color: np.ndarray, depth_m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Colour noise and the depth sensor's degradations of one frame: (H,W,3) uint8, (H,W) uint16 mm."""
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, index, _NOISE_STREAM])
        c = color.astype(np.float32)
        sigma = np.sqrt(2.0**2 + 0.02 * c)  # read noise + shot noise, in 8-bit DN
        c = c + sigma * rng.standard_normal(c.shape, dtype=np.float32)
        z = self._sensor.apply(rng, depth_m, self._intrinsics.fx, self._depth_shift_px)
        return np.clip(c + 0.5, 0, 255).astype(np.uint8), depth_to_u16(z, DEPTH_SCALE_M)

    def _read_next(self) -> Frame | None:
        if self.n_frames is not None and self._index >= self.n_frames:
            return None
        if self.realtime:
            wait = self._t_start + self._index / self.fps - time.monotonic()
            if wait > 0:
                # Short sleeps so close() (which sets the stop event) is honoured promptly.
                self._stop.wait(wait)
        frame = self.render_frame(self._index)
        self._index += 1
        return frame


def _face_depth_m(depth_m: np.ndarray, truth: GroundTruth, params: FaceCoefficients) -> float:
    """Median rendered depth inside the face's landmark box, metres (the head origin's z less ~9.5 cm when
    the box shows no face, e.g. out of the image)."""
    h, w = depth_m.shape
    lo = np.clip(np.floor(truth.landmarks68.min(axis=0)).astype(int), 0, [w, h])
    hi = np.clip(np.ceil(truth.landmarks68.max(axis=0)).astype(int) + 1, 0, [w, h])
    box = depth_m[lo[1] : hi[1], lo[0] : hi[0]]
    vals = box[box > 0]
    return float(np.median(vals)) if len(vals) else float(params.translation_m[2]) - 0.095
