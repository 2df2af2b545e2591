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
from tracker.core.crop import POSE_ANCHOR_HEAD_M
from tracker.core.face_model import FaceModel
from tracker.core.face_model.arkit import ARKIT_NAMES, ICT_EXPRESSION_NAMES, ICT_TO_ARKIT, UNSUPPORTED_ARKIT

#: Extra weight of the expression channels people watch (eyes, brows, mouth corners, jaw) in the synthetic
#: expression term, by ICT name prefix; the others weigh 1, and the weights are normalised to a mean of 1.
EXPRESSION_CHANNEL_GAIN = {"eyeBlink": 4.0, "eyeSquint": 2.0, "eyeWide": 2.0, "browInnerUp": 2.0, "browDown": 2.0,
                           "browOuterUp": 2.0, "jawOpen": 3.0, "mouthSmile": 2.0, "mouthFrown": 2.0,
                           "mouthFunnel": 2.0, "mouthPucker": 2.0, "mouthClose": 1.5}  # fmt: skip
#: Weight of each ARKit channel of MediaPipe's blendshapes in the real teacher term (1 unless listed): low where
#: the teacher is known to be weak (it barely moves cheekPuff, eyeWide and noseSneer), 0 for what ICT cannot
#: express.
TEACHER_CHANNEL_WEIGHT = {"cheekPuff": 0.2, "eyeWideLeft": 0.2, "eyeWideRight": 0.2, "noseSneerLeft": 0.2,
                          "noseSneerRight": 0.2, **{n: 0.0 for n in UNSUPPORTED_ARKIT}}  # fmt: skip


def expression_channel_weights() -> np.ndarray:
    """(53,) float32 per-ICT-channel weights of the synthetic expression term (mean 1)."""
    w = np.array([next((g for k, g in EXPRESSION_CHANNEL_GAIN.items() if n.startswith(k)), 1.0)
                  for n in ICT_EXPRESSION_NAMES], np.float32)  # fmt: skip
    return w / w.mean()


def teacher_channel_weights() -> np.ndarray:
    """(52,) float32 per-ARKit-channel weights of the real teacher term."""
    return np.array([TEACHER_CHANNEL_WEIGHT.get(n, 1.0) for n in ARKIT_NAMES], np.float32)


def soft_bce_excess(prob: torch.Tensor, target: torch.Tensor, logit: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy of soft targets in [0, 1] minus its floor, the targets' own entropy (so a perfect
    prediction scores 0): elementwise KL(target || prediction), in nats.

    Its minimiser is the conditional mean of the target (an L1 loss's is the median, 0 for sparse expression
    labels), and with ``logit`` given its gradient there is ``prob - target``, which the sigmoid's saturation
    does not damp. Without logits (validation, outside training mode) they are recovered from ``prob``.

    Args:
        prob: (...) predicted probabilities.
        target: (...) targets in [0, 1].
        logit: (...) the pre-sigmoid values of ``prob``, or None.
    """
    if logit is None:
        logit = torch.logit(prob.clamp(1e-6, 1.0 - 1e-6))
    bce = F.binary_cross_entropy_with_logits(logit, target, reduction="none")
    entropy = -(torch.xlogy(target, target) + torch.xlogy(1.0 - target, 1.0 - target))
    return bce - entropy


def expression_error(pred: dict[str, torch.Tensor], target: torch.Tensor, kind: str,
                     channel_weights: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """(B,) per-sample expression term of the synthetic crops.

    ``l1``: mean absolute error of the 53 coefficients (stages v1 to v1h). On sparse labels it pulls every
    channel towards 0, where the sigmoid's slope vanishes: the expression head of v1h collapsed (blinks stuck
    at 0.047). ``bce``: :func:`soft_bce_excess` on the logits, weighted per channel (``channel_weights``).
    """
    if kind == "l1":
        return (pred["expression"] - target).abs().mean(1)
    excess = soft_bce_excess(pred["expression"], target, pred.get("expression_logit"))
    return (excess * channel_weights).mean(1)


def crop_translation(offset: torch.Tensor, log_scale: torch.Tensor, focal_px: torch.Tensor, size_px: int,
                     rotation: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """(B,3) head origin in the crop's virtual camera from the crop-relative parametrisation (tracker/core/crop.py):
    the offset and scale place the pose anchor, and the (B,3,3) head -> camera ``rotation`` puts the origin
    behind it."""
    z = focal_px / (size_px * torch.exp(log_scale[:, 0]))
    xy = offset * size_px * z[:, None] / focal_px[:, None]
    anchor = torch.as_tensor(POSE_ANCHOR_HEAD_M, dtype=rotation.dtype)
    return torch.cat([xy, z[:, None]], dim=1) - rotation @ anchor


def crop_pixels(points_cam_m: torch.Tensor, focal_px: torch.Tensor, size_px: int) -> torch.Tensor:
    """(B,N,2) crop pixels of (B,N,3) points in the crop's virtual camera (principal point at the centre)."""
    c = (size_px - 1) / 2.0
    return focal_px[:, None, None] * points_cam_m[..., :2] / points_cam_m[..., 2:3].clamp_min(1e-3) + c


