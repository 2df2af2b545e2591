"""`facetrack calibrate camera|realsense|neutral` end to end: rendered boards, real RealSense recordings
through the SDK, the real tracker (ONNX) on the synthetic face, and `run --profile`."""

from __future__ import annotations

import dataclasses
import json
import socket

import cv2
import numpy as np
import pytest

from calibration.neutral import load_profile
from tests.calibration.test_camera import SIZE, TRUE_K, render_views
from tools.calibrate_cmd import record_neutral
from tools.cli import main
from tracker.core.face_model.arkit import ARKIT_NAMES, ICT_EXPRESSION_NAMES
from tracker.core.geometry import rotation_from_ypr_deg
from tracker.core.types import FaceCoefficients
from tracker.sources.base import FrameSource
from tracker.sources.synthetic import SyntheticSource
from tracker.tracking.regressor import DEFAULT_MODEL

ICT = {n: i for i, n in enumerate(ICT_EXPRESSION_NAMES)}
needs_model = pytest.mark.skipif(not DEFAULT_MODEL.exists(), reason="needs engines/weights/coarsenet_v1.onnx")

# ------------------------------------------------------------------------------------------------ camera


def test_calibrate_camera_from_an_image_folder(tmp_path, capsys):
    from calibration.camera import BoardSpec

    folder = tmp_path / "views"
    folder.mkdir()
    for i, img in enumerate(render_views(BoardSpec(), 14, seed=1)):
        cv2.imwrite(str(folder / f"view{i:02d}.png"), img)
    out, js = tmp_path / "cam.json", tmp_path / "report.json"
    assert main(["calibrate", "camera", "--source", f"images:{folder}", "--board", "charuco", "--squares", "7x5",
                 "--square-mm", "30", "--marker-mm", "22", "--out", str(out), "--json", str(js)]) == 0  # fmt: skip
    assert "calibrated 640x480 from 14 views" in capsys.readouterr().out
    cam = json.loads(out.read_text())
    assert abs(cam["fx"] / TRUE_K[0, 0] - 1) < 0.01 and abs(cam["fy"] / TRUE_K[1, 1] - 1) < 0.01
    assert abs(cam["cx"] - TRUE_K[0, 2]) < 2 and abs(cam["cy"] - TRUE_K[1, 2]) < 2
    assert (cam["width"], cam["height"]) == SIZE and len(cam["distortion"]) == 5
    report = json.loads(js.read_text())
    assert report["views"] == 14 and report["rms_px"] < 0.5
    # The file is the one the sources read.
    from tracker.sources import open_source

    with open_source(f"images:{folder}", calibration=out) as src:
        assert src.read().intrinsics.fx == pytest.approx(cam["fx"])


@pytest.mark.parametrize("kind", ["charuco", "checkerboard"])
def test_the_printed_board_is_the_one_calibrate_camera_finds(tmp_path, kind):
    from calibration.camera import BoardDetector, BoardSpec

    out = tmp_path / "board.png"
    assert main(["calibrate", "board", "--board", kind, "--squares", "6x4", "--px-per-square", "60", "--out", str(out)]) == 0
    img = cv2.imread(str(out), cv2.IMREAD_GRAYSCALE)
    assert img.shape == (5 * 60, 7 * 60)  # the board plus half a square of white margin each side
    view = BoardDetector(BoardSpec(kind=kind, squares_x=6, squares_y=4)).detect(img)
    assert view is not None and len(view.image_points) == 5 * 3


def test_calibrate_camera_errors_exit_2(tmp_path, capsys):
    folder = tmp_path / "blank"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((120, 160), 128, np.uint8))
    assert main(["calibrate", "camera", "--source", f"images:{folder}", "--out", str(tmp_path / "c.json")]) == 2
    from calibration.camera import BoardSpec

    few = tmp_path / "few"
    few.mkdir()
    for i, img in enumerate(render_views(BoardSpec(kind="checkerboard"), 3)):
        cv2.imwrite(str(few / f"{i}.png"), img)
    args = ["calibrate", "camera", "--source", f"images:{few}", "--board", "checkerboard", "--out", str(tmp_path / "c.json")]
    assert main(args) == 2
    assert not (tmp_path / "c.json").exists()


