"""Several cameras through a real ``tritonserver`` on loopback: the multi-source pipeline sends the crops
of every camera in one request per tick, so the server runs one execution per tick holding all of them
(skipped, naming the set-up script, where that server is not set up)."""

from __future__ import annotations

import numpy as np
import pytest

from engines import catalog
from engines.triton_repo import TritonModelConfig, export_repository
from tests.engines import triton_harness
from tracker.pipeline.multi import MultiPipeline
from tracker.pipeline.runtime import RuntimeOptions, create_tracker
from tracker.sources.synthetic import SyntheticSource

pytest.importorskip("tritonclient.grpc")

SEEDS = {"cam1": 3, "cam2": 7}
FRAMES = 4


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    why = triton_harness.missing_reason()
    if why is not None:
        pytest.skip(why)
    work = tmp_path_factory.mktemp("triton-multi")
    stub = (str(triton_harness.triton_home() / "stubpy"),)
    # No queue delay: each request is one execution, so the counts show what the client sent together.
    config = TritonModelConfig(max_batch_size=8, preferred_batch_sizes=(), max_queue_delay_us=0, kind="cpu",
                               backend="python", python_path=stub)  # fmt: skip
    export_repository(work / "repo", [(name, catalog.get_entry(name).require()) for name in ("coarsenet", "yunet", "eyenet", "mouthnet", "coarsenet_d")],
                      config)  # fmt: skip
    with triton_harness.running_server(work / "repo", work) as (url, _log):
        yield url


def _run(backend: str, face_model, url: str | None = None):
    options = RuntimeOptions(backend=backend, threads=1, max_batch=8, **({"triton_url": url} if url else {}))
    tracker = create_tracker(options, face_model=face_model)
    counts = None
    try:
        if url is not None:
            import tritonclient.grpc as grpcclient

            client = grpcclient.InferenceServerClient(url=url.removeprefix("grpc://"))

            def stats() -> tuple[int, int]:
                s = client.get_inference_statistics("coarsenet", as_json=True)["model_stats"][0]
                return int(s.get("inference_count", 0)), int(s.get("execution_count", 0))

            before = stats()
        got: dict[str, list] = {name: [] for name in SEEDS}
        trackers = {name: tracker if i == 0 else tracker.sibling() for i, name in enumerate(SEEDS)}
        sources = {name: SyntheticSource(seed, FRAMES, model=face_model) for name, seed in SEEDS.items()}
        pipeline = MultiPipeline(sources, trackers, sinks={"collect": lambda n, f, r: got[n].append(r)})
        pipeline.run()
        if url is not None:
            after = stats()
            client.close()
            counts = (after[0] - before[0], after[1] - before[1])
        return got, pipeline.batch_stats(), counts
    finally:
        tracker.close()


def test_two_cameras_meet_in_one_triton_execution_per_tick(server, face_model):
    got, batch, (inferences, executions) = _run("triton", face_model, server)
    assert {n: len(r) for n, r in got.items()} == {n: FRAMES for n in SEEDS}
    assert (batch.calls, batch.crops) == (FRAMES, 2 * FRAMES)
    assert (inferences, executions) == (2 * FRAMES, FRAMES), "both cameras' crops in one execution per tick"
    ref, _, _ = _run("onnxruntime", face_model)
    for name in SEEDS:
        for a, b in zip(ref[name], got[name], strict=True):
            assert [f.track_id for f in a.faces] == [f.track_id for f in b.faces] == [1]
            np.testing.assert_allclose(b.faces[0].landmarks68, a.faces[0].landmarks68, atol=1e-3, rtol=0)
            np.testing.assert_allclose(b.faces[0].arkit, a.faces[0].arkit, atol=1e-5, rtol=0)
