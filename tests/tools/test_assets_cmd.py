from tools.cli import main


def test_assets_verify_reports_ok(capsys, tmp_path):
    out = tmp_path / "v.json"
    assert main(["assets", "verify", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "all 5 assets OK" in text and out.exists()


def test_assets_verify_fails_on_missing(isolated_assets, capsys):
    assert main(["assets", "verify"]) == 1
    assert "MISSING" in capsys.readouterr().out


def test_assets_path_missing_is_error_exit(isolated_assets):
    assert main(["assets", "path", "yunet"]) == 2


def test_assets_list_fails_while_a_required_asset_is_missing(isolated_assets, capsys):
    assert main(["assets", "list"]) == 1
    out = capsys.readouterr().out
    assert "MISSING" in out and "required asset(s) missing or corrupt: ict-facekit, yunet-dynamic" in out


def test_assets_use_records_the_folder_for_later_shells(isolated_assets, monkeypatch, shared_assets, tmp_path):
    monkeypatch.delenv("FACETRACK_ASSETS")
    assert main(["assets", "use", str(shared_assets)]) == 0
    assert main(["assets", "list"]) == 0  # found through the recorded folder alone
    assert main(["assets", "use", str(tmp_path / "no-such-folder")]) == 2
