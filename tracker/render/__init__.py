"""OpenGL rendering of the face model: the preview's overlay, the synthetic source and training data.

Public API:

* :class:`Renderer` -- one OpenGL context; ``render`` / ``render_batch`` / ``overlay`` / ``close``.
* :class:`~tracker.core.render_types.Albedo`, :class:`~tracker.core.render_types.RenderOutput` -- typed inputs
  and outputs (the face itself: :class:`~tracker.core.types.FaceCoefficients`).
* :func:`procedural_albedo`, :func:`region_albedo` -- surface colours.
* :mod:`tracker.core.face_model.sh` -- the SH lighting convention (numpy and torch).
* :func:`projection_matrix` -- the OpenCV-exact OpenGL projection.
"""

from tracker.core.face_model.albedo import procedural_albedo, region_albedo
from tracker.core.render_types import Albedo, RenderOutput
from tracker.render.camera import projection_matrix
from tracker.render.renderer import Renderer

__all__ = [
    "Albedo",
    "RenderOutput",
    "Renderer",
    "procedural_albedo",
    "projection_matrix",
    "region_albedo",
]
