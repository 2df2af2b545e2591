"""Triton: the model repository `engines export-triton` writes (parsed with Triton's own protobuf schema),
the `triton` backend's errors, and a real round trip and cross-client batching through a real
``tritonserver`` on loopback (skipped, naming the set-up script, where that server is not set up)."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest

from engines import catalog
from engines.factory import create_engine
from engines.options import OrtOptions, TritonOptions
from engines.triton_repo import TritonModelConfig, export_repository
from tests.engines import triton_harness
from tools.cli import main
from tracker.core.errors import EngineError

pytest.importorskip("tritonclient.grpc")
from google.protobuf import text_format  # noqa: E402 - after the skip: tritonclient brings protobuf
from tritonclient.grpc import model_config_pb2  # noqa: E402


def _parse(path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_export_triton_writes_a_repository_a_stock_server_reads(tmp_path, capsys):
    repo = tmp_path / "repo"
    assert main(["engines", "export-triton", str(repo), "--max-batch", "32", "--preferred-batch", "4,8",
                 "--instances", "2", "--gpus", "0,1", "--accelerator", "tensorrt"]) == 0  # fmt: skip
    assert "serve it: tritonserver --model-repository" in capsys.readouterr().out
    coarse = _parse(repo / "coarsenet/config.pbtxt")
    assert (coarse.name, coarse.backend, coarse.max_batch_size) == ("coarsenet", "onnxruntime", 32)
    assert list(coarse.dynamic_batching.preferred_batch_size) == [4, 8]
    assert coarse.dynamic_batching.max_queue_delay_microseconds == 2000
    (group,) = coarse.instance_group
    assert (group.count, group.kind, list(group.gpus)) == (2, model_config_pb2.ModelInstanceGroup.KIND_GPU, [0, 1])
    (accel,) = coarse.optimization.execution_accelerators.gpu_execution_accelerator
    assert accel.name == "tensorrt" and accel.parameters["precision_mode"] == "FP16"
    (inp,) = coarse.input
    assert (inp.name, inp.data_type, list(inp.dims)) == ("image", model_config_pb2.TYPE_FP32, [3, 128, 128])
    with create_engine(catalog.get_entry("coarsenet").require(), "onnxruntime", OrtOptions(intra_op_threads=1)) as eng:
        want = {s.name: list(s.shape[1:]) for s in eng.outputs}
    assert {o.name: list(o.dims) for o in coarse.output} == want
    assert (repo / "coarsenet/1/model.onnx").read_bytes() == catalog.get_entry("coarsenet").require().read_bytes()
    yunet = _parse(repo / "yunet/config.pbtxt")
    assert yunet.max_batch_size == 8 and list(yunet.input[0].dims) == [3, -1, -1], "frames: any size, batch <= 8"


def test_python_backend_variant(tmp_path):
    cfg = TritonModelConfig(kind="cpu", backend="python", python_path=("/opt/a", "/opt/b"), threads=2)
    (m,) = export_repository(tmp_path, [("coarsenet", catalog.get_entry("coarsenet").require())], cfg)
    parsed = _parse(m.config_path)
    assert parsed.backend == "python" and parsed.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert parsed.parameters["python_path"].string_value == "/opt/a:/opt/b"
    compile((m.model_path.parent / "model.py").read_text(), "model.py", "exec")


def test_bad_repository_settings():
    with pytest.raises(EngineError, match="preferred batch sizes"):
        TritonModelConfig(max_batch_size=4, preferred_batch_sizes=(8,))
    with pytest.raises(EngineError, match="tensorrt accelerator needs GPU instances"):
        TritonModelConfig(kind="cpu", accelerator="tensorrt")


def test_unreachable_server_is_one_clear_error(tmp_path):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    engine = create_engine(tmp_path / "coarsenet.onnx", "triton", TritonOptions(url=f"grpc://127.0.0.1:{port}",
                                                                                 timeout_s=0.5))  # fmt: skip
    with pytest.raises(EngineError, match=rf"Triton server 127.0.0.1:{port}, model 'coarsenet': unreachable"):
        engine.activate()
    assert not engine.is_active


# ------------------------------------------------------------------------------ against a real server
@pytest.fixture(scope="module")
def server(tmp_path_factory):
    why = triton_harness.missing_reason()
    if why is not None:
        pytest.skip(why)
    work = tmp_path_factory.mktemp("triton")
    stub = (str(triton_harness.triton_home() / "stubpy"),)
    quick = TritonModelConfig(max_batch_size=8, preferred_batch_sizes=(), max_queue_delay_us=0, kind="cpu",
                              backend="python", python_path=stub)  # fmt: skip
    # A long queue delay with preferred batch 2: two clients' single crops must meet in one execution.
    pairing = dataclasses.replace(quick, preferred_batch_sizes=(2,), max_queue_delay_us=3_000_000)
    coarse = catalog.get_entry("coarsenet").require()
    export_repository(work / "repo", [(n, catalog.get_entry(n).require()) for n in ("coarsenet", "yunet", "eyenet",
                                                                                  "mouthnet", "coarsenet_d")], quick)  # fmt: skip
    export_repository(work / "repo", [(PAIRED, coarse)], pairing)
    with triton_harness.running_server(work / "repo", work) as (url, log_path):
        yield url, log_path


PAIRED = "coarsenet_paired"


def _crops(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 3, 128, 128)).astype(np.float32)


def test_triton_backend_gives_the_onnxruntime_results(server):
    url, _ = server
    path = catalog.get_entry("coarsenet").require()
    x = _crops(3, 0)
    with create_engine(path, "onnxruntime", OrtOptions(device="cpu", intra_op_threads=1)) as ort_engine:
        want = ort_engine.infer({"image": x})
    with create_engine(path, "triton", TritonOptions(url=url, model_name="coarsenet")) as engine:
        assert engine.backend == "triton" and engine.max_batch_size == 8
        got = engine.infer({"image": x})
        with pytest.raises(EngineError, match="exceeds the model's max_batch_size 8"):
            engine.infer({"image": _crops(9, 1)})
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-4, rtol=0, err_msg=k)


def test_two_sources_are_batched_by_the_server(server):
    import tritonclient.grpc as grpcclient

    url, _ = server
    path = catalog.get_entry("coarsenet").require()
    host_port = url.removeprefix("grpc://")
    stats_client = grpcclient.InferenceServerClient(url=host_port)

    def counts() -> tuple[int, int]:
        s = stats_client.get_inference_statistics(PAIRED, as_json=True)["model_stats"][0]
        return int(s.get("inference_count", 0)), int(s.get("execution_count", 0))

    before = counts()
    engines = [create_engine(path, "triton", TritonOptions(url=url, model_name=PAIRED, timeout_s=30))
               for _ in range(2)]  # fmt: skip
    results: dict[int, dict] = {}
    gate = threading.Barrier(2)

    def camera(i: int) -> None:
        with engines[i] as engine:
            gate.wait()
            results[i] = engine.infer({"image": _crops(1, 10 + i)})

    threads = [threading.Thread(target=camera, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    after = counts()
    stats_client.close()
    assert sorted(results) == [0, 1]
    assert (after[0] - before[0], after[1] - before[1]) == (2, 1), "two sources' crops, one batched execution"
    with create_engine(path, "onnxruntime", OrtOptions(device="cpu", intra_op_threads=1)) as ort_engine:
        for i in range(2):
            want = ort_engine.infer({"image": _crops(1, 10 + i)})
            np.testing.assert_allclose(results[i]["identity"], want["identity"], atol=1e-4, rtol=0)


def test_a_tracker_runs_on_triton_as_on_onnxruntime(server, face_model):
    from tracker.pipeline.runtime import RuntimeOptions, create_tracker
    from tracker.sources.synthetic import SyntheticSource

    url, _ = server
    runs = {}
    for backend in ("onnxruntime", "triton"):
        with create_tracker(RuntimeOptions(backend=backend, threads=1, triton_url=url), face_model=face_model) as t:
            assert t.regressor.engine.backend == backend and t.detector.engine.backend == backend
            with SyntheticSource(7, 6, model=face_model) as source:
                runs[backend] = [t.process(frame) for frame in source]
    for ref, got in zip(runs["onnxruntime"], runs["triton"], strict=True):
        assert len(ref.faces) == len(got.faces) == 1
        np.testing.assert_allclose(got.faces[0].landmarks68, ref.faces[0].landmarks68, atol=1e-3)
        np.testing.assert_allclose(got.faces[0].arkit, ref.faces[0].arkit, atol=1e-5)
