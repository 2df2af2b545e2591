"""Second-order spherical-harmonics (SH) lighting: the one definition the renderer, tracker and trainer share.

Convention (see docs/rendering.md):

* Normals are unit vectors in the **camera frame** (OpenCV: x right, y down, z forward); a surface facing
  the camera has a normal with z < 0.
* The 9 basis functions are the real orthonormal SH ``Y_lm`` in the usual order
  (l,m) = (0,0) (1,-1) (1,0) (1,1) (2,-2) (2,-1) (2,0) (2,1) (2,2), i.e. ``1, y, z, x, xy, yz, 3z^2-1, xz,
  x^2-y^2`` up to constants, each multiplied by the Lambertian convolution factor ``A_l`` (pi, 2pi/3, pi/4;
  Ramamoorthi & Hanrahan 2001) and divided by ``A_0 Y_00`` so that **basis 0 is the constant 1**.
* Lighting is 27 coefficients, 9 per colour channel, RGB-major: ``L[c*9 + k]``.
* Shading (irradiance relative to a white uniform environment): ``s_c(n) = sum_k L[c*9+k] H_k(n)``;
  the rendered linear colour is ``albedo_c * s_c(n)``. ``L = [1,0,..,0]*3`` therefore shows the albedo
  unchanged. A directional light of intensity I from direction d adds ``I * pi * Y00 * Y_lm(d)``
  (:func:`sh_directional`); its DC term is I/4, the mean of the clamped cosine over the sphere.

The functions take numpy arrays or torch tensors alike (``sh_basis``), so training losses use the very
same basis; :data:`GLSL_SH` is the same formula for the shaders, built from the same constants.
"""

from __future__ import annotations

import math

import numpy as np

from tracker.core.errors import ConfigError

NUM_SH_BANDS = 9
NUM_SH_COEFFS = 27

_Y00 = 0.5 * math.sqrt(1.0 / math.pi)
_Y1 = math.sqrt(3.0 / (4.0 * math.pi))
_Y2 = 0.5 * math.sqrt(15.0 / math.pi)  # xy, yz, xz
_Y20 = 0.25 * math.sqrt(5.0 / math.pi)  # (3z^2 - 1)
_Y22 = 0.25 * math.sqrt(15.0 / math.pi)  # (x^2 - y^2)
_A = (math.pi, 2.0 * math.pi / 3.0, math.pi / 4.0)
_NORM = 1.0 / (_A[0] * _Y00)

#: Constants c_k with H_k(n) = c_k * poly_k(n), poly = (1, y, z, x, xy, yz, 3z^2-1, xz, x^2-y^2).
SH_CONSTANTS: tuple[float, ...] = (
    1.0,
    _A[1] * _Y1 * _NORM,
    _A[1] * _Y1 * _NORM,
    _A[1] * _Y1 * _NORM,
    _A[2] * _Y2 * _NORM,
    _A[2] * _Y2 * _NORM,
    _A[2] * _Y20 * _NORM,
    _A[2] * _Y2 * _NORM,
    _A[2] * _Y22 * _NORM,
)
#: Orthonormal Y_lm constants in the same order (for projecting an environment onto SH).
_Y_CONSTANTS = (_Y00, _Y1, _Y1, _Y1, _Y2, _Y2, _Y20, _Y2, _Y22)

#: Neutral lighting: white, uniform; the rendered colour equals the albedo.
AMBIENT_WHITE = np.tile(np.eye(1, NUM_SH_BANDS, dtype=np.float32)[0], 3)
AMBIENT_WHITE.setflags(write=False)


def _stack(parts, like):
    if type(like).__module__.startswith("torch"):
        import torch  # only when torch tensors were passed in

        return torch.stack(parts, dim=-1)
    return np.stack(parts, axis=-1)


def sh_basis(normals):
    """The 9 irradiance basis functions at unit normals.

    Args:
        normals: (..., 3) unit normals in the camera frame (numpy array or torch tensor).

    Returns:
        (..., 9) basis values H_k(n), same array type and dtype as ``normals``.
    """
    if normals.shape[-1] != 3:
        raise ConfigError(f"sh_basis: normals must have shape (..., 3), got {tuple(normals.shape)}")
    x, y, z = normals[..., 0], normals[..., 1], normals[..., 2]
    c = SH_CONSTANTS
    one = x * 0 + 1
    return _stack(
        [one * c[0], y * c[1], z * c[2], x * c[3], x * y * c[4], y * z * c[5], (3 * z * z - 1) * c[6],
         x * z * c[7], (x * x - y * y) * c[8]],
        normals,
    )  # fmt: skip


