"""Training configuration, read from a TOML file under ``engines/train/configs/``."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from pathlib import Path
from typing import Any

from tracker.core.assets import cache_dir
from tracker.core.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclasses.dataclass(frozen=True)
class ModelSection:
    width: float = 1.0
    num_identity: int = 40
    in_channels: int = 3
    input_size_px: int = 128


@dataclasses.dataclass(frozen=True)
class DataSection:
    """Synthetic data: how many samples, where they are cached, what they contain."""

    name: str = "synth_v1"
    num_samples: int = 60_000
    val_samples: int = 2_000
    shard_size: int = 1_000
    workers: int = 2
    seed: int = 1
    #: Share of samples textured from the inverse-rendered bank (the rest: procedural albedo).
    bank_fraction: float = 0.5
    #: Share of crops without a face (confidence target 0).
    negative_fraction: float = 0.06
    #: Max |yaw| of sampled poses, degrees.
    max_yaw_deg: float = 90.0


@dataclasses.dataclass(frozen=True)
class TrainSection:
    batch_size: int = 128
    epochs: int = 12
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 300
    threads: int = 2
    seed: int = 0
    #: Stop after this many minutes (the loop checkpoints and can be resumed), 0 = no limit.
    max_minutes: float = 0.0
    #: Start a new run from these weights: a run name under the cache's runs/, a checkpoint path, or an exported
    #: ONNX file (e.g. the shipped engines/weights/coarsenet_v1.onnx, when the checkpoints are gone).
    init_from: str = ""
    #: Dataset names under the cache's data/ trained on (the first also gives the validation split);
    #: empty = the [data] section's dataset.
    datasets: tuple[str, ...] = ()
    #: Real teacher-labelled datasets (``facetrack train real``) mixed into every step for E_lan; empty = none.
    real_datasets: tuple[str, ...] = ()
    #: Size of each step's real batch relative to ``batch_size``.
    real_fraction: float = 0.25
    #: Share of the real samples (and of the pairs) held aside for validation, chosen by whole groups (clips,
    #: people).
    real_val_fraction: float = 0.15
    #: Real frame-pair datasets (``facetrack train pairs``) for E_flow, E_same, E_pho and E_lan; empty = none.
    pair_datasets: tuple[str, ...] = ()
    #: Pairs per step relative to ``batch_size`` (each pair is two crops through the network).
    pair_fraction: float = 0.125
    #: Mirror half of the real crops and pairs left-right (teacher points permuted by the symmetry of
    #: MediaPipe's canonical mesh), doubling the real faces' variety.
    flip: bool = False
    #: Spread (degrees, one sigma) of a random in-plane rotation of the real crops (teacher points turn
    #: with them), for faces that roll more than the development clips' do; 0 = none.
    real_roll_deg: float = 0.0
    #: Write a training row to log.csv every this many steps.
    log_every: int = 20

    def __post_init__(self) -> None:
        if self.log_every < 1:
            raise ConfigError(f"[train] log_every must be >= 1, got {self.log_every}")
        if not 0.0 < self.real_fraction <= 1.0:
            raise ConfigError(f"[train] real_fraction must be in (0, 1], got {self.real_fraction}")
        if not 0.0 <= self.real_val_fraction < 1.0:
            raise ConfigError(f"[train] real_val_fraction must be in [0, 1), got {self.real_val_fraction}")
        if not 0.0 < self.pair_fraction <= 1.0:
            raise ConfigError(f"[train] pair_fraction must be in (0, 1], got {self.pair_fraction}")
        if not 0.0 <= self.real_roll_deg <= 45.0:
            raise ConfigError(f"[train] real_roll_deg must be in [0, 45] degrees, got {self.real_roll_deg}")


@dataclasses.dataclass(frozen=True)
class LossSection:
    """Weights of the loss terms (see engines/train/losses.py for their definitions)."""

    vertex_px: float = 1.0
    landmark_px: float = 1.0
    shape_mm: float = 0.02
    expression: float = 2.0
    #: The synthetic expression term (engines.train.losses.expression_error): "l1" (stages v1 to v1h; it
    #: collapsed the expression head) or "bce" (channel-weighted cross-entropy on the logits, from v2).
    expression_loss: str = "l1"
    rotation: float = 1.0
    log_scale: float = 2.0
    offset: float = 2.0
    identity: float = 0.02
    lighting: float = 0.02
    confidence: float = 0.2
    #: Real crops (only with [train] real_datasets): robust teacher-landmark error in crop px (E_lan), and
    #: the identity prior (E_reg, mean squared coefficient).
    real_landmark_px: float = 1.0
    real_identity: float = 0.02
    #: Real crops with teacher blendshapes (``facetrack train real`` from v2 on): E_exp, the predicted expressions
    #: (as ARKit) against MediaPipe's scores; 0 = off.
    real_expression: float = 0.0
    #: Frame pairs (only with [train] pair_datasets): E_flow (robust, crop px), E_same (mean squared identity
    #: difference) and E_pho (robust colour error, % of full scale).
    pair_flow_px: float = 0.5
    pair_same: float = 1.0
    pair_photo: float = 0.02


    def __post_init__(self) -> None:
        if self.expression_loss not in ("l1", "bce"):
            raise ConfigError(f"[loss] expression_loss must be 'l1' or 'bce', got {self.expression_loss!r}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    name: str = "coarsenet_v1"
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    train: TrainSection = TrainSection()
    loss: LossSection = LossSection()
    source: str = ""

    @property
    def data_dir(self) -> Path:
        return cache_dir() / "train" / "data" / self.data.name

    @property
    def data_dirs(self) -> list[Path]:
        names = self.train.datasets or (self.data.name,)
        return [self.data_dir.parent / n for n in names]

    @property
    def real_data_dirs(self) -> list[Path]:
        return [self.data_dir.parent / n for n in self.train.real_datasets]

    @property
    def pair_data_dirs(self) -> list[Path]:
        return [self.data_dir.parent / n for n in self.train.pair_datasets]

    @property
    def run_dir(self) -> Path:
        """Checkpoints, logs and curves (outside git)."""
        return cache_dir() / "train" / "runs" / self.name


def _section(cls, raw: dict[str, Any], where: str):
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(raw) - names
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(names)}")
    raw = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
    try:
        return cls(**raw)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def load_config(path: Path | str | None = None) -> TrainConfig:
    """Reads a TOML config (a path, or a name under ``engines/train/configs/``); default ``coarsenet_v1``."""
    p = Path(path) if path is not None else CONFIG_DIR / "coarsenet_v1.toml"
    if not p.exists() and (CONFIG_DIR / f"{p}.toml").exists():
        p = CONFIG_DIR / f"{p}.toml"
    try:
        raw = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"training config {p} not found; configs: {sorted(c.stem for c in CONFIG_DIR.glob('*.toml'))}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"training config {p} is not valid TOML: {exc}") from exc
    sections = {"model": ModelSection, "data": DataSection, "train": TrainSection, "loss": LossSection}
    unknown = set(raw) - set(sections) - {"name"}
    if unknown:
        raise ConfigError(f"{p}: unknown sections {sorted(unknown)}")
    kwargs = {k: _section(cls, raw.get(k, {}), f"{p} [{k}]") for k, cls in sections.items()}
    return TrainConfig(name=raw.get("name", p.stem), source=str(p), **kwargs)


def load_flat_config(cls, name_or_path: str | Path, what: str):
    """A one-table TOML config (a path, or a name under ``engines/train/configs/``) as the frozen dataclass ``cls``.

    Args:
        cls: The dataclass (e.g. :class:`engines.train.detail.DetailTrainConfig`).
        name_or_path: A TOML path or a config name.
        what: What the config is, for error messages ("detail", "RGB-D").

    Raises:
        ConfigError: the file is missing, not TOML, or has keys ``cls`` does not know.
    """
    path = Path(name_or_path)
    if not path.is_file():
        path = CONFIG_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        raise ConfigError(f"{what} config {name_or_path!r} not found (a TOML path or a name under {CONFIG_DIR})")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}")
    return cls(**data)


def warmup_cosine_lr(step: int, total: int, peak: float, warmup_steps: int) -> float:
    """Linear warm-up to ``peak`` over ``warmup_steps``, then cosine decay to 5 % of it at ``total``."""
    warm = max(1, warmup_steps)
    if step < warm:
        return peak * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))
