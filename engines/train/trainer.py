"""The CoarseNet training loop: resumable, logged, with a held-aside validation split.

Everything a run writes goes under ``TrainConfig.run_dir`` (outside git): ``last.pt`` (model, optimiser,
schedule and step, saved every epoch and every few minutes, so an interrupted run resumes where it
stopped), ``best.pt`` (lowest validation loss), ``log.csv`` (one row per logging step and per
validation), ``curves.png`` and ``metrics.json`` (the last validation).

With ``[train] real_datasets`` (teacher-labelled real crops, engines/train/real.py), every step also takes
a smaller real batch (its own cycling order) through the same forward pass and adds E_lan + E_reg
(:class:`~engines.train.losses.RealLandmarkLoss`); a held-aside set of whole real groups is validated too.
With ``[train] pair_datasets`` (real frame pairs cut with one crop, engines/train/pairs.py), every step
also takes a batch of pairs, both crops through the same forward pass, and adds E_flow, E_same, E_pho and
E_lan (:class:`~engines.train.losses.PairLoss`), validated on held-aside clips. Without real datasets the
loop is unchanged.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from engines.models.coarsenet import CoarseNet, CoarseNetConfig
from engines.train.config import TrainConfig
from engines.train.losses import CoarseLoss, LossOutput, PairLoss, RealLandmarkLoss
from engines.train.real import load_real_shards, split_groups
from engines.train.synth import SHARD_FORMAT_VERSION, load_shards
from tracker.core.crop import POSE_ANCHOR_HEAD_M, offset_scale_from_point, point_from_offset_scale
from tracker.core.errors import ConfigError
from tracker.core.face_model import FaceModel

log = logging.getLogger(__name__)

LABEL_KEYS = ("identity", "expression", "rotation", "offset", "log_scale", "lighting", "focal_px", "is_face")
CHECKPOINT_EVERY_S = 300.0
#: Where relative ``init_from`` ONNX paths are also looked for (the checkout holding engines/weights/).
REPO_ROOT = Path(__file__).resolve().parents[2]
#: Extra log.csv columns of runs with real datasets.
REAL_FIELDS = (*RealLandmarkLoss.TERMS, "real_error_px", "val_real_error_px")
#: Extra log.csv columns of runs with frame pairs.
PAIR_FIELDS = (*PairLoss.TERMS, "pair_flow_error_px", "val_pair_flow_error_px", "val_pair_landmark_px")


def augmented_images(images: np.ndarray, rng: np.random.Generator | None) -> torch.Tensor:
    """(B,N,N,3) uint8 -> (B,3,N,N) float in [0,1], with light photometric augmentation when ``rng`` is given."""
    img = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    if rng is not None:
        b = images.shape[0]
        gain = torch.from_numpy(rng.uniform(0.8, 1.2, (b, 3, 1, 1)).astype(np.float32))
        bias = torch.from_numpy(rng.normal(0, 0.04, (b, 1, 1, 1)).astype(np.float32))
        img = (img * gain + bias).clamp_(0, 1)
    return img


def _anchored(shard: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A shard's pose labels referred to the pose anchor: format-1 shards' offset and log_scale place the
    head origin, so they are moved to the anchor ``R a`` in front of it (the same geometry, exactly)."""
    if int(shard.get("format_version", SHARD_FORMAT_VERSION)) >= 2:  # a shard made in memory is current
        return shard
    n = shard["image"].shape[1]
    origin = point_from_offset_scale(shard["offset"], shard["log_scale"][:, 0], shard["focal_px"], n)
    offset, log_scale = offset_scale_from_point(origin + shard["rotation"].astype(np.float64) @ POSE_ANCHOR_HEAD_M,
                                                shard["focal_px"], n)  # fmt: skip
    return {**shard, "offset": offset.astype(np.float32), "log_scale": log_scale[:, None].astype(np.float32)}


class ShardData:
    """All samples of a list of shards, held in memory (uint8 images + float labels)."""

    def __init__(self, shards: list[Path]) -> None:
        if not shards:
            raise ConfigError("no training shards found; run `facetrack train synth` first")
        parts = [_anchored(dict(np.load(p))) for p in shards]
        self.images = np.concatenate([p["image"] for p in parts])
        self.labels = {k: np.concatenate([p[k] for p in parts]).astype(np.float32) for k in LABEL_KEYS}
        self.yaw_deg = np.concatenate([p["yaw_deg"] for p in parts])

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, index: np.ndarray, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """Images (B,3,N,N) float in [0,1] (with light photometric augmentation when ``rng`` is given)."""
        img = augmented_images(self.images[index], rng)
        labels = {k: torch.from_numpy(v[index]) for k, v in self.labels.items()}
        labels["log_scale"] = labels["log_scale"].reshape(-1, 1)
        if rng is not None:
            img, labels = zoom_augment(img, labels, rng)
        return img, labels


