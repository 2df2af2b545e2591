"""Patch geometry of the detail networks: placement, scale invariance and the mirror construction."""

from __future__ import annotations

import numpy as np
import pytest

from tracker.core.errors import ConfigError
from tracker.core.face_model.arkit import ARKIT_NAMES
from tracker.core.regions import (
    EYE_CHANNELS_LEFT,
    EYE_CHANNELS_RIGHT,
    EYE_PATCH_PX,
    MOUTH_CHANNELS,
    MOUTH_PATCH_PX,
    arkit_indices,
    cut_patches,
    face_frame,
    mirror_channels,
    patch_affines,
    patch_sizes_px,
)

# A frontal face: eyes 60 px apart, mouth 60 px below the eyes (image y down).
ANCHORS = np.array([[170, 200], [210, 200], [230, 200], [270, 200], [195, 260], [245, 260]], np.float64)


def test_face_frame_of_an_upright_face():
    u, v, s = face_frame(ANCHORS)
    np.testing.assert_allclose(u, [1, 0])
    np.testing.assert_allclose(v, [0, 1])  # "down", towards the mouth
    assert s == pytest.approx(0.5 * (60 + 60))


def test_face_frame_rejects_degenerate_anchors():
    with pytest.raises(ConfigError):
        face_frame(np.zeros((6, 2)))
    with pytest.raises(ConfigError):
        face_frame(np.full((6, 2), np.nan))


def test_patch_centres_sit_on_the_eyes_and_mouth():
    affines = patch_affines(ANCHORS)
    for k, side in ((0, EYE_PATCH_PX), (1, EYE_PATCH_PX), (2, MOUTH_PATCH_PX)):
        centre = affines[k] @ np.array([(side - 1) / 2, (side - 1) / 2, 1.0])
        expected = {0: [190, 200 - 0.18 * 60], 1: [250, 200 - 0.18 * 60], 2: [220, 260 + 0.18 * 60]}[k]
        np.testing.assert_allclose(centre, expected, atol=1e-9)
    # The left eye's patch runs right to left (mirrored); the others left to right.
    assert affines[0][0, 0] > 0 and affines[1][0, 0] < 0 and affines[2][0, 0] > 0


def test_context_widens_the_patch_at_the_same_resolution_and_centre():
    base, wide = patch_affines(ANCHORS), patch_affines(ANCHORS, context=1.3)
    np.testing.assert_allclose(base[:, :, :2], wide[:, :, :2])  # same px per patch px
    e, m = patch_sizes_px(1.3)
    for k, side, wside in ((0, EYE_PATCH_PX, e), (2, MOUTH_PATCH_PX, m)):
        c0 = base[k] @ np.array([(side - 1) / 2, (side - 1) / 2, 1.0])
        c1 = wide[k] @ np.array([(wside - 1) / 2, (wside - 1) / 2, 1.0])
        np.testing.assert_allclose(c0, c1, atol=1e-9)


def _textured(h=400, w=440, seed=0):
    rng = np.random.default_rng(seed)
    import cv2

    return cv2.GaussianBlur(rng.integers(0, 256, (h, w), dtype=np.uint8), (0, 0), 2.0)


def test_a_mirrored_face_gives_the_same_patches_swapped():
    """Flip the image and relabel the anchors (the subject's right eye is now the old left one): the right
    eye patch equals the old left eye's (already mirrored) patch, and the mouth patch is flipped."""
    img = _textured()
    w = img.shape[1]
    flipped = img[:, ::-1].copy()
    m = ANCHORS.copy()
    m[:, 0] = w - 1 - m[:, 0]
    flipped_anchors = m[[3, 2, 1, 0, 5, 4]]
    eyes, mouth = cut_patches(img, ANCHORS)
    eyes_f, mouth_f = cut_patches(flipped, flipped_anchors)
    assert eyes.shape == (2, EYE_PATCH_PX, EYE_PATCH_PX) and mouth.shape == (MOUTH_PATCH_PX, MOUTH_PATCH_PX)
    assert np.abs(eyes_f[0].astype(int) - eyes[1]).max() <= 1
    assert np.abs(eyes_f[1].astype(int) - eyes[0]).max() <= 1
    assert np.abs(mouth_f.astype(int) - mouth[:, ::-1]).max() <= 1


def test_patches_do_not_depend_on_the_face_size():
    """The same face at twice the size (image and anchors scaled) gives nearly the same patches."""
    import cv2

    img = _textured(seed=1)
    big = cv2.resize(img, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    eyes, mouth = cut_patches(img, ANCHORS)
    eyes2, mouth2 = cut_patches(big, ANCHORS * 2 + 0.5)  # pixel centres: x2 = 2 x + 0.5
    assert np.abs(eyes2.astype(int) - eyes).mean() < 3.0
    assert np.abs(mouth2.astype(int) - mouth).mean() < 3.0


def test_rgb_input_is_cut_then_converted():
    import cv2

    rgb = np.stack([_textured(seed=s) for s in (2, 3, 4)], axis=-1)
    eyes_rgb, mouth_rgb = cut_patches(rgb, ANCHORS)
    eyes_g, mouth_g = cut_patches(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), ANCHORS)
    assert np.abs(eyes_rgb.astype(int) - eyes_g).max() <= 1
    assert np.abs(mouth_rgb.astype(int) - mouth_g).max() <= 1


def test_channel_tables():
    assert len(set(EYE_CHANNELS_RIGHT)) == 10 and set(EYE_CHANNELS_LEFT) & set(EYE_CHANNELS_RIGHT) == {"browInnerUp"}
    assert all(n in ARKIT_NAMES for n in EYE_CHANNELS_LEFT + EYE_CHANNELS_RIGHT + MOUTH_CHANNELS)
    np.testing.assert_array_equal(np.asarray(ARKIT_NAMES)[arkit_indices(MOUTH_CHANNELS)], MOUTH_CHANNELS)
    perm = mirror_channels(MOUTH_CHANNELS)
    named = dict(zip(MOUTH_CHANNELS, np.asarray(MOUTH_CHANNELS)[perm], strict=True))
    assert named["mouthSmileLeft"] == "mouthSmileRight" and named["jawLeft"] == "jawRight"
    assert named["jawOpen"] == "jawOpen" and named["mouthPucker"] == "mouthPucker"
    np.testing.assert_array_equal(perm[perm], np.arange(len(MOUTH_CHANNELS)))
