"""``images:DIR``: the image files of a folder, in natural sort order (``img2`` before ``img10``).

Files without an image extension are skipped (one warning lists them); an image that does not decode is
skipped with a warning. A frame's ``index`` is the file's position in :attr:`ImageFolderSource.paths`, so
``source.paths[frame.index]`` names the file even when some were skipped. Images may differ in size; each
frame gets intrinsics for its own size.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import cv2

from calibration.intrinsics import resolve_intrinsics
from tracker.core.errors import CameraError
from tracker.core.types import Frame, Intrinsics
from tracker.sources.base import FrameSource

log = logging.getLogger(__name__)

#: Extensions read as images (lower case), all decodable by OpenCV's imread.
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pnm"}
)


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers numerically (``frame2`` < ``frame10``)."""
    return [int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name)]


class ImageFolderSource(FrameSource):
    """Still images of one folder as a frame source.

    Args:
        folder: The folder (not searched recursively).
        calibration: Calibration JSON file or :class:`Intrinsics`; rescaled to each image's size when the
            aspect ratio matches. None uses the default FOV guess.
        extensions: Accepted file extensions, lower case with the dot.

    Attributes:
        paths: The image files, in the order they are read.
    """

    is_live = False

    def __init__(
        self,
        folder: str | Path,
        *,
        calibration: str | Path | Intrinsics | None = None,
        extensions: frozenset[str] | set[str] = IMAGE_EXTENSIONS,
    ) -> None:
        self.folder = Path(folder)
        super().__init__(f"images:{self.folder}")
        self.calibration = calibration
        self.extensions = frozenset(e.lower() for e in extensions)
        self.paths: list[Path] = []
        self._next = 0
        self._intrinsics: Intrinsics | None = None
        self._by_size: dict[tuple[int, int], Intrinsics] = {}


    @property
    def expected_frames(self) -> int | None:
        return len(self.paths) if self.is_connected else None

    def _open(self) -> None:
        if not self.folder.is_dir():
            raise CameraError(f"image folder not found: {self.folder}")
        files = sorted((p for p in self.folder.iterdir() if p.is_file()), key=lambda p: natural_key(p.name))
        self.paths = [p for p in files if p.suffix.lower() in self.extensions]
        skipped = [p.name for p in files if p.suffix.lower() not in self.extensions]
        if skipped:
            shown = ", ".join(skipped[:5]) + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
            log.warning("%s: skipping %d file(s) that are not images: %s", self.folder, len(skipped), shown)
        if not self.paths:
            raise CameraError(
                f"{self.folder} holds no images (looked for {', '.join(sorted(self.extensions))})"
            )
        self._next = 0
        # The first readable image fixes the source's nominal intrinsics; it is decoded again by read().
        for p in self.paths:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is not None:
                self._intrinsics = self._intrinsics_for(img.shape[1], img.shape[0])
                return
        raise CameraError(f"none of the {len(self.paths)} image file(s) in {self.folder} could be decoded")

    def _intrinsics_for(self, width: int, height: int) -> Intrinsics:
        key = (width, height)
        if key not in self._by_size:
            self._by_size[key] = resolve_intrinsics(width, height, self.calibration)
        return self._by_size[key]

    def _read_next(self) -> Frame | None:
        while self._next < len(self.paths):
            i = self._next
            self._next += 1
            # IMREAD_COLOR gives 3-channel BGR for grey, paletted and alpha images alike.
            bgr = cv2.imread(str(self.paths[i]), cv2.IMREAD_COLOR)
            if bgr is None:
                log.warning("%s: skipping %s: not a readable image", self.source_id, self.paths[i].name)
                continue
            return Frame(
                index=i,
                t_capture_ns=time.monotonic_ns(),
                color=cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB),
                intrinsics=self._intrinsics_for(bgr.shape[1], bgr.shape[0]),
                source_id=self.source_id,
                # Stills have no time of their own: a nominal 30 fps spacing keeps the filters' dt defined.
                t_media_ns=round(i * 1e9 / 30.0),
            )
        return None
