"""Vertex normals and second-order spherical-harmonics (SH) shading, in torch.

The SH convention is the renderer's, with its constants (:mod:`tracker.core.face_model.sh`, also in its GLSL; a
test checks that both agree): 27 coefficients, 9 per colour channel, **RGB-major**; the basis at a unit normal
``n = (x, y, z)`` in the **camera frame** is ``H_k(n) = c_k * (1, y, z, x, xy, yz, 3z^2-1, xz, x^2-y^2)_k``,
the real orthonormal SH ``Y_lm`` times the Lambertian convolution factors ``A_l`` (pi, 2pi/3, pi/4;
Ramamoorthi & Hanrahan 2001), divided by ``A_0 Y_00`` so that ``H_0 = 1``. The shaded colour is
``albedo * (H(n) . L_channel)``; ``L = [1, 0, ..., 0] * 3`` (:func:`ambient_sh`) shows the albedo unchanged.
"""

from __future__ import annotations

import torch

from tracker.core.errors import ConfigError
from tracker.core.face_model.sh import NUM_SH_BANDS, NUM_SH_COEFFS, SH_CONSTANTS

NUM_SH = NUM_SH_COEFFS


def vertex_normals(vertices: torch.Tensor, triangles: torch.Tensor) -> torch.Tensor:
    """Area-weighted vertex normals.

    Args:
        vertices: (B,V,3) positions (any frame; the normals come out in the same frame).
        triangles: (F,3) int64 vertex indices; ICT's winding gives outward normals, so a frontal face's
            normals point at the camera (-z in the head and camera frames).

    Returns:
        (B,V,3) unit normals (a vertex on no triangle gets (0,0,0) + eps, normalised to an arbitrary unit).
    """
    v0 = vertices[:, triangles[:, 0]]
    v1 = vertices[:, triangles[:, 1]]
    v2 = vertices[:, triangles[:, 2]]
    face_n = torch.cross(v1 - v0, v2 - v0, dim=-1)  # length = 2 * area: bigger faces weigh more
    acc = torch.zeros_like(vertices)
    for k in range(3):
        acc = acc.index_add(1, triangles[:, k], face_n)
    return torch.nn.functional.normalize(acc, dim=-1, eps=1e-12)


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """The 9 irradiance basis functions at unit normals: (...,3) camera-frame normals -> (...,9)."""
    x, y, z = normals.unbind(-1)
    c = SH_CONSTANTS
    return torch.stack(
        [torch.full_like(x, c[0]), c[1] * y, c[2] * z, c[3] * x, c[4] * x * y, c[5] * y * z,
         c[6] * (3.0 * z * z - 1.0), c[7] * x * z, c[8] * (x * x - y * y)],
        dim=-1,
    )  # fmt: skip


def sh_irradiance(normals: torch.Tensor, sh: torch.Tensor) -> torch.Tensor:
    """Per-channel shading factor.

    Args:
        normals: (B,N,3) unit normals, camera frame.
        sh: (B,27) or (27,) RGB-major coefficients.

    Returns:
        (B,N,3) irradiance per colour channel (multiply by albedo for the colour).
    """
    if sh.shape[-1] != NUM_SH:
        raise ConfigError(f"SH lighting must have {NUM_SH} coefficients, got {tuple(sh.shape)}")
    coeffs = sh.reshape(-1, 3, NUM_SH_BANDS)  # (B,3,9)
    return torch.einsum("bnk,bck->bnc", sh_basis(normals), coeffs)


def shade(albedo: torch.Tensor, normals: torch.Tensor, sh: torch.Tensor) -> torch.Tensor:
    """``albedo * irradiance``: (B or 1,N,3) albedo, (B,N,3) normals, (B,27) SH -> (B,N,3) colours."""
    return albedo * sh_irradiance(normals, sh)


def ambient_sh(intensity: float | torch.Tensor = 1.0, batch: int = 1, dtype=torch.float32) -> torch.Tensor:
    """(batch,27) SH for uniform light of the given intensity (shading = intensity for every normal)."""
    sh = torch.zeros(batch, 3, NUM_SH_BANDS, dtype=dtype)
    sh[:, :, 0] = torch.as_tensor(intensity, dtype=dtype)
    return sh.reshape(batch, NUM_SH)
