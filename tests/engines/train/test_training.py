"""Synthesis, one training step and ONNX export, on a tiny real batch."""

import numpy as np
import pytest
import torch

from engines.models.coarsenet import OUTPUT_NAMES, CoarseNet, CoarseNetConfig
from engines.onnx_file import POSE_ANCHOR_KEY, pose_anchor_of
from engines.train.config import LossSection, load_config
from engines.train.export import export_onnx
from engines.train.losses import CoarseLoss
from engines.train.synth import ShardSynthesizer, SynthSpec
from engines.train.trainer import LABEL_KEYS
from tracker.core.crop import POSE_ANCHOR_HEAD_M
from tracker.core.errors import ConfigError, EngineError
from tracker.render import Renderer


@pytest.fixture(scope="module")
def shard(face_model):
    synth = ShardSynthesizer(SynthSpec(num_identity=10, negative_fraction=0.1), Renderer)
    try:
        return synth.make_shard(seed=3, n=16, group=8)
    finally:
        synth.close()


def _batch(shard):
    img = torch.from_numpy(shard["image"]).permute(0, 3, 1, 2).float() / 255
    lab = {k: torch.from_numpy(shard[k].astype(np.float32)) for k in LABEL_KEYS}
    lab["log_scale"] = lab["log_scale"].reshape(-1, 1)
    return img, lab


def test_shard_labels_are_consistent(shard, face_model):
    assert shard["image"].shape == (16, 128, 128, 3) and shard["image"].dtype == np.uint8
    face = shard["is_face"] > 0.5
    # the projected landmarks of face samples lie inside the crop, near its centre
    lm = shard["landmarks"][face]
    assert lm.min() > -40 and lm.max() < 168
    centre = lm.reshape(-1, 2).mean(0)
    assert np.all(np.abs(centre - 63.5) < 25)
    # the rendered face covers the landmarks: the crop is not empty background there
    assert np.all(np.abs(np.linalg.det(shard["rotation"]) - 1) < 1e-4)


def test_one_training_step_lowers_the_loss(shard, face_model):
    torch.manual_seed(0)
    model = CoarseNet(CoarseNetConfig(num_identity=10, width=0.5))
    loss_fn = CoarseLoss(face_model, LossSection(), num_identity=10, num_vertices=100)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    img, lab = _batch(shard)
    model.train()
    before = float(loss_fn(model(img), lab).total)
    for _ in range(5):
        out = loss_fn(model(img), lab)
        opt.zero_grad()
        out.total.backward()
        opt.step()
    after = float(loss_fn(model(img), lab).total)
    assert after < before


def test_loss_is_zero_for_perfect_geometry(shard, face_model):
    loss_fn = CoarseLoss(face_model, LossSection(), num_identity=10, num_vertices=50)
    _, lab = _batch(shard)
    r = lab["rotation"]
    pred = {"identity": lab["identity"], "expression": lab["expression"],
            "rotation6d": torch.cat([r[:, :, 0], r[:, :, 1]], 1), "offset": lab["offset"],
            "log_scale": lab["log_scale"], "lighting": lab["lighting"], "confidence": lab["is_face"][:, None]}
    out = loss_fn(pred, lab)
    for k in ("landmark_px", "vertex_px", "shape_mm", "expression", "offset"):
        assert out.terms[k] < 1e-3, k


def test_exported_onnx_matches_torch(tmp_path):
    model = CoarseNet(CoarseNetConfig(num_identity=10, width=0.5)).eval()
    diff = export_onnx(model, tmp_path / "m.onnx")
    assert diff <= 1e-4
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    outs = sess.run(None, {"image": np.random.rand(5, 3, 128, 128).astype(np.float32)})
    assert [o.shape[0] for o in outs] == [5] * len(OUTPUT_NAMES)  # dynamic batch
    # the file says which point its pose refers to, so the runtime decodes it as it was trained
    np.testing.assert_allclose(pose_anchor_of(tmp_path / "m.onnx"), POSE_ANCHOR_HEAD_M, atol=1e-6)


