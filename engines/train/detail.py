"""Training of the eye and mouth detail networks (``facetrack train detail``), resumable, then ONNX export.

Data: :mod:`engines.train.detail_data`. Each row gives two eye samples (the right eye, and the left eye cut
mirrored, with the ``...Left`` targets) and one mouth sample, mirrored at random with its Left/Right targets
swapped. Patches are jittered (position, scale, roll, blur, exposure, noise, down-sampling) by more than
MediaPipe's and the tracker's landmarks disagree, since the tracker places them at run time.

Loss: binary cross-entropy with logits against soft targets, per channel. MediaPipe's channels that it is
known not to move (eyeWide stays near 0 on wide-open eyes) are masked on real rows, so only the synthetic
rows' exact labels teach them.

Validation: whole clips held out (by a hash of their name, so the split never changes when data is added)
and one synthetic shard; per channel Pearson r against the teacher on the held-out clips, and the MAE and
blink hit rate on the synthetic rows. The best epoch by validation loss is exported.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import zlib
from pathlib import Path

import cv2
import numpy as np

from engines.train.config import load_flat_config, warmup_cosine_lr
from engines.train.detail_data import DetailShard, load_dataset
from tracker.core.errors import ConfigError
from tracker.core.regions import (
    EYE_CHANNELS_LEFT,
    EYE_CHANNELS_RIGHT,
    EYE_PATCH_PX,
    MOUTH_CHANNELS,
    MOUTH_PATCH_PX,
    arkit_indices,
    mirror_channels,
)

log = logging.getLogger(__name__)

PARTS = ("eye", "mouth")
#: Channels MediaPipe's Face Landmarker is known not to move (issue 13): real rows do not teach them.
TEACHER_WEAK = ("eyeWideLeft", "eyeWideRight", "eyeWide")


@dataclasses.dataclass(frozen=True)
class DetailTrainConfig:
    """One detail training run (TOML under engines/train/configs/, e.g. ``detail_v1.toml``).

    Attributes:
        name: Run name (checkpoints under the cache's ``train/runs/<name>/``).
        data_name: Detail dataset under the cache's ``train/data/``.
        epochs: Passes over the training rows.
        batch_size: Patches per step.
        lr: Peak AdamW learning rate (cosine decay to 5 % of it).
        weight_decay: AdamW weight decay.
        val_fraction: Share of real clips held out.
        rotate_deg: Std of the roll jitter.
        scale_jitter: Half-range of the scale jitter (relative).
        shift_jitter: Std of the shift jitter, as a fraction of the patch side.
        seed: Split and augmentation seed.
    """

    name: str = "detail_v1"
    data_name: str = "detail_v1"
    epochs: int = 12
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.15
    rotate_deg: float = 5.0
    scale_jitter: float = 0.12
    shift_jitter: float = 0.05
    seed: int = 0

    @classmethod
    def load(cls, name_or_path: str | Path) -> DetailTrainConfig:
        return load_flat_config(cls, name_or_path, "detail")


def channels_of(part: str) -> tuple[str, ...]:
    if part not in PARTS:
        raise ConfigError(f"unknown detail part {part!r}; choose one of {PARTS}")
    return EYE_CHANNELS_RIGHT if part == "eye" else MOUTH_CHANNELS


def patch_px(part: str) -> int:
    return EYE_PATCH_PX if part == "eye" else MOUTH_PATCH_PX


def is_validation(shard_name: str, val_fraction: float) -> bool:
    """Held-out clips: a stable hash of the shard name; synthetic: the first synthetic shard of each set."""
    if shard_name.startswith("synth_"):
        return shard_name.endswith("shard_00000")
    return (zlib.crc32(shard_name.encode()) % 1000) / 1000.0 < val_fraction


@dataclasses.dataclass
class PartData:
    """One network's samples.

    Attributes:
        patches: (N,P,P) uint8 stored patches (P = patch side x CONTEXT).
        targets: (N,K) float32.
        weights: (N,K) float32 per-channel loss weights (0 where the teacher is not trusted).
        exact: (N,) bool synthetic rows.
        mirror: (K,) int64 or None: channel permutation of a left-right flip (mouth), None = no flips (eye).
    """

    patches: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    exact: np.ndarray
    mirror: np.ndarray | None

    def __len__(self) -> int:
        return int(self.targets.shape[0])


def part_data(shards: list[DetailShard], part: str) -> PartData:
    """The samples of ``part`` from ``shards``."""
    if not shards:
        raise ConfigError("no detail shards")
    names = channels_of(part)
    patches, targets, exact = [], [], []
    for s in shards:
        if part == "eye":
            patches += [s.eyes[:, 0], s.eyes[:, 1]]
            targets += [s.arkit[:, arkit_indices(EYE_CHANNELS_RIGHT)], s.arkit[:, arkit_indices(EYE_CHANNELS_LEFT)]]
            exact += [s.exact, s.exact]
        else:
            patches.append(s.mouth)
            targets.append(s.arkit[:, arkit_indices(MOUTH_CHANNELS)])
            exact.append(s.exact)
    exact_arr = np.concatenate(exact)
    targets_arr = np.clip(np.concatenate(targets), 0.0, 1.0).astype(np.float32)
    weights = np.ones_like(targets_arr)
    weak = [i for i, n in enumerate(names) if n in TEACHER_WEAK or n.replace("Right", "") in TEACHER_WEAK]
    weights[np.ix_(~exact_arr, weak)] = 0.0
    return PartData(np.concatenate(patches), targets_arr, weights, exact_arr,
                    None if part == "eye" else mirror_channels(MOUTH_CHANNELS))  # fmt: skip


def augment(patches: np.ndarray, out_px: int, rng: np.random.Generator, cfg: DetailTrainConfig,
            jitter: bool = True) -> np.ndarray:  # fmt: skip
    """(B,P,P) uint8 stored patches -> (B,out,out) float32 in [0,1], jittered (or centre-cut when not)."""
    b, p = patches.shape[0], patches.shape[1]
    out = np.empty((b, out_px, out_px), np.float32)
    c_in, c_out = (p - 1) / 2.0, (out_px - 1) / 2.0
    for i in range(b):
        if jitter:
            angle = np.deg2rad(np.clip(rng.normal(0, cfg.rotate_deg), -2.5 * cfg.rotate_deg, 2.5 * cfg.rotate_deg))
            scale = 1.0 + rng.uniform(-cfg.scale_jitter, cfg.scale_jitter)
            shift = np.clip(rng.normal(0, cfg.shift_jitter * out_px, 2), -0.12 * out_px, 0.12 * out_px)
        else:
            angle, scale, shift = 0.0, 1.0, np.zeros(2)
        ca, sa = np.cos(angle) * scale, np.sin(angle) * scale
        m = np.array([[ca, -sa, 0.0], [sa, ca, 0.0]])
        m[:, 2] = np.array([c_in, c_in]) + shift - m[:, :2] @ np.array([c_out, c_out])
        img = cv2.warpAffine(patches[i], m, (out_px, out_px), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REPLICATE)  # fmt: skip
        if jitter:
            if rng.random() < 0.3:  # a small or compressed face: lose resolution
                f = rng.uniform(0.35, 0.8)
                small = cv2.resize(img, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
                img = cv2.resize(small, (out_px, out_px), interpolation=cv2.INTER_LINEAR)
            if rng.random() < 0.25:
                img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.5, 1.3))
        x = img.astype(np.float32) / 255.0
        if jitter:
            x = np.clip(x ** rng.uniform(0.7, 1.4) * rng.uniform(0.75, 1.2) + rng.uniform(-0.08, 0.08), 0, 1)
            x = np.clip(x + rng.normal(0, rng.uniform(0, 0.03), x.shape).astype(np.float32), 0, 1)
        out[i] = x
    return out


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    d = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / d) if d > 1e-12 else float("nan")


class DetailTrainer:
    """Trains one part's network; resumable from ``<run>/<part>_last.pt``.

    Args:
        cfg: The run.
        part: ``eye`` or ``mouth``.
        run_dir: Checkpoint folder.
    """

    def __init__(self, cfg: DetailTrainConfig, part: str, run_dir: Path) -> None:
        import torch

        from engines.models.detailnet import DetailNet

        self.cfg, self.part, self.run_dir = cfg, part, Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.names = channels_of(part)
        torch.manual_seed(cfg.seed)
        self.model = DetailNet(len(self.names))
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.epoch = 0
        self.history: list[dict] = []
        self.best: dict | None = None
        last = self.run_dir / f"{part}_last.pt"
        if last.is_file():
            state = torch.load(last, map_location="cpu", weights_only=False)
            self.model.load_state_dict(state["model"])
            self.opt.load_state_dict(state["opt"])
            self.epoch, self.history, self.best = state["epoch"], state["history"], state["best"]
            log.info("resumed %s at epoch %d", last, self.epoch)

    def _lr(self, step: int, total: int) -> float:
        return warmup_cosine_lr(step, total, self.cfg.lr, total // 50)

    def _batch(self, data: PartData, idx: np.ndarray, rng: np.random.Generator, jitter: bool):
        import torch

        x = augment(data.patches[idx], patch_px(self.part), rng, self.cfg, jitter)
        y, w = data.targets[idx].copy(), data.weights[idx].copy()
        if jitter and data.mirror is not None:
            flip = rng.random(len(idx)) < 0.5
            x[flip] = x[flip, :, ::-1]
            y[flip], w[flip] = y[flip][:, data.mirror], w[flip][:, data.mirror]
        return torch.from_numpy(np.ascontiguousarray(x[:, None])), torch.from_numpy(y), torch.from_numpy(w)

    def train(self, train: PartData, val: PartData, progress: bool = True) -> dict:
        """Runs the remaining epochs; returns the best epoch's validation record."""
        import torch
        from tqdm import tqdm

        cfg = self.cfg
        steps_per_epoch = len(train) // cfg.batch_size
        total = steps_per_epoch * cfg.epochs
        with tqdm(total=total, initial=self.epoch * steps_per_epoch, desc=f"train {self.part}net", unit="step",
                  disable=not progress) as bar:  # fmt: skip
            while self.epoch < cfg.epochs:
                rng = np.random.default_rng([cfg.seed, self.epoch])
                order = rng.permutation(len(train))
                self.model.train()
                losses = []
                for k in range(steps_per_epoch):
                    step = self.epoch * steps_per_epoch + k
                    for g in self.opt.param_groups:
                        g["lr"] = self._lr(step, total)
                    x, y, w = self._batch(train, order[k * cfg.batch_size:(k + 1) * cfg.batch_size], rng, True)
                    logits = self.model(x)
                    loss = (torch.nn.functional.binary_cross_entropy_with_logits(logits, y, reduction="none") * w
                            ).sum() / w.sum().clamp(min=1.0)  # fmt: skip
                    self.opt.zero_grad(set_to_none=True)
                    loss.backward()
                    self.opt.step()
                    losses.append(float(loss))
                    bar.update(1)
                    bar.set_postfix(loss=f"{np.mean(losses[-50:]):.4f}")
                self.epoch += 1
                record = {"epoch": self.epoch, "train_loss": float(np.mean(losses)), **self.validate(val)}
                self.history.append(record)
                if self.best is None or record["val_loss"] < self.best["val_loss"]:
                    self.best = record
                    torch.save(self.model.state_dict(), self.run_dir / f"{self.part}_best.pt")
                torch.save({"model": self.model.state_dict(), "opt": self.opt.state_dict(), "epoch": self.epoch,
                            "history": self.history, "best": self.best}, self.run_dir / f"{self.part}_last.pt")
                (self.run_dir / f"{self.part}_history.json").write_text(json.dumps(self.history, indent=1))
                plot_history(self.history, self.run_dir / f"{self.part}_curves.png", self.part)
                log.info("%s epoch %d: %s", self.part, self.epoch, json.dumps(record))
        return self.best or {}

    def predict(self, data: PartData, batch: int = 512) -> np.ndarray:
        """(N,K) float32 sigmoid outputs on centre-cut patches."""
        import torch

        self.model.eval()
        rng = np.random.default_rng(0)
        out = []
        with torch.no_grad():
            for i in range(0, len(data), batch):
                x, _, _ = self._batch(data, np.arange(i, min(len(data), i + batch)), rng, False)
                out.append(self.model(x).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.names)), np.float32)

    def validate(self, val: PartData) -> dict:
        pred = self.predict(val)
        eps = 1e-6
        p = np.clip(pred, eps, 1 - eps)
        bce = -(val.targets * np.log(p) + (1 - val.targets) * np.log(1 - p)) * val.weights
        record: dict = {"val_loss": float(bce.sum() / max(1.0, val.weights.sum()))}
        real, exact = ~val.exact, val.exact
        for c, n in enumerate(self.names):
            if real.any() and val.weights[real, c].any():
                record[f"r_{n}"] = pearson(pred[real, c], val.targets[real, c])
            if exact.any():
                record[f"synth_mae_{n}"] = float(np.abs(pred[exact, c] - val.targets[exact, c]).mean())
        if self.part == "eye" and exact.any():
            closed = exact & (val.targets[:, 0] >= 0.8)
            record["synth_blink_hit"] = float((pred[closed, 0] >= 0.7).mean()) if closed.any() else float("nan")
        return record

    def load_best(self) -> None:
        import torch

        self.model.load_state_dict(torch.load(self.run_dir / f"{self.part}_best.pt", map_location="cpu"))


