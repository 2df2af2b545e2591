"""Camera calibration on board views rendered with a known camera (a board image warped by K [r1 r2 t])."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibration.camera import (
    MIN_VIEWS,
    BoardDetector,
    BoardSpec,
    BoardView,
    board_image,
    calibrate_camera,
    select_views,
)
from tracker.core.errors import CalibrationError, ConfigError
from tracker.core.geometry import rotation_from_ypr_deg

#: The rendered camera: non-square pixels and an off-centre principal point, so nothing is guessed right.
TRUE_K = np.array([[610.0, 0.0, 331.0], [0.0, 605.0, 236.0], [0.0, 0.0, 1.0]])
SIZE = (640, 480)
PX_PER_SQUARE = 80


def render_views(spec: BoardSpec, n: int, seed: int = 0, k: np.ndarray = TRUE_K) -> list[np.ndarray]:
    """``n`` grey views of the board at random tilts (up to ~45 deg) and positions, 0.3-0.5 m away.

    The board image's pixel (u, v) (centre convention) is board point ((u - m + 0.5) s, (v - m + 0.5) s) with
    s metres per board pixel and m the margin, so the homography into the camera is K [r1 r2 t] A.
    """
    margin = PX_PER_SQUARE // 2
    board = board_image(spec, PX_PER_SQUARE, margin_px=margin)
    s = spec.square_m / PX_PER_SQUARE
    a = np.array([[s, 0, (0.5 - margin) * s], [0, s, (0.5 - margin) * s], [0, 0, 1]])
    centre = np.array([spec.squares_x * spec.square_m / 2, spec.squares_y * spec.square_m / 2, 0.0])
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        r = rotation_from_ypr_deg(rng.uniform(-45, 45), rng.uniform(-40, 40), rng.uniform(-25, 25))
        t = np.array([rng.uniform(-0.08, 0.08), rng.uniform(-0.06, 0.06), rng.uniform(0.3, 0.5)]) - r @ centre
        h = k @ np.column_stack([r[:, 0], r[:, 1], t]) @ a
        img = cv2.warpPerspective(board, h, SIZE, flags=cv2.INTER_LINEAR, borderValue=128)
        img = cv2.GaussianBlur(img, (0, 0), 0.7)  # a lens is never perfectly sharp
        out.append(np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8))
    return out


@pytest.mark.parametrize("kind", ["charuco", "checkerboard"])
def test_recovers_the_rendered_camera(kind):
    spec = BoardSpec(kind=kind)
    detector = BoardDetector(spec)
    views = [detector.detect(img, i) for i, img in enumerate(render_views(spec, 16))]
    assert all(v is not None for v in views)
    result = calibrate_camera(views, SIZE)
    k = result.intrinsics
    assert abs(k.fx / TRUE_K[0, 0] - 1) < 0.01 and abs(k.fy / TRUE_K[1, 1] - 1) < 0.01
    assert abs(k.cx - TRUE_K[0, 2]) < 2.0 and abs(k.cy - TRUE_K[1, 2]) < 2.0
    assert result.rms_px < 0.5 and result.views == 16 and (k.width, k.height) == SIZE


def test_a_partly_hidden_charuco_board_is_still_found():
    spec = BoardSpec()
    img = render_views(spec, 1, seed=3)[0]
    full = BoardDetector(spec).detect(img)
    cols = np.flatnonzero((np.abs(img.astype(int) - 128) > 40).any(axis=0))
    img[:, : cols[0] + (cols[-1] - cols[0]) // 3] = 128  # cover the left third of the board
    half = BoardDetector(spec).detect(img)
    assert half is not None and 8 <= len(half.image_points) < len(full.image_points)


def test_no_board_and_too_few_views_are_calibration_errors():
    assert BoardDetector(BoardSpec()).detect(np.full((480, 640), 128, np.uint8)) is None
    spec = BoardSpec()
    detector = BoardDetector(spec)
    views = [detector.detect(img) for img in render_views(spec, MIN_VIEWS - 1)]
    with pytest.raises(CalibrationError, match="found in 5 view"):
        calibrate_camera(views, SIZE)


def test_near_duplicate_views_are_dropped():
    spec = BoardSpec()
    view = BoardDetector(spec).detect(render_views(spec, 1)[0])
    moved = BoardView(view.object_points, view.image_points + 0.5)  # half a pixel: the same view
    far = BoardView(view.object_points, view.image_points + 60.0)
    assert len(select_views([view, moved, far], SIZE)) == 2


def test_board_spec_is_validated():
    with pytest.raises(ConfigError, match="marker size"):
        BoardSpec(square_m=0.02, marker_m=0.03)
    with pytest.raises(ConfigError, match="dictionary"):
        BoardSpec(dictionary="DICT_NOPE")
    with pytest.raises(ConfigError, match="board kind"):
        BoardSpec(kind="circles")
