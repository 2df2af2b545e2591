"""The detail networks: expressions read from full-resolution eye and mouth patches (ARCHITECTURE §6).

CoarseNet regresses pose, identity and lighting well from its 128 px face crop, but not the eyelids, brows
and lips that live in a few of its pixels (v1h: blinks r 0.3 against MediaPipe on real clips, a dead
browInnerUp and mouthPucker). After CoarseNet, the face's 68 landmarks place three patches in the frame
(:mod:`tracker.core.regions`); the eye network reads each eye and its brow (the left eye mirrored, so one
network serves both), the mouth network the lips and jaw, and their outputs replace CoarseNet's channels of
those regions. Both run batched over every face of the tick, through the same engine interface as CoarseNet.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from engines.catalog import get_entry
from tracker.core.errors import EngineError
from tracker.core.face_model.arkit import ICT_EXPRESSION_NAMES
from tracker.core.regions import (
    EYE_CHANNELS_LEFT,
    EYE_CHANNELS_RIGHT,
    EYE_PATCH_PX,
    IBUG68_ANCHORS,
    MOUTH_CHANNELS,
    MOUTH_PATCH_PX,
    cut_patches,
    mirror_channels,
)

log = logging.getLogger(__name__)

INPUT_NAME = "patch"
OUTPUT_NAME = "values"


def ict_indices(arkit_names: Sequence[str], side: str | None = None) -> np.ndarray:
    """(K,) int64 ICT channel of each ARKit name; ``browInnerUp`` (one ARKit channel, two ICT halves) goes to
    the half of ``side`` (``"L"``/``"R"``), which each eye patch sees."""
    index = {n: i for i, n in enumerate(ICT_EXPRESSION_NAMES)}
    out = []
    for n in arkit_names:
        if n in index:  # jawLeft, mouthRight...: ICT keeps ARKit's name
            ict = n
        elif n.endswith("Left"):
            ict = n[: -len("Left")] + "_L"
        elif n.endswith("Right"):
            ict = n[: -len("Right")] + "_R"
        elif n + "_L" in index:
            if side is None:
                raise EngineError(f"{n} has two ICT halves; give the side")
            ict = f"{n}_{side}"
        else:
            ict = n
        out.append(index[ict])
    return np.array(out, dtype=np.int64)


#: Where each network output goes in the 53 ICT channels.
EYE_RIGHT_ICT = ict_indices(EYE_CHANNELS_RIGHT, "R")
EYE_LEFT_ICT = ict_indices(EYE_CHANNELS_LEFT, "L")
MOUTH_ICT = ict_indices(MOUTH_CHANNELS)
MOUTH_MIRROR = mirror_channels(MOUTH_CHANNELS)


def available() -> bool:
    """True when both detail networks' weights are in engines/weights/."""
    return all(get_entry(n).locate() is not None for n in ("eyenet", "mouthnet"))


