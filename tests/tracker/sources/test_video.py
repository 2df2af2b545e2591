"""VideoFileSource on real clips: frame count, RGB order, pacing at an odd frame rate, broken files."""

import time

import cv2
import numpy as np
import pytest

from tracker.core.errors import CameraError
from tracker.sources.video import VideoFileSource


@pytest.fixture(scope="module")
def clip(shared_data):
    return shared_data / "videos" / "liveportrait_d0.mp4"  # 78 frames, 512x512, 25 fps


def test_reads_every_frame_in_rgb(clip):
    cap = cv2.VideoCapture(str(clip))
    with VideoFileSource(clip) as src:
        assert src.fps == pytest.approx(25.0) and src.frame_count == 78
        assert (src.intrinsics.width, src.intrinsics.height) == (512, 512)
        n = 0
        for frame in src:
            ok, bgr = cap.read()
            assert ok and frame.index == n
            assert frame.color.dtype == np.uint8 and frame.color.shape == (512, 512, 3)
            if n in (0, 40, 77):
                np.testing.assert_array_equal(frame.color, bgr[:, :, ::-1])  # RGB = reversed BGR
            n += 1
        assert n == 78 and src.read() is None  # end of stream stays None
    cap.release()


def test_realtime_follows_timestamps_at_22_13_fps(shared_data):
    path = shared_data / "videos" / "videoretalking_1.mp4"  # 22.13 fps, variable frame intervals
    n = 12
    cap = cv2.VideoCapture(str(path))
    pts = []
    for _ in range(n):
        cap.grab()
        pts.append(cap.get(cv2.CAP_PROP_POS_MSEC))
    cap.release()
    span_ms = pts[-1] - pts[0]  # ~500 ms: the file's true timing, not n / 22.13
    with VideoFileSource(path, realtime=True) as src:
        assert src.fps == pytest.approx(22.13, abs=0.01)
        t = []
        for _ in range(n):
            src.read()
            t.append(time.monotonic())
        assert src.position_ms == pytest.approx(pts[-1])
    # Deadlines are absolute (start + timestamp), so a late wake-up does not accumulate.
    assert (t[-1] - t[0]) * 1e3 == pytest.approx(span_ms, abs=60.0)
    with VideoFileSource(path, realtime=False) as fast:
        t0 = time.monotonic()
        for _ in range(n):
            fast.read()
        assert (time.monotonic() - t0) * 1e3 < 0.5 * span_ms


def test_random_bytes_are_a_clear_error(tmp_path):
    bad = tmp_path / "noise.mp4"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    with pytest.raises(CameraError, match="noise.mp4"):
        VideoFileSource(bad).connect()


def test_truncated_without_index_fails_at_connect(clip, tmp_path):
    cut = tmp_path / "cut_d0.mp4"
    data = clip.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # this file keeps its index (moov) at the end
    with pytest.raises(CameraError, match="cut_d0.mp4"):
        VideoFileSource(cut).connect()


def test_truncated_mid_stream_is_an_error_not_an_end(shared_data, tmp_path):
    src_path = shared_data / "videos" / "tpsmm_driving.mp4"  # index at the start: frames decode until the cut
    cut = tmp_path / "cut_tpsmm.mp4"
    data = src_path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with VideoFileSource(cut) as src:
        n = 0
        with pytest.raises(CameraError, match=r"cut_tpsmm.mp4.*truncated"):
            while src.read() is not None:
                n += 1
        assert 10 < n < src.frame_count


def test_missing_file(tmp_path):
    with pytest.raises(CameraError, match="not found"):
        VideoFileSource(tmp_path / "none.mp4").connect()


@pytest.fixture
def edit_list_clip(tmp_path):
    """An MP4 whose edit list presents 25 of its 50 coded frames (what a phone or an editor's trim writes):
    one keyframe, and a stream copy that starts one second in, so the frames before it stay coded."""
    import shutil
    import subprocess

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    full, cut = tmp_path / "full.mp4", tmp_path / "trimmed.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25", "-frames:v", "50",
                    "-c:v", "libx264", "-g", "50", "-pix_fmt", "yuv420p", str(full)], check=True)  # fmt: skip
    subprocess.run(["ffmpeg", "-v", "error", "-ss", "1.0", "-i", str(full), "-c", "copy", str(cut)], check=True)
    return cut


def test_an_edit_list_is_not_a_truncated_file(edit_list_clip):
    with VideoFileSource(edit_list_clip) as src:
        frames = list(src)
        assert src.frame_count == 50  # coded
        assert len(frames) == src.expected_frames == 25  # presented: the whole stated second
    times_s = [f.t_media_ns / 1e9 for f in frames]
    assert np.allclose(np.diff(times_s), 1 / 25, atol=1e-3)  # media time: the presentation timestamps


def test_media_time_is_the_presentation_time_not_the_host_clock(clip):
    with VideoFileSource(clip) as src:  # as fast as it decodes
        frames = [src.read() for _ in range(10)]
    assert [f.t_media_ns for f in frames] == [round(i * 1e9 / 25) for i in range(10)]
