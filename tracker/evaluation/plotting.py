"""The one way evaluation plots are written: a headless matplotlib figure saved as PNG."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def png_figure(path: Path | str, ncols: int, figsize: tuple[float, float], dpi: int = 90) -> Iterator:
    """Yields ``(fig, axes)`` of a 1 x ``ncols`` figure and writes it to ``path`` on a clean exit.

    matplotlib is imported here with the Agg backend (no display needed, and none is opened), and the
    figure is closed even when drawing fails, so evaluations that plot in a loop do not accumulate figures.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, ncols, figsize=figsize)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
