"""CoarseNet-D's input: a real synthetic RGB-D frame's depth warped into a face crop's virtual camera."""

import dataclasses

import cv2
import numpy as np
import pytest

from tracker.core.crop import CropBox
from tracker.core.depth_crop import (
    DEPTH_CLIP,
    DEPTH_CROP_PX,
    DEPTH_RANGE_M,
    depth_channels,
    reference_depth_m,
    rgbd_input,
    virtual_depth_m,
)
from tracker.core.errors import ConfigError
from tracker.core.types import FaceCoefficients
from tracker.sources.synthetic import SyntheticSource, ground_truth_for


@pytest.fixture(scope="module")
def scene(face_model):
    """Clean frames (640x480) and the renderer that drew them: three of one performance (the face near the
    image centre) and one with that face moved to the upper right, ~25 degrees off the optical axis, where
    camera z and the crop's virtual z differ by ~10 %."""
    from tracker.render import Renderer

    renderer = Renderer(face_model)
    with SyntheticSource(21, None, model=face_model, renderer=renderer) as src:
        frames = [src.render_frame(i) for i in (0, 90, 200)]
    gt = frames[0].ground_truth
    moved = FaceCoefficients(gt.identity, gt.expression, gt.rotation, gt.translation_m + [0.24, -0.12, 0.0],
                             gt.lighting)  # fmt: skip
    k = frames[0].intrinsics
    out = renderer.render(moved, k, None, (0, 0, 0))
    frames.append(dataclasses.replace(frames[0], color=out.rgb, depth=out.depth_u16(frames[0].depth_scale_m),
                                      ground_truth=ground_truth_for(face_model, moved, k)))  # fmt: skip
    yield frames, renderer
    renderer.close()


def _rendered_through(renderer, frame, crop) -> np.ndarray:
    """The crop's depth rendered directly by its virtual camera (as the RGB-D training set renders it)."""
    gt = frame.ground_truth
    local = FaceCoefficients(gt.identity, gt.expression, crop.r_ray.T @ gt.rotation, crop.r_ray.T @ gt.translation_m,
                             gt.lighting)  # fmt: skip
    return renderer.render(local, crop.virtual_intrinsics(), None, (0, 0, 0)).depth_m


@pytest.mark.parametrize("size_px", [DEPTH_CROP_PX, 128])
def test_warped_depth_matches_the_virtual_cameras_own_render(scene, size_px):
    from tracker.core.crop import PerspectiveCrop

    frames, renderer = scene
    for frame in frames:
        crop = PerspectiveCrop(frame.intrinsics, CropBox.from_landmarks(frame.ground_truth.landmarks68), size_px)
        warped = virtual_depth_m(frame, crop)
        direct = _rendered_through(renderer, frame, crop)
        assert warped.shape == direct.shape == (size_px, size_px) and warped.dtype == np.float32
        # Nearest-neighbour sampling differs at silhouettes: compare the interior both see.
        both = cv2.erode(((warped > 0) & (direct > 0)).astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
        assert both.mean() > 0.25
        err_mm = np.abs(warped[both] - direct[both]) * 1e3
        assert np.median(err_mm) < 1.0 and np.percentile(err_mm, 90) < 3.0  # measured: 0.3 and 0.9 mm
        # The silhouettes agree to a pixel or two.
        assert np.mean((warped > 0) != (direct > 0)) < 0.05


def test_rgbd_input_channels(scene):
    frames, _ = scene
    for frame in frames:
        gt = frame.ground_truth
        got = rgbd_input(frame, CropBox.from_landmarks(gt.landmarks68))
        assert got is not None
        x, crop, z_ref = got
        assert x.shape == (5, DEPTH_CROP_PX, DEPTH_CROP_PX) and x.dtype == np.float32
        assert 0.0 <= x[:3].min() and x[:3].max() <= 1.0
        z = virtual_depth_m(frame, crop)
        assert np.array_equal(x[4], (z > 0).astype(np.float32))
        assert (x[3][z == 0] == 0).all() and np.abs(x[3]).max() <= DEPTH_CLIP
        np.testing.assert_allclose(x[3][z > 0], np.clip((z[z > 0] - z_ref) / DEPTH_RANGE_M, -DEPTH_CLIP, DEPTH_CLIP),
                                   atol=1e-5)  # fmt: skip
        # The reference is the face's own depth: between the nose tip and the head origin.
        assert gt.translation_m[2] - 0.15 < z_ref < gt.translation_m[2]
        assert z_ref == reference_depth_m(z)


def test_no_depth_in_the_crop_centre_gives_none(scene):
    frames, _ = scene
    frame = frames[0]
    assert rgbd_input(frame, CropBox(20.0, 20.0, 30.0)) is None  # a corner of the background: no return
    holes = dataclasses.replace(frame, depth=np.zeros_like(frame.depth))
    assert rgbd_input(holes, CropBox.from_landmarks(frame.ground_truth.landmarks68)) is None
    with pytest.raises(ConfigError):
        rgbd_input(dataclasses.replace(frame, depth=None), CropBox(100.0, 100.0, 50.0))


def test_depth_channels_of_a_small_map():
    z = np.array([[0.0, 0.5], [0.55, 0.9]], np.float32)
    rel, valid = depth_channels(z, 0.5)
    np.testing.assert_allclose(rel, [[0.0, 0.0], [0.5, DEPTH_CLIP]], atol=1e-6)
    assert valid.tolist() == [[0.0, 1.0], [1.0, 1.0]]
