import numpy as np
import pytest

from tracker.core.crop import (
    POSE_ANCHOR_HEAD_M,
    CropBox,
    PerspectiveCrop,
    decode_pose,
    encode_pose,
    ray_rotation,
)
from tracker.core.errors import ConfigError
from tracker.core.geometry import rotation_from_ypr_deg
from tracker.core.types import Intrinsics

K = Intrinsics(500.0, 505.0, 321.0, 238.0, 640, 480)


def test_ray_rotation_points_optical_axis_at_pixel():
    for u, v in [(321.0, 238.0), (50.0, 400.0), (600.0, 20.0)]:
        r = ray_rotation(K, u, v)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(K.project((r @ [0, 0, 1.0])[None]), [[u, v]], atol=1e-9)
        assert abs(r[1, 0]) < 1e-12  # the virtual x axis stays horizontal (no roll)


def test_crop_warp_equals_virtual_camera_projection():
    crop = PerspectiveCrop(K, CropBox(500.0, 120.0, 200.0))
    rng = np.random.default_rng(0)
    pts = (crop.r_ray @ np.c_[rng.uniform(-0.05, 0.05, (20, 2)), rng.uniform(0.5, 0.9, 20)].T).T
    direct = crop.virtual_intrinsics().project(pts @ crop.r_ray)  # R_ray^T p, row-vector form
    via_image = crop.to_crop(K.project(pts))
    np.testing.assert_allclose(via_image, direct, atol=1e-6)
    np.testing.assert_allclose(crop.from_crop(via_image), K.project(pts), atol=1e-6)
    np.testing.assert_allclose(crop.to_crop([[500.0, 120.0]]), [[63.5, 63.5]], atol=1e-9)


def test_warp_samples_the_right_pixels():
    img = np.zeros((480, 640, 3), np.uint8)
    img[110:131, 490:511] = 255  # a bright square around (500, 120)
    crop = PerspectiveCrop(K, CropBox(500.0, 120.0, 128.0), out_size_px=128)
    out = crop.warp(img)
    ys, xs = np.nonzero(out[..., 0] > 127)
    assert abs(xs.mean() - 63.5) < 1.0 and abs(ys.mean() - 63.5) < 1.0


def test_pose_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(50):
        r = rotation_from_ypr_deg(*rng.uniform(-60, 60, 3))
        t = np.array([rng.uniform(-0.3, 0.3), rng.uniform(-0.2, 0.2), rng.uniform(0.4, 1.0)])
        crop = PerspectiveCrop(K, CropBox.from_landmarks(K.project(t[None] + rng.normal(0, 0.05, (68, 3)))))
        enc = encode_pose(crop, r, t)
        r2, t2 = decode_pose(crop, enc)
        np.testing.assert_allclose(r2, r, atol=1e-9)
        np.testing.assert_allclose(t2, t, atol=1e-9)
        assert np.all(np.abs(enc.offset) < 0.5)


def test_pose_anchor_places_the_face_not_the_head_origin():
    """The offset and scale describe the anchor point of the face; decoding with the anchor the pose was
    encoded with gives the same head pose back, whatever the anchor (a model's own, from its metadata)."""
    r = rotation_from_ypr_deg(20.0, -10.0, 5.0)
    t = np.array([0.05, -0.02, 0.5])
    crop = PerspectiveCrop(K, CropBox(*K.project(t[None])[0], 200.0))
    enc = encode_pose(crop, r, t)
    anchor_cam = r @ POSE_ANCHOR_HEAD_M + t
    z_local = (crop.r_ray.T @ anchor_cam)[2]
    assert enc.log_scale == pytest.approx(np.log(crop.focal_px / (crop.out_size_px * z_local)), abs=1e-12)
    origin = encode_pose(crop, r, t, anchor_head_m=np.zeros(3))
    assert origin.log_scale < enc.log_scale - 0.1  # the face is ~9 cm nearer than the head origin
    for anchor in (np.zeros(3), np.array([0.01, -0.02, -0.05])):
        r2, t2 = decode_pose(crop, encode_pose(crop, r, t, anchor), anchor)
        np.testing.assert_allclose(r2, r, atol=1e-12)
        np.testing.assert_allclose(t2, t, atol=1e-12)


def test_boxes():
    b = CropBox.from_landmarks(np.array([[10, 20], [30, 60]]), scale=1.0)
    assert (b.cx, b.cy, b.size_px) == (20, 40, 40)
    d = CropBox.from_detection(np.array([100, 100, 200, 220]))
    assert d.cx == 150 and d.size_px > 120
    with pytest.raises(ConfigError):
        CropBox(0, 0, 0)
