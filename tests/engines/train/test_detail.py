"""Detail-network data and training: synthetic patches with exact labels, a resumable run, the ONNX export."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest

from engines.train.detail import (
    DetailTrainConfig,
    DetailTrainer,
    augment,
    export_onnx,
    is_validation,
    part_data,
)
from engines.train.detail_data import (
    CONTEXT,
    MAX_SYNTH_YAW_DEG,
    DetailShard,
    build,
    check_trainable,
    extract_synthetic,
    load_dataset,
)
from engines.train.synth import ShardSynthesizer, SynthSpec
from tracker.core.errors import ConfigError
from tracker.core.face_model.arkit import ARKIT_NAMES, ict_to_arkit
from tracker.core.regions import EYE_CHANNELS_LEFT, EYE_CHANNELS_RIGHT, MOUTH_CHANNELS, patch_sizes_px
from tracker.render import Renderer


@pytest.fixture(scope="module")
def synth_shard(tmp_path_factory):
    synth = ShardSynthesizer(SynthSpec(num_identity=10, negative_fraction=0.0), Renderer)
    try:
        arrays = synth.make_shard(seed=5, n=24, group=8)
    finally:
        synth.close()
    path = tmp_path_factory.mktemp("synth") / "shard_00000.npz"
    np.savez(path, **arrays)
    return path


def test_synthetic_patches_carry_the_exact_expressions(synth_shard):
    shard = extract_synthetic(synth_shard)
    with np.load(synth_shard) as z:
        kept = (z["is_face"] > 0.5) & (np.abs(z["yaw_deg"]) <= MAX_SYNTH_YAW_DEG)
        expected = np.stack([ict_to_arkit(e) for e in z["expression"][kept]])
    n = int(kept.sum())
    e, m = patch_sizes_px(CONTEXT)
    assert 0 < n < 24  # the sampler turns some heads past 45 degrees: those are left out
    assert len(shard) == n and shard.eyes.shape == (n, 2, e, e) and shard.mouth.shape == (n, m, m)
    np.testing.assert_allclose(shard.arkit, expected, atol=1e-6)
    assert shard.exact.all()
    # The face covers the patches: they are not flat background.
    assert shard.eyes.reshape(n, -1).std(axis=1).min() > 3
    assert len(extract_synthetic(synth_shard, max_yaw_deg=90.0)) == 24


def test_build_is_resumable_and_the_split_is_stable(synth_shard, tmp_path):
    out = tmp_path / "detail"
    first = build(out, [], [synth_shard], progress=False)
    names = list(first["shards"])
    assert len(names) == 1 and first["shards"][names[0]]["samples"] == len(extract_synthetic(synth_shard))
    stamp = (out / f"{names[0]}.npz").stat().st_mtime_ns
    again = build(out, [], [synth_shard], progress=False)  # nothing to do: the shard is not rebuilt
    assert again == json.loads((out / "manifest.json").read_text())
    assert (out / f"{names[0]}.npz").stat().st_mtime_ns == stamp
    assert set(load_dataset(out)) == set(names)
    assert is_validation(names[0], 0.15)  # the first synthetic shard of a set validates
    assert is_validation("real_clip_a", 0.15) == is_validation("real_clip_a", 0.15)


def test_the_developer_clips_and_evaluation_data_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="eval expressions"):
        check_trainable(tmp_path / "shared" / "data" / "videos" / "clip.mp4")
    with pytest.raises(ConfigError, match="evaluation"):
        check_trainable(tmp_path / "shared" / "data" / "landmarks68" / "helen")
    check_trainable(tmp_path / "shared" / "data" / "videos_extra")


def test_part_data_pairs_each_eye_with_its_own_channels(synth_shard):
    shard = extract_synthetic(synth_shard)
    eye = part_data([shard], "eye")
    n = len(shard)
    assert len(eye) == 2 * n  # two eyes per face
    idx = {name: i for i, name in enumerate(ARKIT_NAMES)}
    np.testing.assert_allclose(eye.targets[:n, 0], shard.arkit[:, idx[EYE_CHANNELS_RIGHT[0]]])
    np.testing.assert_allclose(eye.targets[n:, 0], shard.arkit[:, idx[EYE_CHANNELS_LEFT[0]]])
    assert eye.mirror is None
    mouth = part_data([shard], "mouth")
    assert len(mouth) == n and mouth.targets.shape[1] == len(MOUTH_CHANNELS) and mouth.mirror is not None


def test_teacher_weak_channels_are_masked_on_real_rows_only(synth_shard):
    shard = extract_synthetic(synth_shard)
    real = DetailShard(shard.eyes, shard.mouth, shard.arkit, np.zeros(len(shard), bool))
    eye = part_data([real, shard], "eye")
    wide = EYE_CHANNELS_RIGHT.index("eyeWideRight")
    assert (eye.weights[~eye.exact, wide] == 0).all() and (eye.weights[eye.exact, wide] == 1).all()
    assert (eye.weights[:, 0] == 1).all()  # blinks are taught by both


def test_augment_without_jitter_is_the_centre_cut(synth_shard):
    shard = extract_synthetic(synth_shard)
    rng = np.random.default_rng(0)
    x = augment(shard.eyes[:3, 0], 48, rng, DetailTrainConfig(), jitter=False)
    e = shard.eyes.shape[-1]
    assert (e - 48) % 2 == 0  # the stored context is an even number of pixels wider: the cut is exact
    lo = (e - 48) // 2
    centre = shard.eyes[:3, 0, lo:lo + 48, lo:lo + 48].astype(np.float32) / 255
    assert x.shape == (3, 48, 48)
    np.testing.assert_allclose(x, centre, atol=1e-6)


def test_training_resumes_and_exports_an_onnx_that_matches_torch(synth_shard, tmp_path, monkeypatch):
    shard = extract_synthetic(synth_shard)
    data = part_data([shard], "mouth")
    cfg = DetailTrainConfig(name="t", epochs=1, batch_size=8, lr=1e-3)
    trainer = DetailTrainer(cfg, "mouth", tmp_path / "run")
    best = trainer.train(data, data, progress=False)
    assert best["epoch"] == 1 and np.isfinite(best["val_loss"]) and (tmp_path / "run" / "mouth_curves.png").is_file()
    # A second trainer on the same folder resumes at epoch 1 and, asked for 2 epochs, runs only the second.
    cfg2 = DetailTrainConfig(name="t", epochs=2, batch_size=8, lr=1e-3)
    resumed = DetailTrainer(cfg2, "mouth", tmp_path / "run")
    assert resumed.epoch == 1 and len(resumed.history) == 1
    resumed.train(data, data, progress=False)
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    out = tmp_path / "mouthnet.onnx"
    err = export_onnx(resumed, out)
    assert err < 1e-4
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).random((5, 1, 64, 64), dtype=np.float32)
    y = sess.run(None, {"patch": x})[0]
    assert y.shape == (5, len(MOUTH_CHANNELS)) and (y >= 0).all() and (y <= 1).all()
