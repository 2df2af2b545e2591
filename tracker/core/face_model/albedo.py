"""Surface colours for the face model: flat per-part colours and a procedural, seeded skin albedo.

:func:`procedural_albedo` paints a plausible face in ICT's UV layout with OpenCV only (no image assets):
a skin tone drawn from a light-to-dark palette, low-frequency blotches, redder cheeks, nose and lips,
darker brows and eye surround, optional stubble, freckles and pores; eyes get a sclera, an iris of a
random colour and a pupil; teeth, gums and the mouth socket get their own colours, darkening toward the
back of the mouth (a cheap stand-in for ambient occlusion). The same seed always gives the same albedo.
"""

from __future__ import annotations

import cv2
import numpy as np

from tracker.core.errors import ConfigError
from tracker.core.face_model import FaceModel
from tracker.core.face_model.mesh import FACE_MATERIAL, IRIS_HALF_ANGLE_DEG, PUPIL_HALF_ANGLE_DEG, eyes
from tracker.core.render_types import Albedo

SKIN_RGB = (0.80, 0.60, 0.50)
_PART_COLOURS = {
    "head_and_neck": SKIN_RGB,
    "mouth_socket": (0.30, 0.08, 0.08),
    "eye_socket_left": (0.30, 0.15, 0.13),
    "eye_socket_right": (0.30, 0.15, 0.13),
    "gums_and_tongue": (0.72, 0.33, 0.33),
    "teeth": (0.92, 0.89, 0.80),
}
_SCLERA_RGB = (0.90, 0.87, 0.84)
#: Light-to-dark skin tones (display RGB), interpolated by a seeded tone in [0, 1].
_SKIN_PALETTE = np.array(
    [[0.95, 0.80, 0.70], [0.87, 0.68, 0.57], [0.76, 0.55, 0.42], [0.60, 0.41, 0.29], [0.42, 0.28, 0.20],
     [0.30, 0.20, 0.15]], np.float64,
)  # fmt: skip
_IRIS_PALETTE = np.array(
    [[0.30, 0.18, 0.10], [0.18, 0.10, 0.06], [0.35, 0.45, 0.60], [0.30, 0.42, 0.30], [0.45, 0.35, 0.20],
     [0.45, 0.50, 0.55]], np.float64,
)  # fmt: skip
_HAIR_PALETTE = np.array(
    [[0.08, 0.06, 0.05], [0.20, 0.13, 0.08], [0.35, 0.24, 0.14], [0.60, 0.48, 0.30], [0.45, 0.20, 0.10]],
    np.float64,
)  # fmt: skip


def _eye_colours(model: FaceModel, rgb: np.ndarray, iris_rgb, sclera_rgb) -> None:
    """Colours both eyes in place: the inner ball gets a pupil, an iris with a darker limbal ring and
    lighter fibres toward the rim, and sclera white beyond; the outer shell is sclera."""
    v = model.neutral_cm
    iris_rgb = np.asarray(iris_rgb, np.float64)
    for eye in eyes(model):
        rgb[eye.sclera_ids] = sclera_rgb
        ang = eye.angle_deg(v[eye.iris_ids])
        r = np.clip(ang / IRIS_HALF_ANGLE_DEG, 0, 1.5)[:, None]
        col = iris_rgb[None, :] * (0.7 + 0.45 * np.clip(r, 0, 1))
        ring = np.clip((r - 0.85) / 0.15, 0, 1)
        col = col * (1 - 0.6 * ring)
        pupil = np.clip((PUPIL_HALF_ANGLE_DEG / IRIS_HALF_ANGLE_DEG - r) / 0.05, 0, 1)
        col = col * (1 - pupil) + 0.02 * pupil
        white = np.clip((r - 1.0) / 0.04, 0, 1)
        rgb[eye.iris_ids] = col * (1 - white) + np.asarray(sclera_rgb)[None, :] * white


