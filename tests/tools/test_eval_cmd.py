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


def test_eval_synthetic_rejects_zero_seeds():
    assert main(["eval", "synthetic", "--frames", "2", "--seeds", "0"]) == 2
