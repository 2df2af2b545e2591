"""open_source(): the source strings of the command line, options, and errors that list what is valid."""

import pytest

from tracker.core.errors import ConfigError
from tracker.sources import SOURCE_FORMS, open_source, parse_source_spec
from tracker.sources.images import ImageFolderSource
from tracker.sources.realsense import RealSensePlayback, RealSenseSource
from tracker.sources.synthetic import SyntheticSource
from tracker.sources.video import VideoFileSource
from tracker.sources.webcam import WebcamSource


@pytest.mark.parametrize(
    "spec, cls, attrs",
    [
        ("webcam:2", WebcamSource, {"device": 2}),
        ("webcam", WebcamSource, {"device": 0}),
        ("webcam:/dev/video4", WebcamSource, {"device": "/dev/video4"}),
        ("video:clips/a.mp4", VideoFileSource, {"source_id": "video:clips/a.mp4"}),
        ("images:faces", ImageFolderSource, {"source_id": "images:faces"}),
        ("synthetic", SyntheticSource, {"seed": 0}),
        ("synthetic:5", SyntheticSource, {"seed": 5}),
        ("realsense", RealSenseSource, {"serial": None}),
        ("realsense:123456789", RealSenseSource, {"serial": "123456789"}),
        ("realsense:rec/take1.db3", RealSensePlayback, {"source_id": "realsense:rec/take1.db3"}),
        ("realsense:take.bag", RealSensePlayback, {}),
    ],
)
def test_forms(spec, cls, attrs):
    src = open_source(spec)
    assert type(src) is cls and not src.is_connected
    for k, v in attrs.items():
        assert getattr(src, k) == v


def test_options_reach_the_source():
    s = open_source("synthetic", seed=3, frames=12, width=96, height=72, realtime=None)  # None = not given
    assert (s.seed, s.n_frames, s.intrinsics.width, s.realtime) == (3, 12, 96, False)
    v = open_source("video:x.mp4", realtime=True)
    assert v.realtime
    w = open_source("webcam:0", width=1280, height=720, fps=60)
    assert (w.width, w.height, w.requested_fps) == (1280, 720, 60)


def test_frames_are_read_through_the_factory(shared_data):
    with open_source(f"video:{shared_data / 'videos' / 'liveportrait_d19.mp4'}") as src:
        assert src.read().color.shape == (480, 480, 3)


@pytest.mark.parametrize("spec", ["bogus", "camera:0", "", "rtsp://host/stream"])
def test_unknown_source_lists_the_valid_forms(spec):
    with pytest.raises(ConfigError) as err:
        open_source(spec)
    for form in ("webcam:N", "video:PATH", "images:DIR", "synthetic", "realsense:RECORDING"):
        assert form in str(err.value) or spec == ""


def test_a_bare_existing_path_gets_a_hint(tmp_path):
    with pytest.raises(ConfigError, match=r"video:.*images:"):
        open_source(str(tmp_path))


@pytest.mark.parametrize(
    "spec, options, match",
    [
        ("video:a.mp4", {"seed": 1}, r"does not take option\(s\) seed; it takes: calibration, realtime"),
        ("synthetic:3", {"seed": 4}, "already sets seed"),
        ("synthetic:x", {}, "integer seed"),
        ("video:", {}, "needs a path"),
        ("images:", {}, "needs a path"),
        ("realsense:not a file!", {}, "RECORDING"),
    ],
)
def test_bad_options_and_arguments(spec, options, match):
    with pytest.raises(ConfigError, match=match):
        open_source(spec, **options)


def test_forms_constant_and_parser_agree():
    for form in SOURCE_FORMS:
        kind, _ = parse_source_spec(form.replace("N", "0").replace("SEED", "1").replace("SERIAL", "123")
                                    .replace("RECORDING.bag|.db3", "r.db3"))  # fmt: skip
        assert kind