def region_albedo(model: FaceModel, skin_rgb=SKIN_RGB) -> Albedo:
    """Flat colours per part (skin, eyes with iris and pupil, teeth, gums, mouth socket).

    Args:
        model: The face model.
        skin_rgb: Skin colour, RGB in [0, 1].

    Returns:
        An :class:`Albedo` with per-vertex colours only.
    """
    rgb = np.empty((model.num_vertices, 3), np.float64)
    rgb[:] = skin_rgb
    for name, colour in _PART_COLOURS.items():
        if name in model.regions:
            r = model.region(name)
            rgb[r.v0 : r.v1] = colour if name != "head_and_neck" else skin_rgb
    _eye_colours(model, rgb, _IRIS_PALETTE[0], _SCLERA_RGB)
    return Albedo(np.clip(rgb, 0, 1).astype(np.float32))


# --------------------------------------------------------------------------- procedural
def _smooth_noise(rng: np.random.Generator, size: int, sigma_px: float) -> np.ndarray:
    """(size,size) float32 zero-mean, unit-std Gaussian random field of correlation length sigma_px."""
    small = max(4, int(size / max(sigma_px / 2, 1)))
    n = rng.standard_normal((small, small)).astype(np.float32)
    n = cv2.resize(n, (size, size), interpolation=cv2.INTER_CUBIC)
    n = cv2.GaussianBlur(n, (0, 0), sigma_px / 2)
    return (n - n.mean()) / max(float(n.std()), 1e-6)


def _landmarks_uv_px(model: FaceModel, size: int) -> np.ndarray:
    """(68,2) float32 texture pixel positions (x, row) of the 68 landmarks in the face UV tile."""
    f0, f1 = model.materials[FACE_MATERIAL]
    tri_v = model.triangles[f0:f1].ravel()
    tri_uv = model.uv_triangles[f0:f1].ravel()
    out = np.zeros((68, 2), np.float32)
    for i, vid in enumerate(model.landmark_ids):
        k = np.flatnonzero(tri_v == vid)
        uv = model.uv_coords[tri_uv[k[0]]] if k.size else np.array([0.5, 0.5])
        out[i] = (uv[0] * size - 0.5, (1.0 - uv[1]) * size - 0.5)
    return out


def _blob(size: int, centre, radius_px: float) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    d2 = (xx - centre[0]) ** 2 + (yy - centre[1]) ** 2
    return np.exp(-0.5 * d2 / radius_px**2)


def _poly_mask(
    size: int, pts: np.ndarray, blur_px: float, closed: bool = True, thickness: int = 0
) -> np.ndarray:
    m = np.zeros((size, size), np.float32)
    p = np.round(pts * 16).astype(np.int32).reshape(-1, 1, 2)  # 4 fractional bits for sub-pixel edges
    if closed:
        cv2.fillPoly(m, [p], 1.0, lineType=cv2.LINE_AA, shift=4)
    else:
        cv2.polylines(m, [p], False, 1.0, thickness=thickness, lineType=cv2.LINE_AA, shift=4)
    if blur_px > 0:
        m = cv2.GaussianBlur(m, (0, 0), blur_px)
    return m


def _mix(img: np.ndarray, mask: np.ndarray, colour) -> np.ndarray:
    return img * (1 - mask[..., None]) + np.asarray(colour, np.float32) * mask[..., None]


