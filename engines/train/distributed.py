"""Training on several processes: torch.distributed (DDP) over gloo on CPUs, NCCL on GPUs.

``facetrack train run --nproc N`` starts N copies of itself with ``torchrun`` (``torch.distributed.run``,
``--standalone``); each copy reads its rank from the environment torchrun sets (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``) and :func:`engines.train.trainer.train` then:

- builds the same *global* batch on every rank (same data order, same augmentation draws) and keeps its
  own contiguous slice (:meth:`DistContext.shard`), so N processes see exactly the samples and
  augmentations that one process with the same global batch sees;
- normalises batch norm over the global batch (:func:`sync_batch_norm`: PyTorch's ``SyncBatchNorm`` on
  CUDA, :class:`GlooSyncBatchNorm` on the CPU, where PyTorch's needs a GPU), so the forward pass is the
  one-process forward pass;
- averages gradients (DistributedDataParallel), logs the mean loss over ranks, and lets only rank 0 write
  checkpoints, logs and curves.

With equal slices and per-sample-mean losses, the N-process loss curve equals the one-process curve up
to floating-point reduction order (tests/engines/train/test_distributed.py checks 2 gloo processes
against 1 to a relative 1e-3). One caveat: loss terms normalised by a per-batch count (CoarseLoss
divides by the number of face samples) match exactly only when every slice holds the same count.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping

import torch
from torch import nn

from tracker.core.errors import ConfigError

log = logging.getLogger(__name__)

DEVICES = ("cpu", "cuda")


@dataclasses.dataclass(frozen=True)
class DistContext:
    """Where this process stands.

    Attributes:
        rank: Global rank (0 writes the outputs).
        world_size: Number of processes.
        local_rank: Rank on this machine (selects the GPU).
        device: torch device this rank trains on.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = dataclasses.field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def check_batch(self, global_batch: int, what: str = "batch_size") -> int:
        """The per-rank batch; ConfigError when ``global_batch`` does not split evenly."""
        if global_batch % self.world_size:
            raise ConfigError(
                f"[train] {what} {global_batch} does not split into {self.world_size} equal process batches"
            )
        return global_batch // self.world_size

    def shard(self, tensor: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch (first dimension), on this rank's device."""
        n = tensor.shape[0]
        if n % self.world_size:
            raise ConfigError(f"a batch of {n} does not split into {self.world_size} equal process batches")
        size = n // self.world_size
        return tensor[self.rank * size : (self.rank + 1) * size].to(self.device)

    def shard_tree(self, value):
        """:meth:`shard` applied to every tensor in nested dicts/tuples/lists (others left as they are)."""
        if isinstance(value, torch.Tensor):
            return self.shard(value)
        if isinstance(value, Mapping):
            return {k: self.shard_tree(v) for k, v in value.items()}
        if isinstance(value, tuple | list):
            return type(value)(self.shard_tree(v) for v in value)
        return value

    def mean(self, value: torch.Tensor) -> float:
        """The mean of a scalar over all ranks (the global batch's loss when slices are equal)."""
        t = value.detach().reshape(()).to(self.device, torch.float64)
        if self.distributed:
            torch.distributed.all_reduce(t)
            t = t / self.world_size
        return float(t)

    def agree(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on any (so all ranks stop at the same step)."""
        if not self.distributed:
            return bool(flag)
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item() > 0)


def context_from_env(device: str = "cpu") -> DistContext:
    """Initialises the process group when torchrun started this process (``WORLD_SIZE`` > 1).

    Args:
        device: ``"cpu"`` (gloo) or ``"cuda"`` (NCCL; each rank takes GPU ``LOCAL_RANK``).

    Raises:
        ConfigError: for an unknown device or ``cuda`` without a CUDA device.
    """
    if device not in DEVICES:
        raise ConfigError(f"training device must be one of {DEVICES}, got {device!r}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("training device 'cuda' asked for, but this torch sees no CUDA device")
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if device == "cuda" else "gloo"
        torch.distributed.init_process_group(backend=backend, rank=rank, world_size=world)
        log.info("rank %d of %d on %s (%s)", rank, world, dev, backend)
    return DistContext(rank, world, local, dev)


def shutdown(ctx: DistContext) -> None:
    """Leaves the process group (every rank, at the end of training)."""
    if ctx.distributed and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


class GlooSyncBatchNorm(nn.BatchNorm2d):
    """Batch norm whose training statistics cover the whole global batch, on any device and process group.

    PyTorch's ``SyncBatchNorm`` runs only on GPUs. This one all-reduces the per-channel sum, sum of squares
    and count with ``torch.distributed.nn.functional.all_reduce`` (differentiable: its backward sums the
    gradients of the statistics over ranks, as the one-process graph would), then normalises with the
    global biased variance and updates the running statistics with the unbiased one, like ``BatchNorm2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not torch.distributed.is_initialized():
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        count = torch.full((1,), x.numel() / c, dtype=x.dtype, device=x.device)
        stats = all_reduce(torch.cat([x.sum((0, 2, 3)), x.square().sum((0, 2, 3)), count]))
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c : 2 * c] / n - mean.square()).clamp_min(0.0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)).clamp_min(0), alpha=m)
        y = (x - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y


def sync_batch_norm(model: nn.Module, ctx: DistContext) -> nn.Module:
    """``model`` with every BatchNorm2d synchronised over the ranks (unchanged for one process).

    The converted layers keep the parameter and buffer names, so checkpoints load either way.
    """
    if not ctx.distributed:
        return model
    if ctx.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)

    def convert(module: nn.Module) -> nn.Module:
        if type(module) is nn.BatchNorm2d:
            new = GlooSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                                    module.track_running_stats)  # fmt: skip
            new.load_state_dict(module.state_dict())
            new.train(module.training)
            return new
        for name, child in module.named_children():
            setattr(module, name, convert(child))
        return module

    return convert(model)


def wrap(model: nn.Module, ctx: DistContext) -> nn.Module:
    """The module to call in the training step: ``model`` itself, or DDP around it (which averages the
    gradients over ranks). Save and validate ``model``, not the wrapper."""
    if not ctx.distributed:
        return model
    ids = [ctx.device.index] if ctx.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


class HostIO(nn.Module):
    """Runs a module that lives on a GPU on CPU inputs and returns CPU outputs (for the validation code,
    which works on CPU tensors). Its ``train()``/``eval()`` reach the wrapped module."""

    def __init__(self, module: nn.Module, device: torch.device) -> None:
        super().__init__()
        self.module = module
        self.device = device

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {k: v.cpu() for k, v in self.module(x.to(self.device)).items()}


def host_io(model: nn.Module, ctx: DistContext) -> nn.Module:
    """``model`` for CPU-tensor callers: itself on the CPU, else a :class:`HostIO` around it."""
    return model if ctx.device.type == "cpu" else HostIO(model, ctx.device)


def on_device(ctx: DistContext, *modules: nn.Module | None) -> tuple:
    """Copies of the (loss) modules on this rank's device; the originals stay on the CPU for validation."""
    import copy

    if ctx.device.type == "cpu":
        return modules
    return tuple(None if m is None else copy.deepcopy(m).to(ctx.device) for m in modules)


__all__ = ["DEVICES", "DistContext", "GlooSyncBatchNorm", "HostIO", "context_from_env", "host_io", "on_device", "shutdown", "sync_batch_norm", "wrap"]