def check_lighting(lighting, name: str = "lighting") -> np.ndarray:
    """Validates SH lighting; returns it as a (27,) float32 array."""
    try:
        arr = np.asarray(lighting, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"{name}: expected {NUM_SH_COEFFS} SH coefficients, got {type(lighting).__name__}"
        ) from exc
    if arr.shape != (NUM_SH_COEFFS,):
        raise ConfigError(
            f"{name}: expected ({NUM_SH_COEFFS},) SH coefficients (9 per colour channel, RGB-major), "
            f"got shape {arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise ConfigError(f"{name}: contains NaN or infinite values")
    return arr


def shading(normals, lighting):
    """Per-channel shading factors ``s_c(n)``.

    Args:
        normals: (..., 3) unit normals, camera frame (numpy or torch).
        lighting: (27,) or (..., 27) SH coefficients, RGB-major (same array type as ``normals``).

    Returns:
        (..., 3) shading; multiply by the linear albedo to get the colour.
    """
    h = sh_basis(normals)  # (..., 9)
    coeffs = lighting.reshape(*lighting.shape[:-1], 3, NUM_SH_BANDS)  # (..., 3, 9)
    return (h[..., None, :] * coeffs).sum(-1)


def sh_directional(direction, color=(1.0, 1.0, 1.0)) -> np.ndarray:
    """SH coefficients of a distant directional light.

    Args:
        direction: (3,) direction **toward** the light in the camera frame (need not be unit); e.g.
            (0, -1, -1) is a light above the camera's line of sight, shining on the face from above-front.
        color: RGB intensity; a surface facing the light gets about this much shading.

    Returns:
        (27,) float32 coefficients to add to others (lights superpose linearly).
    """
    d = np.asarray(direction, dtype=np.float64)
    n = np.linalg.norm(d)
    if d.shape != (3,) or not np.isfinite(n) or n < 1e-12:
        raise ConfigError(f"sh_directional: direction must be a non-zero (3,) vector, got {direction!r}")
    x, y, z = d / n
    poly = np.array([1, y, z, x, x * y, y * z, 3 * z * z - 1, x * z, x * x - y * y])
    y_lm = poly * np.asarray(_Y_CONSTANTS)
    per_band = math.pi * _Y00 * y_lm  # irradiance coefficient in the normalised basis, per unit intensity
    rgb = np.asarray(color, dtype=np.float64).reshape(3, 1)
    return (rgb * per_band[None, :]).reshape(-1).astype(np.float32)


def sh_ambient(color=(1.0, 1.0, 1.0)) -> np.ndarray:
    """(27,) float32 coefficients of a uniform environment that shades every normal by ``color``."""
    out = np.zeros((3, NUM_SH_BANDS), dtype=np.float32)
    out[:, 0] = np.asarray(color, dtype=np.float32)
    return out.reshape(-1)


def _glsl_float(v: float) -> str:
    return f"{v:.9g}" if "." in f"{v:.9g}" or "e" in f"{v:.9g}" else f"{v:.9g}.0"


#: GLSL: ``vec3 sh_shading(vec3 n, float L[27])`` with the same basis as :func:`sh_basis`.
_H = [_glsl_float(c) for c in SH_CONSTANTS]
GLSL_SH = f"""
vec3 sh_shading(vec3 n, float L[27]) {{
    float h[9];
    h[0] = {_H[0]};
    h[1] = {_H[1]} * n.y;
    h[2] = {_H[2]} * n.z;
    h[3] = {_H[3]} * n.x;
    h[4] = {_H[4]} * n.x * n.y;
    h[5] = {_H[5]} * n.y * n.z;
    h[6] = {_H[6]} * (3.0 * n.z * n.z - 1.0);
    h[7] = {_H[7]} * n.x * n.z;
    h[8] = {_H[8]} * (n.x * n.x - n.y * n.y);
    vec3 s = vec3(0.0);
    for (int k = 0; k < 9; ++k) {{
        s += h[k] * vec3(L[k], L[9 + k], L[18 + k]);
    }}
    return s;
}}
"""