#: Spread (log-normal sigma) of the on-the-fly zoom: how much larger or smaller than the synthesised crops
#: a face may appear. The rendered crops vary by only ~10 %, too little for the network to learn to read
#: the face's size; at run time a first crop from a detector box, or a poor previous frame, differs more.
ZOOM_SIGMA = 0.2


def zoom_augment(img: torch.Tensor, labels: dict, rng: np.random.Generator, sigma: float = ZOOM_SIGMA):
    """Zooms each crop about its centre by s and updates the labels exactly.

    Zooming by s is the image of a virtual camera whose focal length is s times larger (same centre), so
    focal_px and the crop-relative offset scale by s and log_scale grows by log s; the rotation and the
    shape are unchanged. Areas zoomed in from outside the crop are black, as the run-time warp makes them.
    Real crops' teacher ``points`` (crop px) move away from the crop centre by s.
    """
    import torch.nn.functional as F

    b = img.shape[0]
    s = np.exp(np.clip(rng.normal(0, sigma, b), -2.5 * sigma, 2.5 * sigma)).astype(np.float32)
    s[rng.random(b) < 0.3] = 1.0  # keep some crops exactly as rendered
    st = torch.from_numpy(s)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / st
    grid = F.affine_grid(theta, list(img.shape), align_corners=False)
    img = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    labels = dict(labels)
    labels["focal_px"] = labels["focal_px"] * st
    if "offset" in labels:  # synthetic pose labels
        labels["offset"] = labels["offset"] * st[:, None]
        labels["log_scale"] = labels["log_scale"] + torch.log(st)[:, None]
    if "points" in labels:  # real teacher points; (N-1)/2 is the virtual camera's principal point
        c = (img.shape[-1] - 1) / 2.0
        labels["points"] = (labels["points"] - c) * st[:, None, None] + c
    return img, labels


def roll_augment(img: torch.Tensor, labels: dict, rng: np.random.Generator, sigma_deg: float) -> tuple[torch.Tensor, dict]:
    """Rotates each real crop about its centre by a random in-plane angle and moves its teacher points along.

    With square pixels and the principal point at the crop centre, turning the image about the centre is
    the image of the virtual camera rolled about its optical axis, so the crop stays a valid run-time crop
    of a face with more roll and the teacher points follow exactly: p' = Q (p - c) + c. Real faces in the
    development clips barely roll; photographs do. Only for labels that are teacher points (synthetic
    labels would also need their pose and lighting turned).

    Args:
        img: (B,C,N,N) images.
        labels: ``points`` (B,...,2) crop px (NaN rows stay NaN), and nothing that depends on the roll.
        rng: Random source.
        sigma_deg: Standard deviation of the angle (clipped at 2.5 sigma); 0 returns the input.
    """
    import torch.nn.functional as F

    if sigma_deg <= 0:
        return img, labels
    b, n = img.shape[0], img.shape[-1]
    angle = np.deg2rad(np.clip(rng.normal(0, sigma_deg, b), -2.5 * sigma_deg, 2.5 * sigma_deg)).astype(np.float32)
    cos, sin = torch.from_numpy(np.cos(angle)), torch.from_numpy(np.sin(angle))
    q = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # (B,2,2), pixel axes
    # affine_grid maps output to input coordinates: Q^T samples the input so that its content turns by Q.
    theta = torch.cat([q.transpose(1, 2), torch.zeros(b, 2, 1)], 2)
    grid = F.affine_grid(theta, list(img.shape), align_corners=False)
    img = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    c = (n - 1) / 2.0
    pts = labels["points"]
    flat = pts.reshape(b, -1, 2) - c
    labels = dict(labels)
    labels["points"] = (flat @ q.transpose(1, 2) + c).reshape(pts.shape)
    return img, labels


