"""Energy terms of the inverse-rendering fit, reusable by the trainer (E_lan, E_pho, E_reg).

All terms return a scalar tensor (mean over the batch) so weights stay comparable across batch sizes.
"""

from __future__ import annotations

import numpy as np
import torch


def landmark_scale_px(landmarks_px: torch.Tensor) -> torch.Tensor:
    """(B,N,2) -> (B,) face size ``sqrt(w*h)`` of the landmarks' bounding box (the NME normaliser), px."""
    span = landmarks_px.amax(1) - landmarks_px.amin(1)
    return torch.sqrt(span[:, 0].clamp_min(1.0) * span[:, 1].clamp_min(1.0))


def landmark_loss(
    predicted_px: torch.Tensor,
    target_px: torch.Tensor,
    weights: torch.Tensor | None = None,
    scale_px: torch.Tensor | None = None,
    delta_pct: float = 1.0,
) -> torch.Tensor:
    """E_lan: robust (pseudo-Huber) 2D point distance in percent of the face size.

    Args:
        predicted_px: (B,N,2) projected model points.
        target_px: (B,N,2) detected points.
        weights: (N,) or (B,N) per-point weights; None = 1.
        scale_px: (B,) face size; default :func:`landmark_scale_px` of the targets.
        delta_pct: Pseudo-Huber knee, percent of the face size: quadratic below, linear above.

    Returns:
        Scalar: weighted mean of ``delta^2 (sqrt(1 + (d/delta)^2) - 1)`` with ``d`` in percent.
    """
    scale = landmark_scale_px(target_px) if scale_px is None else scale_px
    d = (predicted_px - target_px).norm(dim=-1) / scale[:, None] * 100.0
    per_point = delta_pct**2 * (torch.sqrt(1.0 + (d / delta_pct) ** 2) - 1.0)
    if weights is None:
        return per_point.mean()
    w = weights.expand_as(per_point)
    return (per_point * w).sum() / w.sum().clamp_min(1e-9)


def photometric_loss(rendered: torch.Tensor, observed: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """E_pho: masked mean of the per-vertex colour distance (L2,1: robust to occluders and specularities).

    Args:
        rendered: (B,N,3) model colours in [0,1].
        observed: (B,N,3) image colours sampled at the projected vertices.
        mask: (B,N) float or bool: visible, inside the face region of the image.
    """
    m = mask.to(rendered.dtype)
    dist = torch.sqrt(((rendered - observed) ** 2).sum(-1) + 1e-8)
    return (dist * m).sum() / m.sum().clamp_min(1.0)


def identity_prior(identity: torch.Tensor) -> torch.Tensor:
    """E_reg for ICT identity coefficients (~N(0,1) per mode): mean over the batch of ``sum(alpha^2)``."""
    return (identity**2).sum(-1).mean()


def expression_prior(expression: torch.Tensor, l1_weight: float = 1.0, l2_weight: float = 0.0) -> torch.Tensor:
    """E_reg for expressions in [0,1]: sparsity (L1 on non-negative values) plus an optional L2 term."""
    e = expression.abs()
    return (l1_weight * e.sum(-1) + l2_weight * (e**2).sum(-1)).mean()


def mesh_edges(triangles: np.ndarray) -> np.ndarray:
    """(E,2) int64 unique undirected edges of a triangle mesh."""
    t = np.asarray(triangles, np.int64)
    e = np.sort(np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]]), axis=1)
    return np.unique(e, axis=0)


def smoothness(values: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of per-vertex values across mesh edges: (...,V,C), (E,2) -> scalar."""
    d = values[..., edges[:, 0], :] - values[..., edges[:, 1], :]
    return (d**2).sum(-1).mean()
