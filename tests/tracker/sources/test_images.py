"""ImageFolderSource: natural order, RGB, skipping non-images and broken images, clear errors."""

import logging

import cv2
import numpy as np
import pytest

from calibration.intrinsics import save_intrinsics
from tracker.core.errors import CameraError
from tracker.core.types import Intrinsics
from tracker.sources.images import ImageFolderSource


def _bgr(value, size=(48, 64)):
    img = np.zeros((*size, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = value, 100, 200  # B, G, R
    return img


@pytest.fixture
def folder(tmp_path):
    cv2.imwrite(str(tmp_path / "img10.png"), _bgr(10))
    cv2.imwrite(str(tmp_path / "img2.png"), _bgr(2))
    cv2.imwrite(str(tmp_path / "img1.png"), _bgr(1, size=(96, 128)))
    cv2.imwrite(str(tmp_path / "img3.png"), np.full((48, 64), 77, np.uint8))  # greyscale
    (tmp_path / "img4.jpg").write_bytes(b"definitely not a jpeg")
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_natural_order_rgb_and_skips(folder, caplog):
    caplog.set_level(logging.WARNING)
    with ImageFolderSource(folder) as src:
        frames = list(src)
    assert [p.name for p in src.paths] == ["img1.png", "img2.png", "img3.png", "img4.jpg", "img10.png"]
    assert [f.index for f in frames] == [0, 1, 2, 4]  # img4.jpg does not decode
    assert [src.paths[f.index].name for f in frames] == ["img1.png", "img2.png", "img3.png", "img10.png"]
    np.testing.assert_array_equal(frames[1].color[0, 0], [200, 100, 2])  # RGB
    np.testing.assert_array_equal(frames[2].color[0, 0], [77, 77, 77])
    assert frames[0].color.shape == (96, 128, 3) and frames[0].intrinsics.width == 128
    assert frames[1].intrinsics.width == 64  # each image gets intrinsics for its own size
    text = caplog.text
    assert "notes.txt" in text and "img4.jpg" in text


def test_calibration_is_rescaled_per_image(folder):
    k = Intrinsics(100.0, 100.0, 63.5, 47.5, 128, 96)
    with ImageFolderSource(folder, calibration=save_intrinsics(k, folder.parent / "k.json")) as src:
        a, b = src.read(), src.read()
    assert a.intrinsics == k and b.intrinsics.fx == pytest.approx(50.0)


def test_empty_broken_and_missing_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CameraError, match="no images"):
        ImageFolderSource(tmp_path / "empty").connect()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(CameraError, match="could be decoded"):
        ImageFolderSource(broken).connect()
    with pytest.raises(CameraError, match="not found"):
        ImageFolderSource(tmp_path / "nope").connect()
