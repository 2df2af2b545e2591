"""Loss terms for CoarseNet on synthetic pairs (exact labels) — ARCHITECTURE §6.

Geometry is compared where it matters, in the crop image: the model's vertices (a fixed subset of the
face region plus the 68 landmarks) are posed with the predicted and the true parameters, projected with
the crop's virtual camera, and compared in pixels. That one term balances pose, identity and expression
by their visible effect. Coefficient terms (expressions, rotation, offset, scale, identity, lighting)
add direct supervision, a head-frame shape term in millimetres keeps identity/expression apart from pose,
and a binary cross-entropy trains the confidence on face and no-face crops.

Real crops (engines/train/real.py) have no exact labels, only the MediaPipe teacher's 468 points:
:class:`RealLandmarkLoss` projects the predicted face's matching surface points (the MediaPipe <-> ICT
correspondence) with the same crop camera and compares them in pixels (E_lan), with a prior on identity
(E_reg), which nothing else constrains on real samples.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from engines.differentiable import FaceLayer, SurfacePoints, sixd_to_matrix
from engines.fitting.losses import identity_prior, landmark_loss
from engines.train.config import LossSection
from tracker.face_model import FaceModel


def crop_translation(offset: torch.Tensor, log_scale: torch.Tensor, focal_px: torch.Tensor, size_px: int) -> torch.Tensor:
    """(B,3) head origin in the crop's virtual camera from the crop-relative parametrisation (tracker/crop.py)."""
    z = focal_px / (size_px * torch.exp(log_scale[:, 0]))
    xy = offset * size_px * z[:, None] / focal_px[:, None]
    return torch.cat([xy, z[:, None]], dim=1)


def project_crop(points_head_m, rotation, translation_m, focal_px, size_px: int) -> torch.Tensor:
    """(B,N,2) crop pixels of head-frame points posed in the virtual camera."""
    cam = points_head_m @ rotation.transpose(1, 2) + translation_m[:, None, :]
    c = (size_px - 1) / 2.0
    return focal_px[:, None, None] * cam[..., :2] / cam[..., 2:3].clamp_min(1e-3) + c


@dataclasses.dataclass
class LossOutput:
    total: torch.Tensor
    terms: dict[str, float]


