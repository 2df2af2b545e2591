"""``facetrack run --source SRC``: live tracking from a camera, video, images, RealSense or synthetic source."""

from __future__ import annotations

import argparse
from pathlib import Path

from tools.options import (
    add_json_option,
    add_publish_option,
    add_runtime_options,
    tracker_from_args,
    write_json,
)

SOURCES_HELP = "webcam:N | video:PATH | images:DIR | synthetic | realsense | realsense:RECORDING"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="track faces from a source and stream the results over ZeroMQ")
    p.add_argument("--source", required=True, metavar="SRC", help=SOURCES_HELP)
    add_publish_option(p)
    p.add_argument("--preview", action="store_true", help="show the tracked mesh in a window (needs a display)")
    p.add_argument("--out", type=Path, metavar="FILE.mp4", help="write the preview into a video")
    p.add_argument("--record", type=Path, metavar="FILE", help="record the stream into a log (facetrack replay)")
    p.add_argument("--frames", type=int, help="stop after N frames")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--curve-keys", type=Path, metavar="DIR", help="encrypt the stream (facetrack stream keygen)")
    p.add_argument("--fast", action="store_true", help="files: as fast as possible instead of at their frame rate")
    add_runtime_options(p)
    add_json_option(p)
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    from tracker.pipeline.preview import PreviewSink
    from tracker.pipeline.session import format_report, run_session
    from tracker.render import Renderer
    from tracker.sources import open_source
    from tracker.stream.viewer import VideoSink, WindowSink, has_display

    outputs = []
    if args.preview:
        if has_display():
            outputs.append(WindowSink("facetrack"))
        elif args.out is None:
            print("no display for --preview; writing the preview to out/preview.mp4 instead")
            args.out = Path("out/preview.mp4")
    tracker = tracker_from_args(args)
    kind, _, arg = args.source.partition(":")
    is_file = kind in ("video", "synthetic") or (kind == "realsense" and arg.endswith((".bag", ".db3")))
    options = {"realtime": not args.fast} if is_file else {}
    source = open_source(args.source, **options)
    if args.out is not None:
        outputs.append(VideoSink(args.out, fps=30.0))
    preview = PreviewSink(Renderer(tracker.regressor.face_model), outputs, owns_renderer=True) if outputs else None
    report = run_session(source, tracker, endpoint=args.publish, preview=preview, record_path=args.record,
                         max_frames=args.frames, duration_s=args.duration, curve_keys_dir=args.curve_keys)  # fmt: skip
    print(format_report(report))
    write_json(args.json, report.to_dict())
    return 0
