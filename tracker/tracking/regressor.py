"""Runs CoarseNet on face crops and turns its outputs into camera-frame face parameters.

The network sees each face through the virtual camera of a :class:`~tracker.core.crop.PerspectiveCrop` and
predicts the pose relative to it; :func:`tracker.core.crop.decode_pose` brings the pose back into the real
camera. Landmarks are not a separate network: they are the fitted model's 68 landmark vertices projected
with the real intrinsics (ARCHITECTURE §6).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engines.catalog import WEIGHTS_DIR, get_entry
from engines.onnx_file import pose_anchor_of
from tracker.core.crop import CROP_SIZE_PX, POSE_ANCHOR_HEAD_M, CropPose, PerspectiveCrop, decode_pose
from tracker.core.errors import ConfigError, EngineError
from tracker.core.face_model import FaceModel
from tracker.core.geometry import rotation_from_6d, transform_points
from tracker.core.types import FaceCoefficients, Frame, HoldsCoefficients
from tracker.tracking.depth_align import RigidPose

log = logging.getLogger(__name__)

#: The shipped regressor, resolved through the engine catalog (engines/weights/MODEL_CARD.md).
DEFAULT_MODEL = WEIGHTS_DIR / get_entry("coarsenet").weights
INPUT_NAME = "image"


@dataclasses.dataclass
class Regression(HoldsCoefficients):
    """CoarseNet's estimate for one crop, in the real camera.

    Attributes:
        coefficients: Identity, expression (53 ICT channels in [0,1]), pose and SH lighting.
        confidence: In [0,1]: how sure the network is that the crop holds a face.
        rigid: CoarseNet-D's pose of the face (:class:`~tracker.tracking.depth_align.RigidPose`) on a frame
            with depth when the regressor has a depth aligner; else None.
    """

    coefficients: FaceCoefficients
    confidence: float
    rigid: RigidPose | None = None


def crops_to_batch(images: Sequence[np.ndarray]) -> np.ndarray:
    """(N,N,3) uint8 RGB crops -> (B,3,N,N) float32 in [0,1], the network's input layout."""
    batch = np.stack(images).astype(np.float32) * np.float32(1.0 / 255.0)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