def procedural_albedo(
    model: FaceModel, seed: int, texture_px: int = 512, skin_tone: float | None = None
) -> Albedo:
    """A plausible random face albedo: a face UV texture plus per-vertex colours for the rest.

    Args:
        model: The face model.
        seed: Any int; the same seed gives the same albedo.
        texture_px: Side of the square face texture.
        skin_tone: 0 (lightest) .. 1 (darkest) of the palette; None draws one from the seed.

    Returns:
        An :class:`Albedo` with ``face_texture`` (texture_px, texture_px, 3) uint8 and ``vertex_rgb``
        (the face vertices sample the texture, so both paths agree).
    """
    if texture_px < 64 or texture_px > 4096:
        raise ConfigError(f"texture_px must be in 64..4096, got {texture_px}")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xA1BED0])
    s = texture_px
    k = s / 512.0  # feature sizes below are tuned at 512 px
    tone = float(rng.uniform(0, 1)) if skin_tone is None else float(np.clip(skin_tone, 0, 1))
    pos = tone * (len(_SKIN_PALETTE) - 1)
    i0 = min(int(pos), len(_SKIN_PALETTE) - 2)
    base = _SKIN_PALETTE[i0] * (1 - (pos - i0)) + _SKIN_PALETTE[i0 + 1] * (pos - i0)
    base = base * rng.uniform(0.95, 1.05, 3) * [1.0, 1.0, rng.uniform(0.95, 1.03)]
    base = np.clip(base, 0.05, 1.0)
    hair = _HAIR_PALETTE[rng.integers(len(_HAIR_PALETTE))] * rng.uniform(0.8, 1.2)
    if tone > 0.5:  # dark skin with very light hair is rare; keep the draw plausible
        hair = np.minimum(hair, _HAIR_PALETTE[1] * 1.2)

    tex = np.empty((s, s, 3), np.float32)
    tex[:] = base
    # Blotchy low-frequency variation in brightness and redness.
    tex *= (1 + 0.05 * _smooth_noise(rng, s, 60 * k))[..., None]
    tex[..., 0] *= 1 + 0.03 * _smooth_noise(rng, s, 35 * k)
    lm = _landmarks_uv_px(model, s)
    red = np.array([base[0] * 1.05, base[1] * 0.72, base[2] * 0.72], np.float32)
    # Cheeks: between the jaw line and the nose wings.
    for jaw, nose in ((3, 31), (13, 35)):
        c = 0.55 * lm[jaw] + 0.45 * lm[nose]
        tex = _mix(tex, rng.uniform(0.25, 0.5) * _blob(s, c, 28 * k), red)
    tex = _mix(tex, rng.uniform(0.15, 0.35) * _blob(s, lm[30], 14 * k), red)  # nose tip
    # Eye surround slightly darker and browner (thin skin, shadowed in scans).
    for a, b in ((36, 42), (42, 48)):
        eye = _poly_mask(s, lm[a:b], 6 * k)
        tex *= 1 - 0.12 * np.clip(cv2.GaussianBlur(eye, (0, 0), 10 * k) * 2, 0, 1)[..., None]
    # Stubble on some faces: a darker, cooler area around the mouth and chin.
    if rng.uniform() < 0.35 and tone < 0.7:
        beard = _poly_mask(s, np.concatenate([lm[3:14], lm[[35, 33, 31]]]), 12 * k)
        speck = np.clip(_smooth_noise(rng, s, 1.5 * k) * 0.5 + 0.5, 0, 1)
        tex = _mix(tex, beard * rng.uniform(0.2, 0.45) * speck, hair * 0.8)
    # Lips: redder and a little darker, with a soft edge.
    lips = _poly_mask(s, lm[48:60], 2.5 * k)
    lip_rgb = np.array([base[0] * rng.uniform(0.85, 1.0), base[1] * 0.55, base[2] * 0.6], np.float32)
    tex = _mix(tex, 0.85 * lips, lip_rgb)
    # Brows: thick dark strokes along the brow landmarks with a hairy texture.
    streak = np.clip(0.6 + 0.4 * _smooth_noise(rng, s, 1.2 * k), 0, 1)
    brow_w = max(1, int(round(rng.uniform(9, 14) * k)))
    for a, b in ((17, 22), (22, 27)):
        pts = lm[a:b].copy()
        pts[:, 1] -= 2 * k  # ICT's brow landmarks sit on the brow's lower edge
        m = _poly_mask(s, pts, 2.0 * k, closed=False, thickness=brow_w)
        tex = _mix(tex, np.clip(m * 1.3, 0, 1) * streak * rng.uniform(0.6, 0.9), hair)
    # Short hair: above a hairline that runs from the forehead down to the nape (model frame: y up, nose +z).
    v = model.neutral_cm
    brow_y = float(v[model.landmark_ids[17:27], 1].mean())
    y_front, z_front = brow_y + rng.uniform(5.0, 6.8), 8.0
    y_nape, z_back = rng.uniform(-4.0, -1.0), -9.0
    has_hair = rng.uniform() > 0.15

    def hair_weight(y: np.ndarray, z: np.ndarray) -> np.ndarray:
        y_line = y_front + (z - z_front) * (y_front - y_nape) / (z_front - z_back)
        return np.clip((y - y_line) / 0.8 + 0.5, 0, 1)

    if has_hair:
        # The face UV tile is close to a frontal projection: a linear fit of (y, z) on (u, v) over the upper
        # face is enough to place the hairline in the texture.
        f0, f1 = model.materials[FACE_MATERIAL]
        tv = model.triangles[f0:f1].ravel()
        tuv = model.uv_coords[model.uv_triangles[f0:f1].ravel()]
        upper = v[tv, 1] > brow_y
        a = np.c_[tuv[upper], np.ones(upper.sum())]
        coef, *_ = np.linalg.lstsq(a, v[tv[upper]][:, 1:3], rcond=None)
        uu, vv = np.meshgrid((np.arange(s) + 0.5) / s, 1 - (np.arange(s) + 0.5) / s)
        yz = np.stack([uu, vv, np.ones_like(uu)], -1) @ coef
        hw = hair_weight(yz[..., 0], yz[..., 1]).astype(np.float32)
        strands = np.clip(0.75 + 0.35 * _smooth_noise(rng, s, 1.0 * k), 0, 1.2)
        tex = _mix(tex, hw * np.clip(strands, 0, 1), hair)
    # Freckles/moles and pores.
    for _ in range(int(rng.integers(0, 25))):
        c = lm[int(rng.integers(0, 68))] + rng.normal(0, 30 * k, 2)
        tex = _mix(tex, 0.35 * _blob(s, c, rng.uniform(0.8, 2.0) * k), base * 0.6)
    tex *= (1 + 0.025 * rng.standard_normal((s, s)).astype(np.float32))[..., None]
    face_texture = np.clip(tex * 255 + 0.5, 0, 255).astype(np.uint8)

    # Per-vertex colours: the face samples the texture; the rest by part.
    rgb = np.empty((model.num_vertices, 3), np.float64)
    rgb[:] = base
    f0, f1 = model.materials[FACE_MATERIAL]
    tri_v = model.triangles[f0:f1].ravel()
    tri_uv = model.uv_coords[model.uv_triangles[f0:f1].ravel()]
    px = np.clip(np.round(tri_uv[:, 0] * s - 0.5), 0, s - 1).astype(int)
    py = np.clip(np.round((1 - tri_uv[:, 1]) * s - 0.5), 0, s - 1).astype(int)
    rgb[tri_v] = face_texture[py, px] / 255.0
    v = model.neutral_cm
    for name, colour in _PART_COLOURS.items():
        if name not in model.regions or name == "head_and_neck":
            continue
        r = model.region(name)
        col = np.asarray(colour, np.float64)
        if name in ("teeth", "gums_and_tongue", "mouth_socket"):
            # Darken toward the back of the mouth: light reaches the front teeth, not the molars.
            z = v[r.v0 : r.v1, 2]
            depth = np.clip((z.max() - z) / 4.0, 0, 1)[:, None]
            jitter = rng.uniform(0.9, 1.05) if name == "teeth" else 1.0
            rgb[r.v0 : r.v1] = col * jitter * (1 - 0.75 * depth)
        else:
            rgb[r.v0 : r.v1] = col
    if "head_and_neck" in model.regions:
        r = model.region("head_and_neck")
        rgb[r.v0 : r.v1] = base * (1 + 0.04 * rng.standard_normal((r.v1 - r.v0, 1)))
        if has_hair:
            w = hair_weight(v[r.v0 : r.v1, 1], v[r.v0 : r.v1, 2])[:, None]
            rgb[r.v0 : r.v1] = rgb[r.v0 : r.v1] * (1 - w) + hair[None, :] * w
    iris = _IRIS_PALETTE[rng.integers(len(_IRIS_PALETTE))] * rng.uniform(0.85, 1.15)
    _eye_colours(model, rgb, iris, np.asarray(_SCLERA_RGB) * rng.uniform(0.92, 1.02))
    return Albedo(np.clip(rgb, 0, 1).astype(np.float32), face_texture)
