"""Random face parameters for training-data synthesis (no rendering here).

:func:`sample_face_params` draws an identity, an expression over the whole ARKit range (closed eyes,
wide-open jaw, one-sided expressions included), a head pose with yaw up to ±90° and SH lighting, from a
caller's ``numpy.random.Generator`` -- so a trainer controls seeding per worker and per sample. The parts
are separate functions (:func:`sample_identity`, :func:`sample_expression`, :func:`sample_pose`,
:func:`sample_lighting`) for trainers that mix them with fitted real parameters.
"""

from __future__ import annotations

import numpy as np

from tracker.core.errors import ConfigError
from tracker.core.face_model.arkit import ICT_EXPRESSION_NAMES, NUM_ICT
from tracker.core.face_model.sh import NUM_SH_COEFFS, sh_ambient, sh_directional
from tracker.core.geometry import rotation_from_ypr_deg
from tracker.core.types import FaceCoefficients, Intrinsics

_IDX = {n: i for i, n in enumerate(ICT_EXPRESSION_NAMES)}
# Left/right pairs (ICT index of _L, of _R) for symmetric draws.
_PAIRS = [(_IDX[n], _IDX[n[:-2] + "_R"]) for n in ICT_EXPRESSION_NAMES if n.endswith("_L")]
_PRESETS: dict[str, dict[str, float]] = {
    "eyes_closed": {"eyeBlink_L": 1.0, "eyeBlink_R": 1.0},
    "jaw_wide": {"jawOpen": 1.0, "mouthLowerDown_L": 0.5, "mouthLowerDown_R": 0.5},
    "smile": {"mouthSmile_L": 1.0, "mouthSmile_R": 1.0, "cheekSquint_L": 0.5, "cheekSquint_R": 0.5},
    "frown": {"mouthFrown_L": 1.0, "mouthFrown_R": 1.0, "browDown_L": 0.8, "browDown_R": 0.8},
    "surprise": {
        "jawOpen": 0.5,
        "browInnerUp_L": 1.0,
        "browInnerUp_R": 1.0,
        "browOuterUp_L": 1.0,
        "browOuterUp_R": 1.0,
        "eyeWide_L": 1.0,
        "eyeWide_R": 1.0,
    },  # fmt: skip
    "pucker": {"mouthPucker": 1.0, "mouthFunnel": 0.4},
    "puff": {"cheekPuff_L": 1.0, "cheekPuff_R": 1.0, "mouthClose": 0.3},
    "wink_left": {"eyeBlink_L": 1.0, "cheekSquint_L": 0.4},
    "wink_right": {"eyeBlink_R": 1.0, "cheekSquint_R": 0.4},
}


def sample_identity(rng: np.random.Generator, num_modes: int = 100, sigma: float = 0.8) -> np.ndarray:
    """(num_modes,) float32 identity coefficients ~ N(0, sigma) (sigma 0.8 gives plausible, varied faces;
    2 gives caricatures)."""
    if not 0 <= num_modes <= 100:
        raise ConfigError(f"num_modes must be in 0..100, got {num_modes}")
    return rng.normal(0.0, sigma, num_modes).astype(np.float32)


def sample_expression(rng: np.random.Generator) -> np.ndarray:
    """(53,) float32 ICT coefficients in [0, 1] covering the full range.

    A mixture: ~10% near-neutral, ~35% a preset (closed eyes, wide jaw, smile, ...) with noise, the rest
    sparse random activations (2-10 channels, values pushed toward the ends by a Beta(0.6, 0.6)), mostly
    symmetric; blinks and jaw opening are added independently so they co-occur with everything.
    """
    e = np.zeros(NUM_ICT, np.float64)
    u = rng.uniform()
    if u < 0.10:
        e += np.abs(rng.normal(0, 0.05, NUM_ICT))
    elif u < 0.45:
        name = list(_PRESETS)[int(rng.integers(len(_PRESETS)))]
        scale = rng.uniform(0.5, 1.0)
        for k, v in _PRESETS[name].items():
            e[_IDX[k]] = v * scale
        e += np.abs(rng.normal(0, 0.05, NUM_ICT))
    else:
        for j in rng.choice(NUM_ICT, size=int(rng.integers(2, 11)), replace=False):
            e[j] = rng.beta(0.6, 0.6)
        if rng.uniform() < 0.7:
            for li, ri in _PAIRS:
                m = max(e[li], e[ri]) * rng.uniform(0.85, 1.0)
                e[li], e[ri] = m, m * rng.uniform(0.85, 1.0)
    if rng.uniform() < 0.15:
        b = rng.uniform(0.6, 1.0)
        e[_IDX["eyeBlink_L"]] = max(e[_IDX["eyeBlink_L"]], b)
        e[_IDX["eyeBlink_R"]] = max(e[_IDX["eyeBlink_R"]], b)
    if rng.uniform() < 0.25:
        e[_IDX["jawOpen"]] = max(e[_IDX["jawOpen"]], rng.uniform(0.0, 1.0))
    return np.clip(e, 0.0, 1.0).astype(np.float32)


