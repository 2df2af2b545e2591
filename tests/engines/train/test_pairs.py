"""Frame pairs and the temporal/photometric terms: extraction on a real clip (one crop for both frames, the
flow re-aligns them), E_flow / E_same / E_pho on known geometry, one optimisation step, and zoom
augmentation that keeps the flow consistent with the teacher's motion."""

import numpy as np
import pytest
import torch

from engines.differentiable import sampling
from engines.train.config import LossSection
from engines.train.losses import PairLoss
from engines.train.pairs import PairSpec, crop_flow, extract_pairs
from engines.train.trainer import PairData
from tests.engines.train.test_real import K, _geometry_batch


@pytest.fixture(scope="module")
def pair_loss(face_model):
    return PairLoss(face_model, LossSection(), num_identity=K)


@pytest.fixture(scope="module")
def pairs(shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs")
    clip = shared_data / "videos" / "liveportrait_d12.mp4"  # the clip with the fastest head motion
    meta = extract_pairs(out, [clip], PairSpec(pairs_per_clip=6, gaps=(2,)), progress=False)
    return out, meta


def _remap(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """The second crop pulled back onto the first through the flow: out(p) = image(p + flow(p))."""
    import cv2

    h, w = flow.shape[:2]
    xx, yy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(image, xx + flow[..., 0], yy + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def test_extraction_cuts_both_frames_with_one_crop_and_the_flow_aligns_them(pairs):
    out, meta = pairs
    stats = meta["groups"]["liveportrait_d12"]
    assert stats["pairs"] == 6 and stats["no_face"] == 0
    z = dict(np.load(out / "shard_liveportrait_d12.npz"))
    assert z["image"].shape == (6, 2, 128, 128, 3) and z["flow"].shape == (6, 128, 128, 2)
    assert z["points"].shape == (6, 2, 468, 2) and set(z["gap"]) == {2}
    for (first, second), flow in zip(z["image"], z["flow"].astype(np.float32), strict=True):
        grey = [f.astype(np.float32).mean(-1) for f in (first, second, _remap(second, flow))]
        inner = np.s_[16:-16, 16:-16]
        before = np.abs(grey[1] - grey[0])[inner].mean()
        after = np.abs(grey[2] - grey[0])[inner].mean()
        assert after < 0.8 * before + 0.5  # the flow explains the motion between the two crops
    # the teacher's own points move as the flow says (median over points and pairs)
    pts = torch.from_numpy(z["points"])
    motion = pts[:, 1] - pts[:, 0]
    flow_at = sampling.sample_image(torch.from_numpy(z["flow"].astype(np.float32)).permute(0, 3, 1, 2), pts[:, 0])
    moved = float(motion.norm(dim=-1).median())
    print(f"teacher motion {moved:.2f} px, flow residual {float((motion - flow_at).norm(dim=-1).median()):.2f} px")
    assert moved > 1.0  # there is motion to speak of (the fastest clip, two frames apart)
    assert float((motion - flow_at).norm(dim=-1).median()) < 0.4 * moved


def test_crop_flow_recovers_a_known_shift():
    rng = np.random.default_rng(0)
    import cv2

    texture = cv2.GaussianBlur(rng.integers(0, 255, (160, 160, 3)).astype(np.uint8), (0, 0), 2.0)
    first, second = texture[10:138, 10:138], texture[8:136, 13:141]  # content moves by (-3, +2) px
    flow = crop_flow(np.ascontiguousarray(first), np.ascontiguousarray(second))
    assert np.median(flow[20:-20, 20:-20, 0]) == pytest.approx(-3.0, abs=0.3)
    assert np.median(flow[20:-20, 20:-20, 1]) == pytest.approx(2.0, abs=0.3)


def _lit_batch(face_model, n, seed):
    """True parameters of random faces (test_real's geometry batch) under ambient light."""
    from engines.differentiable.shading import ambient_sh

    pred, target = _geometry_batch(face_model, n=n, seed=seed)
    return {**pred, "lighting": ambient_sh(1.0, batch=n)}, target


def _flat_pair_target(pred, target, flow_xy=(0.0, 0.0)):
    b = target["focal_px"].shape[0]
    flow = torch.zeros(b, 2, 128, 128)
    flow[:, 0], flow[:, 1] = flow_xy
    pts = target["points"]
    return {"flow": flow, "points": torch.stack([pts, pts], 1), "focal_px": target["focal_px"],
            "image_a": torch.full((b, 3, 128, 128), 0.5)}  # fmt: skip


def test_flow_and_same_terms_on_known_geometry(face_model, pair_loss):
    pred, target = _lit_batch(face_model, n=4, seed=3)
    still = pair_loss(pred, pred, _flat_pair_target(pred, target))
    assert still.terms["pair_flow_error_px"] < 1e-4 and still.terms["pair_same"] == 0.0
    assert still.terms["pair_landmark_px"] < 1e-2  # the teacher points are the true ones on both frames
    # the image moved 3 px to the right but the prediction did not: E_flow sees the 3 px
    moved = pair_loss(pred, pred, _flat_pair_target(pred, target, (3.0, 0.0)))
    assert moved.terms["pair_flow_error_px"] == pytest.approx(3.0, abs=1e-3)
    other = dict(pred, identity=pred["identity"] + 0.5)
    assert pair_loss(pred, other, _flat_pair_target(pred, target)).terms["pair_same"] == pytest.approx(0.25, rel=1e-4)


def test_one_step_moves_the_second_face_along_the_flow(face_model, pair_loss):
    pred, target = _lit_batch(face_model, n=4, seed=4)
    offset_b = pred["offset"].clone().requires_grad_(True)
    tgt = _flat_pair_target(pred, target, (2.0, 0.0))
    weights = LossSection(real_landmark_px=0.0, real_identity=0.0, pair_photo=0.0)
    loss = PairLoss(face_model, weights, num_identity=K)
    opt = torch.optim.SGD([offset_b], lr=1e-3)
    before = loss(pred, dict(pred, offset=offset_b), tgt).terms["pair_flow_px"]
    for _ in range(20):
        out = loss(pred, dict(pred, offset=offset_b), tgt)
        opt.zero_grad()
        out.total.backward()
        opt.step()
    after = loss(pred, dict(pred, offset=offset_b), tgt).terms["pair_flow_px"]
    assert after < 0.5 * before
    assert bool((offset_b[:, 0] > pred["offset"][:, 0]).all())  # moved right, as the flow says


def test_photometric_term_prefers_the_true_lighting_direction(face_model, pair_loss):
    """A crop painted with the model's own shading under light from the left: the same lighting explains it
    better than light from the right."""
    import cv2

    from engines.differentiable.shading import sh_irradiance

    pred, target = _lit_batch(face_model, n=2, seed=5)
    left = torch.zeros(2, 27)
    left[:, [0, 9, 18]] = 0.8
    left[:, [3, 12, 21]] = -0.25  # x band: brighter where normals point to -x
    right = left.clone()
    right[:, [3, 12, 21]] = 0.25
    _, uv, normals = pair_loss.posed(pred, target["focal_px"])
    colours = 0.5 * sh_irradiance(normals, left)
    # the image: each point's colour painted at its pixel, the gaps filled smoothly (OpenCV inpainting), what
    # a camera would see of that shading
    images = []
    for b in range(2):
        paint = np.zeros((128, 128, 3), np.uint8)
        hole = np.full((128, 128), 255, np.uint8)
        ij = uv[b].detach().round().long().clamp(0, 127).numpy()
        paint[ij[:, 1], ij[:, 0]] = (colours[b].detach().numpy() * 255).round().astype(np.uint8)
        hole[ij[:, 1], ij[:, 0]] = 0
        filled = cv2.inpaint(paint, hole, 3, cv2.INPAINT_TELEA)
        images.append(torch.from_numpy(filled).float().div(255).permute(2, 0, 1))
    image = torch.stack(images)
    tgt = {**_flat_pair_target(pred, target), "image_a": image}
    e_left = pair_loss(dict(pred, lighting=left), pred, tgt).terms["pair_photo"]
    e_right = pair_loss(dict(pred, lighting=right), pred, tgt).terms["pair_photo"]
    assert e_left < 3.0  # % of full scale: the painted shading is explained (up to the paint's rounding)
    assert e_left < 0.6 * e_right


def test_zoom_keeps_flow_points_and_images_consistent(pairs):
    out, _ = pairs
    data = PairData([out / "shard_liveportrait_d12.npz"])
    idx = np.arange(len(data))
    _, _, plain = data.batch(idx)
    img_a, img_b, zoomed = data.batch(idx, np.random.default_rng(1))
    assert img_a.shape == img_b.shape == (len(data), 3, 128, 128)
    s = zoomed["focal_px"] / plain["focal_px"]
    assert float(s.std()) > 0  # some pairs were zoomed

    def residual(lab):
        pts = lab["points"]
        inside = ((pts[:, 0] > 4) & (pts[:, 0] < 123)).all(-1)
        res = (pts[:, 1] - pts[:, 0] - sampling.sample_image(lab["flow"], pts[:, 0])).norm(dim=-1)
        return float(res[inside].median())

    # teacher motion and flow agree as well after the zoom (in zoomed pixels) as before
    print(f"flow residual {residual(plain):.3f} px plain, {residual(zoomed):.3f} px zoomed")
    assert residual(zoomed) < 1.3 * residual(plain) + 0.05


def test_training_with_pairs_logs_the_pair_terms(pairs, shared_data, tmp_path, monkeypatch):
    import csv

    from engines.train.config import DataSection, ModelSection, TrainConfig, TrainSection
    from engines.train.real import RealGroup, RealSpec, extract_real
    from engines.train.trainer import train
    from tests.engines.train.test_real import tiny_training_cache

    real_dir = tmp_path / "real_src"
    extract_real(real_dir, [RealGroup("d19", videos=(shared_data / "videos" / "liveportrait_d19.mp4",))],
                 RealSpec(per_clip=3, jitter=2), progress=False)  # fmt: skip
    data = tiny_training_cache(tmp_path, monkeypatch, real_dir / "shard_d19.npz")
    z = dict(np.load(pairs[0] / "shard_liveportrait_d12.npz"))
    (data / "pairs").mkdir()
    for name, sl in (("a", slice(0, 3)), ("b", slice(3, 6))):  # two clip groups: one is held aside
        part = {k: v[sl] for k, v in z.items() if k != "format_version"}
        part["group"] = np.asarray([name] * 3)
        np.savez(data / "pairs" / f"shard_{name}.npz", **part)
    cfg = TrainConfig(name="pairs", model=ModelSection(width=0.25, num_identity=K),
                      data=DataSection(name="syn", val_samples=4),
                      train=TrainSection(batch_size=4, epochs=1, warmup_steps=1, real_datasets=("real",),
                                         real_val_fraction=0.4, pair_datasets=("pairs",), pair_fraction=0.5))  # fmt: skip
    metrics = train(cfg, progress=False)
    assert metrics["pair_train_samples"] == 3 and metrics["pair_val_samples"] == 3
    assert metrics["val_total"] == pytest.approx(metrics["val_synth_total"] + metrics["val_real_total"]
                                                 + metrics["val_pair_total"])  # fmt: skip
    assert metrics["val_pair_flow_error_px"] > 0
    rows = list(csv.DictReader(open(tmp_path / "train" / "runs" / "pairs" / "log.csv")))
    assert [r["kind"] for r in rows] == ["init", "init", "val"]
    assert float(rows[1]["val_pair_flow_error_px"]) > 0 and float(rows[2]["val_pair_flow_error_px"]) > 0


def test_mirror_permutation_pairs_the_eye_and_mouth_corners():
    from engines.teacher.correspondence import mirror_permutation

    perm = mirror_permutation()
    assert np.array_equal(perm[perm], np.arange(468))
    assert (perm[33], perm[61], perm[1], perm[152]) == (263, 291, 1, 152)  # eye and mouth corners; nose tip, chin


def test_flipped_crops_carry_the_points_the_teacher_finds_on_them(pairs):
    """Mirror a pair's crops and labels, then run MediaPipe on the mirrored first crop: it finds its points
    where flip_augment put them, and the mirrored flow still agrees with the mirrored teacher motion."""
    pytest.importorskip("mediapipe")
    import cv2

    from engines.teacher.correspondence import mirror_permutation
    from engines.teacher.mediapipe_landmarker import MediaPipeTeacher
    from engines.train.trainer import flip_augment

    out, _ = pairs
    data = PairData([out / "shard_liveportrait_d12.npz"])
    img_a, img_b, lab = data.batch(np.arange(4))
    both, flipped = flip_augment(torch.cat([img_a, img_b], 1), {"points": lab["points"], "flow": lab["flow"]},
                                 np.random.default_rng(0), mirror_permutation(), p=1.0)  # fmt: skip
    errors = []
    with MediaPipeTeacher() as teacher:
        for i in range(4):
            crop = (both[i, :3].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            big = cv2.resize(crop, (384, 384), interpolation=cv2.INTER_CUBIC)  # the teacher prefers larger faces
            faces = teacher.detect(big)
            if faces:
                found = (faces[0].landmarks_px[:468] + 0.5) * (128 / 384) - 0.5
                errors.append(np.linalg.norm(found - flipped["points"][i, 0].numpy(), axis=1).mean())
    assert len(errors) >= 3
    assert np.mean(errors) < 2.0  # crop px: as close as the teacher's own frame-to-frame noise
    res = (flipped["points"][:, 1] - flipped["points"][:, 0]
           - sampling.sample_image(flipped["flow"], flipped["points"][:, 0])).norm(dim=-1)  # fmt: skip
    moved = (flipped["points"][:, 1] - flipped["points"][:, 0]).norm(dim=-1)
    assert float(res.median()) < 0.4 * float(moved.median())
