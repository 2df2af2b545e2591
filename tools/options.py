"""Option groups shared by several subcommands, defined once."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_PUBLISH_ENDPOINT = "tcp://127.0.0.1:5555"


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")


def add_connect_option(parser: argparse.ArgumentParser, default: str = DEFAULT_PUBLISH_ENDPOINT) -> None:
    parser.add_argument("--connect", default=default, metavar="EP", help=f"ZeroMQ endpoint to subscribe to (default {default})")


def add_publish_option(parser: argparse.ArgumentParser, default: str | None = DEFAULT_PUBLISH_ENDPOINT) -> None:
    parser.add_argument(
        "--publish", default=default, metavar="EP",
        help=f"ZeroMQ endpoint to bind the result stream to (default {default}; loopback only unless you ask)",
    )  # fmt: skip


def add_curve_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--curve-keys", type=Path, metavar="DIR",
        help="encrypt and authenticate the stream with ZeroMQ CURVE keys from DIR (`facetrack stream keygen DIR`)",
    )  # fmt: skip


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: Path | None, payload: dict) -> None:
    """Writes ``payload`` (numpy values allowed) to ``path`` if given."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(payload), indent=2) + "\n")
    log.info("wrote %s", path)


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    """Networks and tracking options shared by run, demo and eval."""
    g = parser.add_argument_group("runtime")
    g.add_argument("--backend", default="auto", choices=("auto", "onnxruntime", "tensorrt", "triton"),
                   help="inference backend (default auto: TensorRT with a GPU, else ONNX Runtime)")  # fmt: skip
    g.add_argument("--precision", choices=("fp16", "fp32"), default="fp16", help="TensorRT precision (default fp16)")
    g.add_argument("--gpu", type=int, default=0, metavar="N", help="CUDA device index (default 0)")
    g.add_argument("--triton-url", default="grpc://127.0.0.1:8001", metavar="URL",
                   help="Triton server for --backend triton (default grpc://127.0.0.1:8001)")  # fmt: skip
    g.add_argument("--model", type=Path, help="CoarseNet ONNX (default: engines/weights/coarsenet_v1.onnx)")
    g.add_argument("--no-detail", action="store_true",
                   help="CoarseNet's expressions alone, without the eye and mouth detail networks")
    g.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads per network (default 2)")
    g.add_argument("--detector-size", type=int, default=320, help="YuNet input side in px (default 320)")
    g.add_argument("--no-filter", action="store_true", help="turn temporal (One Euro) filtering off")
    g.add_argument("--no-flow", action="store_true", help="do not shift crops by optical flow")
    g.add_argument("--depth", choices=("auto", "scale", "icp", "off"), default="auto",
                   help="on RGB-D sources (RealSense, synthetic): auto: the head's size from the aligned depth and "
                        "its pose from CoarseNet-D, the learned rigid alignment (scale where its weights are not "
                        "installed); scale: the size alone, colour pose; icp: scale, then a point-to-plane ICP of "
                        "the pose (a baseline for comparison); off: colour alone (default %(default)s)")  # fmt: skip
    g.add_argument("--detect-every", type=int, default=30, help="run the detector at least every N frames")
    g.add_argument("--max-faces", type=int, default=4, help="most faces tracked at once (default 4)")
    g.add_argument("--profile", type=Path, metavar="ME.json",
                   help="per-user neutral profile (`facetrack calibrate neutral`): hold that identity and map "
                        "each expression so the rest face reads 0")  # fmt: skip


def _profile(args):
    from calibration.neutral import load_profile

    path = getattr(args, "profile", None)
    return None if path is None else load_profile(path)


def tracker_from_args(args, max_batch: int | None = None):
    """A :class:`tracker.tracking.Tracker` configured from :func:`add_runtime_options`'s arguments.

    ``max_batch``: the largest CoarseNet batch to plan for (several cameras: cameras x ``--max-faces``);
    None: ``--max-faces``."""
    from tracker.pipeline.runtime import RuntimeOptions, create_tracker
    from tracker.tracking import TrackerConfig

    config = TrackerConfig(detect_every_n_frames=args.detect_every, max_faces=args.max_faces,
                           use_optical_flow=not args.no_flow,
                           use_depth=args.depth != "off", depth_icp=args.depth == "icp",
                           depth_align=args.depth == "auto", profile=_profile(args), **({"filter": None} if args.no_filter else {}))  # fmt: skip
    return create_tracker(RuntimeOptions(args.backend, args.model, args.threads, args.detector_size,
                                         precision=args.precision, gpu=args.gpu, triton_url=args.triton_url,
                                         max_batch=max_batch, detail=not args.no_detail), config)  # fmt: skip


def on_sigterm(handler):
    """Makes `kill` (SIGTERM) end a command as cleanly as Ctrl-C; returns the previous handler."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None  # signals can only be handled in the main thread (e.g. when called from tests)
    return signal.signal(signal.SIGTERM, lambda *_: handler())
