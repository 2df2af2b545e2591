"""The learned rigid alignment of RGB-D frames (``--depth auto``): CoarseNet-D's pose, no ICP (issue 17).

On a frame with aligned depth, each face's crop (the box CoarseNet read) is cut again at 64 px with its
depth (:func:`tracker.core.depth_crop.rgbd_input`), and one batched CoarseNet-D call over every face of the
tick gives each head's rotation and the position of its pose anchor, the distance read from the depth
image. The tracker then uses that pose instead of the colour regressor's (and the depth-scaled identity of
:mod:`tracker.tracking.depth_scale`): one network pass per face, no iterations.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import numpy as np

from engines.catalog import get_entry
from tracker.core.crop import PerspectiveCrop
from tracker.core.depth_crop import DEPTH_CROP_PX, DEPTH_RANGE_M, rgbd_input
from tracker.core.geometry import nearest_rotation, rotation_from_6d
from tracker.core.types import Frame

INPUT_NAME = "image"
MODEL_NAME = "coarsenet_d"
#: The left-right mirror of the camera (and head) frame: x -> -x.
MIRROR = np.diag([-1.0, 1.0, 1.0])


@dataclasses.dataclass(frozen=True)
class RigidPose:
    """CoarseNet-D's estimate for one face, in the real camera.

    Attributes:
        rotation: (3,3) head -> camera.
        anchor_m: (3,) the pose anchor (:data:`tracker.core.crop.POSE_ANCHOR_HEAD_M` of the head) in the
            camera, metres: the translation is ``anchor_m - rotation @ anchor_head`` for the true head frame.
        cost_ms: This face's share of the call (cutting its input included).
    """

    rotation: np.ndarray
    anchor_m: np.ndarray
    cost_ms: float


def available() -> bool:
    """True when CoarseNet-D's weights are in engines/weights/."""
    return get_entry(MODEL_NAME).locate() is not None


class DepthAligner:
    """CoarseNet-D through any engine backend.

    Args:
        engine: An :class:`engines.base.Engine` over ``coarsenet_d_v1.onnx`` (activated on first use).
    """

    def __init__(self, engine) -> None:
        self.engine = engine

    @classmethod
    def create(cls, backend: str = "auto", options=None) -> DepthAligner:
        from engines.factory import create_engine

        return cls(create_engine(get_entry(MODEL_NAME).require(), backend, options=options))

    def warmup(self, n: int = 2) -> None:
        self.engine.activate()  # idempotent: the engine knows whether it is active
        self.engine.warmup(n, shapes={INPUT_NAME: (2, 5, DEPTH_CROP_PX, DEPTH_CROP_PX)})  # a crop and its mirror

    def close(self) -> None:
        self.engine.deactivate()  # safe when never activated

    def align(self, items: Sequence[tuple[Frame, Sequence[PerspectiveCrop]]]) -> list[list[RigidPose | None]]:
        """The rigid pose of every crop of frames with depth, in one batched call.

        Args:
            items: (frame, the regressor's crops of that frame) pairs, as :meth:`Regressor.regress_many`.

        Returns:
            Per item, per crop: a :class:`RigidPose`, or None where the frame has no depth or the crop's centre
            too little of it (the colour pose stands there).
        """
        t0 = time.perf_counter()
        inputs, where, crops_d, z_refs = [], [], [], []
        results: list[list[RigidPose | None]] = [[None] * len(crops) for _, crops in items]
        for i, (frame, crops) in enumerate(items):
            if frame.depth is None:
                continue
            for j, crop in enumerate(crops):
                cut = rgbd_input(frame, crop.box)
                if cut is None:
                    continue
                inputs.append(cut[0])
                crops_d.append(cut[1])
                z_refs.append(cut[2])
                where.append((i, j))
        if not inputs:
            return results
        self.engine.activate()
        # Each crop and its mirror image (the crop's principal point is its centre, so a left-right flip of the
        # image is exactly the mirrored scene); the mirrored estimate is flipped back and the two averaged.
        # The network learnt the symmetry only approximately, and the two errors are partly independent: the
        # average is ~25 % closer in rotation (docs/benchmarks.md), for one more row in the same call.
        x = np.stack(inputs)
        n = len(x)
        out = self.engine.infer_batched(INPUT_NAME, np.ascontiguousarray(np.concatenate([x, x[..., ::-1]])))
        rot = rotation_from_6d(out["rotation6d"])
        rot_local = [nearest_rotation(a + MIRROR @ b @ MIRROR) for a, b in zip(rot[:n], rot[n:], strict=True)]
        cost_ms = (time.perf_counter() - t0) * 1e3 / n
        for k, ((i, j), crop, z_ref) in enumerate(zip(where, crops_d, z_refs, strict=True)):
            z = z_ref + float(out["depth_offset"][k, 0] + out["depth_offset"][n + k, 0]) * 0.5 * DEPTH_RANGE_M
            off = (np.asarray(out["offset"][k], np.float64) + MIRROR[:2, :2] @ out["offset"][n + k]) * 0.5
            xy = off * (crop.out_size_px * z / crop.focal_px)
            anchor_local = np.array([xy[0], xy[1], z])
            results[i][j] = RigidPose(crop.r_ray @ rot_local[k], crop.r_ray @ anchor_local, cost_ms)
        return results


__all__ = ["DepthAligner", "RigidPose", "available"]
