"""Fitting the ICT model to real images by inverse rendering (landmarks + photometric + priors).

Unknowns per frame: rotation (axis-angle), translation (image-plane offset and log depth), 53 ICT
expressions in [0,1] and 27 SH lighting coefficients; shared by the clip: identity (first K modes) and a
per-vertex albedo. Two stages, both Adam on the CPU:

1. **Landmarks**: MediaPipe's 468 mesh points mapped onto ICT through the computed correspondence
   (:mod:`engines.teacher.correspondence`), pseudo-Huber distance in percent of the face size, identity
   and expression priors. Initialised with a PnP solve on the mean face.
2. **Photometric** (optional): each visible vertex's shaded colour ``albedo * SH(n)`` against the image
   colour at its projection, inside the landmarks' hull and away from eye/mouth openings, with the
   landmark term kept. The albedo is a per-image mean skin colour plus a smooth per-vertex residual; the
   lighting starts from a closed-form least-squares solve. The albedo/light scale ambiguity is fixed by
   that mean colour: mean shading over the face is ~1 and textures keep the colours "as photographed".

Real images have no known camera: :meth:`tracker.core.types.Intrinsics.assumed` (50 degree
field of view across the longer side) is used unless intrinsics are given.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from engines.differentiable import (
    FaceLayer,
    SurfacePoints,
    ambient_sh,
    axis_angle_to_matrix,
    facing_camera,
    head_to_camera,
    image_to_tensor,
    inside_image,
    intrinsics_tensor,
    matrix_to_ypr_deg,
    project,
    sample_image,
    sh_basis,
    sh_irradiance,
    vertex_normals,
)
from engines.fitting import losses
from engines.fitting.masks import hole_distance_weights, landmark_hull_mask
from engines.fitting.raster import vertex_visibility
from engines.teacher.correspondence import NUM_MP_MESH, Correspondence, load_correspondence
from tracker.core.errors import ConfigError
from tracker.core.face_model import NUM_ICT, FaceModel
from tracker.core.types import ASSUMED_FOV_DEG, Intrinsics

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FitConfig:
    """Fitting options (defaults tuned on the landmarks68 crops and the synthetic test).

    Attributes:
        num_identity: Identity modes fitted (first K of 100).
        fov_deg: Assumed field of view when no intrinsics are given.
        landmark_steps: Adam steps of stage 1.
        photometric_steps: Adam steps of stage 2 (0 = landmarks only).
        photo_region: Model region of the photometric term.
        w_identity: Identity prior weight (per squared coefficient).
        w_expression: Expression sparsity (L1) weight.
        w_photo: Photometric term weight (colour distance in [0,1] units).
        w_albedo: Albedo residual L2 weight.
        w_albedo_smooth: Albedo residual smoothness weight (over mesh edges).
        landmark_delta_pct: Pseudo-Huber knee of the landmark term, percent of face size.
        min_cos: Vertices seen more grazing than this (cosine) are left out of the photometric term.
        zbuffer: Also test visibility with a z-buffer (self-occlusion by the nose at large yaw).
        visibility_every: Photometric steps between visibility updates.
        torch_threads: torch intra-op threads during a fit (restored afterwards). The tensors are small
            (a few thousand vertices), so one thread is fastest; more threads spin and, on a busy machine,
            slow a fit down many times over.
    """

    num_identity: int = 50
    fov_deg: float = ASSUMED_FOV_DEG
    landmark_steps: int = 300
    photometric_steps: int = 60
    photo_region: str = "narrow_face"
    w_identity: float = 0.002
    w_expression: float = 0.005
    w_photo: float = 20.0
    w_albedo: float = 2.0
    w_albedo_smooth: float = 200.0
    landmark_delta_pct: float = 2.0
    min_cos: float = 0.2
    zbuffer: bool = True
    visibility_every: int = 20
    torch_threads: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.num_identity <= 100:
            raise ConfigError(f"num_identity must be in [0, 100], got {self.num_identity}")
        if self.landmark_steps < 1 or self.photometric_steps < 0:
            raise ConfigError("landmark_steps must be >= 1 and photometric_steps >= 0")
        for name in ("w_identity", "w_expression", "w_photo", "w_albedo", "w_albedo_smooth"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclasses.dataclass(frozen=True)
class FitResult:
    """The fitted parameters of B frames (one image: B = 1).

    Attributes:
        rotation: (B,3,3) float32 head-to-camera rotations.
        translation_m: (B,3) float32 head origin in the camera frame, metres.
        identity: (K,) float32 identity coefficients (shared by the clip).
        expression: (B,53) float32 ICT expressions in [0,1].
        sh: (B,27) float32 SH lighting, RGB-major (see :mod:`engines.differentiable.shading`).
        albedo: (V,3) float32 per-vertex albedo of ``albedo_region`` in [0,1], or None (landmarks only).
        albedo_region: Region the albedo's vertices belong to.
        intrinsics: The camera of each frame.
        points_px: (B,468,2) float32 projected model points of MediaPipe's mesh points.
        landmarks68_px: (B,68,2) float32 projected ICT iBUG-68 landmarks.
        landmark_error_px: (B,) float32 mean distance between ``points_px`` and the teacher's points.
        photometric_error: (B,) float32 mean colour distance over the masked visible vertices (nan if none).
        seconds: Wall time of the fit.
    """

    rotation: np.ndarray
    translation_m: np.ndarray
    identity: np.ndarray
    expression: np.ndarray
    sh: np.ndarray
    albedo: np.ndarray | None
    albedo_region: str
    intrinsics: tuple[Intrinsics, ...]
    points_px: np.ndarray
    landmarks68_px: np.ndarray
    landmark_error_px: np.ndarray
    photometric_error: np.ndarray
    seconds: float

    @property
    def batch(self) -> int:
        return int(self.rotation.shape[0])

    def ypr_deg(self) -> np.ndarray:
        """(B,3) yaw, pitch, roll in degrees (ARCHITECTURE §2)."""
        return matrix_to_ypr_deg(torch.from_numpy(self.rotation).double()).numpy().astype(np.float32)

    def summary(self) -> dict:
        """JSON-friendly numbers (no per-vertex arrays)."""
        return {
            "frames": self.batch,
            "ypr_deg": self.ypr_deg().round(3).tolist(),
            "translation_m": self.translation_m.round(5).tolist(),
            "identity": self.identity.round(4).tolist(),
            "expression": self.expression.round(4).tolist(),
            "sh": self.sh.round(4).tolist(),
            "landmark_error_px": self.landmark_error_px.round(3).tolist(),
            "photometric_error": [None if not np.isfinite(x) else round(float(x), 4) for x in self.photometric_error],
            "intrinsics": [dataclasses.asdict(k) for k in self.intrinsics],
            "seconds": round(self.seconds, 3),
        }


class Fitter:
    """Fits the ICT model to images with teacher landmarks. Build once, call :meth:`fit` many times."""

    def __init__(
        self,
        model: FaceModel | None = None,
        correspondence: Correspondence | None = None,
        config: FitConfig | None = None,
    ) -> None:
        self.model = model if model is not None else FaceModel.load()
        self.correspondence = correspondence if correspondence is not None else load_correspondence()
        self.config = config if config is not None else FitConfig()
        k = self.config.num_identity
        self.points = SurfacePoints(self.model, self.correspondence.triangle_vertices, self.correspondence.bary, k)
        lm = self.model.landmark_ids.astype(np.int64)
        self.landmarks68 = SurfacePoints(self.model, np.repeat(lm[:, None], 3, 1), np.tile([1.0, 0.0, 0.0], (68, 1)), k)
        self.point_weights = torch.from_numpy(self.correspondence.weights.astype(np.float32))
        self.dense = FaceLayer(self.model, k, region=self.config.photo_region)
        self.dense_triangles_np = self.dense.triangles.numpy()
        self.edges = torch.from_numpy(losses.mesh_edges(self.dense_triangles_np))
        self.vertex_weights = torch.from_numpy(hole_distance_weights(self.model, self.config.photo_region))

    # ------------------------------------------------------------------ public API
    def fit_image(self, image_rgb: np.ndarray, landmarks_px: np.ndarray, intrinsics: Intrinsics | None = None) -> FitResult:
        """Fits one image. ``landmarks_px``: (478,2) or (468,2) teacher points (px)."""
        return self.fit([image_rgb], np.asarray(landmarks_px)[None], None if intrinsics is None else [intrinsics])

    def fit(
        self,
        images_rgb: Sequence[np.ndarray],
        landmarks_px: np.ndarray,
        intrinsics: Sequence[Intrinsics] | None = None,
        photometric: bool | None = None,
    ) -> FitResult:
        """Fits B frames of one person (shared identity and albedo), e.g. the frames of a clip.

        Args:
            images_rgb: B (H,W,3) uint8 RGB images of one size (ignored when the photometric stage is off,
                except for their size).
            landmarks_px: (B,478,2) or (B,468,2) teacher points, px.
            intrinsics: Per-frame cameras; default :meth:`Intrinsics.assumed` with ``config.fov_deg``.
            photometric: Run stage 2; default ``config.photometric_steps > 0``.

        Returns:
            The :class:`FitResult`.
        """
        threads = torch.get_num_threads()
        torch.set_num_threads(self.config.torch_threads)
        try:
            return self._fit(images_rgb, landmarks_px, intrinsics, photometric)
        finally:
            torch.set_num_threads(threads)

    def _fit(self, images_rgb, landmarks_px, intrinsics, photometric) -> FitResult:
        t_start = time.perf_counter()
        cfg = self.config
        lms = np.asarray(landmarks_px, np.float32)
        b = len(images_rgb)
        if lms.ndim != 3 or lms.shape[0] != b or lms.shape[1] < NUM_MP_MESH or lms.shape[2] != 2:
            raise ConfigError(f"landmarks_px must be (B,478,2) or (B,468,2) for B={b} images, got {lms.shape}")
        h, w = images_rgb[0].shape[:2]
        if any(im.shape[:2] != (h, w) for im in images_rgb):
            raise ConfigError("all images of one fit must have the same size")
        cams = tuple(intrinsics) if intrinsics is not None else (Intrinsics.assumed(w, h, cfg.fov_deg),) * b
        if len(cams) != b:
            raise ConfigError(f"got {len(cams)} intrinsics for {b} images")
        k_t = torch.stack([intrinsics_tensor(c) for c in cams])
        target = torch.from_numpy(lms[:, :NUM_MP_MESH].copy())
        scale = losses.landmark_scale_px(target)

        params = self._init_params(lms[:, :NUM_MP_MESH], cams)
        self._landmark_stage(params, target, scale, k_t)
        do_photo = cfg.photometric_steps > 0 if photometric is None else photometric
        albedo = None
        photo_err = np.full(b, np.nan, np.float32)
        if do_photo:
            albedo, photo_err = self._photometric_stage(params, images_rgb, lms, target, scale, k_t, (h, w))
        return self._result(params, albedo, photo_err, cams, target, k_t, time.perf_counter() - t_start)

    # ------------------------------------------------------------------ stages
    def _init_params(self, targets: np.ndarray, cams: Sequence[Intrinsics]) -> dict[str, torch.Tensor]:
        """Pose from PnP against the mean face's mapped points; coefficients at zero."""
        with torch.no_grad():
            obj = self.points(None, None)[0].numpy().astype(np.float64)
        aa, txy, logz = [], [], []
        for tgt, cam in zip(targets, cams, strict=True):
            ok, rvec, tvec = cv2.solvePnP(obj, tgt.astype(np.float64), cam.matrix, None, flags=cv2.SOLVEPNP_EPNP)
            if ok:
                ok, rvec, tvec = cv2.solvePnP(obj, tgt.astype(np.float64), cam.matrix, None, rvec, tvec, True,
                                              flags=cv2.SOLVEPNP_ITERATIVE)  # fmt: skip
            if not ok or tvec[2, 0] <= 0:
                # A frontal face at the landmarks' centre, at the distance that matches their size.
                rvec = np.zeros((3, 1))
                size = np.sqrt(np.prod(tgt.max(0) - tgt.min(0)))
                z = cam.fx * 0.14 / max(size, 1.0)
                c = tgt.mean(0)
                tvec = np.array([[(c[0] - cam.cx) / cam.fx * z], [(c[1] - cam.cy) / cam.fy * z], [z]])
            aa.append(rvec[:, 0])
            txy.append(tvec[:2, 0] / tvec[2, 0])
            logz.append([np.log(tvec[2, 0])])
        f32 = torch.float32
        return {
            "aa": torch.tensor(np.array(aa), dtype=f32, requires_grad=True),
            "txy": torch.tensor(np.array(txy), dtype=f32, requires_grad=True),
            "logz": torch.tensor(np.array(logz), dtype=f32, requires_grad=True),
            "identity": torch.zeros(self.config.num_identity, dtype=f32, requires_grad=True),
            "expression": torch.zeros(len(cams), NUM_ICT, dtype=f32, requires_grad=True),
        }

    @staticmethod
    def _pose(params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.exp(params["logz"])
        return axis_angle_to_matrix(params["aa"]), torch.cat([params["txy"] * z, z], dim=-1)

    def _landmark_energy(self, params, target, scale, k_t) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        rot, trans = self._pose(params)
        pts = project(head_to_camera(self.points(params["identity"], params["expression"]), rot, trans), k_t)
        e = losses.landmark_loss(pts, target, self.point_weights, scale, cfg.landmark_delta_pct)
        e = e + cfg.w_identity * losses.identity_prior(params["identity"])
        e = e + cfg.w_expression * losses.expression_prior(params["expression"])
        return e, pts

    def _landmark_stage(self, params, target, scale, k_t) -> None:
        """Adam from the PnP start, one-cycle learning rate; expressions projected into [0,1] every step."""
        steps = self.config.landmark_steps
        opt = torch.optim.Adam(
            [
                {"params": [params["aa"]], "lr": 0.02},
                {"params": [params["txy"]], "lr": 0.005},
                {"params": [params["logz"]], "lr": 0.02},
                {"params": [params["identity"]], "lr": 0.1},
                {"params": [params["expression"]], "lr": 0.05},
            ]
        )
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in opt.param_groups], total_steps=steps, pct_start=0.1
        )
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            energy, _ = self._landmark_energy(params, target, scale, k_t)
            energy.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                params["expression"].clamp_(0.0, 1.0)

    def _photometric_stage(self, params, images_rgb, lms, target, scale, k_t, size_hw):
        cfg = self.config
        h, w = size_hw
        image = image_to_tensor(np.stack(images_rgb))
        hull = torch.from_numpy(np.stack([landmark_hull_mask(p[:NUM_MP_MESH], h, w) for p in lms]))
        nv = self.dense.num_vertices

        def geometry():
            rot, trans = self._pose(params)
            cam = head_to_camera(self.dense(params["identity"], params["expression"]), rot, trans)
            return cam, project(cam, k_t), vertex_normals(cam, self.dense.triangles)

        def visibility(cam, px, normals):
            with torch.no_grad():
                vis = facing_camera(normals, cam, cfg.min_cos) & inside_image(px, w, h)
                ix = px[..., 0].round().long().clamp(0, w - 1)
                iy = px[..., 1].round().long().clamp(0, h - 1)
                vis &= hull[torch.arange(len(px))[:, None], iy, ix]
                if cfg.zbuffer:
                    for i in range(len(px)):
                        zb = vertex_visibility(px[i].numpy(), cam[i, :, 2].numpy(), self.dense_triangles_np, h, w, 0.004)
                        vis[i] &= torch.from_numpy(zb)
                return vis.float() * self.vertex_weights[None]

        # Closed-form start: albedo = the face's median colour, lighting by least squares given it.
        with torch.no_grad():
            cam, px, normals = geometry()
            mask = visibility(cam, px, normals)
            observed = sample_image(image, px)
            sel = mask > 0.5
            if not bool(sel.any()):
                log.warning("no visible face vertex inside the landmarks; skipping the photometric stage")
                return None, np.full(len(images_rgb), np.nan, np.float32)
            base = observed[sel].median(0).values.clamp(0.05, 0.95)  # (3,)
            sh0 = self._solve_sh(sh_basis(normals), observed, mask, base)
        sh = sh0.clone().requires_grad_(True)
        delta = torch.zeros(nv, 3, requires_grad=True)
        opt = torch.optim.Adam(
            [
                {"params": [params["aa"]], "lr": 0.002},
                {"params": [params["txy"]], "lr": 0.0005},
                {"params": [params["logz"]], "lr": 0.002},
                {"params": [params["identity"]], "lr": 0.02},
                {"params": [params["expression"]], "lr": 0.01},
                {"params": [sh], "lr": 0.05},
                {"params": [delta], "lr": 0.02},
            ]
        )
        for step in range(cfg.photometric_steps):
            opt.zero_grad(set_to_none=True)
            cam, px, normals = geometry()
            if step % cfg.visibility_every == 0 and step > 0:
                mask = visibility(cam, px, normals)
            observed = sample_image(image, px)
            albedo = (base + delta)[None]
            rendered = albedo * sh_irradiance(normals, sh)
            e_lan, _ = self._landmark_energy(params, target, scale, k_t)
            energy = (
                e_lan
                + cfg.w_photo * losses.photometric_loss(rendered, observed, mask)
                + cfg.w_albedo * (delta**2).sum(-1).mean()
                + cfg.w_albedo_smooth * losses.smoothness(delta, self.edges)
            )
            energy.backward()
            opt.step()
            with torch.no_grad():
                params["expression"].clamp_(0.0, 1.0)
        with torch.no_grad():
            cam, px, normals = geometry()
            mask = visibility(cam, px, normals)
            albedo = (base + delta).clamp(0.0, 1.0)
            rendered = albedo[None] * sh_irradiance(normals, sh)
            dist = (rendered - sample_image(image, px)).norm(dim=-1)
            err = (dist * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        params["sh"] = sh.detach()
        return albedo.numpy().astype(np.float32), err.numpy().astype(np.float32)

    @staticmethod
    def _solve_sh(basis: torch.Tensor, observed: torch.Tensor, mask: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """Per frame and channel: argmin_sh sum_v m_v (base_c Y(n_v).sh_c - I_vc)^2 + small ridge on bands 1-2."""
        out = []
        ridge = torch.tensor([0.0] + [1e-2] * 8)
        for i in range(basis.shape[0]):
            m = mask[i][:, None]
            a = basis[i] * m.sqrt()
            ata = a.T @ a + torch.diag(ridge) * m.sum()
            coeffs = []
            for c in range(3):
                rhs = a.T @ (observed[i, :, c : c + 1] * m.sqrt()) / base[c]
                coeffs.append(torch.linalg.solve(ata, rhs)[:, 0])
            out.append(torch.cat(coeffs))
        return torch.stack(out)

    def _result(self, params, albedo, photo_err, cams, target, k_t, seconds) -> FitResult:
        with torch.no_grad():
            rot, trans = self._pose(params)
            pts = project(head_to_camera(self.points(params["identity"], params["expression"]), rot, trans), k_t)
            lm68 = project(head_to_camera(self.landmarks68(params["identity"], params["expression"]), rot, trans), k_t)
            err = (pts - target).norm(dim=-1).mean(1)
        b = len(cams)
        sh = params.get("sh")
        if sh is None:
            sh = ambient_sh(1.0, b)
        return FitResult(
            rotation=rot.numpy().astype(np.float32),
            translation_m=trans.numpy().astype(np.float32),
            identity=params["identity"].detach().numpy().astype(np.float32),
            expression=params["expression"].detach().numpy().astype(np.float32),
            sh=sh.numpy().astype(np.float32),
            albedo=albedo,
            albedo_region=self.config.photo_region,
            intrinsics=tuple(cams),
            points_px=pts.numpy().astype(np.float32),
            landmarks68_px=lm68.numpy().astype(np.float32),
            landmark_error_px=err.numpy().astype(np.float32),
            photometric_error=photo_err,
            seconds=float(seconds),
        )
