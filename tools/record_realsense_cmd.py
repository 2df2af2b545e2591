"""``facetrack record-realsense``: write a RealSense ``.db3`` recording from any source with depth.

The recording goes through the SDK's software device and recorder, so it plays back with
``facetrack run --source realsense:FILE.db3``, the RealSense Viewer, or any pyrealsense2 program. (Not to
be confused with ``facetrack record``, which logs a result stream.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tools.options import add_json_option, write_json


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 320x240, got {text!r}") from None
    return w, h


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "record-realsense", help="write a RealSense .db3 recording (colour + depth) from a source with depth",
        description="Records colour + depth from a source (by default the synthetic RGB-D face) through "
        "pyrealsense2's software device into a .db3 file that plays back as --source realsense:FILE.db3.",
    )  # fmt: skip
    p.add_argument(
        "--source", default="synthetic", metavar="SRC", help="a source with depth (default synthetic)"
    )
    p.add_argument("--frames", type=int, default=90, metavar="N", help="frames to record (default 90)")
    p.add_argument("--out", type=Path, required=True, metavar="FILE.db3", help="recording to write")
    p.add_argument("--seed", type=int, help="synthetic source: seed")
    p.add_argument("--width", type=int, help="source width, px (synthetic default 640)")
    p.add_argument("--height", type=int, help="source height, px (synthetic default 480)")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate of the recording (default 30)")
    p.add_argument(
        "--depth-size", type=_size, metavar="WxH", help="record depth at its own resolution (like a D400)"
    )
    add_json_option(p)
    p.set_defaults(func=cmd_record_realsense)


def cmd_record_realsense(args) -> int:
    from tracker.core.errors import ConfigError
    from tracker.sources import open_source
    from tracker.sources.realsense_record import record_realsense

    if args.frames is not None and args.frames < 1:
        raise ConfigError(f"--frames must be >= 1, got {args.frames}")
    options = {"width": args.width, "height": args.height}
    if args.source.split(":")[0] == "synthetic":
        options |= {"seed": args.seed, "frames": args.frames, "fps": args.fps}
    elif args.seed is not None:
        raise ConfigError("--seed applies to the synthetic source only")
    source = open_source(args.source, **options)
    stats = record_realsense(source, args.out, frames=args.frames, fps=args.fps, depth_size=args.depth_size)
    print(
        f"recorded {stats.frames} frames ({stats.bytes / 1e6:.2f} MB) to {stats.path} in {stats.seconds:.1f} s"
    )
    write_json(args.json, {"path": stats.path, "frames": stats.frames, "bytes": stats.bytes, "seconds": stats.seconds,
                           "source": args.source})  # fmt: skip
    return 0
