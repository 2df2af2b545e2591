"""A synthetic RGB-D camera: a rendered, scripted face performance with exact ground truth.

Frames are a deterministic function of the seed and the frame index (the same seed gives bit-identical
colour and depth on the same machine and software stack): the performance comes from
:func:`tracker.sources.performance.performance_frame`, the albedo from
:func:`tracker.render.procedural_albedo`, the background from
:func:`engines.train.background.procedural_background`, and sensor noise from a generator seeded by
(seed, frame index). Depth is uint16 in millimetres like a RealSense D435's, aligned to colour.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from engines.train.background import procedural_background
from tracker.core.errors import ConfigError
from tracker.core.face_model import FaceModel
from tracker.core.render_types import Albedo, RenderOutput
from tracker.core.types import FaceCoefficients, Frame, GroundTruth, Intrinsics
from tracker.render.renderer import Renderer
from tracker.sources.base import FrameSource
from tracker.sources.performance import performance_at, performance_subject

log = logging.getLogger(__name__)

DEPTH_SCALE_M = 0.001


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
        sensor_noise: Add colour noise (Gaussian, ~2 DN plus signal-dependent) and depth noise that grows
            with z^2 (D435-like), both seeded by (seed, frame index).
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

    def render_frame(self, index: int) -> Frame:
        """Renders frame ``index`` (any order; the result depends only on seed and index)."""
        if self._renderer is None:
            raise ConfigError("SyntheticSource.render_frame() before connect()")
        k = self._intrinsics
        params = self.params_at(index)
        out = self._renderer.render(params, k, self._albedo, self._background)
        color = out.rgb
        if self.motion_blur_samples > 1:
            color = self._motion_blur(index, out)
        depth = out.depth_u16(DEPTH_SCALE_M)
        if self.sensor_noise:
            color, depth = self._add_noise(index, color, out)
        return Frame(
            index=index,
            t_capture_ns=time.monotonic_ns(),
            color=color,
            intrinsics=k,
            depth=depth,
            depth_scale_m=DEPTH_SCALE_M,
            ground_truth=ground_truth_for(self.model, params, k),
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

    def _add_noise(self, index: int, color: np.ndarray, out: RenderOutput) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([self.seed & 0xFFFFFFFF, index, 0x7015E])
        c = color.astype(np.float32)
        sigma = np.sqrt(2.0**2 + 0.02 * c)  # read noise + shot noise, in 8-bit DN
        c = c + sigma * rng.standard_normal(c.shape, dtype=np.float32)
        z = out.depth_m
        valid = z > 0
        # D435-like: RMS error ~ 1 mm at 0.5 m, growing with z^2.
        zn = z + valid * (0.001 * (z / 0.5) ** 2) * rng.standard_normal(z.shape, dtype=np.float32)
        depth = RenderOutput(
            out.rgb, np.where(valid, zn, 0).astype(np.float32), out.mask, out.intrinsics
        ).depth_u16(DEPTH_SCALE_M)
        return np.clip(c + 0.5, 0, 255).astype(np.uint8), depth

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
