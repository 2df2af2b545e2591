import numpy as np
import pytest

from tracker.core.errors import ConfigError
from tracker.core.types import Intrinsics
from tracker.render.camera import project_with_matrix, projection_matrix


@pytest.mark.parametrize(
    "k",
    [
        Intrinsics.from_fov(640, 480, 60),
        Intrinsics(500.0, 520.0, 300.3, 250.7, 641, 479),
        Intrinsics.from_fov(128, 128, 20),
    ],
)
def test_gl_projection_matches_opencv(k):
    rng = np.random.default_rng(0)
    p = np.c_[rng.uniform(-0.2, 0.2, (100, 2)), rng.uniform(0.3, 2.0, 100)]
    np.testing.assert_allclose(project_with_matrix(projection_matrix(k), k, p), k.project(p), atol=1e-3)


def test_near_far_map_to_ndc_limits():
    k = Intrinsics.from_fov(64, 48, 60)
    m = projection_matrix(k, 0.1, 10.0).astype(np.float64)
    for z, want in ((0.1, -1.0), (10.0, 1.0)):
        clip = m @ np.array([0, 0, z, 1.0])
        assert clip[2] / clip[3] == pytest.approx(want)


def test_bad_clip_range():
    with pytest.raises(ConfigError):
        projection_matrix(Intrinsics.from_fov(64, 48, 60), 1.0, 0.5)