def test_pose_anchor_metadata_is_read_and_checked(tmp_path):
    import onnx

    model = CoarseNet(CoarseNetConfig(num_identity=10, width=0.5)).eval()
    path = tmp_path / "m.onnx"
    export_onnx(model, path)
    proto = onnx.load(str(path))
    del proto.metadata_props[:]  # as files exported before the anchor: their pose is the head origin's
    onnx.save(proto, str(path))
    np.testing.assert_array_equal(pose_anchor_of(path), np.zeros(3))
    onnx.helper.set_model_props(proto, {POSE_ANCHOR_KEY: "0,nope,1"})
    onnx.save(proto, str(path))
    with pytest.raises(EngineError, match="pose_anchor_head_m"):
        pose_anchor_of(path)


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nbatch = 3\n")
    with pytest.raises(ConfigError, match="unknown keys"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_crop_scale_labels_give_the_sampled_depths(shard):
    # log_scale = log(focal / (size * z)) with z the pose anchor's depth (tracker/core/crop.py); the head origin
    # lies R a behind it. Synthesis samples the origin's z in [0.3, 1.6] m, and the virtual camera's depth of
    # the head differs from z by at most the ray's obliquity
    z_anchor = shard["focal_px"] / (128 * np.exp(shard["log_scale"][:, 0]))
    z = z_anchor - (shard["rotation"] @ POSE_ANCHOR_HEAD_M)[:, 2]
    assert np.all(z > 0.3 * 0.95) and np.all(z < 1.6 * 1.3)
    # the anchor lies in front of the origin (by up to 9.5 cm when frontal, ~0 in profile)
    assert np.all(z_anchor < z + 0.005) and np.median(z - z_anchor) > 0.05


def test_format_1_labels_are_moved_to_the_pose_anchor(shard, face_model):
    """Shards written before the pose anchor (format 1) hold the head origin's offset and scale; loading
    refers them to the anchor, which is what the network now predicts."""
    from engines.train.trainer import _anchored

    f, n = shard["focal_px"].astype(np.float64), 128
    z_a = f / (n * np.exp(shard["log_scale"][:, 0]))
    t_a = np.c_[shard["offset"] * (n * z_a / f)[:, None], z_a]
    t = t_a - shard["rotation"] @ POSE_ANCHOR_HEAD_M  # the head origin, as format 1 stored it
    old = {**shard, "format_version": np.int32(1), "offset": (f[:, None] * t[:, :2] / t[:, 2:3] / n).astype(np.float32),
           "log_scale": np.log(f / (n * t[:, 2]))[:, None].astype(np.float32)}  # fmt: skip
    assert np.abs(old["log_scale"] - shard["log_scale"]).max() > 0.05  # the two parametrisations differ
    moved = _anchored(old)
    np.testing.assert_allclose(moved["offset"], shard["offset"], atol=1e-5)
    np.testing.assert_allclose(moved["log_scale"], shard["log_scale"], atol=1e-5)
    assert _anchored(shard) is shard  # format 2 is left alone


def test_zoom_augmentation_keeps_labels_exact(shard, face_model):
    from engines.differentiable import FaceLayer
    from engines.train.losses import crop_translation, project_crop
    from engines.train.trainer import zoom_augment

    img, lab = _batch(shard)
    zimg, zlab = zoom_augment(img, lab, np.random.default_rng(0), sigma=0.3)
    layer = FaceLayer(face_model, 10, vertex_ids=face_model.landmark_ids)
    pts = layer(lab["identity"], lab["expression"])

    def project(lb):
        t = crop_translation(lb["offset"], lb["log_scale"], lb["focal_px"], 128, lb["rotation"])
        return project_crop(pts, lb["rotation"], t, lb["focal_px"], 128)

    s = (zlab["focal_px"] / lab["focal_px"])[:, None, None]
    c = 63.5
    torch.testing.assert_close(project(zlab), c + s * (project(lab) - c), atol=1e-3, rtol=1e-4)
    # the pixels move the same way as the labels: a dot 20 px right of the centre ends up 20 s px right
    dot = torch.zeros(1, 3, 128, 128)
    dot[..., 63:65, 83:85] = 1.0  # centred on x = 83.5, y = 63.5
    one = {k: v[:1] for k, v in lab.items()}
    zdot, zone = zoom_augment(dot, one, np.random.default_rng(1), sigma=0.3)
    sd = float(zone["focal_px"][0] / one["focal_px"][0])
    w = zdot[0, 0]
    x = float((w.sum(0) * torch.arange(128)).sum() / w.sum())
    assert abs(x - (63.5 + 20 * sd)) < 0.5 and sd != 1.0