def flip_augment(img: torch.Tensor, labels: dict, rng: np.random.Generator, mirror: np.ndarray, p: float = 0.5):
    """Mirrors a random ``p`` of the real crops left-right and updates their labels exactly.

    Mirroring a crop about its centre column is the image of the mirrored face through the same virtual
    camera, so the teacher points mirror too: x -> (N-1) - x, and point i takes the place of its mirror
    partner ``mirror[i]`` (:func:`engines.teacher.correspondence.mirror_permutation`). A flow field (pairs)
    is mirrored and its x component negated. Any number of image channels (a pair's two crops are stacked).

    Args:
        img: (B,C,N,N) images.
        labels: ``points`` (B,...,468,2) crop px (NaN rows stay NaN), optional ``flow`` (B,2,N,N).
        rng: Random source.
        mirror: (468,) permutation.
        p: Probability per sample.
    """
    flip = torch.from_numpy(rng.random(img.shape[0]) < p)
    if not bool(flip.any()):
        return img, labels
    n = img.shape[-1]
    img = img.clone()
    img[flip] = img[flip].flip(-1)
    labels = dict(labels)
    points = labels["points"].clone()
    mirrored = points[flip][..., torch.from_numpy(mirror), :]
    mirrored[..., 0] = (n - 1) - mirrored[..., 0]
    points[flip] = mirrored
    labels["points"] = points
    if "blendshapes" in labels:  # the teacher's ARKit scores: Left and Right swap places
        from engines.train.real import ARKIT_MIRROR

        shapes = labels["blendshapes"].clone()
        shapes[flip] = shapes[flip][:, torch.from_numpy(ARKIT_MIRROR)]
        labels["blendshapes"] = shapes
    if "flow" in labels:
        flow = labels["flow"].clone()
        f = flow[flip].flip(-1)
        f[:, 0] = -f[:, 0]
        flow[flip] = f
        labels["flow"] = flow
    return img, labels


def load_group_arrays(shards: list[Path], keys: tuple[str, ...], groups: set[str] | None = None,
                      optional: tuple[str, ...] = ()) -> dict[str, np.ndarray]:  # fmt: skip
    """The ``keys`` arrays (and ``group``) of real or pair shards, concatenated, keeping only ``groups``
    (None = all); points and focal lengths as float32 (images stay uint8, the flow float16). ``optional``
    keys are loaded only when every shard has them (older shards lack e.g. ``blendshapes``)."""
    parts = [dict(np.load(p)) for p in shards]
    keys = (*keys, *(k for k in optional if parts and all(k in p for p in parts)))
    group = np.concatenate([p["group"] for p in parts]) if parts else np.zeros(0, str)
    keep = np.ones(len(group), bool) if groups is None else np.isin(group, sorted(groups))
    out = {"group": group[keep]}
    for k in keys:
        a = np.concatenate([p[k] for p in parts])[keep]
        out[k] = a.astype(np.float32) if k in ("points", "focal_px") else a
    return out


class RealData:
    """Teacher-labelled real crops (engines/train/real.py) of some groups, held in memory.

    Args:
        shards: Real shards.
        groups: Keep only these groups (None = all).
        mirror: MediaPipe's mirror permutation: augmented batches flip half the crops (None = no flips).
        roll_deg: Spread of the in-plane rotation of augmented batches (:func:`roll_augment`; 0 = none).
    """

    KEYS = ("image", "points", "focal_px")

    def __init__(self, shards: list[Path], groups: set[str] | None = None, mirror: np.ndarray | None = None,
                 roll_deg: float = 0.0) -> None:  # fmt: skip
        a = load_group_arrays(shards, self.KEYS, groups, optional=("blendshapes",))
        self.images, self.points, self.focal_px, self.group = a["image"], a["points"], a["focal_px"], a["group"]
        self.blendshapes = a.get("blendshapes")  # (N,52) teacher ARKit scores, or None (older shards)
        self.mirror = mirror
        self.roll_deg = roll_deg

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, index: np.ndarray, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, dict]:
        """Images and augmentation (photometric, zoom, and mirroring and roll when enabled) as :meth:`ShardData.batch`;
        labels ``points`` (B,468,2) crop px and ``focal_px`` (B,)."""
        img = augmented_images(self.images[index], rng)
        labels = {"points": torch.from_numpy(self.points[index]), "focal_px": torch.from_numpy(self.focal_px[index])}
        if self.blendshapes is not None:
            labels["blendshapes"] = torch.from_numpy(self.blendshapes[index].astype(np.float32))
        if rng is not None:
            if self.mirror is not None:
                img, labels = flip_augment(img, labels, rng, self.mirror)
            img, labels = roll_augment(img, labels, rng, self.roll_deg)
            img, labels = zoom_augment(img, labels, rng)
        return img, labels


def _group_split(data_dirs: list[Path], val_fraction: float) -> tuple[list[Path], dict[str, int], set[str]]:
    """Shards of real (or pair) datasets, their samples per group, and the held-aside groups."""
    shards = load_real_shards(data_dirs)
    counts: dict[str, int] = {}
    for p in shards:
        with np.load(p) as z:
            for g, n in zip(*np.unique(z["group"], return_counts=True), strict=True):
                counts[str(g)] = counts.get(str(g), 0) + int(n)
    return shards, counts, split_groups(counts, val_fraction)


