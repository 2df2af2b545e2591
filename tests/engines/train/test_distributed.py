"""`facetrack train run --nproc 2` (torchrun, DDP over gloo, synchronised batch norm) against one process.

Both runs train the same tiny model on the same 16 rendered crops with the same global batch of 8 for 4
steps; every step's global loss must agree to a relative 1e-3 (float reduction order is the only
difference: same samples, same augmentation draws, batch norm over the global batch, averaged gradients).
All face crops (no negatives), so CoarseLoss's per-batch face count is the same in every slice.

The learning rate is small (1e-4): Adam's first steps divide each gradient by its own magnitude, so the
rounding noise of near-zero gradients (which differs with the reduction order) becomes a full-size step;
at the default 2e-3 the two curves drift apart by ~0.5 % by step 4 (measured), at 1e-4 they agree to
2e-6 (measured; the test allows 1e-3). The first step's loss, before any update, agrees to ~1e-7.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.train.distributed import DistContext, GlooSyncBatchNorm, sync_batch_norm
from tracker.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]
REL_TOL = 1e-3
STEPS = 4


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, face_model) -> Path:
    from engines.train.synth import SHARD_FORMAT_VERSION, ShardSynthesizer, SynthSpec
    from tracker.render import Renderer

    out = tmp_path_factory.mktemp("ddp_data") / "tiny"
    out.mkdir()
    synth = ShardSynthesizer(SynthSpec(num_identity=10, negative_fraction=0.0), Renderer)
    try:
        for i in range(3):  # two training shards, one validation shard
            data = synth.make_shard(seed=100 + i, n=8, group=4)
            np.savez(out / f"shard_{i:05d}.npz", format_version=np.int32(SHARD_FORMAT_VERSION), **data)
    finally:
        synth.close()
    return out


def _config(folder: Path, name: str) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(
        f'name = "{name}"\n[model]\nwidth = 0.5\nnum_identity = 10\n'
        "[data]\nval_samples = 8\n"
        "[train]\nbatch_size = 8\nepochs = 2\nwarmup_steps = 1\nlr = 1e-4\nthreads = 1\nlog_every = 1\nseed = 0\n"
    )
    return path


def _train(tmp_path: Path, dataset: Path, name: str, nproc: int) -> list[float]:
    env = {**os.environ, "FACETRACK_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "tools.cli", "train", "run", "--config", str(_config(tmp_path, name)),
           "--data", str(dataset), "--restart", "--nproc", str(nproc)]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    with open(tmp_path / "cache" / "train" / "runs" / name / "log.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["kind"] == "train"]
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1))
    return [float(r["total"]) for r in rows]


@pytest.mark.slow
def test_two_gloo_processes_follow_the_one_process_loss_curve(tmp_path, dataset):
    one = _train(tmp_path, dataset, "ddp1", 1)
    two = _train(tmp_path, dataset, "ddp2", 2)
    np.testing.assert_allclose(two, one, rtol=REL_TOL)
    assert len(set(np.round(one, 6))) == STEPS, "the loss moves from step to step (the test can fail)"


def test_sync_batch_norm_keeps_names_and_values():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    model[1].running_mean.fill_(0.5)
    before = model.state_dict()
    converted = sync_batch_norm(model, DistContext(rank=0, world_size=2))
    assert isinstance(converted[1], GlooSyncBatchNorm)
    after = converted.state_dict()
    assert after.keys() == before.keys()
    for k in before:
        torch.testing.assert_close(after[k], before[k])
    # Without a process group (one process) it is plain batch norm, in training and evaluation.
    x = torch.randn(5, 4, 6, 6)
    ref = torch.nn.BatchNorm2d(4)
    ref.load_state_dict(converted[1].state_dict())
    torch.testing.assert_close(converted[1](x), ref(x))


def test_batches_must_split_evenly():
    ctx = DistContext(rank=1, world_size=2)
    assert ctx.check_batch(8) == 4
    torch.testing.assert_close(ctx.shard(torch.arange(8)), torch.arange(4, 8))
    with pytest.raises(ConfigError, match="does not split into 2 equal process batches"):
        ctx.check_batch(7)


def test_bad_nproc_is_one_clear_error(caplog):
    from tools.cli import main

    assert main(["train", "run", "--nproc", "0"]) == 2
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == ["--nproc must be >= 1, got 0"]


def test_torchrun_command_passes_the_run_on():
    import argparse

    from tools.train_cmd import torchrun_command

    args = argparse.Namespace(nproc=4, device="cuda", config="c.toml", data=[Path("d1"), Path("d2")], restart=True,
                              max_minutes=None, json=None)  # fmt: skip
    cmd = torchrun_command(args, python="py")
    assert cmd[:6] == ["py", "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4", "-m"]
    assert cmd[6:] == ["tools.cli", "train", "run", "--device", "cuda", "--config", "c.toml", "--data", "d1", "d2",
                       "--restart"]  # fmt: skip
