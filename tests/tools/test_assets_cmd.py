from tools.cli import main


def test_assets_verify_reports_ok(capsys, tmp_path):
    out = tmp_path / "v.json"
    assert main(["assets", "verify", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "all 5 assets OK" in text and out.exists()


def test_assets_verify_fails_on_missing(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("FACETRACK_ASSETS", str(tmp_path))
    monkeypatch.setenv("FACETRACK_CACHE", str(tmp_path / "c"))
    assert main(["assets", "verify"]) == 1
    assert "MISSING" in capsys.readouterr().out


def test_assets_path_missing_is_error_exit(monkeypatch, tmp_path):
    monkeypatch.setenv("FACETRACK_ASSETS", str(tmp_path))
    monkeypatch.setenv("FACETRACK_CACHE", str(tmp_path / "c"))
    assert main(["assets", "path", "yunet"]) == 2
