import json
import math

import pytest

from calibration.intrinsics import (
    load_intrinsics,
    resolve_intrinsics,
    save_intrinsics,
)
from tracker.core.errors import CalibrationError
from tracker.core.types import ASSUMED_FOV_DEG, Intrinsics


def test_without_a_file_every_source_gets_the_one_assumed_camera():
    # Videos, webcams and image folders (resolve_intrinsics) and still-image evaluation (Intrinsics.assumed)
    # guess the same camera for the same image size.
    k = resolve_intrinsics(640, 480)
    assert k == Intrinsics.assumed(640, 480)
    assert math.degrees(2 * math.atan(0.5 * 640 / k.fx)) == pytest.approx(ASSUMED_FOV_DEG)
    assert k.fx == k.fy and (k.cx, k.cy) == (319.5, 239.5)


def test_save_load_round_trip(tmp_path):
    k = Intrinsics(612.5, 611.0, 321.2, 238.7, 640, 480, (0.1, -0.2, 0.001, 0.002, 0.05))
    path = save_intrinsics(k, tmp_path / "cam" / "intrinsics.json")
    assert json.loads(path.read_text())["fx"] == 612.5
    assert load_intrinsics(path) == k


def test_distortion_is_optional(tmp_path):
    p = tmp_path / "k.json"
    p.write_text(json.dumps({"fx": 500, "fy": 500, "cx": 319.5, "cy": 239.5, "width": 640, "height": 480}))
    assert load_intrinsics(p).distortion == (0.0,) * 5


@pytest.mark.parametrize(
    "text, match",
    [("{not json", "not readable JSON"), ('{"fx": 1, "fy": 1}', "missing field"), ('{"fx": -1, "fy": 1, "cx": 0, '
     '"cy": 0, "width": 2, "height": 2}', "positive focal length"), ("[1, 2]", "JSON object")],
)  # fmt: skip
def test_bad_files_are_clear_errors(tmp_path, text, match):
    p = tmp_path / "k.json"
    p.write_text(text)
    with pytest.raises(CalibrationError, match=match):
        load_intrinsics(p)


def test_missing_file(tmp_path):
    with pytest.raises(CalibrationError, match="not found"):
        load_intrinsics(tmp_path / "nope.json")


def test_resolve_rescales_same_aspect_and_rejects_another(tmp_path):
    k = Intrinsics(1000.0, 1000.0, 639.5, 359.5, 1280, 720)
    half = resolve_intrinsics(640, 360, k)
    assert (half.fx, half.cx, half.cy, half.width) == (500.0, 319.5, 179.5, 640)
    assert resolve_intrinsics(1280, 720, save_intrinsics(k, tmp_path / "k.json")) == k
    assert resolve_intrinsics(640, 480) == Intrinsics.assumed(640, 480)
    with pytest.raises(CalibrationError, match="aspect"):
        resolve_intrinsics(640, 480, k)
