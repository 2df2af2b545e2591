"""UV unwrapping round trip on a render with a known texture; hole filling; the bank round trip."""

import json

import cv2
import numpy as np
import pytest

from engines.differentiable import FaceLayer
from engines.fitting.fit import FitResult
from engines.fitting.texture_bank import BANK_FORMAT_VERSION, TextureBank
from engines.fitting.uv_unwrap import (
    MASK_FILLED,
    MASK_MIRRORED,
    MASK_VISIBLE,
    UVLayout,
    complete_texture,
    pull_push_fill,
    unwrap_albedo,
)
from tracker.core.errors import AssetError
from tracker.core.geometry import rotation_from_ypr_deg
from tracker.core.types import Intrinsics


@pytest.fixture(scope="module")
def layout(face_model):
    return UVLayout(face_model, 256)


def test_mirror_map_from_geometry_is_the_uv_flip(layout):
    # ICT's face UVs are laid out symmetrically, so the geometric mirror must come out as u -> 1 - u.
    rows, cols = np.nonzero(layout.mask)
    mx = layout.mirror_uv_px[rows, cols, 0]
    my = layout.mirror_uv_px[rows, cols, 1]
    assert np.percentile(np.abs(mx - (layout.size - 1 - cols)), 99) < 0.05
    assert np.percentile(np.abs(my - rows), 99) < 0.05
    assert layout.mask.mean() > 0.8


def test_pull_push_fills_smoothly():
    tex = np.zeros((64, 64, 3), np.float32)
    known = np.zeros((64, 64), bool)
    tex[:, :32] = (0.2, 0.4, 0.6)
    known[:, :32] = True
    known[20:40, 10:20] = False  # a hole inside the known part
    out = pull_push_fill(tex, known)
    np.testing.assert_allclose(out[known], tex[known])
    assert np.abs(out[20:40, 10:20] - (0.2, 0.4, 0.6)).max() < 1e-5  # uniform stays uniform
    assert np.isfinite(out).all() and np.abs(out[:, 50] - (0.2, 0.4, 0.6)).max() < 1e-4


def test_unwrap_round_trip_recovers_a_known_texture(face_model, layout):
    import tracker.render as render
    from tracker.core.face_model.sh import sh_ambient, sh_directional
    from tracker.core.types import FaceCoefficients

    # A smooth known albedo texture (colour ramps), so texture filtering at render time barely matters.
    t = 256
    yy, xx = np.mgrid[0:t, 0:t] / (t - 1)
    known = np.stack([0.55 + 0.3 * xx, 0.35 + 0.3 * yy, 0.3 + 0.2 * np.sin(3 * xx + 2 * yy)], -1)
    known_u8 = (known * 255).round().astype(np.uint8)
    vertex_rgb = np.full((face_model.num_vertices, 3), 0.6, np.float32)
    ident = np.random.default_rng(0).normal(0, 0.5, 20).astype(np.float32)
    expr = np.zeros(53, np.float32)
    rot = rotation_from_ypr_deg(25.0, 5.0, 0.0)
    trans = np.array([0.0, 0.0, 0.45])
    light = sh_ambient((0.7, 0.7, 0.7)) + sh_directional((0.3, -0.5, -1.0), (0.3, 0.3, 0.3))
    cam = Intrinsics.from_fov(384, 384, 40.0)
    with render.Renderer(face_model) as renderer:
        out = renderer.render(FaceCoefficients(ident, expr, rot, trans, light), cam,
                              albedo=render.Albedo(vertex_rgb, face_texture=known_u8), background=(0, 0, 0))  # fmt: skip
    fit = FitResult(
        rotation=rot[None].astype(np.float32), translation_m=trans[None].astype(np.float32), identity=ident,
        expression=expr[None], sh=light[None].astype(np.float32), albedo=None, albedo_region="narrow_face",
        intrinsics=(cam,), points_px=np.zeros((1, 468, 2), np.float32), landmarks68_px=np.zeros((1, 68, 2), np.float32),
        landmark_error_px=np.zeros(1, np.float32), photometric_error=np.full(1, np.nan, np.float32), seconds=0.0,
    )  # fmt: skip
    layer = FaceLayer(face_model, 20, region="face")
    unwrap = unwrap_albedo(layout, layer, fit, out.rgb)
    vis = unwrap.visible
    assert vis.sum() > 0.15 * layout.mask.sum()
    # Yaw +25 deg turns the nose toward the image's right, which shows the subject's right cheek (x < 0).
    (rows, cols), corners, bary = layout.texel_corners()
    x = (face_model.neutral_cm[corners][..., 0] * bary).sum(1)
    seen = vis[rows, cols]
    assert (x[seen] < 0).mean() > 0.6
    err = np.abs(unwrap.texture[vis] - known[vis])
    assert np.median(err) < 0.03 and err.mean() < 0.05, (np.median(err), err.mean())
    texture, state = complete_texture(layout, unwrap)
    assert texture.shape == (t, t, 3) and texture.dtype == np.uint8
    assert set(np.unique(state)) <= {MASK_VISIBLE, MASK_MIRRORED, MASK_FILLED}
    assert (state == MASK_MIRRORED).sum() > 0.05 * layout.mask.sum()
    # Mirrored texels take the colour of their mirror texel (the ramp in x mirrors, so compare to a flip).
    mir = state == MASK_MIRRORED
    flipped = known[:, ::-1]
    assert np.median(np.abs(texture[mir] / 255.0 - flipped[mir])) < 0.04


def test_bank_reader(tmp_path):
    with pytest.raises(AssetError, match="facetrack fit bank"):
        TextureBank(tmp_path)
    (tmp_path / "textures").mkdir()
    (tmp_path / "masks").mkdir()
    tex = np.zeros((32, 32, 3), np.uint8)
    tex[..., 0] = 200  # red in RGB
    cv2.imwrite(str(tmp_path / "textures" / "a.png"), tex[:, :, ::-1])
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), np.full((32, 32), 255, np.uint8))
    entry = {"id": "a", "texture": "textures/a.png", "mask": "masks/a.png", "source": "x.jpg", "landmark_error_px": 1.0,
             "landmark_error_pct": 0.5, "visible_fraction": 0.4, "ypr_deg": [1, 2, 3], "fit_seconds": 1.0}  # fmt: skip
    (tmp_path / "manifest.json").write_text(json.dumps({"format": BANK_FORMAT_VERSION, "uv_size": 32, "entries": [entry]}))
    bank = TextureBank(tmp_path)
    assert len(bank) == 1 and bank.entries[0].ypr_deg == (1, 2, 3)
    assert bank.texture(0)[0, 0].tolist() == [200, 0, 0]
    assert bank.sample(np.random.default_rng(0)).shape == (32, 32, 3)
    assert bank.mask(0).max() == 255
