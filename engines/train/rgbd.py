"""Training of CoarseNet-D (``facetrack train rgbd``), resumable, then ONNX export.

Data: RGB-D synthetic crops (``facetrack train synth --depth --crop-size 64``): colour, the depth a D4xx
would report (:class:`tracker.core.depth_sensor.DepthSensorModel`) with hands in front of 35 % of the
faces and a wall behind half of them, exact pose labels, and ~280 points of each face's surface with normals.

Loss (all in millimetres or degrees, so the weights read as trade-offs between errors a user sees):

* **E_geo**, the model-to-depth distance that trains the rigid pose directly (Guo et al.): every surface
  point is placed by the *predicted* pose, projected into the crop, and paired with the depth pixel there
  (projective association, as the ICP baseline does); the robust (Huber) point-to-plane distance
  ``n . (p - q)`` with the model's normal is the loss. Pairs without depth, on the far side of the head, or
  more than :data:`GEO_MAX_PAIR_M` apart along the ray (a hand, hair, the background) are masked: that is
  what lets E_geo work on real RGB-D frames without labels, and what makes the network look past a hand.
* **Pose supervision** where the label is exact (all synthetic crops): the rotation angle, the anchor's
  image offset (crop pixels) and its depth (mm).

Validation: the dataset's first shards (never trained on); rotation error (deg), translation error (mm)
and anchor depth error (mm), with and without a hand over the face. The best epoch by a combined error is
exported.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np

from engines.train.config import load_flat_config, warmup_cosine_lr
from tracker.core.crop import POSE_ANCHOR_HEAD_M
from tracker.core.depth_crop import DEPTH_CROP_PX, DEPTH_RANGE_M, depth_channels, reference_depth_m
from tracker.core.errors import ConfigError

log = logging.getLogger(__name__)

#: Pairs farther apart than this along the ray are not the face (metres; as the ICP baseline).
GEO_MAX_PAIR_M = 0.02
#: Huber threshold of E_geo, millimetres.
GEO_HUBER_MM = 3.0


@dataclasses.dataclass(frozen=True)
class RgbdTrainConfig:
    """One CoarseNet-D training run (TOML under engines/train/configs/, e.g. ``coarsenet_d_v1.toml``).

    Attributes:
        name: Run name (checkpoints under the cache's ``train/runs/<name>/``).
        data_name: RGB-D dataset under the cache's ``train/data/``.
        val_shards: Leading shards held out for validation.
        epochs: Passes over the training crops.
        batch_size: Crops per step.
        lr: Peak AdamW learning rate (warm-up, then cosine decay to 5 % of it).
        weight_decay: AdamW weight decay.
        w_rotation: Weight of the rotation error (per degree).
        w_offset: Weight of the anchor's image offset (per crop pixel).
        w_depth: Weight of the anchor's depth error (per mm).
        w_geo: Weight of E_geo (per mm).
        seed: Shuffle and augmentation seed.
    """

    name: str = "coarsenet_d_v1"
    data_name: str = "rgbd_v1"
    val_shards: int = 2
    epochs: int = 10
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    w_rotation: float = 1.0
    w_offset: float = 1.0
    w_depth: float = 0.3
    w_geo: float = 0.3
    seed: int = 0

    @classmethod
    def load(cls, name_or_path: str | Path) -> RgbdTrainConfig:
        return load_flat_config(cls, name_or_path, "RGB-D")


@dataclasses.dataclass
class RgbdData:
    """RGB-D crops and labels in memory.

    Attributes:
        image: (N,S,S,3) uint8.
        depth_mm: (N,S,S) uint16 sensor depth (0 = hole).
        z_ref_m: (N,) reference depth of each crop (:func:`tracker.core.depth_crop.reference_depth_m`).
        rotation: (N,3,3) head -> virtual camera.
        translation_m: (N,3) head origin in the virtual camera.
        focal_px: (N,) virtual focal length.
        surface: (N,P,3) head-frame surface points, metres.
        normal: (N,P,3) their unit normals.
        occluded: (N,) bool: a hand covers part of the face (measured from the depth: see :func:`load_rgbd`).
    """

    image: np.ndarray
    depth_mm: np.ndarray
    z_ref_m: np.ndarray
    rotation: np.ndarray
    translation_m: np.ndarray
    focal_px: np.ndarray
    surface: np.ndarray
    normal: np.ndarray
    occluded: np.ndarray

    def __len__(self) -> int:
        return len(self.z_ref_m)

    def anchor_m(self) -> np.ndarray:
        """(N,3) the pose anchor in the virtual camera."""
        return self.translation_m + self.rotation @ POSE_ANCHOR_HEAD_M.astype(np.float32)


def load_rgbd(shards: list[Path]) -> RgbdData:
    """Reads RGB-D shards; crops whose centre has too little depth for a reference are left out (the tracker
    falls back to colour there too)."""
    from tqdm import tqdm

    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("image", "depth_mm", "rotation", "translation", "focal_px",
                                                          "surface", "surface_normal")}  # fmt: skip
    for p in tqdm(shards, desc="loading RGB-D shards", unit="shard"):
        with np.load(p) as d:
            if "depth_mm" not in d:
                raise ConfigError(f"{p} has no depth: make the set with `facetrack train synth --depth`")
            for k in parts:
                parts[k].append(d[k])
    arr = {k: np.concatenate(v) for k, v in parts.items()}
    if arr["image"].shape[1] != DEPTH_CROP_PX:
        raise ConfigError(f"RGB-D crops are {arr['image'].shape[1]} px; CoarseNet-D reads {DEPTH_CROP_PX} "
                          "(make them with --crop-size 64)")  # fmt: skip
    z = arr["depth_mm"].astype(np.float32) / 1000.0
    z_ref = np.array([reference_depth_m(zi) or np.nan for zi in z], np.float32)
    keep = np.isfinite(z_ref)
    # A hand: measured depth well in front of the true face's surface over a visible share of the crop.
    anchor_z = (arr["translation"] + arr["rotation"] @ POSE_ANCHOR_HEAD_M.astype(np.float32))[:, 2]
    occluded = ((z > 0) & (z < anchor_z[:, None, None] - 0.05)).mean(axis=(1, 2)) > 0.03
    log.info("RGB-D crops: %d, %d without a depth reference left out, %d with a hand", len(z), int((~keep).sum()),
             int(occluded[keep].sum()))  # fmt: skip
    return RgbdData(arr["image"][keep], arr["depth_mm"][keep], z_ref[keep], arr["rotation"][keep].astype(np.float32),
                    arr["translation"][keep].astype(np.float32), arr["focal_px"][keep].astype(np.float32),
                    arr["surface"][keep].astype(np.float32), arr["surface_normal"][keep].astype(np.float32),
                    occluded[keep])  # fmt: skip


def network_input(image: np.ndarray, depth_mm: np.ndarray, z_ref_m: np.ndarray, rng: np.random.Generator | None) -> np.ndarray:
    """(B,5,S,S) float32 CoarseNet-D input from stored crops, with colour jitter when ``rng`` is given."""
    rgb = image.astype(np.float32) / 255.0
    if rng is not None:
        b = len(rgb)
        rgb = np.clip(rgb ** rng.uniform(0.75, 1.35, (b, 1, 1, 1)) * rng.uniform(0.7, 1.25, (b, 1, 1, 3)), 0, 1)
    z = depth_mm.astype(np.float32) / 1000.0
    depth = np.stack([depth_channels(zi, float(r)) for zi, r in zip(z, z_ref_m, strict=True)])
    return np.concatenate([rgb.transpose(0, 3, 1, 2), depth], axis=1).astype(np.float32)


def decode_outputs(out: dict, z_ref_m, focal_px, size_px: int = DEPTH_CROP_PX):
    """Torch outputs -> (rotation (B,3,3), anchor (B,3) metres) in the virtual camera."""
    import torch

    from engines.differentiable.rotation import sixd_to_matrix

    rot = sixd_to_matrix(out["rotation6d"])
    z = z_ref_m + out["depth_offset"][:, 0] * DEPTH_RANGE_M
    xy = out["offset"] * (size_px * z / focal_px)[:, None]
    return rot, torch.cat([xy, z[:, None]], dim=1)


def geo_energy_mm(rot, anchor, surface, normal, depth_m, focal_px, size_px: int = DEPTH_CROP_PX):
    """E_geo: robust point-to-plane distance of the posed surface to the depth (see the module docstring).

    Args:
        rot: (B,3,3) predicted head -> virtual camera rotation.
        anchor: (B,3) predicted anchor, metres.
        surface, normal: (B,P,3) head-frame points and normals.
        depth_m: (B,S,S) measured depth (0 = hole).
        focal_px: (B,) virtual focal length.

    Returns:
        (B,) mean Huber point-to-plane distance over each crop's associated points (mm), and (B,) their count.
    """
    import torch

    a = torch.as_tensor(POSE_ANCHOR_HEAD_M, dtype=rot.dtype)
    t = anchor - rot @ a
    p = surface @ rot.transpose(1, 2) + t[:, None]  # (B,P,3)
    n = normal @ rot.transpose(1, 2)
    c = (size_px - 1) / 2.0
    z = p[..., 2].clamp(min=1e-3)
    u = focal_px[:, None] * p[..., 0] / z + c
    v = focal_px[:, None] * p[..., 1] / z + c
    ui, vi = u.detach().round().long(), v.detach().round().long()
    inside = (ui >= 0) & (ui < size_px) & (vi >= 0) & (vi < size_px)
    flat = (vi.clamp(0, size_px - 1) * size_px + ui.clamp(0, size_px - 1))
    zq = torch.gather(depth_m.reshape(len(depth_m), -1), 1, flat)
    ok = inside & (zq > 0) & ((n * p).sum(-1) < 0) & ((zq - p[..., 2]).abs() < GEO_MAX_PAIR_M)
    # The depth point seen at the pixel the model point projects to (fixed: the association, not the target).
    q = torch.stack([(ui.to(p.dtype) - c) * zq / focal_px[:, None], (vi.to(p.dtype) - c) * zq / focal_px[:, None], zq], -1)
    res_mm = ((n * (p - q.detach())).sum(-1)) * 1000.0
    huber = torch.nn.functional.huber_loss(res_mm, torch.zeros_like(res_mm), reduction="none", delta=GEO_HUBER_MM)
    count = ok.sum(1)
    return (huber * ok).sum(1) / count.clamp(min=1), count


def _angle_deg(r_a, r_b):
    """Geodesic angle (B,) degrees from the chord |R_a - R_b|_F = 2 sqrt(2) sin(angle / 2): unlike arccos of the
    trace, its gradient stays finite as the angle goes to 0, where training spends its end."""
    import torch

    chord = torch.sqrt(((r_a - r_b) ** 2).sum((-1, -2)) + 1e-12) / (2.0 * np.sqrt(2.0))
    return torch.rad2deg(2.0 * torch.asin(chord.clamp(max=1.0)))


class RgbdTrainer:
    """Trains CoarseNet-D; resumable from ``<run>/last.pt``.

    Args:
        cfg: The run.
        run_dir: Checkpoint folder.
    """

    def __init__(self, cfg: RgbdTrainConfig, run_dir: Path) -> None:
        import torch

        from engines.models.coarsenet_d import CoarseNetD

        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        self.model = CoarseNetD()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.epoch = 0
        self.history: list[dict] = []
        self.best: dict | None = None
        last = self.run_dir / "last.pt"
        if last.is_file():
            state = torch.load(last, map_location="cpu", weights_only=False)
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["opt"])
            self.epoch, self.history, self.best = state["epoch"], state["history"], state["best"]
            log.info("resumed %s at epoch %d", last, self.epoch)

    def _lr(self, step: int, total: int) -> float:
        return warmup_cosine_lr(step, total, self.cfg.lr, total // 30)

    def _tensors(self, data: RgbdData, idx: np.ndarray, rng: np.random.Generator | None) -> dict:
        import torch

        return {
            "x": torch.from_numpy(network_input(data.image[idx], data.depth_mm[idx], data.z_ref_m[idx], rng)),
            "z_ref": torch.from_numpy(data.z_ref_m[idx]),
            "focal": torch.from_numpy(data.focal_px[idx]),
            "rot": torch.from_numpy(data.rotation[idx]),
            "anchor": torch.from_numpy(data.anchor_m()[idx]),
            "surface": torch.from_numpy(data.surface[idx]),
            "normal": torch.from_numpy(data.normal[idx]),
            "depth": torch.from_numpy(data.depth_mm[idx].astype(np.float32) / 1000.0),
        }

    def losses(self, b: dict) -> dict:
        """The loss terms of one batch (means over the batch)."""
        out = self.model(b["x"])
        rot, anchor = decode_outputs(out, b["z_ref"], b["focal"])
        geo, _ = geo_energy_mm(rot, anchor, b["surface"], b["normal"], b["depth"], b["focal"])
        px_true = b["anchor"][:, :2] / b["anchor"][:, 2:3] * b["focal"][:, None]
        px_pred = anchor[:, :2] / anchor[:, 2:3] * b["focal"][:, None]
        offset_px = (px_pred - px_true).abs().sum(1)  # the virtual focal length: crop pixels
        return {
            "rotation_deg": _angle_deg(rot, b["rot"]).mean(),
            "offset_px": offset_px.mean(),
            "depth_mm": ((anchor[:, 2] - b["anchor"][:, 2]).abs() * 1000.0).mean(),
            "geo_mm": geo.mean(),
        }

    def total(self, terms: dict):
        c = self.cfg
        return (c.w_rotation * terms["rotation_deg"] + c.w_offset * terms["offset_px"] + c.w_depth * terms["depth_mm"]
                + c.w_geo * terms["geo_mm"])  # fmt: skip

    def train(self, train: RgbdData, val: RgbdData, progress: bool = True) -> dict:
        """Runs the remaining epochs; returns the best epoch's validation record."""
        import torch
        from tqdm import tqdm

        cfg = self.cfg
        steps_per_epoch = len(train) // cfg.batch_size
        total = steps_per_epoch * cfg.epochs
        with tqdm(total=total, initial=self.epoch * steps_per_epoch, desc="train coarsenet-d", unit="step",
                  disable=not progress) as bar:  # fmt: skip
            while self.epoch < cfg.epochs:
                rng = np.random.default_rng([cfg.seed, self.epoch])
                order = rng.permutation(len(train))
                self.model.train()
                sums: dict[str, list[float]] = {}
                for k in range(steps_per_epoch):
                    step = self.epoch * steps_per_epoch + k
                    for g in self.opt.param_groups:
                        g["lr"] = self._lr(step, total)
                    terms = self.losses(self._tensors(train, order[k * cfg.batch_size:(k + 1) * cfg.batch_size], rng))
                    loss = self.total(terms)
                    self.opt.zero_grad(set_to_none=True)
                    loss.backward()
                    self.opt.step()
                    for name, v in terms.items():
                        sums.setdefault(name, []).append(float(v.detach()))
                    bar.update(1)
                    bar.set_postfix(rot=f"{np.mean(sums['rotation_deg'][-50:]):.2f}",
                                    geo=f"{np.mean(sums['geo_mm'][-50:]):.2f}")  # fmt: skip
                self.epoch += 1
                record = {"epoch": self.epoch, **{f"train_{k}": float(np.mean(v)) for k, v in sums.items()},
                          **self.validate(val)}  # fmt: skip
                self.history.append(record)
                if self.best is None or record["val_score"] < self.best["val_score"]:
                    self.best = record
                    torch.save(self.model.state_dict(), self.run_dir / "best.pt")
                torch.save({"model": self.model.state_dict(), "opt": self.opt.state_dict(), "epoch": self.epoch,
                            "history": self.history, "best": self.best}, self.run_dir / "last.pt")
                (self.run_dir / "history.json").write_text(json.dumps(self.history, indent=1))
                plot_history(self.history, self.run_dir / "curves.png")
                log.info("epoch %d: %s", self.epoch, json.dumps(record))
        return self.best or {}

    def predict(self, data: RgbdData, batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """(rotation (N,3,3), anchor (N,3) metres) on ``data``, without augmentation."""
        import torch

        self.model.eval()
        rots, anchors = [], []
        with torch.no_grad():
            for i in range(0, len(data), batch):
                idx = np.arange(i, min(len(data), i + batch))
                b = self._tensors(data, idx, None)
                rot, anchor = decode_outputs(self.model(b["x"]), b["z_ref"], b["focal"])
                rots.append(rot.numpy())
                anchors.append(anchor.numpy())
        return np.concatenate(rots), np.concatenate(anchors)

    def validate(self, val: RgbdData) -> dict:
        rot, anchor = self.predict(val)
        cos = np.clip((np.einsum("nij,nij->n", rot, val.rotation) - 1) / 2, -1, 1)
        rot_deg = np.degrees(np.arccos(cos))
        t_pred = anchor - rot @ POSE_ANCHOR_HEAD_M
        t_mm = np.linalg.norm(t_pred - val.translation_m, axis=1) * 1000.0
        depth_mm = np.abs(anchor[:, 2] - val.anchor_m()[:, 2]) * 1000.0
        rec: dict = {}
        for tag, m in (("", np.ones(len(val), bool)), ("_hand", val.occluded), ("_clear", ~val.occluded)):
            if m.any():
                rec[f"val_rotation_deg{tag}"] = float(rot_deg[m].mean())
                rec[f"val_translation_mm{tag}"] = float(t_mm[m].mean())
                rec[f"val_anchor_depth_mm{tag}"] = float(depth_mm[m].mean())
        rec["val_score"] = rec["val_rotation_deg"] + rec["val_translation_mm"] / 3.0  # targets 1 deg ~ 3 mm
        return rec

    def load_best(self) -> None:
        import torch

        self.model.load_state_dict(torch.load(self.run_dir / "best.pt", map_location="cpu"))


def plot_history(history: list[dict], path: Path) -> None:
    """Training curves: rotation and translation error, training and validation, clear and occluded (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    try:
        for ax, key, unit in ((axes[0], "rotation_deg", "deg"), (axes[1], "translation_mm", "mm")):
            if key == "rotation_deg":
                ax.plot(epochs, [h["train_rotation_deg"] for h in history], marker="o", label="train (augmented)")
            for tag, label in (("", "validation"), ("_clear", "validation, no hand"), ("_hand", "validation, hand")):
                if f"val_{key}{tag}" in history[-1]:
                    ax.plot(epochs, [h.get(f"val_{key}{tag}", np.nan) for h in history], marker=".", label=label)
            ax.set(xlabel="epoch", ylabel=f"mean error ({unit})", title=f"CoarseNet-D {key.split('_')[0]}")
            ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=90)
    finally:
        plt.close(fig)


def export_onnx(trainer: RgbdTrainer, out: Path, atol: float = 1e-4) -> float:
    """Exports the best weights (dynamic batch); returns max |onnx - torch| over the outputs."""
    from engines.models.coarsenet_d import IN_CHANNELS, INPUT_NAME, OUTPUT_NAMES
    from engines.train.export import export_checked

    trainer.load_best()
    return export_checked(trainer.model.eval(), (3, IN_CHANNELS, DEPTH_CROP_PX, DEPTH_CROP_PX), out, INPUT_NAME,
                          OUTPUT_NAMES, atol)  # fmt: skip


__all__ = ["GEO_HUBER_MM", "GEO_MAX_PAIR_M", "RgbdData", "RgbdTrainConfig", "RgbdTrainer", "decode_outputs",
           "export_onnx", "geo_energy_mm", "load_rgbd", "network_input"]  # fmt: skip
