"""``facetrack demo``: the main job with no camera.

A synthetic animated face (the scripted performance of ``tracker/sources/performance.py``) goes through
the whole pipeline in real time, results are published on ZeroMQ (and received back by a subscriber in
this process, to prove the stream decodes), the preview is rendered headless into an MP4, and the run
ends with a metrics summary.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tools.options import (
    DEFAULT_PUBLISH_ENDPOINT,
    add_json_option,
    add_runtime_options,
    tracker_from_args,
    write_json,
)
from tracker.pipeline.worker import Worker


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="synthetic face -> full pipeline -> ZeroMQ + headless preview MP4 (no camera)")
    p.add_argument("--frames", type=int, default=300, help="frames of the performance (default 300 = 10 s)")
    p.add_argument("--seed", type=int, default=7, help="performance seed (default 7)")
    p.add_argument("--out", type=Path, default=Path("out/demo.mp4"), help="preview video (default out/demo.mp4)")
    p.add_argument("--publish", default=DEFAULT_PUBLISH_ENDPOINT, metavar="EP", help="ZeroMQ endpoint")
    p.add_argument("--fast", action="store_true", help="as fast as possible instead of at 30 fps")
    add_runtime_options(p)
    add_json_option(p)
    p.set_defaults(func=cmd_demo)


class _Listener:
    """A subscriber thread counting decoded results (the stream's own round trip)."""

    def __init__(self, endpoint: str) -> None:
        from tracker.stream.subscriber import Subscriber

        self.sub = Subscriber(endpoint)
        self.received = 0
        self.faces = 0
        self._worker = Worker("demo-listener", self._run).start()

    def _run(self, stop) -> None:
        while not stop.is_set():
            msg = self.sub.recv(timeout_ms=100)
            if msg is not None:
                self.received += 1
                self.faces += len(msg.result.faces)

    def close(self) -> None:
        self._worker.stop()
        self._worker.join(1.0)
        self.sub.close()


def cmd_demo(args) -> int:
    import numpy as np

    from tracker.core.geometry import rotation_angle_deg
    from tracker.pipeline.preview import PreviewSink
    from tracker.pipeline.session import format_report, run_session
    from tracker.render import Renderer
    from tracker.sources.synthetic import SyntheticSource
    from tracker.stream.viewer import VideoSink

    tracker = tracker_from_args(args)
    model = tracker.regressor.face_model
    source = SyntheticSource(args.seed, args.frames, realtime=not args.fast, model=model)
    preview = PreviewSink(Renderer(model), [VideoSink(args.out, fps=30.0)], owns_renderer=True)

    errors: list[float] = []

    def score(frame, result) -> None:
        """Head rotation error against the synthetic ground truth, frame by frame."""
        faces = [f for f in result.faces if f.state != "lost"]
        if faces and frame.ground_truth is not None:
            errors.append(rotation_angle_deg(faces[0].rotation, frame.ground_truth.rotation))

    endpoint = args.publish
    address, _, port = endpoint.rpartition(":")
    # Listen on loopback (a bind to all interfaces "*" includes it); a random port "*" cannot be known here.
    listener = _Listener(f"{address.replace('*', '127.0.0.1')}:{port}") if port != "*" else None
    try:
        report = run_session(source, tracker, endpoint=endpoint, preview=preview, max_frames=args.frames,
                             sinks={"score": score})  # fmt: skip
    finally:
        if listener is not None:
            listener.close()
    print(format_report(report))
    tracked = len(errors) / max(1, report.pipeline.frames_tracked)
    print(f"tracked {tracked:.1%} of frames; head rotation error vs ground truth: mean {np.mean(errors):.2f} deg"
          if errors else "no face tracked")  # fmt: skip
    if listener is not None:
        print(f"subscriber on {endpoint} decoded {listener.received} results")
    print(f"preview: {args.out} ({preview.frames_written} frames)")
    payload = report.to_dict() | {"tracked_fraction": tracked, "rotation_err_deg": float(np.mean(errors)) if errors else None,
                                  "received": listener.received if listener else None, "preview": str(args.out)}  # fmt: skip
    write_json(args.json, payload)
    return 0
