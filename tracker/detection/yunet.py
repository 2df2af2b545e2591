"""YuNet face detection through the Engine interface (so the same detector runs on ONNX Runtime or TensorRT).

Pre- and post-processing follow OpenCV's ``cv2.FaceDetectorYN`` (``modules/objdetect/src/face_detect.cpp``)
so that the results agree with it on the same model, with two additions: any input image size (it is
resized, keeping its aspect, to fit the detector's input size) and RGB input (the project's frames are
RGB; YuNet was trained on BGR, 0..255 float, no mean or scale, like ``cv2.dnn.blobFromImage``'s default).

- Pre-processing: resize to fit ``input_size`` keeping the aspect (never upscaled unless asked), pad at
  the bottom and right with zeros to a multiple of 32 (the largest stride) or, for a fixed-shape model,
  to its input shape; RGB -> BGR; NCHW float32.
- YuNet is anchor-free with three heads (strides 8, 16, 32). For each grid cell (row r, column c) of
  stride s it outputs ``cls`` and ``obj`` scores, a box ``(dx, dy, log w, log h)`` and five landmarks
  ``(dx, dy)``: the box centre is ``((c + dx) s, (r + dy) s)``, its size ``(exp(log w) s, exp(log h) s)``,
  a landmark ``((c + dx) s, (r + dy) s)``; the score is ``sqrt(clip(cls) * clip(obj))``.
- Post-processing: score threshold, then non-maximum suppression (``cv2.dnn.NMSBoxes`` on the same
  integer boxes as OpenCV), highest score first.

Coordinates are mapped back to the original image with the pixel-centre-exact inverse of the resize
(``x = (x' + 0.5) / s - 0.5``; identity when the image is not resized). Boxes are not clipped to the image:
a face at the border keeps its full extent, which the crop stage needs.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping

import cv2
import numpy as np

from engines.base import Engine, LatencyRecorder, LatencyStats
from engines.options import EngineOptions
from tracker.core.errors import ConfigError, EngineError
from tracker.core.types import Detections, check_array

log = logging.getLogger(__name__)

STRIDES: tuple[int, ...] = (8, 16, 32)
#: The largest stride: a dynamic-shape input is padded to a multiple of it.
PAD_DIVISOR = 32
INPUT_NAME = "input"


@dataclasses.dataclass(frozen=True)
class Letterbox:
    """How an image was fitted into the network input.

    Attributes:
        image_wh: Original image size (width, height) px.
        resized_wh: Size after resizing (width, height) px; the image sits at the input's top-left.
        padded_wh: Network input size (width, height) px after padding.
    """

    image_wh: tuple[int, int]
    resized_wh: tuple[int, int]
    padded_wh: tuple[int, int]

    @property
    def scale_xy(self) -> tuple[float, float]:
        """Network-input px per original px along x and y."""
        return self.resized_wh[0] / self.image_wh[0], self.resized_wh[1] / self.image_wh[1]

    def to_original(self, xy: np.ndarray) -> np.ndarray:
        """Maps (...,2) network-input px to original-image px (pixel-centre exact)."""
        sx, sy = self.scale_xy
        out = np.asarray(xy, dtype=np.float64).copy()
        if (sx, sy) != (1.0, 1.0):
            out[..., 0] = (out[..., 0] + 0.5) / sx - 0.5
            out[..., 1] = (out[..., 1] + 0.5) / sy - 0.5
        return out


def fit_size(image_wh: tuple[int, int], target_wh: tuple[int, int], upscale: bool = False) -> tuple[int, int]:
    """Size of the image resized to fit inside ``target_wh`` keeping its aspect (rounded, >= 1 px)."""
    w, h = image_wh
    s = min(target_wh[0] / w, target_wh[1] / h)
    if not upscale:
        s = min(s, 1.0)
    return max(1, round(w * s)), max(1, round(h * s))


def _round_up(n: int, k: int) -> int:
    return -(-n // k) * k


class YuNetDetector:
    """Finds faces with YuNet.

    Args:
        engine: An engine over a YuNet ONNX model (dynamic or fixed shape); activated on first use if
            it is not active yet. The detector deactivates it in :meth:`close` only if it created it.
        input_size: (width, height) px the image is fitted into before padding. The default (320, 320)
            halves a 640x480 frame (320x256 after padding, ~3 ms on 2 CPU threads) and still finds faces
            down to ~25 px in the original; (640, 640) runs 640x480 at full resolution (~3x slower). For
            a fixed-shape model the model's size is used.
        score_threshold: Minimum score in [0,1] (OpenCV's default in its samples is 0.9; lower finds
            more profile and occluded faces, see docs/benchmarks.md).
        nms_threshold: IoU above which the lower-scored of two boxes is suppressed.
        top_k: At most this many detections are kept after NMS.
        upscale: Enlarge images smaller than ``input_size`` (helps tiny faces, costs time).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        input_size: tuple[int, int] = (320, 320),
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        upscale: bool = False,
        owns_engine: bool = False,
    ) -> None:
        if not (0.0 <= score_threshold <= 1.0):
            raise ConfigError(f"score_threshold must be in [0,1], got {score_threshold}")
        if not (0.0 < nms_threshold <= 1.0):
            raise ConfigError(f"nms_threshold must be in (0,1], got {nms_threshold}")
        if len(input_size) != 2 or min(input_size) < PAD_DIVISOR:
            raise ConfigError(f"input_size must be (width, height) >= {PAD_DIVISOR} px, got {input_size}")
        self.engine = engine
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.score_threshold = float(score_threshold)
        self.nms_threshold = float(nms_threshold)
        self.top_k = int(top_k)
        self.upscale = upscale
        self._owns_engine = owns_engine
        self._fixed_wh: tuple[int, int] | None = None
        self._ready = False
        self._timing = LatencyRecorder()

    @classmethod
    def create(cls, model: str = "yunet", backend: str = "auto", *,
               engine_options: EngineOptions | Mapping | None = None, **detector_options) -> YuNetDetector:  # fmt: skip
        """A detector over a catalog model (``"yunet"``: dynamic shapes; ``"yunet-640"``: fixed 640x640).

        Args:
            model: Catalog name (:mod:`engines.catalog`).
            backend: ``"auto"``, ``"onnxruntime"``, ``"tensorrt"`` or ``"triton"``.
            engine_options: Typed options of every backend (:class:`engines.options.EngineOptions`; the
                chosen backend's part is used); a mapping is taken as ONNX Runtime options (e.g.
                ``{"intra_op_threads": 2}``); None: :func:`engines.catalog.engine_options_for` defaults
                (TensorRT at the tracker's batch-1 profile, so a prebuilt engine is found).
            **detector_options: The constructor's keyword arguments.

        Raises:
            ConfigError: for a mapping that is not ONNX Runtime options.
        """
        from engines import catalog
        from engines.factory import create_engine
        from engines.options import OrtOptions

        entry = catalog.get_entry(model)
        options = engine_options
        if options is None or isinstance(options, Mapping):
            typed = catalog.engine_options_for(entry)
            if options:
                try:
                    typed = typed.replace(onnxruntime=OrtOptions(**dict(options)))
                except TypeError as exc:
                    raise ConfigError(f"YuNet engine_options mapping must be ONNX Runtime options: {exc}") from exc
            options = typed
        engine = create_engine(entry.require(), backend, options)
        return cls(engine, owns_engine=True, **detector_options)

    # ------------------------------------------------------------------ life cycle
    def _prepare(self) -> None:
        if self._ready:
            return
        self.engine.activate()
        specs = {s.name: s for s in self.engine.inputs}
        if INPUT_NAME not in specs or specs[INPUT_NAME].shape is None or len(specs[INPUT_NAME].shape) != 4:
            raise EngineError(f"{self.engine}: not a YuNet model (expected one input 'input' [N,3,H,W])")
        _, _, h, w = specs[INPUT_NAME].shape
        missing = [f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in STRIDES
                   if f"{k}_{s}" not in self.engine.output_names]  # fmt: skip
        if missing:
            raise EngineError(f"{self.engine}: not a YuNet model, outputs {missing} are missing")
        if isinstance(h, int) and isinstance(w, int):
            self._fixed_wh = (w, h)
        self._ready = True

    def close(self) -> None:
        """Deactivates the engine if this detector created it."""
        if self._owns_engine:
            self.engine.deactivate()
        self._ready = False

    def __enter__(self) -> YuNetDetector:
        self._prepare()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ stages
    def letterbox(self, image_wh: tuple[int, int]) -> Letterbox:
        """Where an image of ``image_wh`` goes in the network input."""
        self._prepare()
        if self._fixed_wh is not None:
            resized = fit_size(image_wh, self._fixed_wh, upscale=self.upscale)
            return Letterbox(tuple(image_wh), resized, self._fixed_wh)
        resized = fit_size(image_wh, self.input_size, upscale=self.upscale)
        padded = (_round_up(resized[0], PAD_DIVISOR), _round_up(resized[1], PAD_DIVISOR))
        return Letterbox(tuple(image_wh), resized, padded)

    def preprocess(self, image_rgb: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """(H,W,3) uint8 RGB image -> ((1,3,H',W') float32 BGR 0..255 blob, letterbox)."""
        check_array("YuNetDetector image", image_rgb, (None, None, 3), np.uint8)
        h, w = image_rgb.shape[:2]
        box = self.letterbox((w, h))
        img = image_rgb
        if box.resized_wh != (w, h):
            # Area averaging when shrinking avoids aliasing that costs small faces; linear when enlarging.
            interp = cv2.INTER_AREA if box.resized_wh[0] < w else cv2.INTER_LINEAR
            img = cv2.resize(image_rgb, box.resized_wh, interpolation=interp)
        pw, ph = box.padded_wh
        rw, rh = box.resized_wh
        blob = np.zeros((1, 3, ph, pw), dtype=np.float32)
        blob[0, :, :rh, :rw] = img.transpose(2, 0, 1)[::-1]  # RGB -> BGR, HWC -> CHW
        return blob, box

    def decode(self, outputs: Mapping[str, np.ndarray], box: Letterbox, batch_index: int = 0) -> Detections:
        """YuNet outputs -> thresholded, NMS-filtered detections in original-image px."""
        pw, ph = box.padded_wh
        cand_boxes, cand_scores, cand_kps = [], [], []
        for s in STRIDES:
            cols, rows = pw // s, ph // s
            cls = outputs[f"cls_{s}"][batch_index].reshape(-1)
            obj = outputs[f"obj_{s}"][batch_index].reshape(-1)
            if cls.size != rows * cols or obj.size != rows * cols:
                raise EngineError(
                    f"YuNet stride {s}: {cls.size} cells for a {pw}x{ph} input, expected {rows}x{cols}={rows * cols}"
                )
            score = np.sqrt(np.clip(cls, 0.0, 1.0) * np.clip(obj, 0.0, 1.0))
            keep = np.flatnonzero(score >= self.score_threshold)
            if keep.size == 0:
                continue
            r, c = np.divmod(keep, cols)
            r, c = r.astype(np.float32), c.astype(np.float32)
            bb = outputs[f"bbox_{s}"][batch_index].reshape(-1, 4)[keep]
            kp = outputs[f"kps_{s}"][batch_index].reshape(-1, 5, 2)[keep]
            cx, cy = (c + bb[:, 0]) * s, (r + bb[:, 1]) * s
            bw, bh = np.exp(bb[:, 2]) * s, np.exp(bb[:, 3]) * s
            cand_boxes.append(np.stack([cx - bw / 2, cy - bh / 2, bw, bh], axis=1))
            cand_kps.append(np.stack([(kp[..., 0] + c[:, None]) * s, (kp[..., 1] + r[:, None]) * s], axis=-1))
            cand_scores.append(score[keep])
        if not cand_boxes:
            return Detections.empty()
        xywh = np.concatenate(cand_boxes)
        scores = np.concatenate(cand_scores).astype(np.float32)
        kps = np.concatenate(cand_kps)
        if len(scores) > 1:
            # OpenCV runs NMS on integer rectangles (truncated); do the same so that the kept set agrees.
            rects = np.trunc(xywh).astype(np.int32).tolist()
            idx = cv2.dnn.NMSBoxes(
                rects, scores.tolist(), self.score_threshold, self.nms_threshold, top_k=self.top_k
            )
            idx = np.asarray(idx, dtype=np.int64).reshape(-1)
        else:
            idx = np.zeros(1, dtype=np.int64)
        xywh, scores, kps = xywh[idx], scores[idx], kps[idx]
        corners = np.stack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)  # (N,2,2) top-left, bottom-right
        corners = box.to_original(corners)
        return Detections(corners.reshape(-1, 4), scores, box.to_original(kps))

    def detect(self, image_rgb: np.ndarray) -> Detections:
        """Detects faces in an RGB image.

        Args:
            image_rgb: (H,W,3) uint8 RGB.

        Returns:
            Detections (boxes xyxy px, scores, 5 landmarks px) in the image's coordinates, best first.
        """
        t0 = time.perf_counter_ns()
        blob, box = self.preprocess(image_rgb)
        outputs = self.engine.infer({INPUT_NAME: blob})
        dets = self.decode(outputs, box)
        self._timing.record((time.perf_counter_ns() - t0) / 1e6)
        return dets

    __call__ = detect

    def latency(self) -> LatencyStats:
        """p50/p95 of recent :meth:`detect` calls (pre-processing, inference and decoding), ms."""
        return self._timing.stats()

    def reset_timing(self) -> None:
        self._timing.reset()
        self.engine.reset_timing()


__all__ = ["Letterbox", "YuNetDetector", "fit_size"]
