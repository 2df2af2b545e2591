"""Asset registry: verification, clear errors for corrupt and missing files, archive-independent hashes."""

import shutil
import zipfile

import pytest

from tracker.core import assets
from tracker.core.errors import AssetError


def test_every_registered_asset_verifies():
    for a in assets.REGISTRY:
        st = assets.check(a)
        assert st.state == "ok", (a.name, st)




def test_flipped_byte_gives_error_with_both_hashes(shared_assets, isolated_assets):
    src = shared_assets / assets.get_asset("yunet").relpath
    root = isolated_assets
    dst = root / "yunet" / src.name
    dst.parent.mkdir(parents=True)
    data = bytearray(src.read_bytes())
    data[1000] ^= 0xFF
    dst.write_bytes(bytes(data))
    with pytest.raises(AssetError) as err:
        assets.require("yunet")
    msg = str(err.value)
    expected = assets.get_asset("yunet").sha256
    assert str(dst) in msg and expected in msg and assets.file_sha256(dst) in msg
    assert "facetrack assets fetch yunet --force" in msg


def test_missing_asset_names_file_and_fix(isolated_assets):
    with pytest.raises(AssetError) as err:
        assets.require("mediapipe-canonical-mesh")
    assert "canonical_face_model.obj" in str(err.value) and "facetrack assets fetch" in str(err.value)


def test_unknown_asset():
    with pytest.raises(AssetError, match="unknown asset"):
        assets.get_asset("nope")


def test_ict_content_hash_is_the_same_for_folder_and_zip(tmp_path, shared_assets, isolated_assets):
    archive = shared_assets / assets.get_asset("ict-facekit").relpath
    folder = tmp_path / "x" / "FaceXModel"
    for rel, data in assets.iter_folder_files(archive, "FaceXModel"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    zpath = tmp_path / "ICT-FaceKit-master.zip"
    with zipfile.ZipFile(zpath, "w") as zf:  # GitHub's layout: the folder one level down
        for p in folder.iterdir():
            zf.write(p, f"ICT-FaceKit-master/FaceXModel/{p.name}")
    expected = assets.get_asset("ict-facekit").sha256
    assert assets.folder_content_sha256(folder, "FaceXModel") == expected
    assert assets.folder_content_sha256(zpath, "FaceXModel") == expected
    # a changed model file changes the hash, and the registry reports it
    (folder / "vertex_indices.json").write_text("{}")
    root = isolated_assets
    shutil.copytree(folder, root / "ict-facekit" / "FaceXModel")
    st = assets.check(assets.get_asset("ict-facekit"))
    assert st.state == "mismatch" and st.actual_sha256 != expected


def test_truncated_archive_is_a_clear_error(tmp_path):
    archive = assets.require("ict-facekit")
    cut = tmp_path / "FaceXModel.tar.xz"
    cut.write_bytes(archive.read_bytes()[: 1 << 20])
    with pytest.raises(AssetError, match="truncated or corrupt"):
        assets.folder_content_sha256(cut, "FaceXModel")


def test_recorded_folders_are_searched_without_the_variable(tmp_path, isolated_assets, monkeypatch, shared_assets):
    # What `make demo` leaves behind: the folder recorded in the environment, no variable exported.
    monkeypatch.delenv("FACETRACK_ASSETS")
    assert assets.check(assets.get_asset("yunet")).state == "missing"
    written = assets.record_roots([shared_assets])
    assert written == assets.config_path() and assets.configured_roots() == [(shared_assets).resolve()]
    assert assets.check(assets.get_asset("yunet"), verify=True).state == "ok"
    with pytest.raises(AssetError, match="not a folder"):
        assets.record_roots([tmp_path / "nowhere"])