def load_split(cls, data_dirs: list[Path], val_fraction: float, mirror: np.ndarray | None = None, **augment):
    """Training and validation data of real crops (``cls`` = :class:`RealData`) or pairs (:class:`PairData`),
    split by whole groups (:func:`engines.train.real.split_groups`); mirroring and the ``augment`` options
    (``roll_deg`` of :class:`RealData`) on the training side only.

    Returns:
        (training data, validation data or None when nothing is held aside).

    Raises:
        ConfigError: if a dataset is missing or the training side is empty.
    """
    shards, counts, val_groups = _group_split(data_dirs, val_fraction)
    train = cls(shards, set(counts) - val_groups, mirror, **augment)
    if len(train) == 0:
        raise ConfigError(f"no training samples in {[str(d) for d in data_dirs]}")
    log.info("%s: %d training samples, %d validation samples (groups %s)", cls.__name__, len(train),
             sum(counts[g] for g in val_groups), sorted(val_groups))  # fmt: skip
    return train, (cls(shards, val_groups) if val_groups else None)


class PairData:
    """Real frame pairs (engines/train/pairs.py) of some groups, held in memory.

    Args:
        shards: Pair shards.
        groups: Keep only these groups (None = all).
        mirror: As for :class:`RealData`.
    """

    KEYS = ("image", "flow", "points", "focal_px")

    def __init__(self, shards: list[Path], groups: set[str] | None = None, mirror: np.ndarray | None = None) -> None:
        a = load_group_arrays(shards, self.KEYS, groups)
        self.images, self.flow, self.points, self.focal_px = a["image"], a["flow"], a["points"], a["focal_px"]
        self.group = a["group"]
        self.mirror = mirror

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batch(self, index: np.ndarray, rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """First crops (B,3,N,N), second crops (B,3,N,N) and labels ``flow`` (B,2,N,N) crop px, ``points``
        (B,2,468,2), ``focal_px`` (B,), ``image_a`` (the first crops). Augmentation as :meth:`RealData.batch`,
        drawn once per pair so both crops (and the flow) stay consistent."""
        n = self.images.shape[2]
        pair = self.images[index]  # (B,2,N,N,3)
        both = torch.from_numpy(pair).permute(0, 1, 4, 2, 3).reshape(len(index), 6, n, n).float().div_(255.0)
        flow = torch.from_numpy(self.flow[index].astype(np.float32)).permute(0, 3, 1, 2)
        points = torch.from_numpy(self.points[index])
        focal = torch.from_numpy(self.focal_px[index])
        if rng is not None:
            b = len(index)
            gain = torch.from_numpy(rng.uniform(0.8, 1.2, (b, 3, 1, 1)).astype(np.float32)).repeat(1, 2, 1, 1)
            bias = torch.from_numpy(rng.normal(0, 0.04, (b, 1, 1, 1)).astype(np.float32))
            both = (both * gain + bias).clamp_(0, 1)
            if self.mirror is not None:
                both, mirrored = flip_augment(both, {"points": points, "flow": flow}, rng, self.mirror)
                points, flow = mirrored["points"], mirrored["flow"]
            stacked, lab = zoom_augment(torch.cat([both, flow], 1), {"points": points.reshape(b, -1, 2), "focal_px": focal}, rng)
            s = (lab["focal_px"] / focal)[:, None, None, None]
            both, flow = stacked[:, :6], stacked[:, 6:] * s  # a zoom by s scales image motion by s
            points, focal = lab["points"].reshape(points.shape), lab["focal_px"]
        img_a, img_b = both[:, :3].contiguous(), both[:, 3:].contiguous()
        return img_a, img_b, {"flow": flow, "points": points, "focal_px": focal, "image_a": img_a}


def cycling_indices(step: int, batch_size: int, n: int, seed: int) -> np.ndarray:
    """Indices of a small dataset's batch at ``step``: consecutive slices of a sequence of permutations
    (a fresh one per pass), a pure function of the step, so a resumed run continues the same order."""
    pos = np.arange(step * batch_size, (step + 1) * batch_size)
    cycle, offset = np.divmod(pos, n)
    perms = {int(c): np.random.default_rng([seed, 7919, int(c)]).permutation(n) for c in np.unique(cycle)}
    return np.array([perms[int(c)][o] for c, o in zip(cycle, offset, strict=True)])


def mixed_step_loss(model: CoarseNet, loss_fn: CoarseLoss, img: torch.Tensor, lab: dict,
                    real_loss: RealLandmarkLoss | None = None, real: tuple[torch.Tensor, dict] | None = None,
                    pair_loss: PairLoss | None = None,
                    pairs: tuple[torch.Tensor, torch.Tensor, dict] | None = None) -> LossOutput:  # fmt: skip
    """The step's loss: the synthetic terms, plus E_lan + E_reg of a real batch and the pair terms of a pair
    batch when given. All batches go through one forward pass (one batch-norm population, as at run time)."""
    parts = [img]
    if real is not None and real_loss is not None:
        parts.append(real[0])
    if pairs is not None and pair_loss is not None:
        parts += [pairs[0], pairs[1]]
    if len(parts) == 1:
        return loss_fn(model(img), lab)
    pred = model(torch.cat(parts))
    sizes = [p.shape[0] for p in parts]
    bounds = np.cumsum([0, *sizes])

    def part(i: int) -> dict[str, torch.Tensor]:
        return {k: v[bounds[i] : bounds[i + 1]] for k, v in pred.items()}

    out = loss_fn(part(0), lab)
    total, terms = out.total, dict(out.terms)
    i = 1
    if real is not None and real_loss is not None:
        out_r = real_loss(part(i), real[1])
        total, terms = total + out_r.total, {**terms, **out_r.terms}
        i += 1
    if pairs is not None and pair_loss is not None:
        out_p = pair_loss(part(i), part(i + 1), pairs[2])
        total, terms = total + out_p.total, {**terms, **out_p.terms}
    return LossOutput(total, terms)


def split_shards(data_dirs: list[Path], val_samples: int) -> tuple[list[Path], list[Path]]:
    """Validation = the last shards of the first dataset (never trained on), enough for ``val_samples``."""
    first = load_shards(data_dirs[0])
    others = [p for d in data_dirs[1:] for p in load_shards(d)]
    if not first:
        raise ConfigError(f"no shards in {data_dirs[0]}; run `facetrack train synth` first")
    per_shard = int(np.load(first[0])["is_face"].shape[0])
    n_val = max(1, math.ceil(val_samples / per_shard))
    if len(first) <= n_val:
        raise ConfigError(f"{data_dirs[0]} has {len(first)} shards; need more than {n_val} for a validation split")
    return first[:-n_val] + others, first[-n_val:]


@torch.no_grad()
def validate(model: CoarseNet, loss_fn: CoarseLoss, data: ShardData, batch_size: int = 256) -> dict[str, float]:
    """Validation loss terms and the headline metrics (rotation error, expression MAE)."""
    from engines.differentiable import rotation_angle_deg, sixd_to_matrix

    model.eval()
    sums: dict[str, float] = {}
    rot_err, expr_err, conf_ok = [], [], []
    n_batches = 0
    for start in range(0, len(data), batch_size):
        idx = np.arange(start, min(len(data), start + batch_size))
        img, lab = data.batch(idx)
        pred = model(img)
        out = loss_fn(pred, lab)
        for k, v in out.terms.items():
            sums[k] = sums.get(k, 0.0) + v
        sums["total"] = sums.get("total", 0.0) + out.total.item()
        n_batches += 1
        face = lab["is_face"] > 0.5
        rot_err.append(rotation_angle_deg(sixd_to_matrix(pred["rotation6d"][face]), lab["rotation"][face]).numpy())
        expr_err.append((pred["expression"][face] - lab["expression"][face]).abs().mean(1).numpy())
        conf_ok.append(((pred["confidence"][:, 0] > 0.5) == face).float().numpy())
    metrics = {f"val_{k}": v / n_batches for k, v in sums.items()}
    metrics["val_rotation_err_deg"] = float(np.mean(np.concatenate(rot_err)))
    metrics["val_expression_mae"] = float(np.mean(np.concatenate(expr_err)))
    metrics["val_confidence_acc"] = float(np.mean(np.concatenate(conf_ok)))
    model.train()
    return metrics


@torch.no_grad()
def _validate_by_sample(model: CoarseNet, n: int, loss_of: Callable[[np.ndarray], LossOutput], total_key: str,
                        batch_size: int) -> dict[str, float]:  # fmt: skip
    """Per-sample means of a loss's terms and total over ``n`` held-aside samples, ``val_``-prefixed."""
    model.eval()
    sums: dict[str, float] = {}
    for start in range(0, n, batch_size):
        idx = np.arange(start, min(n, start + batch_size))
        out = loss_of(idx)
        for k, v in out.terms.items():
            sums[k] = sums.get(k, 0.0) + v * len(idx)
        sums[total_key] = sums.get(total_key, 0.0) + out.total.item() * len(idx)
    model.train()
    return {f"val_{k}": v / max(n, 1) for k, v in sums.items()}


def validate_real(model: CoarseNet, real_loss: RealLandmarkLoss, data: RealData, batch_size: int = 256) -> dict[str, float]:
    """E_lan / E_reg and the plain weighted point error (crop px) on held-aside real groups."""

    def loss_of(idx: np.ndarray) -> LossOutput:
        img, lab = data.batch(idx)
        return real_loss(model(img), lab)

    return _validate_by_sample(model, len(data), loss_of, "real_total", batch_size)


def validate_pairs(model: CoarseNet, pair_loss: PairLoss, data: PairData, batch_size: int = 128) -> dict[str, float]:
    """Pair terms and the plain flow error (crop px) on held-aside clips."""

    def loss_of(idx: np.ndarray) -> LossOutput:
        img_a, img_b, lab = data.batch(idx)
        pred = model(torch.cat([img_a, img_b]))
        b = len(idx)
        return pair_loss({k: v[:b] for k, v in pred.items()}, {k: v[b:] for k, v in pred.items()}, lab)

    return _validate_by_sample(model, len(data), loss_of, "pair_total", batch_size)


def _lr_at(step: int, total: int, cfg) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    p = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))


