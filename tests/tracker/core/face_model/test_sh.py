import numpy as np
import pytest

from tracker.core.errors import ConfigError
from tracker.core.face_model import sh


def _unit(v):
    v = np.asarray(v, np.float64)
    return v / np.linalg.norm(v)


def test_ambient_white_leaves_albedo_unchanged():
    n = np.random.default_rng(0).normal(size=(50, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    np.testing.assert_allclose(sh.shading(n, sh.AMBIENT_WHITE.astype(np.float64)), 1.0, atol=1e-6)


def test_directional_light_approximates_clamped_cosine():
    d = _unit([0.3, -0.5, -1.0])
    coeffs = sh.sh_directional(d, (1.0, 1.0, 1.0)).astype(np.float64)
    n = np.random.default_rng(1).normal(size=(2000, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    s = sh.shading(n, coeffs)[:, 0]
    exact = np.maximum(n @ d, 0.0)
    # Order-2 SH reproduces Lambertian irradiance to within ~10% of the peak (Ramamoorthi & Hanrahan).
    assert np.abs(s - exact).max() < 0.1
    assert abs(sh.shading(d[None], coeffs)[0, 0] - 1.0625) < 1e-6  # sum_l A_l (2l+1) / 4pi


def test_basis_matches_real_sh_orthonormality():
    # Dividing out the convolution constants must give the orthonormal real SH (integral Y_i Y_j = delta_ij).
    rng = np.random.default_rng(2)
    n = rng.normal(size=(200000, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    a = np.array([np.pi] + [2 * np.pi / 3] * 3 + [np.pi / 4] * 5) / (np.pi * 0.5 * np.sqrt(1 / np.pi))
    y = sh.sh_basis(n) / a
    gram = 4 * np.pi * (y.T @ y) / len(n)
    np.testing.assert_allclose(gram, np.eye(9), atol=0.03)


def test_torch_and_numpy_agree():
    torch = pytest.importorskip("torch")
    n = np.random.default_rng(3).normal(size=(10, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    light = np.random.default_rng(4).normal(size=27)
    got = sh.shading(torch.from_numpy(n), torch.from_numpy(light)).numpy()
    np.testing.assert_allclose(got, sh.shading(n, light), rtol=1e-10)


def test_bad_lighting_is_a_config_error():
    with pytest.raises(ConfigError, match="27"):
        sh.check_lighting(np.zeros(9))
    with pytest.raises(ConfigError, match="NaN"):
        sh.check_lighting(np.full(27, np.nan))