def sample_pose(
    rng: np.random.Generator,
    intrinsics: Intrinsics | None = None,
    max_yaw_deg: float = 90.0,
    max_pitch_deg: float = 40.0,
    max_roll_deg: float = 30.0,
    distance_m: tuple[float, float] = (0.35, 1.5),
) -> tuple[np.ndarray, np.ndarray]:
    """A head pose: rotation (3,3) and translation (3,) metres.

    Yaw is uniform in ±max_yaw (profiles included), pitch and roll are Gaussian-ish (a triangular
    distribution up to their limits), distance uniform in ``distance_m``. With ``intrinsics`` the head
    origin projects uniformly inside the central 60% of the image; without, it is on the optical axis.
    """
    yaw = rng.uniform(-max_yaw_deg, max_yaw_deg)
    pitch = rng.triangular(-max_pitch_deg, 0.0, max_pitch_deg)
    roll = rng.triangular(-max_roll_deg, 0.0, max_roll_deg)
    z = rng.uniform(*distance_m)
    if intrinsics is None:
        t = np.array([0.0, 0.0, z])
    else:
        u = rng.uniform(0.2, 0.8) * intrinsics.width
        v = rng.uniform(0.2, 0.8) * intrinsics.height
        t = intrinsics.unproject(np.array([[u, v]]), z)[0]
    return rotation_from_ypr_deg(yaw, pitch, roll), t


def sample_lighting(rng: np.random.Generator) -> np.ndarray:
    """(27,) float32 SH lighting: a tinted ambient term, one or two directional lights mostly from the
    front half-space (sometimes from the side or behind, for hard shadows), and small random SH noise."""
    amb = rng.uniform(0.15, 0.7) * (1 + rng.uniform(-0.1, 0.1, 3))
    coeffs = sh_ambient(amb)
    for _ in range(int(rng.integers(1, 3))):
        az = np.deg2rad(rng.uniform(-110, 110))
        el = np.deg2rad(rng.uniform(-30, 70))
        d = np.array([np.sin(az) * np.cos(el), -np.sin(el), -np.cos(az) * np.cos(el)])
        coeffs = coeffs + sh_directional(d, rng.uniform(0.2, 1.0) * (1 + rng.uniform(-0.15, 0.15, 3)))
    coeffs = coeffs + rng.normal(0, 0.02, NUM_SH_COEFFS).astype(np.float32)
    return coeffs.astype(np.float32)


def sample_face_params(
    rng: np.random.Generator,
    intrinsics: Intrinsics | None = None,
    *,
    identity_modes: int = 100,
    identity_sigma: float = 0.8,
    max_yaw_deg: float = 90.0,
) -> FaceCoefficients:
    """One random training sample's parameters (see the module docstring).

    Args:
        rng: The caller's generator (e.g. ``np.random.default_rng([seed, worker, index])``).
        intrinsics: Place the head inside this camera's view; None puts it on the optical axis.
        identity_modes: Number of identity coefficients (first ICT modes).
        identity_sigma: Their standard deviation.
        max_yaw_deg: Yaw limit.
    """
    identity = sample_identity(rng, identity_modes, identity_sigma)
    expression = sample_expression(rng)
    rotation, translation = sample_pose(rng, intrinsics, max_yaw_deg=max_yaw_deg)
    return FaceCoefficients(identity, expression, rotation, translation, sample_lighting(rng))