def plot_history(history: list[dict], path: Path, part: str) -> None:
    """Training curves: losses, and the key channels' validation r (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    try:
        axes[0].plot(epochs, [h["train_loss"] for h in history], marker="o", label="train (jittered)")
        axes[0].plot(epochs, [h["val_loss"] for h in history], marker="o", label="validation")
        axes[0].set(xlabel="epoch", ylabel="BCE", title=f"{part}net training")
        axes[0].legend()
        keys = [k for k in history[-1] if k.startswith("r_")][:10]
        for k in keys:
            axes[1].plot(epochs, [h.get(k, np.nan) for h in history], marker=".", label=k[2:])
        axes[1].set(xlabel="epoch", ylabel="Pearson r vs MediaPipe (held-out clips)")
        if keys:  # a synthetic-only run has no teacher to correlate with
            axes[1].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(path, dpi=90)
    finally:
        plt.close(fig)


def export_onnx(trainer: DetailTrainer, out: Path, atol: float = 1e-4) -> float:
    """Exports the best weights (eval mode: sigmoid outputs, dynamic batch); returns max |onnx - torch|."""
    from engines.models.detailnet import INPUT_NAME, OUTPUT_NAME
    from engines.train.export import export_checked

    trainer.load_best()
    side = patch_px(trainer.part)
    return export_checked(trainer.model.eval(), (3, 1, side, side), out, INPUT_NAME, (OUTPUT_NAME,), atol)


def split(data_dir: Path, cfg: DetailTrainConfig) -> tuple[list[DetailShard], list[DetailShard], list[str]]:
    """(train shards, validation shards, validation shard names)."""
    shards = load_dataset(data_dir)
    val_names = [n for n in shards if is_validation(n, cfg.val_fraction)]
    return ([s for n, s in shards.items() if n not in val_names], [shards[n] for n in val_names], val_names)


__all__ = ["DetailTrainConfig", "DetailTrainer", "export_onnx", "part_data", "split"]
