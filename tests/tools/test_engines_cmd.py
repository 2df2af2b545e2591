import json

from tools.cli import main


def test_engines_list(capsys, tmp_path):
    out = tmp_path / "list.json"
    assert main(["engines", "list", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "OK      yunet " in text and "input[batch,3,height,width] float32" in text
    data = json.loads(out.read_text())
    assert {m["name"] for m in data["models"]} >= {"yunet", "yunet-640"}
    assert data["backends"]["onnxruntime"] is None


def test_engines_bench_writes_table_and_json(capsys, tmp_path):
    out = tmp_path / "bench.json"
    assert main(["engines", "bench", "--models", "yunet", "--backend", "onnxruntime", "--iters", "3",
                 "--warmup", "1", "--threads", "1", "--json", str(out)]) == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "p50 ms" in text and "yunet" in text
    (row,) = json.loads(out.read_text())["rows"]
    assert row["status"] == "ok" and row["p50_ms"] > 0 and row["items_per_s"] > 0


def test_engines_build_without_gpu_fails_clearly(capsys):
    from engines.backends import tensorrt_backend

    if tensorrt_backend.is_available():
        return  # on a GPU machine `engines build` is exercised by the gpu tests instead
    assert main(["engines", "build"]) == 1
    assert "cannot build TensorRT engines on this machine" in capsys.readouterr().out
