"""The preview viewer: real OpenGL (EGL) rendering of received results, headless into an mp4."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from tests.tracker.stream.helpers import LOOPBACK_ANY, random_face
from tracker.core.geometry import rotation_from_ypr_deg
from tracker.core.types import FaceCoefficients, Intrinsics, TrackResult
from tracker.stream import Publisher, StreamMetadata, Subscriber
from tracker.stream.protocol import Decoder, encode_metadata, encode_result
from tracker.stream.viewer import BACKGROUND_RGB, HeadView, VideoSink, run_viewer

CAM = Intrinsics.from_fov(320, 240, 60)


@pytest.fixture(scope="module")
def renderer(face_model):
    from tracker.render import Renderer

    with Renderer(face_model) as r:
        yield r


def _face(rng, track_id, x_m, z_m, state="tracking"):
    f = random_face(rng, track_id, k=20, state=state)
    f.coefficients = FaceCoefficients(np.zeros(20, np.float32), np.zeros(53, np.float32), rotation_from_ypr_deg(10, 0, 0),
                                      np.array([x_m, 0.0, z_m]), f.lighting)  # fmt: skip
    f.landmarks68 = np.tile(CAM.project(np.array([[x_m, 0.0, z_m]]))[0], (68, 1)).astype(np.float32)
    return f


def _msg(faces):
    meta = StreamMetadata(20, intrinsics=CAM)
    dec = Decoder()
    dec.decode(encode_metadata(meta, session=1, t_publish_ns=0))
    r = TrackResult(7, 1, 2, faces, {}, "test")
    return dec.decode(encode_result(r, meta, seq=0, session=1, t_publish_ns=3))


def test_draw_renders_each_face_where_the_camera_sees_it(renderer, rng):
    view = HeadView(renderer)
    msg = _msg([_face(rng, 1, -0.12, 0.7), _face(rng, 2, 0.12, 0.9), _face(rng, 3, 0.0, 0.5, state="lost")])
    img = view.draw(msg, "HUD text")
    assert img.shape == (240, 320, 3)
    for x_m, z_m in ((-0.12, 0.7), (0.12, 0.9)):
        u, v = CAM.project(np.array([[x_m, 0.05, z_m]]))[0].round().astype(int)  # a bit below the head origin
        assert not np.array_equal(img[v, u], BACKGROUND_RGB)
    centre = img[120, 160]  # between the two heads; the lost face (which would be here) is not drawn
    assert np.array_equal(centre, BACKGROUND_RGB)
    assert img[:24].max() > 200 and np.array_equal(img[30, 5], BACKGROUND_RGB)  # HUD text on a black bar
    bigger = HeadView(renderer, size=(640, 480)).draw(msg, "x")
    assert bigger.shape == (480, 640, 3)


def test_viewer_writes_video_from_a_live_stream(renderer, rng, tmp_path):
    out = tmp_path / "view.mp4"
    stop = threading.Event()
    with (
        Publisher(LOOPBACK_ANY, metadata=StreamMetadata(20, intrinsics=CAM)) as pub,
        Subscriber(pub.endpoint) as sub,
    ):

        def feed():
            i = 0
            while not stop.is_set():
                face = _face(rng, 1, 0.02 * np.sin(i / 5), 0.6)
                face.expression[26] = 0.5 + 0.5 * np.sin(i / 3)  # jawOpen
                t_ns = time.monotonic_ns()
                pub.publish(TrackResult(i, t_ns, t_ns, [face], {}, "test"))
                i += 1
                stop.wait(0.02)

        th = threading.Thread(target=feed)
        th.start()
        sink = VideoSink(out, fps=25)
        try:
            stats = run_viewer(sub, HeadView(renderer), [sink], max_frames=6, idle_timeout_s=10)
        finally:
            sink.close()
            stop.set()
            th.join(5)
    assert stats.frames == 6 and stats.faces_max == 1 and 0 < stats.latency_ms["p50"] < 2000
    cap = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 6 and frames[0].shape == (240, 320, 3)
    assert np.abs(frames[-1][100:200, 130:190].astype(int) - BACKGROUND_RGB[::-1]).max() > 60  # the head
