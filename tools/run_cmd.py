"""``facetrack run --source SRC``: live tracking from a camera, video, images, RealSense or synthetic source.

Several ``--source [NAME=]SRC`` values track several cameras in one process: one tracker per camera over
one detector and one regressor (loaded once), the crops of every camera in one regressor call per tick,
and each camera on its own stream topics (``facetrack.result/NAME``, docs/protocol.md).
"""

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
    p.add_argument("--source", required=True, action="append", metavar="[NAME=]SRC",
                   help=f"{SOURCES_HELP}; repeat for several cameras, each optionally named (cam1=webcam:0; "
                        "default s0, s1, ...): one stream topic per camera, one regressor batch per tick")  # fmt: skip
    add_publish_option(p)
    p.add_argument("--preview", action="store_true", help="show the tracked mesh in a window (needs a display)")
    p.add_argument("--out", type=Path, metavar="FILE.mp4", help="write the preview into a video")
    p.add_argument("--record", type=Path, metavar="FILE", help="record the stream into a log (facetrack replay)")
    p.add_argument("--frames", type=int, help="stop after N frames")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--curve-keys", type=Path, metavar="DIR", help="encrypt the stream (facetrack stream keygen)")
    pace = p.add_mutually_exclusive_group()
    pace.add_argument("--fast", action="store_true",
                      help="files: as fast as possible (every frame is still tracked)")  # fmt: skip
    pace.add_argument("--realtime", action="store_true",
                      help="files: like a camera, at their frame rate, dropping frames when the tracker falls "
                           "behind (reported); by default a file plays at its rate and every frame is tracked")  # fmt: skip
    p.add_argument("--csv", type=Path, metavar="PATH",
                   help="write results as they complete: one row per face per frame (the export-csv columns)")
    p.add_argument("--csv-format", "--format", dest="csv_format", choices=("arkit", "livelink"), default="arkit",
                   help="--csv columns: facetrack's ARKit table, or a Live Link Face take (Unreal)")
    p.add_argument("--jsonl", type=Path, metavar="PATH",
                   help="write results as they complete: one JSON line per frame (pose, ARKit, landmarks, state)")
    add_runtime_options(p)
    add_json_option(p)
    p.set_defaults(func=cmd_run)


def _configure_pacing(source, args, spec: str) -> None:
    if not source.is_live:
        # Files, image folders, recordings and the synthetic source: paced unless --fast; lossless unless
        # --realtime asks them to behave like a camera.
        if hasattr(source, "realtime"):
            source.realtime = not args.fast
        source.drop_when_behind = bool(args.realtime)
    elif args.fast or args.realtime:
        print(f"note: --fast/--realtime apply to files; {spec} is a live source")


def _preview_windows(args) -> list:
    """The preview window for ``--preview`` (none without a display: then ``--out`` defaults to a file)."""
    from tracker.stream.viewer import WindowSink, has_display

    if not args.preview:
        return []
    if has_display():
        return [WindowSink("facetrack")]
    if args.out is None:
        print("no display for --preview; writing the preview to out/preview.mp4 instead")
        args.out = Path("out/preview.mp4")
    return []


def cmd_run(args) -> int:
    from tracker.pipeline.multi import name_sources, split_source_arg

    if len(args.source) == 1 and split_source_arg(args.source[0])[0] is None:
        args.source = args.source[0]
        return _run_one(args)
    return _run_many(args, name_sources(args.source))


