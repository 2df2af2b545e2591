"""``facetrack engines list|build|bench|export-triton``: the tracker's models on each inference backend."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from tools.options import add_json_option, write_json
from tracker.core.errors import EngineError, TrackerError

log = logging.getLogger(__name__)


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be >= 1, got {text!r}")
    return values


def _index_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated GPU indices, got {text!r}") from None
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(f"GPU indices must be >= 0, got {text!r}")
    return values


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("engines", help="list the models, build TensorRT engines, benchmark the backends")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    v = verbs.add_parser(
        "list", help="catalog models, their files and inputs; backends; cached TensorRT engines"
    )
    add_json_option(v)
    v.set_defaults(func=cmd_list)

    v = verbs.add_parser("build", help="build TensorRT engines for every catalog model (needs a CUDA GPU)")
    v.add_argument(
        "--precision", choices=("fp16", "fp32"), default="fp16", help="engine precision (default fp16)"
    )
    v.add_argument("--models", nargs="+", metavar="NAME", help="catalog models (default: all)")
    v.add_argument("--max-faces", type=int, default=4,
                   help="CoarseNet's largest batch, as `run --max-faces` (default 4): the same profile as the "
                        "tracker's, so `run` finds these engines")  # fmt: skip
    v.add_argument("--rebuild", action="store_true", help="build even when a cached engine exists")
    v.add_argument("--device", type=int, default=0, help="CUDA device index (default 0)")
    add_json_option(v)
    v.set_defaults(func=cmd_build)

    v = verbs.add_parser("bench", help="latency and throughput per model and backend")
    v.add_argument("--backend", choices=("all", "auto", "onnxruntime", "tensorrt", "torch", "triton"), default="all",
                   help="backend to time (default: all local ones; unavailable ones are listed as skipped)")  # fmt: skip
    v.add_argument("--triton-url", default=None, metavar="URL", help="server for --backend triton (grpc://HOST:8001)")
    v.add_argument("--batch", type=_int_list, default=[1], metavar="N[,N...]", help="batch sizes (default 1)")
    v.add_argument("--iters", type=int, default=100, help="timed calls per case (default 100)")
    v.add_argument("--warmup", type=int, default=10, help="untimed calls first (default 10)")
    v.add_argument("--models", nargs="+", metavar="NAME", help="catalog models (default: all)")
    v.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: cores, at most 4)")
    v.add_argument(
        "--precision", choices=("fp16", "fp32"), default="fp16", help="TensorRT precision (default fp16)"
    )
    add_json_option(v)
    v.set_defaults(func=cmd_bench)

    v = verbs.add_parser("export-triton", help="write a Triton Inference Server model repository (YuNet, CoarseNet, the detail networks)")
    v.add_argument("dir", type=Path, metavar="DIR", help="model repository folder (created)")
    v.add_argument("--max-batch", type=int, default=64, help="CoarseNet max_batch_size (default 64; YuNet: 8)")
    v.add_argument("--preferred-batch", type=_int_list, default=[4, 8, 16], metavar="N[,N...]",
                   help="dynamic batcher's preferred batch sizes (default 4,8,16)")  # fmt: skip
    v.add_argument("--queue-delay-us", type=int, default=2000,
                   help="longest wait of a request to join a batch, microseconds (default 2000)")  # fmt: skip
    v.add_argument("--instances", type=int, default=1, help="model instances per GPU (default 1)")
    v.add_argument("--kind", choices=("gpu", "cpu"), default="gpu", help="instance kind (default gpu)")
    v.add_argument("--gpus", type=_index_list, default=None, metavar="N[,N...]", help="GPU indices (default all)")
    v.add_argument("--triton-backend", choices=("onnxruntime", "python"), default="onnxruntime",
                   help="onnxruntime: the stock server's ONNX Runtime backend; python: model.py running ONNX "
                        "Runtime in Triton's Python backend (servers without the ONNX Runtime backend)")  # fmt: skip
    v.add_argument("--accelerator", choices=("none", "tensorrt"), default="none",
                   help="tensorrt: ONNX Runtime's TensorRT provider on GPU instances (default none)")  # fmt: skip
    v.add_argument("--precision", choices=("fp16", "fp32"), default="fp16", help="accelerator precision")
    v.add_argument("--models", nargs="+", metavar="NAME", default=["yunet", "coarsenet", "eyenet", "mouthnet", "coarsenet_d"],
                   help="catalog models with a dynamic batch (default: all five the tracker runs)")  # fmt: skip
    add_json_option(v)
    v.set_defaults(func=cmd_export_triton)


def cmd_list(args) -> int:
    from engines import catalog
    from engines.engine_cache import EngineCache
    from engines.factory import backend_status, create_engine

    models = []
    print("models:")
    for entry in catalog.CATALOG:
        path = entry.locate()
        rec = {"name": entry.name, "source": entry.source, "path": path, "description": entry.description,
               "bench_shapes": dict(entry.bench_shapes), "inputs": [], "outputs": []}  # fmt: skip
        if path is None:
            print(f"  MISSING {entry.name:<16} {entry.source}: no file yet - {entry.description}")
        else:
            try:
                with create_engine(path, "onnxruntime", intra_op_threads=1) as eng:
                    rec["inputs"] = [s.describe() for s in eng.inputs]
                    rec["outputs"] = [s.describe() for s in eng.outputs]
                state = "OK"
            except TrackerError as exc:
                state, rec["error"] = "BROKEN", str(exc)
            print(f"  {state:<7} {entry.name:<16} {path}\n          {entry.description}")
            if rec["inputs"]:
                n_out = len(rec["outputs"])
                print(
                    f"          in: {', '.join(rec['inputs'])}; {n_out} output(s): {rec['outputs'][0]}{' ...' * (n_out > 1)}"
                )
            if "error" in rec:
                print(f"          {rec['error']}")
        models.append(rec)
    print("backends:")
    status = backend_status()
    for name, why in status.items():
        print(f"  {'OK' if why is None else 'NO':<7} {name}{'' if why is None else ': ' + why}")
    cached = EngineCache().entries()
    print(f"cached TensorRT engines ({EngineCache().root}): {len(cached) or 'none'}")
    for rec in cached:
        print(
            f"  {rec.get('file')}  {rec.get('precision')}  {rec.get('gpu_name')}  TensorRT {rec.get('tensorrt_version')}"
        )
    write_json(args.json, {"models": models, "backends": status, "tensorrt_engines": cached})
    return 0


def cmd_build(args) -> int:
    from engines import catalog
    from engines.backends import tensorrt_backend as trt_backend

    why = trt_backend.unavailable_reason(args.device)
    if why is not None:
        print(f"cannot build TensorRT engines on this machine: {why}")
        print(
            "engines are built on (and for) the machine with the NVIDIA GPU that runs them; run this there."
        )
        write_json(args.json, {"built": [], "error": why})
        return 1
    results = []
    for entry in catalog.select(args.models):
        path = entry.locate()
        if path is None:
            print(f"SKIP  {entry.name}: {entry.source} does not exist yet")
            results.append({"model": entry.name, "status": "skipped", "note": f"{entry.source} missing"})
            continue
        try:
            max_batch = catalog.runtime_max_batch(entry, args.max_faces)
            build = trt_backend.build_engines([(entry.require(), catalog.runtime_profile(entry, args.max_faces))],
                                              args.precision, max_batch, args.device, args.rebuild)[0]  # fmt: skip
        except EngineError as exc:
            print(f"FAIL  {entry.name}: {exc}")
            results.append({"model": entry.name, "status": "error", "note": str(exc)})
            continue
        verb = "BUILT" if build.built else "CACHED"
        print(f"{verb:<6}{entry.name}: {build.path} ({build.seconds:.1f} s)")
        results.append({"model": entry.name, "status": verb.lower(), "path": build.path, "seconds": build.seconds,
                        "key": build.key.to_dict()})  # fmt: skip
    write_json(args.json, {"precision": args.precision, "built": results})
    return 1 if any(r["status"] == "error" for r in results) else 0


def cmd_bench(args) -> int:
    from engines import bench, catalog
    from engines.factory import resolve_backend

    # "all" is every local backend: a Triton server is only timed when asked for (--backend triton).
    backends = bench.all_backends() if args.backend == "all" else [resolve_backend(args.backend)]
    options = {"intra_op_threads": args.threads, "precision": args.precision, "triton_url": args.triton_url}
    rows = bench.run_benchmarks(catalog.select(args.models), backends, args.batch, args.iters, args.warmup, options,
                                progress=lambda s: log.info("timing %s", s))  # fmt: skip
    print(bench.format_table(rows))
    write_json(args.json, {"machine": bench.machine_info(), "iters": args.iters, "warmup": args.warmup,
                           "rows": [dataclasses.asdict(r) for r in rows]})  # fmt: skip
    return 1 if any(r.status == "error" for r in rows) else 0


def _python_path(args) -> tuple[str, ...]:
    """For the Python backend: where this interpreter finds numpy and onnxruntime (the stub needs them)."""
    if args.triton_backend != "python":
        return ()
    import numpy
    import onnxruntime

    return tuple(dict.fromkeys(str(Path(m.__file__).resolve().parents[1]) for m in (numpy, onnxruntime)))


def cmd_export_triton(args) -> int:
    from engines import catalog
    from engines.triton_repo import TritonModelConfig, export_repository

    cfg = TritonModelConfig(max_batch_size=args.max_batch, preferred_batch_sizes=tuple(args.preferred_batch),
                            max_queue_delay_us=args.queue_delay_us, instance_count=args.instances, kind=args.kind,
                            gpus=tuple(args.gpus or ()), backend=args.triton_backend, accelerator=args.accelerator,
                            precision=args.precision, python_path=_python_path(args))  # fmt: skip
    written = []
    for entry in catalog.select(args.models):
        if not entry.dynamic_batch:
            raise EngineError(f"model {entry.name!r} has a fixed batch of 1; Triton's batcher needs a dynamic batch")
        model_cfg = cfg
        if not entry.per_face:
            # Whole frames: a handful per batch is plenty and keeps the server's buffers small.
            small = min(cfg.max_batch_size, 8)
            model_cfg = dataclasses.replace(cfg, max_batch_size=small,
                                            preferred_batch_sizes=tuple(b for b in cfg.preferred_batch_sizes if b <= small))  # fmt: skip
        written += export_repository(args.dir, [(entry.name, entry.require())], model_cfg)
    for m in written:
        print(f"wrote {m.config_path.parent}: {', '.join(s.describe() for s in m.inputs)} -> {len(m.outputs)} output(s)")
    print(f"serve it: tritonserver --model-repository {args.dir}  (gRPC on port 8001); then "
          f"facetrack run --backend triton --triton-url grpc://HOST:8001 ...")  # fmt: skip
    write_json(args.json, {"repository": args.dir, "models": [{"name": m.name, "config": m.config_path, "model": m.model_path}
                                                              for m in written]})  # fmt: skip
    return 0