def initial_model(init_from: str, run_dir: Path, model: CoarseNet, train_data: ShardData) -> CoarseNet:
    """The starting weights named by ``[train] init_from``.

    Either an exported ONNX file (a path ending in ``.onnx``, relative to the working directory or to the
    repository, e.g. the shipped ``engines/weights/coarsenet_v1.onnx``; its batch norms are rebuilt from
    256 training images, :mod:`engines.train.warm_start`), a checkpoint path, or the name of an earlier run
    (its ``best.pt``).
    """
    if init_from.endswith(".onnx"):
        from engines.train.warm_start import model_from_onnx

        src = Path(init_from)
        if not src.exists():
            src = REPO_ROOT / init_from
        if not src.exists():
            raise ConfigError(f"init_from {init_from!r}: no such ONNX file (relative paths: the working directory or {REPO_ROOT})")
        images, _ = train_data.batch(np.arange(min(256, len(train_data))))
        return model_from_onnx(src, model.config, images)
    src = Path(init_from)
    if not src.exists():
        src = run_dir.parent / init_from / "best.pt"
    if not src.exists():
        raise ConfigError(f"init_from {init_from!r}: no such checkpoint or run")
    model.load_state_dict(torch.load(src, map_location="cpu", weights_only=False)["model"])
    log.info("initialised from %s", src)
    return model


