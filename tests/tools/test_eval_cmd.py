import json

from tools.cli import main


def test_eval_detection_writes_json_and_png(shared_data, tmp_path, capsys):
    out = tmp_path / "det.json"
    rc = main(["eval", "detection", "--images", str(shared_data / "landmarks68" / "misc"), "--timing-frames", "3",
               "--json", str(out)])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert "detection rate:" in text and "detect() at 640x480" in text
    d = json.loads(out.read_text())
    assert d["n"] == 7 and 0.0 <= d["detection_rate"] <= 1.0
    assert d["settings"]["input_size"] == [320, 320]
    assert out.with_suffix(".png").is_file()


def test_eval_detection_bad_folder_is_error_exit(tmp_path):
    assert main(["eval", "detection", "--images", str(tmp_path)]) == 2


def test_eval_synthetic_over_seeds_and_with_depth(tmp_path, capsys):
    scores = {}
    for depth in ("off", "auto"):
        out = tmp_path / f"synthetic_{depth}.json"
        rc = main(["eval", "synthetic", "--frames", "12", "--seed", "2000", "--seeds", "2", "--depth", depth,
                   "--threads", "1", "--json", str(out)])  # fmt: skip
        assert rc == 0
        d = json.loads(out.read_text())
        assert [r["seed"] for r in d["per_seed"]] == [2000, 2001] and d["frames"] == 24
        mean = sum(r["translation_err_mm"] for r in d["per_seed"]) / 2
        assert abs(d["translation_err_mm"] - mean) < 1e-9
        assert 0.0 <= d["translation_err_mm_over_seeds"]["fraction_le_25"] <= 1.0
        assert out.with_suffix(".png").is_file()
        scores[depth] = d["translation_err_mm"]
    assert "seed 2001: translation_err_mm" in capsys.readouterr().out
    # the aligned depth removes the head-size error colour leaves (~20 mm on these two heads)
    assert scores["auto"] < 0.5 * scores["off"]


def test_eval_synthetic_with_occluder_and_noise(tmp_path, capsys):
    nme = {}
    for flags in ([], ["--occluder", "--noise"]):
        out = tmp_path / f"synthetic{len(flags)}.json"
        rc = main(["eval", "synthetic", "--frames", "4", "--seed", "2000", *flags, "--threads", "1", "--json", str(out)])
        assert rc == 0
        d = json.loads(out.read_text())
        assert d["frames"] == 4 and [r["frame"] for r in d["rows"]] == [0, 1, 2, 3]
        nme[len(flags)] = d["landmark_nme"]
    assert "tracked_fraction" in capsys.readouterr().out
    assert nme[2] > nme[0] + 1.0  # the hand reached the tracker (it hides landmarks)


def test_eval_synthetic_rejects_zero_seeds():
    assert main(["eval", "synthetic", "--frames", "2", "--seeds", "0"]) == 2


def test_eval_expressions_and_compare_write_json_and_png(shared_data, tmp_path, capsys):
    import pytest

    pytest.importorskip("mediapipe")
    clip = str(shared_data / "videos" / "liveportrait_d19.mp4")
    out = tmp_path / "expr.json"
    assert main(["eval", "expressions", "--video", clip, "--frames", "5", "--threads", "1", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "mirror check facetrack:" in text and "mirror check mediapipe:" in text and "r: jawOpen" in text
    d = json.loads(out.read_text())
    assert d["frames"] == 5 and len(d["channels"]) == 52 and out.with_suffix(".png").is_file()
    out = tmp_path / "cmp.json"
    assert main(["eval", "compare", "--video", clip, "--frames", "5", "--threads", "1", "--json", str(out)]) == 0
    assert "x faster" in capsys.readouterr().out
    d = json.loads(out.read_text())
    assert d["frames"] == 5 and {"speedup", "jitter_ratio", "facetrack", "mediapipe"} <= set(d)
    assert out.with_suffix(".png").is_file()


def test_eval_expressions_and_compare_missing_video_is_error_exit(tmp_path, caplog):
    for verb in ("expressions", "compare"):
        caplog.clear()
        assert main(["eval", verb, "--video", str(tmp_path / "none.mp4")]) == 2
        assert "video file not found" in caplog.text