# ------------------------------------------------------------------------------------------------ realsense


class ShiftedDepth(FrameSource):
    """The synthetic RGB-D face with its depth image moved by (dx, dy) px: a misaligned camera."""

    def __init__(self, dx: int, dy: int, n_frames: int) -> None:
        super().__init__("shifted-synthetic")
        self.inner = SyntheticSource(seed=2, n_frames=n_frames, width=320, height=240)
        self.dx, self.dy = dx, dy

    def _open(self) -> None:
        self.inner.connect()
        self._intrinsics = self.inner.intrinsics

    def _read_next(self):
        f = self.inner.read()
        if f is None:
            return None
        d = np.zeros_like(f.depth)
        h, w = d.shape
        dx, dy = self.dx, self.dy
        d[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = \
            f.depth[max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)]  # fmt: skip
        return dataclasses.replace(f, depth=d)

    def _release(self) -> None:
        self.inner.close()


@pytest.mark.parametrize(("dx", "dy"), [(0, 0), (3, -2)])
def test_calibrate_realsense_reports_the_shift_of_a_recording(tmp_path, capsys, dx, dy):
    pytest.importorskip("pyrealsense2")
    from tracker.sources.realsense_record import record_realsense

    rec = tmp_path / "take.db3"
    record_realsense(ShiftedDepth(dx, dy, 12), rec, progress=False)
    js = tmp_path / "align.json"
    assert main(["calibrate", "realsense", "--source", f"realsense:{rec}", "--frames", "12", "--json", str(js)]) == 0
    report = json.loads(js.read_text())
    assert report["frames_used"] == 12
    assert abs(report["shift_px"][0] - dx) <= 0.5 and abs(report["shift_px"][1] - dy) <= 0.5
    assert report["aligned"] == (dx == dy == 0)
    assert report["residual_after_px"] <= report["residual_px"]
    assert ("MISALIGNED" in capsys.readouterr().out) == (dx != 0)


def test_calibrate_realsense_needs_depth(tmp_path, shared_data):
    clip = shared_data / "videos" / "liveportrait_d0.mp4"
    assert main(["calibrate", "realsense", "--source", f"video:{clip}", "--frames", "2"]) == 2


# ------------------------------------------------------------------------------------------------ neutral

#: A known rest face: this person's mouth rests in a slight smile, the brows low, the jaw a little open.
REST = {"mouthSmile_L": 0.3, "mouthSmile_R": 0.3, "browDown_L": 0.25, "browDown_R": 0.25, "jawOpen": 0.15,
        "eyeSquint_L": 0.2, "eyeSquint_R": 0.2}  # fmt: skip


class HeldFace(SyntheticSource):
    """The synthetic subject holding :data:`REST` with a frontal head, eyes fully closed in ``blink``."""

    def __init__(self, n_frames: int, blink: range = range(0), **kw) -> None:
        super().__init__(seed=3, n_frames=n_frames, sensor_noise=True, **kw)
        self.blink = blink

    def params_at(self, frame_index: int) -> FaceCoefficients:
        p = super().params_at(0)
        e = np.zeros(53, np.float32)
        for name, value in REST.items():
            e[ICT[name]] = value
        if frame_index in self.blink:
            e[ICT["eyeBlink_L"]] = e[ICT["eyeBlink_R"]] = 1.0
        return FaceCoefficients(p.identity, e, rotation_from_ypr_deg(0, 0, 0), p.translation_m, p.lighting)


@pytest.fixture(scope="module")
def tracker():
    from tracker.pipeline.runtime import RuntimeOptions, create_tracker

    with create_tracker(RuntimeOptions(backend="onnxruntime", threads=2)) as t:
        yield t


@pytest.fixture(scope="module")
def rest_profile(tracker):
    with HeldFace(n_frames=100) as src:
        profile, recorder = record_neutral(tracker, src, seconds=2.0, prompt=False)
    assert recorder.frames_seen == {"rest": 60, "sweep": 0} and profile.rest_frames == 60
    return profile


