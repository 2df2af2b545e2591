"""Real teacher-labelled crops and E_lan: geometry consistency, one optimisation step, extraction on a few
frames of a real clip, the group split, and a tiny mixed synthetic + real training run."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from engines.differentiable import matrix_to_sixd, sixd_to_matrix
from engines.models.coarsenet import CoarseNet, CoarseNetConfig
from engines.teacher.correspondence import load_correspondence
from engines.train.config import LossSection
from engines.train.losses import RealLandmarkLoss
from engines.train.real import (
    RealGroup,
    RealSpec,
    check_not_evaluation,
    extract_real,
    split_groups,
    teacher_crop_box,
)
from engines.train.trainer import RealData, cycling_indices
from tracker.core.crop import LANDMARK_BOX_SCALE, CropBox, PerspectiveCrop, encode_pose
from tracker.core.errors import ConfigError
from tracker.core.geometry import rotation_from_ypr_deg, transform_points
from tracker.core.types import Intrinsics

K = 10


def _geometry_batch(face_model, n=4, seed=0):
    """Random faces in a real camera, cropped like the tracker; the 'teacher' points are the ICT surface
    points of the correspondence projected into the real image and mapped into the crop (numpy, through
    tracker.core.crop), independent of the torch path under test."""
    rng = np.random.default_rng(seed)
    corr = load_correspondence()
    cam = Intrinsics.from_fov(640, 480, 55.0)
    pred = {k: [] for k in ("identity", "expression", "rotation6d", "offset", "log_scale")}
    points, focal = [], []
    for _ in range(n):
        ident = rng.normal(0, 0.8, K).astype(np.float32)
        expr = rng.uniform(0, 0.4, 53).astype(np.float32)
        rot = rotation_from_ypr_deg(*rng.uniform([-40, -20, -15], [40, 20, 15]))
        t = np.array([rng.uniform(-0.15, 0.15), rng.uniform(-0.1, 0.1), rng.uniform(0.4, 1.0)])
        verts = face_model.head_vertices_m(ident, expr).astype(np.float64)
        mp_head = (verts[corr.triangle_vertices] * corr.bary[..., None]).sum(1)
        lm = cam.project(transform_points(rot, t, face_model.landmarks68(ident, expr).astype(np.float64)))
        crop = PerspectiveCrop(cam, CropBox.from_landmarks(lm))
        pose = encode_pose(crop, rot, t)
        points.append(crop.to_crop(cam.project(transform_points(rot, t, mp_head))))
        focal.append(crop.focal_px)
        pred["identity"].append(ident)
        pred["expression"].append(expr)
        pred["rotation6d"].append(matrix_to_sixd(torch.from_numpy(pose.rotation_local).float()).numpy())
        pred["offset"].append(pose.offset.astype(np.float32))
        pred["log_scale"].append(np.float32([pose.log_scale]))
    pred = {k: torch.from_numpy(np.stack(v).astype(np.float32)) for k, v in pred.items()}
    target = {"points": torch.from_numpy(np.stack(points).astype(np.float32)),
              "focal_px": torch.tensor(focal, dtype=torch.float32)}  # fmt: skip
    return pred, target


@pytest.fixture(scope="module")
def real_loss(face_model):
    return RealLandmarkLoss(face_model, LossSection(), num_identity=K)


def test_real_loss_is_zero_for_the_true_parameters(face_model, real_loss):
    pred, target = _geometry_batch(face_model)
    out = real_loss(pred, target)
    assert out.terms["real_error_px"] < 0.02
    assert out.terms["real_landmark_px"] < 1e-3
    # and it sees errors: a 10 degree yaw error (about the pose anchor, in the face) moves the points by pixels
    wrong = dict(pred)
    r = torch.from_numpy(rotation_from_ypr_deg(10, 0, 0)).float()
    from engines.differentiable import sixd_to_matrix

    wrong["rotation6d"] = matrix_to_sixd(sixd_to_matrix(pred["rotation6d"]) @ r.T)
    assert real_loss(wrong, target).terms["real_error_px"] > 1.0


def test_identity_prior_counts_only_identity(face_model, real_loss):
    pred, target = _geometry_batch(face_model, n=2, seed=1)
    out = real_loss(pred, target)
    assert out.terms["real_identity"] == pytest.approx(float((pred["identity"] ** 2).mean()), rel=1e-5)


# ---------------------------------------------------------------------------------------------- extraction
@pytest.fixture(scope="module")
def clip(shared_data):
    return shared_data / "videos" / "liveportrait_d19.mp4"


@pytest.fixture(scope="module")
def extracted(clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("real")
    meta = extract_real(out, [RealGroup("d19", videos=(clip,))], RealSpec(per_clip=3, jitter=2), progress=False)
    return out, meta


def test_extraction_writes_consistent_shards(extracted, clip):
    import cv2

    out, meta = extracted
    z = dict(np.load(out / "shard_d19.npz"))
    assert meta["groups"]["d19"]["frames"] == 3 and meta["groups"]["d19"]["no_face"] == 0
    assert z["image"].shape == (6, 128, 128, 3) and z["image"].dtype == np.uint8
    assert z["points"].shape == (6, 468, 2) and z["points"].dtype == np.float32
    # the teacher's ARKit blendshapes of each crop's face (the expression teacher term), scores in [0, 1]
    assert z["blendshapes"].shape == (6, 52) and z["blendshapes"].dtype == np.float32
    assert np.isfinite(z["blendshapes"]).all() and z["blendshapes"].min() >= 0 and z["blendshapes"].max() <= 1
    assert set(z["group"]) == {"d19"} and all(s.startswith("liveportrait_d19.mp4#frame=") for s in z["source"])
    assert json.loads((out / "manifest.json").read_text())["spec"]["jitter"] == 2
    # the face lies in the crop: nearly all teacher points inside, their box centred and ~0.7 crop wide
    inside = ((z["points"] >= 0) & (z["points"] <= 127)).all(-1).mean()
    assert inside > 0.97
    for pts, box, focal, src, img in zip(z["points"], z["box"], z["focal_px"], z["source"], z["image"], strict=True):
        span = np.ptp(pts, axis=0).max()
        assert 0.45 < span / 128 < 1.1
        assert np.all(np.abs((pts.min(0) + pts.max(0)) / 2 - 63.5) < 0.3 * 128)
        # image, box, focal and points agree: re-cut the frame at the stored box
        cap = cv2.VideoCapture(str(clip))
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(src.split("=")[1]))
        ok, bgr = cap.read()
        cap.release()
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        crop = PerspectiveCrop(Intrinsics.assumed(rgb.shape[1], rgb.shape[0]), CropBox(*box.astype(float)))
        assert crop.focal_px == pytest.approx(float(focal), rel=1e-5)
        assert np.abs(crop.warp(rgb).astype(int) - img).mean() < 3
        # un-jittered, the box is the tracker's: the mapped 68-landmark box times LANDMARK_BOX_SCALE
        base = teacher_crop_box(crop.from_crop(pts))
        assert abs(np.log(box[2] / base.size_px)) < 0.45 and np.hypot(box[0] - base.cx, box[1] - base.cy) < 0.3 * base.size_px


def test_teacher_box_matches_the_68_landmark_box_on_a_rendered_face(face_model):
    # the constants, checked against the correspondence's surface points (an independent route from the
    # render-and-detect calibration): a frontal face's MediaPipe-point box maps onto its ICT-68 box
    corr = load_correspondence()
    cam = Intrinsics.from_fov(640, 480, 50.0)
    rot, t = rotation_from_ypr_deg(0, 0, 0), np.array([0.0, 0.0, 0.6])
    verts = face_model.head_vertices_m().astype(np.float64)
    mp = cam.project(transform_points(rot, t, (verts[corr.triangle_vertices] * corr.bary[..., None]).sum(1)))
    lm = cam.project(transform_points(rot, t, face_model.landmarks68().astype(np.float64)))
    want, got = CropBox.from_landmarks(lm), teacher_crop_box(mp)
    assert got.size_px == pytest.approx(want.size_px, rel=0.12)
    assert np.hypot(got.cx - want.cx, got.cy - want.cy) < 0.06 * want.size_px
    assert LANDMARK_BOX_SCALE > 1


def test_evaluation_images_are_refused(shared_data, tmp_path):
    lm68 = next((shared_data / "landmarks68").rglob("*.jpg"))
    with pytest.raises(ConfigError, match="evaluation"):
        check_not_evaluation(lm68)
    with pytest.raises(ConfigError, match="evaluation"):
        extract_real(tmp_path, [RealGroup("x", images=(lm68,))], progress=False)
    assert not (tmp_path / "shard_x.npz").exists()


def test_one_step_on_a_real_batch_lowers_e_lan(extracted, real_loss):
    out, _ = extracted
    data = RealData([out / "shard_d19.npz"])
    img, lab = data.batch(np.arange(len(data)))
    torch.manual_seed(0)
    model = CoarseNet(CoarseNetConfig(num_identity=K, width=0.5)).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)  # plain gradient descent: a small step must descend
    before = real_loss(model(img), lab)
    opt.zero_grad()
    before.total.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)  # as the trainer does
    opt.step()
    after = real_loss(model(img), lab)
    assert after.terms["real_landmark_px"] < 0.98 * before.terms["real_landmark_px"], (before.terms, after.terms)


def test_teacher_expression_term_reaches_the_expression_logits(extracted, face_model):
    out, _ = extracted
    data = RealData([out / "shard_d19.npz"])
    img, lab = data.batch(np.arange(len(data)))
    assert lab["blendshapes"].shape == (6, 52)
    loss = RealLandmarkLoss(face_model, LossSection(real_expression=1.0), num_identity=K)
    torch.manual_seed(0)
    model = CoarseNet(CoarseNetConfig(num_identity=K, width=0.5)).train()
    pred = model(img)
    pred["expression_logit"].retain_grad()
    result = loss(pred, lab)
    assert result.terms["real_expression"] > 0.01
    result.total.backward()
    grad = pred["expression_logit"].grad
    assert grad is not None and float(grad.abs().sum()) > 0
    # crops without teacher scores (NaN rows) add nothing
    none = loss({k: v.detach() for k, v in pred.items()}, {**lab, "blendshapes": torch.full((6, 52), float("nan"))})
    assert none.terms["real_expression"] == 0.0


# ---------------------------------------------------------------------------------------------- split
def test_split_is_by_whole_groups_and_stable():
    counts = {f"clip{i}": 160 for i in range(20)} | {f"id_person{i}": 20 for i in range(10)}
    val = split_groups(counts, 0.15)
    assert val and val < set(counts)
    n_val = sum(counts[g] for g in val)
    assert 0.15 * 3400 <= n_val < 0.15 * 3400 + 160
    assert split_groups(counts, 0.15) == val
    # adding a group keeps the earlier choices unless it takes their place in the hash order
    assert split_groups({"a": 5}, 0.5) == set() and split_groups(counts, 0.0) == set()


def test_cycling_indices_visit_every_sample_once_per_pass():
    n, b = 10, 4
    seq = np.concatenate([cycling_indices(s, b, n, seed=3) for s in range(5)])  # 20 = two passes
    assert sorted(seq[:10]) == list(range(n)) and sorted(seq[10:]) == list(range(n))
    assert not np.array_equal(seq[:10], seq[10:])
    assert np.array_equal(cycling_indices(3, b, n, seed=3), seq[12:16])  # a pure function of the step


# ---------------------------------------------------------------------------------------------- trainer
def tiny_training_cache(tmp_path, monkeypatch, real_shard):
    """A training cache under ``tmp_path`` (FACETRACK_CACHE): 3 tiny synthetic shards in ``syn`` and the real
    crops of ``real_shard`` split into two groups in ``real``; returns the data folder."""
    from engines.train.synth import ShardSynthesizer, SynthSpec
    from tracker.core.face_model.build import default_cache_path
    from tracker.render import Renderer

    models = default_cache_path().parent
    model_cache = models if models.is_dir() else None
    monkeypatch.setenv("FACETRACK_CACHE", str(tmp_path))  # runs and data under tmp_path
    if model_cache is not None:  # the built face model is reused, not rebuilt
        (tmp_path / "models").symlink_to(model_cache)
    data = tmp_path / "train" / "data"
    (data / "syn").mkdir(parents=True)
    synth = ShardSynthesizer(SynthSpec(num_identity=K, negative_fraction=0.1), Renderer)
    try:
        shard = synth.make_shard(seed=0, n=12, group=12)
        for i in range(3):
            np.savez(data / "syn" / f"shard_{i:05d}.npz", **{k: v[4 * i : 4 * i + 4] for k, v in shard.items()})
    finally:
        synth.close()
    # two real groups (the validation split takes whole groups)
    z = dict(np.load(real_shard))
    (data / "real").mkdir()
    for name, sl in (("a", slice(0, 3)), ("b", slice(3, 6))):
        part = {k: v[sl] for k, v in z.items() if k != "format_version"}
        part["group"] = np.asarray([name] * 3)
        np.savez(data / "real" / f"shard_{name}.npz", **part)
    return data


def test_training_mixes_real_batches_and_logs_them(extracted, tmp_path, monkeypatch):
    from engines.train.config import DataSection, ModelSection, TrainConfig, TrainSection
    from engines.train.trainer import train

    tiny_training_cache(tmp_path, monkeypatch, extracted[0] / "shard_d19.npz")

    def config(name, real):
        return TrainConfig(name=name, model=ModelSection(width=0.25, num_identity=K),
                           data=DataSection(name="syn", val_samples=4),
                           train=TrainSection(batch_size=4, epochs=1, warmup_steps=1, real_datasets=real,
                                              real_fraction=0.25, real_val_fraction=0.4))  # fmt: skip

    metrics = train(config("mixed", ("real",)), progress=False)
    assert metrics["real_train_samples"] + metrics["real_val_samples"] == 6 and metrics["real_val_samples"] == 3
    assert metrics["val_total"] == pytest.approx(metrics["val_synth_total"] + metrics["val_real_total"])
    rows = list(csv.DictReader(open(tmp_path / "train" / "runs" / "mixed" / "log.csv")))
    assert [r["kind"] for r in rows] == ["init", "val"]
    assert float(rows[0]["val_real_error_px"]) > 0 and float(rows[1]["val_real_error_px"]) > 0
    assert (tmp_path / "train" / "runs" / "mixed" / "curves.png").stat().st_size > 0

    # without real datasets: the log's columns and the metrics are those of a synthetic-only run
    plain = train(config("plain", ()), progress=False)
    header = next(csv.reader(open(tmp_path / "train" / "runs" / "plain" / "log.csv")))
    assert not any(h.startswith(("real", "val_real")) for h in header) and "landmark_px" in header
    assert not any("real" in k for k in plain)
    shutil.rmtree(tmp_path / "train" / "runs")


def _blobs(points_px: torch.Tensor, size_px: int = 128) -> torch.Tensor:
    """(B,3,N,N) images, each a bright Gaussian blob at its (x, y) of ``points_px`` (B,2)."""
    yy, xx = torch.meshgrid(torch.arange(float(size_px)), torch.arange(float(size_px)), indexing="ij")
    img = torch.zeros(len(points_px), 3, size_px, size_px)
    for i, (x, y) in enumerate(points_px):
        img[i] = torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 8.0)
    return img


def test_zoom_moves_real_points_with_the_image_and_the_pose_labels(face_model, real_loss):
    from engines.train.trainer import zoom_augment

    pred, target = _geometry_batch(face_model, n=4, seed=2)
    # a bright blob at each sample's first point: after the zoom it sits at the zoomed point
    p0 = torch.tensor([[40.0, 90.0], [70.0, 50.0], [60.0, 64.0], [88.0, 30.0]])
    img = _blobs(p0)
    labels = {**target, "offset": pred["offset"], "log_scale": pred["log_scale"]}
    labels["points"] = torch.cat([p0[:, None], target["points"][:, 1:]], 1)
    rng = np.random.default_rng(5)
    zoomed_img, zoomed = zoom_augment(img, labels, rng, sigma=0.3)
    for i in range(4):
        peak = torch.nonzero(zoomed_img[i, 0] == zoomed_img[i, 0].max())[0].flip(0).float()
        if (zoomed["points"][i, 0] >= 2).all() and (zoomed["points"][i, 0] <= 125).all():
            assert torch.allclose(peak, zoomed["points"][i, 0], atol=1.0)
    # the teacher points and the pose labels stay consistent: E_lan of the zoomed true parameters is ~0
    moved = {**pred, "offset": zoomed["offset"], "log_scale": zoomed["log_scale"]}
    points = zoomed["points"][:, 1:]
    uv = real_loss.project(moved, zoomed["focal_px"])[:, 1:]
    assert (uv - points).norm(dim=-1).max() < 0.05


def test_roll_turns_real_points_with_the_image_and_keeps_them_a_valid_pose(face_model, real_loss):
    from engines.train.trainer import roll_augment

    pred, target = _geometry_batch(face_model, n=4, seed=3)
    p0 = torch.tensor([[40.0, 90.0], [70.0, 50.0], [30.0, 64.0], [88.0, 30.0]])
    img = _blobs(p0)
    labels = {**target, "points": torch.cat([p0[:, None], target["points"][:, 1:]], 1)}
    rolled_img, rolled = roll_augment(img, labels, np.random.default_rng(4), sigma_deg=15.0)
    c = 63.5
    a, b = labels["points"] - c, rolled["points"] - c
    angle = torch.atan2(a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0], (a * b).sum(-1))  # (4, points)
    for i in range(4):
        # the blob drawn at the first point is found where the label moved it
        peak = torch.nonzero(rolled_img[i, 0] == rolled_img[i, 0].max())[0].flip(0).float()
        assert torch.allclose(peak, rolled["points"][i, 0], atol=1.0)
        # the points turned rigidly about the crop centre, by a real angle
        assert float(angle[i].std()) < 1e-4 and 0.01 < abs(float(angle[i].mean())) < np.deg2rad(2.5 * 15.0) + 1e-4
        torch.testing.assert_close(a[i].norm(dim=1), b[i].norm(dim=1), atol=1e-3, rtol=0)
    # the same face rolled about the virtual camera's optical axis projects onto the rolled points: E_lan of
    # the rolled true pose is ~0, so the augmented crops stay exact teacher labels
    ang = angle[:, 0]
    cos, sin, zero, one = ang.cos(), ang.sin(), torch.zeros(4), torch.ones(4)
    q3 = torch.stack([cos, -sin, zero, sin, cos, zero, zero, zero, one], 1).reshape(4, 3, 3)
    moved = {**pred, "rotation6d": matrix_to_sixd(q3 @ sixd_to_matrix(pred["rotation6d"])),
             "offset": (q3[:, :2, :2] @ pred["offset"][:, :, None])[..., 0]}
    uv = real_loss.project(moved, target["focal_px"])[:, 1:]
    assert (uv - rolled["points"][:, 1:]).norm(dim=-1).max() < 0.05
    # no roll: the input comes back as it was
    same_img, same = roll_augment(img, labels, np.random.default_rng(4), sigma_deg=0.0)
    assert same_img is img and same["points"] is labels["points"]
