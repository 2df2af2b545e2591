"""RealSense through the real SDK without a camera: synthetic RGB-D -> .db3 (software device + recorder)
-> realsense:FILE playback with depth aligned to colour; broken recordings; the missing-package error."""

import sys
import time

import numpy as np
import pytest

from tracker.core.errors import CameraError, ConfigError
from tracker.sources import open_source
from tracker.sources.synthetic import SyntheticSource

rs = pytest.importorskip("pyrealsense2")

from tracker.sources.realsense import RealSensePlayback, RealSenseSource  # noqa: E402
from tracker.sources.realsense_record import RealSenseRecordingWriter  # noqa: E402

INDICES = [0, 50, 100, 150, 200, 250]  # spread over the script: different poses, expressions, noise
NOSE_TIP = 30  # iBUG-68 index


@pytest.fixture(scope="module")
def synthetic(face_model):
    with SyntheticSource(11, None, width=160, height=120, sensor_noise=True, model=face_model) as src:
        frames = [src.render_frame(i) for i in INDICES]
    return frames


def _write(frames, path, **kw):
    with RealSenseRecordingWriter(path, fps=30.0, **kw) as w:
        for f in frames:
            w.write(f)
    return path


@pytest.fixture(scope="module")
def recordings(synthetic, tmp_path_factory):
    d = tmp_path_factory.mktemp("rs")
    return {
        "same": _write(synthetic, d / "same.db3"),  # depth registered to colour, as the source makes it
        "lowres": _write(synthetic, d / "lowres.db3", depth_size=(80, 60)),  # a separate depth camera
    }


def _nose_gt_depth_m(face_model, frame):
    gt = frame.ground_truth
    lm = (
        face_model.landmarks68(gt.identity, gt.expression).astype(np.float64) @ gt.rotation.T
        + gt.translation_m
    )
    u, v = np.round(gt.landmarks68[NOSE_TIP]).astype(int)
    return lm[NOSE_TIP, 2], (v, u)


def _play(path, **kw):
    with RealSensePlayback(path, **kw) as src:
        return src, list(src)


def test_round_trip_is_exact_when_depth_is_registered(recordings, synthetic, face_model):
    src, played = _play(recordings["same"])
    assert [f.index for f in played] == list(range(len(INDICES)))  # every frame, the first one included
    k0 = synthetic[0].intrinsics
    k = src.intrinsics
    assert (k.width, k.height, k.cx, k.cy) == (k0.width, k0.height, k0.cx, k0.cy)
    assert k.fx == pytest.approx(k0.fx, rel=1e-6)
    assert src.depth_scale_m == pytest.approx(0.001, rel=1e-6) and not src.aligns_depth
    for f, ref in zip(played, synthetic, strict=True):
        np.testing.assert_array_equal(f.color, ref.color)
        np.testing.assert_array_equal(f.depth, ref.depth)
        z_gt, px = _nose_gt_depth_m(face_model, ref)
        assert abs(f.depth_m[px] - z_gt) < 0.005


def test_rs_align_maps_a_lower_resolution_depth_stream_onto_colour(recordings, synthetic, face_model):
    src, played = _play(recordings["lowres"])
    assert src.aligns_depth  # rs.align did the work here
    assert len(played) == len(INDICES)
    for f, ref in zip(played, synthetic, strict=True):
        np.testing.assert_array_equal(f.color, ref.color)
        assert f.depth.shape == ref.depth.shape  # aligned to the colour grid
        z_gt, px = _nose_gt_depth_m(face_model, ref)
        assert abs(f.depth_m[px] - z_gt) < 0.005
        both = (f.depth > 0) & (ref.depth > 0)
        union = (f.depth > 0) | (ref.depth > 0)
        assert both.sum() / union.sum() > 0.85  # the face silhouette lands where it is in colour
        assert np.median(np.abs(f.depth[both].astype(int) - ref.depth[both])) <= 3  # mm


def test_realtime_playback_follows_recorded_timestamps(recordings):
    with RealSensePlayback(recordings["same"], realtime=True) as src:
        t0 = time.monotonic()
        n = sum(1 for _ in src)
        elapsed = time.monotonic() - t0
    assert n == len(INDICES) and elapsed >= 0.9 * (n - 1) / 30.0


def test_close_mid_playback_is_prompt(recordings):
    src = open_source(f"realsense:{recordings['same']}")
    src.connect()
    assert src.async_read(timeout_ms=2000).index == 0
    t0 = time.monotonic()
    src.close()
    assert time.monotonic() - t0 < 1.0


@pytest.mark.parametrize("name", ["noise.db3", "noise.bag"])
def test_random_bytes_are_a_clear_error(tmp_path, name):
    bad = tmp_path / name
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    with pytest.raises(CameraError, match=name):
        RealSensePlayback(bad).connect()


def test_truncated_recording_is_a_clear_error(recordings, tmp_path):
    data = recordings["same"].read_bytes()
    cut = tmp_path / "cut.db3"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CameraError, match="cut.db3"):
        with RealSensePlayback(cut) as src:
            list(src)


def test_missing_recording(tmp_path):
    with pytest.raises(CameraError, match="not found"):
        RealSensePlayback(tmp_path / "none.db3").connect()


def test_writer_rejects_bag_and_frames_without_depth(synthetic, tmp_path):
    with pytest.raises(ConfigError, match=".db3"):
        RealSenseRecordingWriter(tmp_path / "x.bag")
    f = synthetic[0]
    no_depth = type(f)(index=0, t_capture_ns=0, color=f.color, intrinsics=f.intrinsics)
    with RealSenseRecordingWriter(tmp_path / "x.db3") as w, pytest.raises(ConfigError, match="no depth"):
        w.write(no_depth)


def test_missing_package_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pyrealsense2", None)  # as if not installed
    (tmp_path / "a.db3").write_bytes(b"x")
    with pytest.raises(CameraError, match=r"pip install 'facetrack\[realsense\]'"):
        RealSensePlayback(tmp_path / "a.db3").connect()
    with pytest.raises(CameraError, match=r"facetrack\[realsense\]"):
        RealSenseSource().connect()


def test_live_camera_absent_is_a_clear_error():
    if len(rs.context().query_devices()) > 0:
        pytest.skip("a RealSense camera is connected")
    with pytest.raises(CameraError, match="no Intel RealSense camera found"):
        RealSenseSource().connect()
