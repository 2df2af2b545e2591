"""``facetrack view``: the OpenGL preview as a ZeroMQ subscriber (a window, or headless into a video)."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from tqdm import tqdm

from tools.options import add_connect_option, add_curve_option, add_json_option, write_json
from tracker.core.errors import ConfigError


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, got {text!r}") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"size too small: {text!r}")
    return w, h


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "view", help="preview a result stream: the ICT head driven by the received coefficients",
        description="Opens a window when a display exists; with --out (or without a display) renders "
        "headless into an mp4 video. HUD: fps, capture-to-shown latency, face count, lost messages.",
    )  # fmt: skip
    add_connect_option(p)
    p.add_argument("--source-name", metavar="NAME",
                   help="one camera of a multi-camera stream (run --source NAME=SRC); default: every camera")
    p.add_argument("--out", type=Path, metavar="FILE.mp4", help="write the preview to a video (headless)")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate written into the video (default 30)")
    p.add_argument("--size", type=_size, metavar="WxH", help="view size (default: the camera's)")
    p.add_argument("--lighting", choices=("studio", "received"), default="studio",
                   help="studio light (default) or the tracker's estimated SH lighting")  # fmt: skip
    p.add_argument("--no-landmarks", action="store_true", help="do not dot the 68 landmarks")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--frames", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--idle-timeout", type=float, metavar="S",
                   help="stop after S seconds without data (default: 10 when writing a video, else never)")  # fmt: skip
    add_curve_option(p)
    add_json_option(p)
    p.set_defaults(func=cmd_view)


def cmd_view(args) -> int:
    from tracker.render import Renderer
    from tracker.stream.subscriber import Subscriber
    from tracker.stream.viewer import HeadView, VideoSink, WindowSink, has_display, run_viewer

    sinks = []
    if args.out is not None:
        sinks.append(VideoSink(args.out, fps=args.fps))
    if has_display():
        sinks.append(WindowSink())
    if not sinks:
        raise ConfigError("no display found: pass --out FILE.mp4 to render the preview into a video")
    idle = args.idle_timeout if args.idle_timeout is not None else (10.0 if args.out is not None else None)
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    bar = tqdm(total=args.frames, unit="frame", desc="view", leave=False)
    stats = None
    try:
        with Renderer() as renderer, Subscriber(args.connect, curve_keys_dir=args.curve_keys,
                                                source_name=args.source_name) as sub:
            view = HeadView(renderer, size=args.size, lighting=args.lighting, landmarks=not args.no_landmarks)
            try:
                stats = run_viewer(sub, view, sinks, stop=stop, duration_s=args.duration, max_frames=args.frames,
                                   idle_timeout_s=idle, on_frame=lambda _: bar.update())  # fmt: skip
            except KeyboardInterrupt:
                pass
    finally:
        bar.close()
        for s in sinks:
            s.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if stats is not None:
        lat = stats.latency_ms
        print(f"showed {stats.frames} frames at {stats.fps:.1f} fps"
              + (f", latency p50 {lat['p50']:.1f} ms p95 {lat['p95']:.1f} ms" if lat else "")
              + (f"; video {args.out}" if args.out else ""))  # fmt: skip
        write_json(args.json, {"frames": stats.frames, "fps": stats.fps, "latency_ms": lat,
                               "faces_max": stats.faces_max, "out": args.out})  # fmt: skip
    return 0