class Regressor:
    """CoarseNet through any engine backend.

    Args:
        engine: An :class:`engines.base.Engine` over the CoarseNet ONNX (activated on first use).
        face_model: The ICT model, for landmarks.
        pose_anchor_head_m: (3,) the point the network's offset and scale refer to (:func:`pose_anchor_of`).
        detail: The eye and mouth networks (:class:`~tracker.tracking.detail.DetailRefiner`) that replace
            CoarseNet's eye, brow, mouth and jaw channels; None: CoarseNet's expressions alone.
        depth_aligner: CoarseNet-D (:class:`~tracker.tracking.depth_align.DepthAligner`), run on the same
            crops of frames with depth; None: colour pose only.
    """

    def __init__(self, engine, face_model: FaceModel, pose_anchor_head_m: np.ndarray = POSE_ANCHOR_HEAD_M,
                 detail=None, depth_aligner=None) -> None:  # fmt: skip
        self.engine = engine
        self.face_model = face_model
        self.pose_anchor_head_m = np.asarray(pose_anchor_head_m, dtype=np.float64)
        self.detail = detail
        self.depth_aligner = depth_aligner

    @classmethod
    def create(
        cls, face_model: FaceModel, model: Path | None = None, backend: str = "auto", detail=None, depth_aligner=None,
        **engine_options,
    ) -> Regressor:
        """A regressor over an ONNX file (default: the shipped ``engines/weights/coarsenet_v1.onnx``), with the
        detail networks ``detail`` and the depth aligner ``depth_aligner`` (or none)."""
        from engines.factory import create_engine

        path = Path(model) if model is not None else DEFAULT_MODEL
        if not path.exists():
            raise EngineError(
                f"regressor weights {path} not found; train them with `facetrack train` or pass --model"
            )
        return cls(create_engine(path, backend, **engine_options), face_model, pose_anchor_of(path), detail, depth_aligner)

    def warmup(self, n: int = 2) -> None:
        """Activates the engine and runs it ``n`` times on a zero batch-1 crop (set-up before the first frame)."""
        self.engine.activate()  # idempotent
        self.engine.warmup(n, shapes={INPUT_NAME: (1, 3, CROP_SIZE_PX, CROP_SIZE_PX)})
        for extra in (self.detail, self.depth_aligner):
            if extra is not None:
                extra.warmup(n)

    def close(self) -> None:
        for extra in (self.detail, self.depth_aligner):
            if extra is not None:
                extra.close()
        self.engine.deactivate()  # safe when never activated

    def infer_crops(self, images: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        """Raw network outputs for (N,N,3) uint8 RGB crops, batched."""
        if not images:
            raise ConfigError("infer_crops needs at least one crop")
        self.engine.activate()  # idempotent
        return self.engine.infer_batched(INPUT_NAME, crops_to_batch(images))

    def regress(self, frame: Frame, crops: Sequence[PerspectiveCrop]) -> list[Regression]:
        """Warps each crop out of the frame, runs the network once on the batch and decodes the poses."""
        return self.regress_many([(frame, crops)])[0]

    def regress_many(self, items: Sequence[tuple[Frame, Sequence[PerspectiveCrop]]]) -> list[list[Regression]]:
        """Regresses the crops of several frames (several cameras' frames of one tick) in one network call.

        The crops of every item are warped out of their own frame, concatenated into one batch and run
        together, so N cameras cost one call instead of N (and meet in one batch on a GPU or in Triton's
        dynamic batcher); the outputs are split back in order. A batch larger than the engine's
        ``max_batch_size`` (a Triton model's limit; 0 or absent: none) is run in chunks of that size.

        Args:
            items: (frame, crops of that frame) pairs; an item may have no crops.

        Returns:
            One list of :class:`Regression` per item, in the order of its crops.
        """
        images = [c.warp(frame.color) for frame, crops in items for c in crops]
        if not images:
            return [[] for _ in items]
        out = self.infer_crops(images)
        results: list[list[Regression]] = []
        row = 0
        for _, crops in items:
            results.append([self._decode(crop, out, row + i) for i, crop in enumerate(crops)])
            row += len(crops)
        if self.detail is not None:
            self._refine([frame for frame, _ in items], results)
        if self.depth_aligner is not None:
            for regs, poses in zip(results, self.depth_aligner.align(items), strict=True):
                for r, pose in zip(regs, poses, strict=True):
                    r.rigid = pose
        return results

    def _refine(self, frames: Sequence[Frame], results: list[list[Regression]]) -> None:
        """Replaces the eye, brow, mouth and jaw channels with the detail networks' (one batch for all faces),
        their patches placed by each face's landmarks as CoarseNet fitted them."""
        faces = [(frame, r) for frame, rs in zip(frames, results, strict=True) for r in rs]
        if not faces:
            return
        landmarks = [self.landmarks_px(f, r.identity, r.expression, r.rotation, r.translation_m) for f, r in faces]
        refined = self.detail.refine([f.color for f, _ in faces], landmarks, [r.expression for _, r in faces])
        for (_, r), expression in zip(faces, refined, strict=True):
            r.coefficients.expression = expression  # (53,) float32 in [0,1] by construction: no re-validation

    def _decode(self, crop: PerspectiveCrop, out: dict[str, np.ndarray], i: int) -> Regression:
        """The :class:`Regression` of one crop: row ``i`` of the batched outputs ``out``, its pose brought
        from the crop's virtual camera back into the real one. The one per-crop decoding step."""
        pose = CropPose(rotation_from_6d(out["rotation6d"][i]), out["offset"][i], float(out["log_scale"][i, 0]))
        rotation, translation = decode_pose(crop, pose, self.pose_anchor_head_m)
        return Regression(
            FaceCoefficients(
                identity=out["identity"][i].astype(np.float32),
                expression=np.clip(out["expression"][i], 0.0, 1.0).astype(np.float32),
                rotation=rotation,
                translation_m=translation,
                lighting=out["lighting"][i].astype(np.float32),
            ),
            confidence=float(out["confidence"][i, 0]),
        )

    def landmarks_cam_m(self, identity, expression, rotation, translation_m) -> np.ndarray:
        """(68,3) float64: the model's landmark vertices in the camera frame, metres."""
        return transform_points(rotation, translation_m, self.face_model.landmarks68(identity, expression).astype(np.float64))

    def landmarks_px(self, frame: Frame, identity, expression, rotation, translation_m) -> np.ndarray:
        """(68,2) float32 px: the model's landmark vertices projected into ``frame``."""
        return frame.intrinsics.project(self.landmarks_cam_m(identity, expression, rotation, translation_m)).astype(np.float32)

    def __enter__(self) -> Regressor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["CROP_SIZE_PX", "DEFAULT_MODEL", "Regression", "Regressor", "crops_to_batch"]
