"""CoarseNet-D training: RGB-D synthetic crops, E_geo against the rendered depth, a resumable run, the export."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnxruntime as ort
import pytest
import torch

from engines.models.coarsenet_d import INPUT_NAME, OUTPUT_NAMES
from engines.train.rgbd import RgbdTrainConfig, RgbdTrainer, export_onnx, geo_energy_mm, load_rgbd
from engines.train.synth import SURFACE_STRIDE, ShardSynthesizer, SynthSpec
from tracker.core.depth_crop import DEPTH_CROP_PX
from tracker.core.errors import ConfigError
from tracker.render import Renderer


@pytest.fixture(scope="module")
def rgbd_shards(tmp_path_factory):
    synth = ShardSynthesizer(SynthSpec(num_identity=10, negative_fraction=0.0, crop_size_px=DEPTH_CROP_PX,
                                       depth=True), Renderer)  # fmt: skip
    root = tmp_path_factory.mktemp("rgbd")
    try:
        paths = []
        for i, seed in enumerate((11, 12)):
            path = root / f"shard_{i:05d}.npz"
            np.savez(path, **synth.make_shard(seed=seed, n=32, group=16))
            paths.append(path)
    finally:
        synth.close()
    return paths


def test_rgbd_shards_hold_sensor_depth_and_the_face_surface(rgbd_shards):
    with np.load(rgbd_shards[0]) as z:
        depth, surface = z["depth_mm"], z["surface"]
        assert depth.shape == (32, DEPTH_CROP_PX, DEPTH_CROP_PX) and depth.dtype == np.uint16
        assert surface.shape[1] > 200 and surface.shape[2] == 3  # every SURFACE_STRIDE-th narrow-face vertex
        # The face is measured (depth in the crop's centre) but the sensor leaves holes.
        centre = depth[:, 24:40, 24:40]
        assert (centre > 0).mean() > 0.6
        assert (depth == 0).any(axis=(1, 2)).all()
    assert SURFACE_STRIDE > 1


def test_geo_energy_is_smallest_at_the_true_pose(rgbd_shards):
    data = load_rgbd(rgbd_shards)
    trainer = RgbdTrainer(RgbdTrainConfig(), rgbd_shards[0].parent / "run_geo")
    b = trainer._tensors(data, np.arange(len(data)), None)
    clear = torch.from_numpy(~data.occluded)

    def energy(shift_mm: float, axis: int):
        anchor = b["anchor"].clone()
        anchor[:, axis] += shift_mm / 1000.0
        e, n = geo_energy_mm(b["rot"], anchor, b["surface"], b["normal"], b["depth"], b["focal"])
        return float(e[clear].median()), int(n[clear].min())

    at_truth, points = energy(0.0, 2)
    assert points > 40  # visible, measured surface points pair with the depth
    assert at_truth < 6.0  # sensor noise and association only (~3 mm at ~1 m)
    for axis in (0, 2):
        assert energy(8.0, axis)[0] > at_truth + 2.0
        assert energy(-8.0, axis)[0] > at_truth + 2.0


def test_training_resumes_and_exports_matching_onnx(rgbd_shards, tmp_path):
    data = load_rgbd(rgbd_shards)
    cfg = RgbdTrainConfig(name="t", epochs=1, batch_size=16)
    first = RgbdTrainer(cfg, tmp_path)
    best = first.train(data, data, progress=False)
    assert first.epoch == 1 and best["epoch"] == 1
    assert {"val_rotation_deg", "val_translation_mm", "val_anchor_depth_mm"} <= set(best)
    assert (tmp_path / "curves.png").stat().st_size > 1000
    again = RgbdTrainer(dataclasses.replace(cfg, epochs=2), tmp_path)
    assert again.epoch == 1  # resumed from last.pt
    again.train(data, data, progress=False)
    assert again.epoch == 2 and len(again.history) == 2

    out = tmp_path / "d.onnx"
    err = export_onnx(again, out)
    assert err < 1e-4
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((3, 5, DEPTH_CROP_PX, DEPTH_CROP_PX), dtype=np.float32)
    got = dict(zip(OUTPUT_NAMES, sess.run(list(OUTPUT_NAMES), {INPUT_NAME: x}), strict=True))
    assert got["rotation6d"].shape == (3, 6) and got["offset"].shape == (3, 2) and got["depth_offset"].shape == (3, 1)


def test_config_errors_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        RgbdTrainConfig.load("no_such_rgbd_config")
    bad = tmp_path / "bad.toml"
    bad.write_text('epochs = 3\nbogus = 1\n')
    with pytest.raises(ConfigError, match="unknown keys"):
        RgbdTrainConfig.load(bad)
    assert RgbdTrainConfig.load("coarsenet_d_v1").data_name == "rgbd_v1"


def test_rgb_shards_are_refused(tmp_path):
    synth = ShardSynthesizer(SynthSpec(num_identity=10, negative_fraction=0.0, crop_size_px=DEPTH_CROP_PX), Renderer)
    try:
        np.savez(tmp_path / "shard_00000.npz", **synth.make_shard(seed=3, n=4, group=4))
    finally:
        synth.close()
    with pytest.raises(ConfigError, match="--depth"):
        load_rgbd([tmp_path / "shard_00000.npz"])
