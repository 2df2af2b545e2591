"""Test configuration shared by every package's tests.

Assets come from ``$FACETRACK_ASSETS``; when unset and ``../shared/assets`` exists beside the checkout (as
in CI), it is used. ``--device cuda`` (or ``FACETRACK_TEST_DEVICE=cuda``) turns on the GPU tests, which
otherwise skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
if not os.environ.get("FACETRACK_ASSETS") and (SHARED / "assets").is_dir():
    os.environ["FACETRACK_ASSETS"] = str(SHARED / "assets")


def pytest_addoption(parser):
    parser.addoption("--device", default=os.environ.get("FACETRACK_TEST_DEVICE", "cpu"), help="cpu or cuda")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--device") == "cuda":
        return
    skip = pytest.mark.skip(reason="GPU test: run with --device cuda on a machine with a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def device(request) -> str:
    return request.config.getoption("--device")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (real faces and videos); tests that need it skip where it is absent."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is not present")
    return path


@pytest.fixture(scope="session")
def face_model():
    from tracker.core.face_model import FaceModel

    return FaceModel.load()


@pytest.fixture(scope="session")
def shared_assets() -> Path:
    """``../shared/assets``, the read-only asset folder beside the checkout; skips where it is absent."""
    path = SHARED / "assets"
    if not path.is_dir():
        pytest.skip("../shared/assets is not present")
    return path


@pytest.fixture
def isolated_assets(tmp_path, monkeypatch) -> Path:
    """An empty asset search path: ``$FACETRACK_ASSETS`` and the cache under ``tmp_path``, and no recorded
    folders (the venv's ``assets.path`` would otherwise find the shared assets). Returns the asset root."""
    from tracker.core import assets

    root = tmp_path / "assets"
    monkeypatch.setenv("FACETRACK_ASSETS", str(root))
    monkeypatch.setenv("FACETRACK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(assets, "config_path", lambda: tmp_path / "etc" / "assets.path")
    return root