class CoarseLoss(torch.nn.Module):
    """The weighted sum of the synthetic-pair terms.

    Args:
        model: The ICT face model.
        weights: Term weights.
        num_identity: K identity modes the network predicts.
        size_px: Crop side.
        num_vertices: Face-region vertices in the dense geometric term (a fixed random subset).
    """

    TERMS = ("landmark_px", "vertex_px", "shape_mm", "expression", "rotation", "log_scale", "offset", "identity",
             "lighting", "confidence")

    def __init__(self, model: FaceModel, weights: LossSection, num_identity: int, size_px: int = 128,
                 num_vertices: int = 400) -> None:  # fmt: skip
        super().__init__()
        rng = np.random.default_rng(0)
        face = model.region("narrow_face")
        dense = rng.choice(np.arange(face.v0, face.v1), size=num_vertices, replace=False)
        ids = np.concatenate([model.landmark_ids, dense])
        self.layer = FaceLayer(model, num_identity, vertex_ids=ids)
        self.weights = weights
        self.size_px = size_px

    def forward(self, pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> LossOutput:
        w = self.weights
        face = target["is_face"]
        n_face = face.sum().clamp_min(1.0)

        def masked_mean(per_sample: torch.Tensor) -> torch.Tensor:
            return (per_sample * face).sum() / n_face

        r_pred = sixd_to_matrix(pred["rotation6d"])
        t_pred = crop_translation(pred["offset"], pred["log_scale"], target["focal_px"], self.size_px)
        t_true = crop_translation(target["offset"], target["log_scale"], target["focal_px"], self.size_px)
        v_pred = self.layer(pred["identity"], pred["expression"])
        v_true = self.layer(target["identity"], target["expression"])
        uv_pred = project_crop(v_pred, r_pred, t_pred, target["focal_px"], self.size_px)
        uv_true = project_crop(v_true, target["rotation"], t_true, target["focal_px"], self.size_px)
        err_px = (uv_pred - uv_true).norm(dim=-1)  # (B, 68 + N)

        terms = {
            "landmark_px": masked_mean(err_px[:, :68].mean(1)),
            "vertex_px": masked_mean(err_px[:, 68:].mean(1)),
            "shape_mm": masked_mean((v_pred - v_true).norm(dim=-1).mean(1) * 1e3),
            "expression": masked_mean((pred["expression"] - target["expression"]).abs().mean(1)),
            "rotation": masked_mean((r_pred - target["rotation"]).square().sum((1, 2))),
            "log_scale": masked_mean((pred["log_scale"] - target["log_scale"]).abs()[:, 0]),
            "offset": masked_mean((pred["offset"] - target["offset"]).abs().sum(1)),
            "identity": masked_mean((pred["identity"] - target["identity"]).square().mean(1)),
            "lighting": masked_mean((pred["lighting"] - target["lighting"]).abs().mean(1)),
            "confidence": F.binary_cross_entropy(pred["confidence"][:, 0].clamp(1e-6, 1 - 1e-6), face),
        }
        total = sum(getattr(w, k) * v for k, v in terms.items())
        return LossOutput(total, {k: float(v.detach()) for k, v in terms.items()})


class RealLandmarkLoss(torch.nn.Module):
    """E_lan + E_reg on real crops labelled by the teacher (engines/train/real.py).

    E_lan: the predicted face's 468 MediaPipe-corresponding surface points, posed with the predicted
    crop-relative pose and projected with the sample's virtual focal length, against the teacher's points,
    in crop pixels; robust (pseudo-Huber with a ``delta_px`` knee: quadratic below, ~linear above, so the
    teacher's occasional gross errors pull with bounded force), weighted per point by the correspondence
    weights (points that transfer badly between the two meshes count less or not at all).
    E_reg: mean squared identity coefficient (prior N(0,1)); real samples carry no identity label.

    Args:
        model: The ICT face model.
        weights: Term weights (``real_landmark_px``, ``real_identity``).
        num_identity: K identity modes the network predicts.
        size_px: Crop side.
        correspondence: MediaPipe <-> ICT correspondence; default: the committed one.
        delta_px: Pseudo-Huber knee, crop pixels.
    """

    TERMS = ("real_landmark_px", "real_identity")

    def __init__(self, model: FaceModel, weights: LossSection, num_identity: int, size_px: int = 128,
                 correspondence=None, delta_px: float = 1.0) -> None:  # fmt: skip
        super().__init__()
        from engines.teacher.correspondence import load_correspondence

        corr = correspondence if correspondence is not None else load_correspondence()
        self.points = SurfacePoints(model, corr.triangle_vertices, corr.bary, num_identity)
        self.register_buffer("point_weights", torch.from_numpy(np.asarray(corr.weights, np.float32)), persistent=False)
        self.weights = weights
        self.size_px = size_px
        self.delta_px = delta_px

    def project(self, pred: dict[str, torch.Tensor], focal_px: torch.Tensor) -> torch.Tensor:
        """(B,468,2) crop pixels of the predicted face's MediaPipe-corresponding points."""
        rotation = sixd_to_matrix(pred["rotation6d"])
        translation = crop_translation(pred["offset"], pred["log_scale"], focal_px, self.size_px)
        return project_crop(self.points(pred["identity"], pred["expression"]), rotation, translation, focal_px,
                            self.size_px)  # fmt: skip

    def forward(self, pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> LossOutput:
        """Args: pred: network outputs; target: ``points`` (B,468,2) crop px and ``focal_px`` (B,).

        Returns:
            The weighted total; terms ``real_landmark_px`` (robust E_lan, ~px), ``real_identity`` and the
            plain weighted mean point distance ``real_error_px`` (a metric, not trained on).
        """
        uv = self.project(pred, target["focal_px"])
        b = uv.shape[0]
        # landmark_loss measures distances in percent of a face size; a size of 100 px makes its unit the pixel.
        lan = landmark_loss(uv, target["points"], self.point_weights, uv.new_full((b,), 100.0), self.delta_px)
        reg = identity_prior(pred["identity"]) / max(1, pred["identity"].shape[1])
        w = self.weights
        with torch.no_grad():
            dist = (uv - target["points"]).norm(dim=-1)
            err = (dist * self.point_weights).sum() / (self.point_weights.sum() * b).clamp_min(1e-9)
        terms = {"real_landmark_px": lan, "real_identity": reg}
        total = w.real_landmark_px * lan + w.real_identity * reg
        return LossOutput(total, {**{k: float(v.detach()) for k, v in terms.items()}, "real_error_px": float(err)})