def train(config: TrainConfig, data_dirs: list[Path] | None = None, resume: bool = True, progress: bool = True,
          device: str = "cpu") -> dict:  # fmt: skip
    """Trains (or resumes) the run described by ``config``; returns the last validation metrics.

    Under ``torchrun`` (``facetrack train run --nproc N``) every process trains its slice of each global
    batch with DDP and only rank 0 writes (:mod:`engines.train.distributed`); ``device`` is ``"cpu"``
    (gloo) or ``"cuda"`` (NCCL, one GPU per process).
    """
    from tqdm import tqdm

    from engines.train import distributed

    tc = config.train
    torch.set_num_threads(tc.threads)
    torch.manual_seed(tc.seed)
    ctx = distributed.context_from_env(device)
    progress = progress and ctx.is_main
    data_dirs = data_dirs or config.data_dirs
    run_dir = config.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    train_shards, val_shards = split_shards(data_dirs, config.data.val_samples)
    train_data, val_data = ShardData(train_shards), ShardData(val_shards)
    log.info("training on %d samples, validating on %d", len(train_data), len(val_data))
    real_train: RealData | None = None
    real_val: RealData | None = None
    mirror = None
    if tc.flip and (tc.real_datasets or tc.pair_datasets):
        from engines.teacher.correspondence import mirror_permutation

        mirror = mirror_permutation()
    if tc.real_datasets:
        real_train, real_val = load_split(RealData, config.real_data_dirs, tc.real_val_fraction, mirror,
                                          roll_deg=tc.real_roll_deg)  # fmt: skip
    real_batch = max(1, round(tc.batch_size * tc.real_fraction))
    ctx.check_batch(tc.batch_size)
    if real_train is not None:
        ctx.check_batch(real_batch, "real batch (batch_size x real_fraction)")
    pair_train: PairData | None = None
    pair_val: PairData | None = None
    if tc.pair_datasets:
        pair_train, pair_val = load_split(PairData, config.pair_data_dirs, tc.real_val_fraction, mirror)
    pair_batch = max(1, round(tc.batch_size * tc.pair_fraction))
    if pair_train is not None:
        ctx.check_batch(pair_batch, "pair batch (batch_size x pair_fraction)")

    mc = config.model
    model = CoarseNet(CoarseNetConfig(in_channels=mc.in_channels, input_size_px=mc.input_size_px,
                                      num_identity=mc.num_identity, width=mc.width))  # fmt: skip
    face_model = FaceModel.load()
    loss_fn = CoarseLoss(face_model, config.loss, mc.num_identity, mc.input_size_px)
    real_loss = RealLandmarkLoss(face_model, config.loss, mc.num_identity, mc.input_size_px) if real_train else None
    pair_loss = PairLoss(face_model, config.loss, mc.num_identity, mc.input_size_px) if pair_train else None
    step_loss_fn, step_real_loss, step_pair_loss = distributed.on_device(ctx, loss_fn, real_loss, pair_loss)
    steps_per_epoch = len(train_data) // tc.batch_size
    total_steps = steps_per_epoch * tc.epochs
    step, epoch, best, elapsed_s = 0, 0, float("inf"), 0.0
    last = run_dir / "last.pt"
    resuming = resume and last.exists()
    if not resuming and tc.init_from:
        model = initial_model(tc.init_from, run_dir, model, train_data)
    model = distributed.sync_batch_norm(model, ctx).to(ctx.device)  # before the optimiser takes the parameters
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    if resuming:
        ck = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        step, epoch, best, elapsed_s = ck["step"], ck["epoch"], ck["best"], ck.get("elapsed_s", 0.0)
        log.info("resumed %s at epoch %d step %d", last, epoch, step)
    step_model = distributed.wrap(model, ctx)  # DDP averages the gradients; save and validate `model`
    val_model = distributed.host_io(model, ctx)

    def save(path: Path) -> None:
        if not ctx.is_main:
            return
        tmp = path.with_suffix(".tmp")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step, "epoch": epoch,
                    "best": best, "elapsed_s": elapsed_s, "config": dataclasses.asdict(config)}, tmp)  # fmt: skip
        tmp.replace(path)

    log_path = run_dir / "log.csv"
    fields = ["kind", "step", "epoch", "lr", "elapsed_s", "total", *CoarseLoss.TERMS, "val_rotation_err_deg",
              "val_expression_mae", "val_confidence_acc", *(REAL_FIELDS if real_train else ()),
              *(PAIR_FIELDS if pair_train else ())]  # fmt: skip
    new_log = not log_path.exists()
    if not new_log:  # a resumed run keeps its log's columns
        with open(log_path, newline="") as f:
            fields = next(csv.reader(f), fields) or fields
    metrics: dict = {}
    t_start = time.perf_counter() - elapsed_s
    t_saved = time.perf_counter()
    deadline = time.perf_counter() + tc.max_minutes * 60 if tc.max_minutes > 0 else float("inf")
    with open(log_path if ctx.is_main else os.devnull, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        if new_log:
            writer.writeheader()
        if real_val is not None and step == 0:
            # The starting point on real frames (e.g. the synthetic-only model this run starts from).
            m0 = validate_real(val_model, real_loss, real_val)
            writer.writerow({"kind": "init", "step": 0, "epoch": 0, "lr": 0.0, "elapsed_s": 0.0, "total": m0["val_real_total"],
                             **{k: m0[f"val_{k}"] for k in RealLandmarkLoss.TERMS},
                             "val_real_error_px": m0["val_real_error_px"]})  # fmt: skip
            log.info("before training: real validation error %.2f px", m0["val_real_error_px"])
        if pair_val is not None and step == 0:
            p0 = validate_pairs(val_model, pair_loss, pair_val)
            writer.writerow({"kind": "init", "step": 0, "epoch": 0, "lr": 0.0, "elapsed_s": 0.0,
                             "val_pair_flow_error_px": p0["val_pair_flow_error_px"],
                             "val_pair_landmark_px": p0["val_pair_landmark_px"]})  # fmt: skip
            log.info("before training: pair validation flow error %.2f px", p0["val_pair_flow_error_px"])
        model.train()
        while epoch < tc.epochs:
            rng = np.random.default_rng(tc.seed * 1000 + epoch)
            order = rng.permutation(len(train_data))
            first = step - epoch * steps_per_epoch  # resume mid-epoch
            bar = tqdm(range(first, steps_per_epoch), desc=f"epoch {epoch + 1}/{tc.epochs}", disable=not progress)
            for b in bar:
                lr = _lr_at(step, total_steps, tc)
                for g in opt.param_groups:
                    g["lr"] = lr
                img, lab = train_data.batch(order[b * tc.batch_size : (b + 1) * tc.batch_size], rng)
                img, lab = ctx.shard(img), ctx.shard_tree(lab)  # every rank drew the global batch: keep a slice
                real = None
                if real_train is not None:
                    real = ctx.shard_tree(real_train.batch(cycling_indices(step, real_batch, len(real_train), tc.seed), rng))
                pairs = None
                if pair_train is not None:
                    pairs = ctx.shard_tree(pair_train.batch(cycling_indices(step, pair_batch, len(pair_train), tc.seed + 1), rng))
                out = mixed_step_loss(step_model, step_loss_fn, img, lab, step_real_loss, real, step_pair_loss, pairs)
                opt.zero_grad(set_to_none=True)
                out.total.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
                opt.step()
                step += 1
                elapsed_s = time.perf_counter() - t_start
                if step % tc.log_every == 0:
                    # total: the mean over ranks (the global batch's loss); the terms are rank 0's slice's.
                    writer.writerow({"kind": "train", "step": step, "epoch": epoch, "lr": lr, "elapsed_s": elapsed_s,
                                     **out.terms, "total": ctx.mean(out.total)})  # fmt: skip
                    bar.set_postfix(loss=f"{out.total.item():.3f}", lm_px=f"{out.terms['landmark_px']:.2f}")
                if time.perf_counter() - t_saved > CHECKPOINT_EVERY_S:
                    save(last)
                    f.flush()
                    t_saved = time.perf_counter()
                if deadline != float("inf") and ctx.agree(time.perf_counter() > deadline):
                    save(last)
                    log.info("stopped at the %g-minute limit (step %d); resume to continue", tc.max_minutes, step)
                    return metrics
            epoch += 1
            metrics = validate(val_model, loss_fn, val_data)
            if real_val is not None:
                # Best checkpoint by the trained objective: the synthetic total plus the real terms.
                metrics["val_synth_total"] = metrics["val_total"]
                metrics.update(validate_real(val_model, real_loss, real_val))
                metrics["val_total"] = metrics["val_synth_total"] + metrics["val_real_total"]
            if pair_val is not None:
                metrics.update(validate_pairs(val_model, pair_loss, pair_val))
                metrics["val_total"] = metrics["val_total"] + metrics["val_pair_total"]
            writer.writerow({"kind": "val", "step": step, "epoch": epoch, "lr": lr, "elapsed_s": elapsed_s,
                             "total": metrics["val_total"],
                             **{k: metrics[f"val_{k}"] for k in CoarseLoss.TERMS},
                             **{k: metrics[k] for k in ("val_rotation_err_deg", "val_expression_mae", "val_confidence_acc")},
                             **{k: metrics[f"val_{k}"] for k in RealLandmarkLoss.TERMS if f"val_{k}" in metrics},
                             **({"val_real_error_px": metrics["val_real_error_px"]} if "val_real_error_px" in metrics else {}),
                             **{k: metrics[k] for k in ("val_pair_flow_error_px", "val_pair_landmark_px") if k in metrics}})  # fmt: skip
            f.flush()
            log.info("epoch %d: val loss %.4f, rotation %.2f deg, expression MAE %.4f", epoch, metrics["val_total"],
                     metrics["val_rotation_err_deg"], metrics["val_expression_mae"])  # fmt: skip
            if metrics["val_total"] < best:
                best = metrics["val_total"]
                save(run_dir / "best.pt")
            save(last)
            metrics.update(epoch=epoch, step=step, elapsed_s=elapsed_s, train_samples=len(train_data),
                           val_samples=len(val_data))  # fmt: skip
            if real_train is not None:
                metrics.update(real_train_samples=len(real_train), real_val_samples=len(real_val or ()))
            if pair_train is not None:
                metrics.update(pair_train_samples=len(pair_train), pair_val_samples=len(pair_val or ()))
            if ctx.is_main:
                (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
                plot_curves(log_path, run_dir / "curves.png")
    return metrics


def plot_curves(log_csv: Path, out_png: Path) -> None:
    """Training and validation loss, landmark error and rotation error against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(log_csv)))
    tr = [r for r in rows if r["kind"] == "train"]
    va = [r for r in rows if r["kind"] in ("init", "val")]  # init: real metrics before training
    panels = [("total", "loss"), ("landmark_px", "landmark error (crop px)"), ("rotation", "rotation term")]
    if rows and "real_landmark_px" in rows[0]:
        panels.append(("real_landmark_px", "real E_lan (crop px)"))
    if rows and "pair_flow_px" in rows[0]:
        panels.append(("pair_flow_px", "E_flow (crop px)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for part, style, label in ((tr, {"lw": 0.6}, "train"), (va, {"marker": "o"}, "validation")):
            part = [r for r in part if r.get(key)]  # columns a row does not fill are empty
            ax.plot([int(r["step"]) for r in part], [float(r[key]) for r in part], label=label, **style)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.set_yscale("log")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
