from __future__ import annotations

import numpy as np
import pytest

from tests.tracker.stream.helpers import record_demo_stream


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def demo_log(tmp_path_factory):
    """A stream log of a real `facetrack demo` run (recorded once per session)."""
    return record_demo_stream(tmp_path_factory.getbasetemp() / "demo_stream.ftlog")
