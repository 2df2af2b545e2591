import builtins

import cv2
import numpy as np
import pytest

from engines.teacher import mediapipe_landmarker as mpl
from tracker.core.errors import ConfigError, EngineError
from tracker.evaluation.ibug import read_pts


def test_image_mode_landmarks_sit_on_the_annotated_face(shared_data):
    pytest.importorskip("mediapipe")
    jpg = shared_data / "landmarks68" / "helen" / "296814969_3.jpg"
    image = cv2.imread(str(jpg))[:, :, ::-1].copy()
    gt = read_pts(jpg.with_suffix(".pts"))  # 0-based
    with mpl.MediaPipeTeacher(blendshapes=True) as teacher:
        faces = teacher.detect(image)
    assert len(faces) == 1
    f = faces[0]
    assert f.landmarks_px.shape == (478, 2) and f.blendshapes.shape == (52,)
    # MediaPipe's outer eye corners (33, 263) and mouth corners (61, 291) vs the iBUG annotation.
    size = np.sqrt(np.prod(gt.max(0) - gt.min(0)))
    for mp_id, ibug in ((33, 36), (263, 45), (61, 48), (291, 54)):
        assert np.linalg.norm(f.landmarks_px[mp_id] - gt[ibug]) < 0.08 * size
    box = f.box_xyxy
    assert box[0] < gt[:, 0].min() + 0.1 * size and box[2] > gt[:, 0].max() - 0.1 * size


def test_video_mode_needs_increasing_timestamps(shared_data):
    pytest.importorskip("mediapipe")
    cap = cv2.VideoCapture(str(shared_data / "videos" / "liveportrait_d19.mp4"))
    frames = [cap.read()[1][:, :, ::-1].copy() for _ in range(3)]
    cap.release()
    with mpl.MediaPipeTeacher(mode="video") as teacher:
        tracks = [teacher.detect(f, timestamp_ms=33 * i)[0].landmarks_px for i, f in enumerate(frames)]
        with pytest.raises(ConfigError, match="increase"):
            teacher.detect(frames[0], timestamp_ms=0)
    assert np.abs(tracks[1] - tracks[0]).mean() < 5.0  # a near-static head


def test_missing_mediapipe_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name.startswith("mediapipe"):
            raise ImportError("No module named 'mediapipe'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(EngineError, match=r"facetrack\[teacher\]"):
        mpl.MediaPipeTeacher()
