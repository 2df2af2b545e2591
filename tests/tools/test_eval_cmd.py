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
