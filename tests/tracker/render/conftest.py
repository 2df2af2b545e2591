"""One renderer (one OpenGL context) shared by the render tests: creating contexts is the slow part."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def renderer(face_model):
    from tracker.render import Renderer

    r = Renderer(face_model)
    yield r
    r.close()