def project_crop(points_head_m, rotation, translation_m, focal_px, size_px: int) -> torch.Tensor:
    """(B,N,2) crop pixels of head-frame points posed in the virtual camera."""
    return crop_pixels(points_head_m @ rotation.transpose(1, 2) + translation_m[:, None, :], focal_px, size_px)


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
        self.register_buffer("expression_weights", torch.from_numpy(expression_channel_weights()), persistent=False)

    def forward(self, pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> LossOutput:
        w = self.weights
        face = target["is_face"]
        n_face = face.sum().clamp_min(1.0)

        def masked_mean(per_sample: torch.Tensor) -> torch.Tensor:
            return (per_sample * face).sum() / n_face

        r_pred = sixd_to_matrix(pred["rotation6d"])
        t_pred = crop_translation(pred["offset"], pred["log_scale"], target["focal_px"], self.size_px, r_pred)
        t_true = crop_translation(target["offset"], target["log_scale"], target["focal_px"], self.size_px,
                                  target["rotation"])  # fmt: skip
        v_pred = self.layer(pred["identity"], pred["expression"])
        v_true = self.layer(target["identity"], target["expression"])
        uv_pred = project_crop(v_pred, r_pred, t_pred, target["focal_px"], self.size_px)
        uv_true = project_crop(v_true, target["rotation"], t_true, target["focal_px"], self.size_px)
        err_px = (uv_pred - uv_true).norm(dim=-1)  # (B, 68 + N)

        terms = {
            "landmark_px": masked_mean(err_px[:, :68].mean(1)),
            "vertex_px": masked_mean(err_px[:, 68:].mean(1)),
            "shape_mm": masked_mean((v_pred - v_true).norm(dim=-1).mean(1) * 1e3),
            "expression": masked_mean(expression_error(pred, target["expression"], w.expression_loss,
                                                       self.expression_weights)),
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
    E_exp (``real_expression``, when the target holds ``blendshapes``): the predicted ICT expressions mapped to
    ARKit against the teacher's 52 blendshape scores, :func:`soft_bce_excess` weighted per channel
    (:data:`TEACHER_CHANNEL_WEIGHT`); rows of NaN (no teacher scores) are left out.

    Args:
        model: The ICT face model.
        weights: Term weights (``real_landmark_px``, ``real_identity``).
        num_identity: K identity modes the network predicts.
        size_px: Crop side.
        correspondence: MediaPipe <-> ICT correspondence; default: the committed one.
        delta_px: Pseudo-Huber knee, crop pixels.
    """

    TERMS = ("real_landmark_px", "real_identity", "real_expression")

    def __init__(self, model: FaceModel, weights: LossSection, num_identity: int, size_px: int = 128,
                 correspondence=None, delta_px: float = 1.0) -> None:  # fmt: skip
        super().__init__()
        from engines.teacher.correspondence import load_correspondence

        corr = correspondence if correspondence is not None else load_correspondence()
        self.points = SurfacePoints(model, corr.triangle_vertices, corr.bary, num_identity)
        self.register_buffer("point_weights", torch.from_numpy(np.asarray(corr.weights, np.float32)), persistent=False)
        self.register_buffer("ict_to_arkit", torch.from_numpy(np.array(ICT_TO_ARKIT)), persistent=False)
        self.register_buffer("teacher_weights", torch.from_numpy(teacher_channel_weights()), persistent=False)
        self.weights = weights
        self.size_px = size_px
        self.delta_px = delta_px

    def project(self, pred: dict[str, torch.Tensor], focal_px: torch.Tensor) -> torch.Tensor:
        """(B,468,2) crop pixels of the predicted face's MediaPipe-corresponding points."""
        rotation = sixd_to_matrix(pred["rotation6d"])
        translation = crop_translation(pred["offset"], pred["log_scale"], focal_px, self.size_px, rotation)
        return project_crop(self.points(pred["identity"], pred["expression"]), rotation, translation, focal_px,
                            self.size_px)  # fmt: skip

    def forward(self, pred: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> LossOutput:
        """Args: pred: network outputs; target: ``points`` (B,468,2) crop px, ``focal_px`` (B,) and optionally
        ``blendshapes`` (B,52) teacher ARKit scores.

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
        exp = self.teacher_expression(pred, target.get("blendshapes"))
        terms = {"real_landmark_px": lan, "real_identity": reg, "real_expression": exp}
        total = w.real_landmark_px * lan + w.real_identity * reg + w.real_expression * exp
        return LossOutput(total, {**{k: float(v.detach()) for k, v in terms.items()}, "real_error_px": float(err)})


    def teacher_expression(self, pred: dict[str, torch.Tensor], blendshapes: torch.Tensor | None) -> torch.Tensor:
        """E_exp: weighted mean KL of the predicted ARKit values to the teacher's (B,52) scores (0 without any)."""
        if blendshapes is None:
            return pred["expression"].new_zeros(())
        ok = torch.isfinite(blendshapes).all(dim=1)
        if not bool(ok.any()):
            return pred["expression"].new_zeros(())
        # ARKit = mean of ICT halves for browInnerUp / cheekPuff, else the ICT channel itself: no logits to
        # pass on, but the probabilities' log keeps the gradient p - y on the one-to-one channels.
        arkit = (pred["expression"][ok] @ self.ict_to_arkit.T).clamp(1e-7, 1.0 - 1e-7)
        excess = soft_bce_excess(arkit, blendshapes[ok].clamp(0.0, 1.0), torch.logit(arkit))
        return (excess * self.teacher_weights).sum(1).mean() / self.teacher_weights.sum()


def _masked_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean of (B,N) values with (B,N) non-negative weights (0 when all weights are 0)."""
    return (values * weights).sum() / weights.sum().clamp_min(1e-6)


def pseudo_huber(residual_norm: torch.Tensor, delta: float) -> torch.Tensor:
    """delta * (sqrt(1 + (r/delta)^2) - 1): quadratic below ``delta``, ~linear above (bounded pull of outliers)."""
    return delta * (torch.sqrt(1.0 + (residual_norm / delta).square()) - 1.0)


class PairLoss(torch.nn.Module):
    """The temporal terms on pairs of real frames cut with one crop (engines/train/pairs.py), plus the
    photometric term E_pho and E_lan on both frames.

    E_flow: the predicted faces of the two frames, projected into the shared crop, move by the optical flow:
    for each visible MediaPipe-corresponding surface point ``p_a`` of the first face,
    ``(p_b - p_a) - flow(p_a)`` in crop px, robust (pseudo-Huber), weighted by the correspondence weights.
    Gradients reach both frames' predictions; the flow is sampled at a detached ``p_a``.
    E_same: mean squared difference of the two identity vectors (one person).
    E_pho: on the first frame, each visible point's image colour against the predicted SH shading of its
    normal, ``k * irradiance``, with ``k`` a per-sample, per-channel albedo solved in closed form (the network
    predicts no albedo): the shading pattern, not the skin colour, is what is compared. Robust L1 in percent
    of full scale. Normals come from the neutral face (expressions bend them little where it matters).
    Visibility: the point faces the camera (cosine > ``min_cos``) and projects inside the crop; it is
    computed from the prediction and detached.

    Args:
        model: The ICT face model.
        weights: ``pair_flow_px``, ``pair_same``, ``pair_photo``, and ``real_landmark_px`` / ``real_identity``
            for E_lan / E_reg.
        num_identity: K identity modes.
        size_px: Crop side.
        correspondence: MediaPipe <-> ICT correspondence; default: the committed one.
        delta_px: Pseudo-Huber knee of E_flow (and E_lan), crop px.
        min_cos: Grazing points are left out.
    """

    TERMS = ("pair_flow_px", "pair_same", "pair_photo", "pair_landmark_px")

    def __init__(self, model: FaceModel, weights: LossSection, num_identity: int, size_px: int = 128,
                 correspondence=None, delta_px: float = 1.0, min_cos: float = 0.2) -> None:  # fmt: skip
        super().__init__()
        from engines.differentiable.shading import vertex_normals
        from engines.teacher.correspondence import load_correspondence

        corr = correspondence if correspondence is not None else load_correspondence()
        self.real = RealLandmarkLoss(model, weights, num_identity, size_px, corr, delta_px)
        verts = torch.from_numpy(model.head_vertices_m().astype(np.float32))[None]
        normals = vertex_normals(verts, torch.from_numpy(model.triangles.astype(np.int64)))[0]
        tv = torch.from_numpy(np.asarray(corr.triangle_vertices, np.int64))
        bary = torch.from_numpy(np.asarray(corr.bary, np.float32))
        point_normals = F.normalize((normals[tv] * bary[..., None]).sum(1), dim=-1)
        self.register_buffer("point_normals", point_normals, persistent=False)
        self.weights = weights
        self.size_px = size_px
        self.delta_px = delta_px
        self.min_cos = min_cos

    def posed(self, pred: dict[str, torch.Tensor], focal_px: torch.Tensor):
        """Camera-frame points (B,N,3), crop pixels (B,N,2) and camera-frame normals (B,N,3) of a prediction."""
        rotation = sixd_to_matrix(pred["rotation6d"])
        translation = crop_translation(pred["offset"], pred["log_scale"], focal_px, self.size_px, rotation)
        cam = self.real.points(pred["identity"], pred["expression"]) @ rotation.transpose(1, 2) + translation[:, None, :]
        return cam, crop_pixels(cam, focal_px, self.size_px), self.point_normals @ rotation.transpose(1, 2)

    def forward(self, pred_a: dict[str, torch.Tensor], pred_b: dict[str, torch.Tensor],
                target: dict[str, torch.Tensor]) -> LossOutput:  # fmt: skip
        """Args: pred_a / pred_b: network outputs for the first / second crops; target: ``flow`` (B,2,N,N)
        crop px, ``image_a`` (B,3,N,N) in [0,1], ``points`` (B,2,468,2) teacher points (rows of NaN = none),
        ``focal_px`` (B,).

        Returns:
            The weighted total (E_lan and E_reg weighted as in :class:`RealLandmarkLoss`); the terms, with
            ``pair_landmark_px`` the robust E_lan of both frames, and ``pair_flow_error_px`` (plain mean, a metric).
        """
        from engines.differentiable.sampling import facing_camera, inside_image, sample_image
        from engines.differentiable.shading import sh_irradiance

        focal = target["focal_px"]
        cam_a, uv_a, n_a = self.posed(pred_a, focal)
        _, uv_b, _ = self.posed(pred_b, focal)
        with torch.no_grad():
            visible = facing_camera(n_a, cam_a, self.min_cos) & inside_image(uv_a, self.size_px, self.size_px, 2.0)
            wts = visible.float() * self.real.point_weights[None]
            flow = sample_image(target["flow"], uv_a)
        residual = ((uv_b - uv_a) - flow).norm(dim=-1)
        e_flow = _masked_mean(pseudo_huber(residual, self.delta_px), wts)
        e_same = (pred_a["identity"] - pred_b["identity"]).square().mean()

        colour = sample_image(target["image_a"], uv_a)
        irr = sh_irradiance(n_a, pred_a["lighting"])
        m = wts[..., None]
        albedo = (m * colour * irr).sum(1, keepdim=True) / (m * irr.square()).sum(1, keepdim=True).clamp_min(1e-6)
        e_pho = _masked_mean(torch.sqrt((colour - albedo * irr).square().sum(-1) + 1e-6) * 100.0, wts)

        pts = target["points"]
        lan = self.real(pred_a, {"points": pts[:, 0], "focal_px": focal})
        lan_total, lan_px = lan.total, lan.terms["real_landmark_px"]
        ok_b = torch.isfinite(pts[:, 1]).all(dim=(1, 2))
        if bool(ok_b.any()):
            lan_b = self.real({k: v[ok_b] for k, v in pred_b.items()}, {"points": pts[ok_b, 1], "focal_px": focal[ok_b]})
            lan_total = 0.5 * (lan_total + lan_b.total)
            lan_px = 0.5 * (lan_px + lan_b.terms["real_landmark_px"])
        w = self.weights
        terms = {"pair_flow_px": e_flow, "pair_same": e_same, "pair_photo": e_pho}
        total = w.pair_flow_px * e_flow + w.pair_same * e_same + w.pair_photo * e_pho + lan_total
        with torch.no_grad():
            flow_err = _masked_mean(residual, wts)
        return LossOutput(total, {**{k: float(v.detach()) for k, v in terms.items()}, "pair_landmark_px": lan_px,
                                  "pair_flow_error_px": float(flow_err)})  # fmt: skip
