"""``facetrack fit image`` and ``facetrack fit bank`` end to end on real photos (MediaPipe teacher)."""

import json

import cv2
import pytest

from tools.cli import main

pytest.importorskip("mediapipe")


def test_fit_image_writes_overlay_and_json(shared_data, tmp_path):
    img = shared_data / "landmarks68" / "helen" / "296814969_3.jpg"
    args = ["-q", "fit", "image", str(img), "--out", str(tmp_path), "--no-photometric", "--json", str(tmp_path / "r.json")]
    assert main(args) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["landmark_error_px"][0] < 6.0  # 512 px crop, face ~250 px
    overlay = cv2.imread(result["overlay"])
    assert overlay.shape == (512, 3 * 512, 3)
    assert (tmp_path / "296814969_3_fit.json").exists()


def test_fit_bank_builds_a_readable_bank(shared_data, tmp_path):
    from engines.fitting.texture_bank import TextureBank

    helen = shared_data / "landmarks68" / "helen"
    images = [helen / "3020509517_1.jpg"]
    out = tmp_path / "bank"
    args = ["-q", "fit", "bank", "--images", *map(str, images), "--out", str(out), "--uv-size", "128",
            "--json", str(tmp_path / "bank.json")]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((tmp_path / "bank.json").read_text())
    assert summary["images"] == 1 and summary["kept"] == 1
    bank = TextureBank(out)
    assert len(bank) == summary["bank_size"] and bank.uv_size == 128
    tex = bank.texture(0)
    assert tex.shape == (128, 128, 3) and tex.std() > 5  # a face, not a flat fill
    assert "research use only" in bank.manifest["licence"]
