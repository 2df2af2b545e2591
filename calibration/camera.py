"""Camera intrinsics from views of a printed ChArUco board or checkerboard (OpenCV).

Show the board to the camera at several distances and tilts (at least :data:`MIN_VIEWS` views where it is
found, ideally 15-40 covering the image's corners); each view gives 2D-3D correspondences between the
board's corners (known positions on the flat board, metres) and their pixels, and
``cv2.calibrateCamera`` solves for fx, fy, cx, cy and the distortion (k1 k2 p1 p2 k3) that reproject them
best. The result is written in the calibration file format of :mod:`calibration.intrinsics`, which the
webcam, video and image sources read with ``calibration=FILE``.

A ChArUco board (chessboard squares with ArUco markers in the white ones) is found even when partly
hidden or cut by the image border, each corner carrying its id; a plain checkerboard must be seen whole.
``cv2.aruco.CharucoBoard.generateImage`` (or :func:`board_image`) draws the board to print.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable

import cv2
import numpy as np

from tracker.core.errors import CalibrationError, ConfigError
from tracker.core.types import Intrinsics

log = logging.getLogger(__name__)

#: Fewest views with a board found for a calibration (OpenCV needs 3; fewer than ~6 leaves fx/cx ill-posed).
MIN_VIEWS = 6
#: Fewest corners for a ChArUco view to count (a pose needs 4; a few more make it well conditioned).
MIN_CHARUCO_CORNERS = 8

BOARD_KINDS = ("charuco", "checkerboard")


@dataclasses.dataclass(frozen=True)
class BoardSpec:
    """A calibration board.

    Attributes:
        kind: ``"charuco"`` or ``"checkerboard"``.
        squares_x, squares_y: Squares across and down (a 7x5 checkerboard has 6x4 inner corners).
        square_m: Side of one square as printed, metres.
        marker_m: ChArUco only: side of the ArUco markers, metres (< square_m).
        dictionary: ChArUco only: the ArUco dictionary's name in ``cv2.aruco`` (e.g. ``DICT_5X5_100``).
    """

    kind: str = "charuco"
    squares_x: int = 7
    squares_y: int = 5
    square_m: float = 0.03
    marker_m: float = 0.022
    dictionary: str = "DICT_5X5_100"

    def __post_init__(self) -> None:
        if self.kind not in BOARD_KINDS:
            raise ConfigError(f"board kind must be one of {', '.join(BOARD_KINDS)}, got {self.kind!r}")
        if self.squares_x < 3 or self.squares_y < 3:
            raise ConfigError(f"a board needs at least 3x3 squares, got {self.squares_x}x{self.squares_y}")
        if not self.square_m > 0:
            raise ConfigError(f"square size must be > 0 m, got {self.square_m}")
        if self.kind == "charuco":
            if not 0 < self.marker_m < self.square_m:
                raise ConfigError(f"marker size must be in (0, square size {self.square_m} m), got {self.marker_m}")
            if not hasattr(cv2.aruco, self.dictionary):
                raise ConfigError(f"unknown ArUco dictionary {self.dictionary!r} (e.g. DICT_5X5_100, DICT_4X4_50)")

    @property
    def inner_corners(self) -> tuple[int, int]:
        """(columns, rows) of inner chessboard corners."""
        return self.squares_x - 1, self.squares_y - 1

    def charuco_board(self) -> cv2.aruco.CharucoBoard:
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        return cv2.aruco.CharucoBoard((self.squares_x, self.squares_y), self.square_m, self.marker_m, dictionary)

    def object_corners_m(self) -> np.ndarray:
        """(N,3) float32 inner-corner positions on the board plane (z = 0), metres, row-major."""
        cols, rows = self.inner_corners
        grid = np.mgrid[0:cols, 0:rows].T.reshape(-1, 2) + 1.0  # the first inner corner is one square in
        return np.concatenate([grid * self.square_m, np.zeros((len(grid), 1))], axis=1).astype(np.float32)


def board_image(spec: BoardSpec, px_per_square: int = 100, margin_px: int = 0) -> np.ndarray:
    """The board drawn for printing (or for rendering test views).

    Args:
        spec: The board.
        px_per_square: Resolution, pixels per square.
        margin_px: White border around the board.

    Returns:
        (H,W) uint8 image, H = squares_y * px_per_square + 2 margin. Square (i, j) covers pixels
        [i * px, (i+1) * px) from the margin, so board point (x, y) metres lies at pixel
        (margin + x / square_m * px - 0.5, ...) in the pixel-centre convention.
    """
    w, h = spec.squares_x * px_per_square, spec.squares_y * px_per_square
    if spec.kind == "charuco":
        img = spec.charuco_board().generateImage((w, h), marginSize=0, borderBits=1)
    else:
        ii, jj = np.meshgrid(np.arange(w) // px_per_square, np.arange(h) // px_per_square)
        img = np.where((ii + jj) % 2 == 0, 0, 255).astype(np.uint8)
    return cv2.copyMakeBorder(img, margin_px, margin_px, margin_px, margin_px, cv2.BORDER_CONSTANT, value=255)


@dataclasses.dataclass
class BoardView:
    """One image's correspondences.

    Attributes:
        object_points: (N,3) float32 board points, metres (z = 0).
        image_points: (N,2) float32 their pixels.
        index: Which frame of the source it came from.
    """

    object_points: np.ndarray
    image_points: np.ndarray
    index: int = -1


class BoardDetector:
    """Finds a board's corners in images.

    Args:
        spec: The board to look for.
    """

    def __init__(self, spec: BoardSpec) -> None:
        self.spec = spec
        if spec.kind == "charuco":
            params = cv2.aruco.CharucoParameters()
            params.tryRefineMarkers = True
            self._charuco = cv2.aruco.CharucoDetector(spec.charuco_board(), params)
        # ChArUco corner ids index the board's own corner list; a checkerboard's come row-major.
        self._object = (np.asarray(spec.charuco_board().getChessboardCorners(), np.float32).reshape(-1, 3)
                        if spec.kind == "charuco" else spec.object_corners_m())  # fmt: skip

    def detect(self, image: np.ndarray, index: int = -1) -> BoardView | None:
        """The board's corners in one image.

        Args:
            image: (H,W,3) uint8 RGB or (H,W) uint8 grey.
            index: Stored with the view.

        Returns:
            The view, or None when the board (or, for ChArUco, at least :data:`MIN_CHARUCO_CORNERS` corners)
            is not found.
        """
        gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image
        if self.spec.kind == "charuco":
            corners, ids, _, _ = self._charuco.detectBoard(gray)
            if ids is None or len(ids) < MIN_CHARUCO_CORNERS:
                return None
            ids = ids.reshape(-1)
            # The detector interpolates corners from the markers; a saddle-point refinement on the image
            # itself removes the interpolation's bias (measured: ~2 px in cx without it on rendered views).
            corners = cv2.cornerSubPix(gray, corners.reshape(-1, 1, 2).astype(np.float32), (3, 3), (-1, -1),
                                       (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 40, 0.001))  # fmt: skip
            return BoardView(self._object[ids].copy(), corners.reshape(-1, 2).astype(np.float32), index)
        flags = cv2.CALIB_CB_NORMALIZE_IMAGE | cv2.CALIB_CB_EXHAUSTIVE | cv2.CALIB_CB_ACCURACY
        found, corners = cv2.findChessboardCornersSB(gray, self.spec.inner_corners, flags=flags)
        if not found:
            return None
        return BoardView(self._object.copy(), corners.reshape(-1, 2).astype(np.float32), index)


@dataclasses.dataclass
class CameraCalibration:
    """What :func:`calibrate_camera` found.

    Attributes:
        intrinsics: The camera (with distortion).
        rms_px: Root-mean-square reprojection error over all corners, px.
        view_errors_px: (V,) RMS reprojection error of each view, px.
        views: Views used.
        frames: Frames looked at.
    """

    intrinsics: Intrinsics
    rms_px: float
    view_errors_px: np.ndarray
    views: int
    frames: int

    def report(self) -> dict:
        k = self.intrinsics
        return {"fx": k.fx, "fy": k.fy, "cx": k.cx, "cy": k.cy, "width": k.width, "height": k.height,
                "distortion": list(k.distortion), "rms_px": self.rms_px, "views": self.views, "frames": self.frames,
                "view_errors_px": [round(float(e), 4) for e in self.view_errors_px]}  # fmt: skip


def select_views(views: Iterable[BoardView], image_size: tuple[int, int], min_shift_fraction: float = 0.03,
                 max_views: int = 40) -> list[BoardView]:  # fmt: skip
    """Drops near-duplicate views (a held board in a video gives many), keeping at most ``max_views``.

    A view is kept when its corners moved, on average over the corners both views see, by more than
    ``min_shift_fraction`` of the image diagonal from every view kept so far.
    """
    diag = float(np.hypot(*image_size))
    kept: list[BoardView] = []
    for v in views:
        if len(kept) >= max_views:
            break
        dup = False
        for k in kept:
            a = {tuple(p): i for i, p in enumerate(np.round(k.object_points[:, :2], 6).tolist())}
            common = [(a[tuple(p)], j) for j, p in enumerate(np.round(v.object_points[:, :2], 6).tolist()) if tuple(p) in a]
            if len(common) >= 4:
                ia, ib = np.array(common).T
                if np.mean(np.linalg.norm(k.image_points[ia] - v.image_points[ib], axis=1)) < min_shift_fraction * diag:
                    dup = True
                    break
        if not dup:
            kept.append(v)
    return kept


def calibrate_camera(views: list[BoardView], image_size: tuple[int, int], frames: int | None = None,
                     fix_aspect: bool = False) -> CameraCalibration:  # fmt: skip
    """Solves for the intrinsics from board views.

    Args:
        views: At least :data:`MIN_VIEWS` views (e.g. from :meth:`BoardDetector.detect`).
        image_size: (width, height) px of the images.
        frames: How many frames were looked at, for the report (default: the number of views).
        fix_aspect: Assume square pixels (fx = fy).

    Returns:
        The calibration.

    Raises:
        CalibrationError: with too few views, or when OpenCV's solver fails.
    """
    if len(views) < MIN_VIEWS:
        raise CalibrationError(
            f"the board was found in {len(views)} view(s); need at least {MIN_VIEWS} (show it at several "
            "distances and tilts, covering the corners of the image, and check --board/--squares)"
        )
    w, h = int(image_size[0]), int(image_size[1])
    obj = [v.object_points.reshape(-1, 1, 3).astype(np.float32) for v in views]
    img = [v.image_points.reshape(-1, 1, 2).astype(np.float32) for v in views]
    # k3 only matters for wide-angle lenses; free, it trades against fx and cx on the few views users take.
    flags = cv2.CALIB_FIX_K3 | (cv2.CALIB_FIX_ASPECT_RATIO if fix_aspect else 0)
    f0 = 0.9 * max(w, h)
    k0 = np.array([[f0, 0, (w - 1) / 2], [0, f0, (h - 1) / 2], [0, 0, 1]], np.float64)
    try:
        rms, k, dist, rvecs, tvecs = cv2.calibrateCamera(obj, img, (w, h), k0, None, flags=flags)
    except cv2.error as exc:
        raise CalibrationError(f"OpenCV could not calibrate from {len(views)} views: {exc}") from exc
    errors = []
    for o, i, r, t in zip(obj, img, rvecs, tvecs, strict=True):
        proj, _ = cv2.projectPoints(o, r, t, k, dist)
        errors.append(float(np.sqrt(np.mean(np.sum((proj - i).reshape(-1, 2) ** 2, axis=1)))))
    intrinsics = Intrinsics(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]), w, h,
                            tuple(float(d) for d in dist.reshape(-1)[:5]))  # fmt: skip
    log.info("calibrated from %d views: fx %.1f fy %.1f cx %.1f cy %.1f, rms %.3f px",
             len(views), intrinsics.fx, intrinsics.fy, intrinsics.cx, intrinsics.cy, rms)  # fmt: skip
    return CameraCalibration(intrinsics, float(rms), np.array(errors), len(views), frames or len(views))


__all__ = [
    "BOARD_KINDS", "BoardDetector", "BoardSpec", "BoardView", "CameraCalibration", "MIN_CHARUCO_CORNERS", "MIN_VIEWS",
    "board_image", "calibrate_camera", "select_views",
]  # fmt: skip
