import json

import pytest

from tools.cli import main

pytest.importorskip("pyrealsense2")


def test_record_realsense_then_play_it_back(tmp_path, capsys):
    from tracker.sources import open_source

    out = tmp_path / "take.db3"
    rc = main(["record-realsense", "--source", "synthetic", "--frames", "4", "--seed", "2", "--width", "96",
               "--height", "72", "--depth-size", "48x36", "--out", str(out), "--json", str(tmp_path / "r.json")])  # fmt: skip
    assert rc == 0 and "recorded 4 frames" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["frames"] == 4
    with open_source(f"realsense:{out}") as src:
        frames = list(src)
    assert len(frames) == 4 and src.aligns_depth
    assert frames[0].depth.shape == (72, 96) and frames[0].depth.max() > 0


def test_record_realsense_refuses_bag_and_sources_without_depth(tmp_path, shared_data):
    assert main(["record-realsense", "--frames", "2", "--out", str(tmp_path / "x.bag")]) == 2
    clip = shared_data / "videos" / "liveportrait_d0.mp4"
    assert (
        main(
            [
                "record-realsense",
                "--source",
                f"video:{clip}",
                "--frames",
                "2",
                "--out",
                str(tmp_path / "v.db3"),
            ]
        )
        == 2
    )