def _track_with_profile(tracker, profile, source) -> list:
    # Depth off: with depth the published identity is the held one rescaled to the measured head size.
    tracker.config = dataclasses.replace(tracker.config, identity_hold_weight=30.0, profile=profile, use_depth=False)
    tracker.reset()
    try:
        with source:
            return [tracker.process(f).faces for f in source]
    finally:
        tracker.config = dataclasses.replace(tracker.config, profile=None, use_depth=True)


@needs_model
def test_neutral_profile_makes_the_rest_face_read_zero(tracker, rest_profile):
    raw = rest_profile.rest
    # The tracker does read the rest face as an expression (so the profile has something to remove).
    assert max(raw[ARKIT_NAMES.index(n)] for n in ("jawOpen", "mouthSmileLeft", "browDownLeft", "eyeSquintLeft")) > 0.08
    # Frames the profile never saw (other sensor noise draws: frame indices 200+).
    faces = _track_with_profile(tracker, rest_profile, _Offset(HeldFace(n_frames=230), 200))
    tracked = [f[0] for f in faces if f]
    assert len(tracked) == 30
    worst = max(float(f.arkit.max()) for f in tracked)
    assert worst <= 0.05, worst
    # The held identity is the profile's from the first frame on.
    np.testing.assert_allclose(tracked[0].identity[: rest_profile.num_identity], rest_profile.identity, atol=0.05)


@needs_model
def test_a_full_blink_stays_above_0_9_with_the_profile(tracker, rest_profile):
    faces = _track_with_profile(tracker, rest_profile, _Offset(HeldFace(n_frames=240, blink=range(210, 240)), 200))
    closed = [f[0].arkit for f in faces[20:] if f]
    assert min(a[ARKIT_NAMES.index("eyeBlinkLeft")] for a in closed) >= 0.9


class _Offset(FrameSource):
    """Frames ``start..`` of another source (its frames depend only on the index)."""

    def __init__(self, inner: SyntheticSource, start: int) -> None:
        super().__init__(inner.source_id)
        self.inner, self.start, self.i = inner, start, start

    def _open(self) -> None:
        self.inner.connect()
        self._intrinsics = self.inner.intrinsics

    def _read_next(self):
        if self.i >= self.inner.n_frames:
            return None
        self.i += 1
        return self.inner.render_frame(self.i - 1)

    def _release(self) -> None:
        self.inner.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@needs_model
def test_calibrate_neutral_then_run_with_the_profile(tmp_path, capsys):
    from tracker.stream.recording import StreamLog

    me, js = tmp_path / "me.json", tmp_path / "n.json"
    assert main(["calibrate", "neutral", "--source", "synthetic:5", "--seconds", "1", "--sweep-seconds", "0.5",
                 "--name", "five", "--out", str(me), "--json", str(js)]) == 0  # fmt: skip
    assert "neutral profile from 30 rest frames and 15 sweep frames" in capsys.readouterr().out
    profile = load_profile(me)
    assert profile.name == "five" and json.loads(js.read_text())["frames_seen"] == {"rest": 30, "sweep": 15}
    log = tmp_path / "s.ftlog"
    ep = f"tcp://127.0.0.1:{_free_port()}"
    assert main(["run", "--source", "synthetic:5", "--frames", "8", "--fast", "--publish", ep, "--profile", str(me),
                 "--depth", "off", "--record", str(log)]) == 0  # fmt: skip
    faces = [f for r in StreamLog(log).results() for f in r.result.faces if f.state != "lost"]
    assert faces
    for f in faces:  # every track starts with the profile's identity held
        np.testing.assert_allclose(f.identity[: profile.num_identity], profile.identity, atol=0.05)
    # A bad profile is one error line and exit 2.
    (tmp_path / "bad.json").write_text("{}")
    assert main(["run", "--source", "synthetic:5", "--frames", "2", "--publish", ep, "--profile",
                 str(tmp_path / "bad.json")]) == 2  # fmt: skip