class DetailRefiner:
    """Replaces the eye, brow, mouth and jaw channels of CoarseNet's expressions with the detail networks'.

    Args:
        eye_engine: An :class:`engines.base.Engine` over ``eyenet_v1.onnx`` (activated on first use).
        mouth_engine: The same over ``mouthnet_v1.onnx``.
    """

    def __init__(self, eye_engine, mouth_engine) -> None:
        self.eye_engine = eye_engine
        self.mouth_engine = mouth_engine

    @classmethod
    def create(cls, backend: str = "auto", eye_options=None, mouth_options=None) -> DetailRefiner:
        """Both networks from the catalog (``eyenet``, ``mouthnet``) on ``backend``."""
        from engines.factory import create_engine

        eye = create_engine(get_entry("eyenet").require(), backend, options=eye_options)
        try:
            mouth = create_engine(get_entry("mouthnet").require(), backend, options=mouth_options)
        except BaseException:
            eye.deactivate()
            raise
        return cls(eye, mouth)

    @property
    def backend(self) -> str:
        return self.eye_engine.backend

    def _ensure_active(self) -> None:
        self.eye_engine.activate()  # idempotent: each engine knows whether it is active
        self.mouth_engine.activate()

    def warmup(self, n: int = 2) -> None:
        """Activates both engines and runs each ``n`` times on zeros (one face)."""
        self._ensure_active()
        self.eye_engine.warmup(n, shapes={INPUT_NAME: (2, 1, EYE_PATCH_PX, EYE_PATCH_PX)})
        self.mouth_engine.warmup(n, shapes={INPUT_NAME: (2, 1, MOUTH_PATCH_PX, MOUTH_PATCH_PX)})

    def close(self) -> None:
        self.eye_engine.deactivate()  # safe when never activated
        self.mouth_engine.deactivate()

    def infer(self, images: Sequence[np.ndarray], landmarks_px: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Raw network outputs for faces given by their frame and landmarks.

        Args:
            images: One (H,W,3) uint8 RGB frame per face (faces of one frame share it).
            landmarks_px: One (68,2) px landmark set per face.

        Returns:
            ``eyes`` (F,2,10) float32 (right eye, left eye; :data:`EYE_CHANNELS_RIGHT` order) and ``mouth``
            (F,27) float32 (:data:`MOUTH_CHANNELS` order), in [0,1].
        """
        self._ensure_active()
        eyes, mouths = [], []
        for image, lm in zip(images, landmarks_px, strict=True):
            e, m = cut_patches(image, np.asarray(lm, np.float64)[list(IBUG68_ANCHORS)])
            eyes.append(e)
            mouths.append(m)
        if not eyes:
            return np.zeros((0, 2, len(EYE_CHANNELS_RIGHT)), np.float32), np.zeros((0, len(MOUTH_CHANNELS)), np.float32)
        scale = np.float32(1.0 / 255.0)
        eye_batch = np.ascontiguousarray(np.concatenate(eyes)[:, None], dtype=np.float32) * scale
        # Each mouth patch and its mirror image, averaged with the Left/Right channels swapped back: the
        # network learnt the symmetry only approximately (flip augmentation), this makes it exact, so a
        # mirrored face reads the same values swapped (the eyes get that from the mirrored left eye patch).
        m = np.stack(mouths)
        mouth_batch = np.ascontiguousarray(np.concatenate([m, m[:, :, ::-1]])[:, None], dtype=np.float32) * scale
        eye_out = self.eye_engine.infer_batched(INPUT_NAME, eye_batch)[OUTPUT_NAME]
        mouth_out = self.mouth_engine.infer_batched(INPUT_NAME, mouth_batch)[OUTPUT_NAME]
        n = len(mouths)
        mouth_sym = 0.5 * (mouth_out[:n] + mouth_out[n:][:, MOUTH_MIRROR])
        return eye_out.reshape(n, 2, -1).astype(np.float32), mouth_sym.astype(np.float32)

    def refine(self, images: Sequence[np.ndarray], landmarks_px: Sequence[np.ndarray],
               expressions: Sequence[np.ndarray]) -> list[np.ndarray]:  # fmt: skip
        """CoarseNet's (53,) ICT expressions with the eye, brow, mouth and jaw channels replaced.

        Args:
            images: As :meth:`infer`.
            landmarks_px: As :meth:`infer` (from CoarseNet's fit, so the patches follow the tracked face).
            expressions: One (53,) float32 ICT expression per face.

        Returns:
            New (53,) float32 arrays (the inputs are not modified).
        """
        eyes, mouth = self.infer(images, landmarks_px)
        out = []
        for k, ex in enumerate(expressions):
            e = np.array(ex, np.float32, copy=True)
            e[EYE_RIGHT_ICT] = eyes[k, 0]
            e[EYE_LEFT_ICT] = eyes[k, 1]
            e[MOUTH_ICT] = mouth[k]
            out.append(e)
        return out


__all__ = ["DetailRefiner", "EYE_LEFT_ICT", "EYE_RIGHT_ICT", "MOUTH_ICT", "available", "ict_indices"]