def _run_one(args) -> int:
    import contextlib

    from tracker.pipeline.jsonl import JsonlWriter
    from tracker.pipeline.preview import PreviewSink
    from tracker.pipeline.session import format_report, run_session
    from tracker.render import Renderer
    from tracker.sources import open_source
    from tracker.stream.csv_writer import CsvWriter
    from tracker.stream.viewer import VideoSink

    outputs = _preview_windows(args)
    tracker = tracker_from_args(args)
    source = open_source(args.source)
    _configure_pacing(source, args, args.source)
    source.connect()  # a video's frame rate is known once it is open
    fps = float(getattr(source, "fps", 30.0) or 30.0)
    with contextlib.ExitStack() as stack:
        sinks, writers = {}, {}
        if args.jsonl is not None:
            writers["jsonl"] = sinks["jsonl"] = stack.enter_context(JsonlWriter(args.jsonl))
        if args.csv is not None:
            csv_writer = writers["csv"] = stack.enter_context(CsvWriter(args.csv, args.csv_format, fps=fps))
            sinks["csv"] = lambda frame, result: csv_writer.write(result)
        if args.out is not None:
            outputs.append(VideoSink(args.out, fps=fps))
        preview = PreviewSink(Renderer(tracker.regressor.face_model), outputs, owns_renderer=True) if outputs else None
        report = run_session(source, tracker, endpoint=args.publish, preview=preview, record_path=args.record,
                             max_frames=args.frames, duration_s=args.duration, curve_keys_dir=args.curve_keys,
                             sinks=sinks)  # fmt: skip
    print(format_report(report))
    if "csv" in writers:
        print(f"csv: {args.csv} ({writers['csv'].rows} rows, {args.csv_format})")
    if "jsonl" in writers:
        print(f"jsonl: {args.jsonl} ({writers['jsonl'].lines} lines)")
    write_json(args.json, report.to_dict())
    return 0


def _run_many(args, named: list[tuple[str, str]]) -> int:
    """Several cameras (or one named camera): one tracker each over shared networks, one stream each."""
    import contextlib

    from tracker.pipeline.jsonl import JsonlWriter
    from tracker.pipeline.preview import PreviewSink
    from tracker.pipeline.session import format_report, run_multi_session
    from tracker.render import Renderer
    from tracker.sources import open_source
    from tracker.stream.csv_writer import CsvWriter
    from tracker.stream.viewer import VideoSink

    sources = {name: open_source(spec) for name, spec in named}  # bad source strings fail before any network
    if args.csv is not None and args.csv_format != "arkit":
        from tracker.core.errors import ConfigError

        raise ConfigError("a Live Link take (--csv-format livelink) holds one performer; with several --source "
                          "write --csv-format arkit (it gets a source column)")  # fmt: skip
    outputs = _preview_windows(args)
    first = named[0][0]
    if outputs or args.out is not None:
        print(f"note: the preview shows the first source ({first}); "
              "`facetrack view --source-name NAME` shows another")  # fmt: skip
    tracker = tracker_from_args(args, max_batch=len(named) * args.max_faces)
    trackers = {name: tracker if i == 0 else tracker.sibling() for i, (name, _) in enumerate(named)}
    for (name, spec), source in zip(named, sources.values(), strict=True):
        _configure_pacing(source, args, f"{name}={spec}")
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: [t.close() for t in trackers.values()])  # idempotent; the session closes them too
        stack.callback(lambda: [s.close() for s in sources.values()])
        for source in sources.values():
            source.connect()  # a video's frame rate is known once it is open
        fps = float(getattr(sources[first], "fps", 30.0) or 30.0)
        sinks, writers = {}, {}
        if args.jsonl is not None:
            jsonl_writer = writers["jsonl"] = stack.enter_context(JsonlWriter(args.jsonl))
            sinks["jsonl"] = lambda name, frame, result: jsonl_writer(frame, result, source=name)
        if args.csv is not None:
            csv_writer = writers["csv"] = stack.enter_context(CsvWriter(args.csv, "arkit", fps=fps, source_column=True))
            sinks["csv"] = lambda name, frame, result: csv_writer.write(result, source=name)
        if args.out is not None:
            outputs.append(VideoSink(args.out, fps=fps))
        preview = PreviewSink(Renderer(tracker.regressor.face_model), outputs, owns_renderer=True) if outputs else None
        report = run_multi_session(sources, trackers, endpoint=args.publish, preview=preview,
                                   record_path=args.record, max_frames=args.frames, duration_s=args.duration,
                                   curve_keys_dir=args.curve_keys, sinks=sinks)  # fmt: skip
    print(format_report(report))
    if "csv" in writers:
        print(f"csv: {args.csv} ({writers['csv'].rows} rows, arkit with a source column)")
    if "jsonl" in writers:
        print(f"jsonl: {args.jsonl} ({writers['jsonl'].lines} lines)")
    write_json(args.json, report.to_dict())
    return 0
