"""Loss terms for CoarseNet on synthetic pairs (exact labels) — ARCHITECTURE §6.

Geometry is compared where it matters, in the crop image: the model's vertices (a fixed subset of the
face region plus the 68 landmarks) are posed with the predicted and the true parameters, projected with
the crop's virtual camera, and compared in pixels. That one term balances pose, identity and expression
by their visible effect. Coefficient terms (expressions, rotation, offset, scale, identity, lighting)
add direct supervision, a head-frame shape term in millimetres keeps identity/expression apart from pose,
and a binary cross-entropy trains the confidence on face and no-face crops.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from engines.differentiable import FaceLayer, sixd_to_matrix
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
