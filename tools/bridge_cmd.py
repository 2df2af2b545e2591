"""``facetrack bridge vmc|livelink``: forward a result stream to VMC receivers or Unreal Live Link Face."""

from __future__ import annotations

import argparse
import signal
import threading

from tools.options import add_connect_option, add_curve_option, add_json_option, write_json
from tracker.stream.bridges import LIVELINK_DEFAULT_PORT, VMC_DEFAULT_PORT, run_bridge
from tracker.stream.bridges.base import parse_host_port
from tracker.stream.subscriber import Subscriber


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bridge", help="forward the stream to VMC (VSeeFace, ...) or Unreal Live Link Face",
                       description="Settings for the receiving applications: docs/clients.md.")  # fmt: skip
    kinds = p.add_subparsers(dest="kind", metavar="KIND", required=True)
    v = kinds.add_parser("vmc", help=f"VMC protocol over OSC/UDP (default port {VMC_DEFAULT_PORT})")
    v.add_argument("--to", default=f"127.0.0.1:{VMC_DEFAULT_PORT}", metavar="HOST:PORT",
                   help=f"VMC receiver (default 127.0.0.1:{VMC_DEFAULT_PORT})")  # fmt: skip
    v.add_argument("--no-root-motion", action="store_true", help="keep the avatar's root still")
    _common(v)
    v = kinds.add_parser("livelink", help=f"Unreal Live Link Face UDP (default port {LIVELINK_DEFAULT_PORT})")
    v.add_argument("--to", default=f"127.0.0.1:{LIVELINK_DEFAULT_PORT}", metavar="HOST:PORT",
                   help=f"Unreal machine (default 127.0.0.1:{LIVELINK_DEFAULT_PORT})")  # fmt: skip
    v.add_argument("--subject", default="facetrack", help="Live Link subject name (default facetrack)")
    v.add_argument("--fps", type=int, default=60, help="frame rate written into the timecode (default 60)")
    _common(v)


def _common(v: argparse.ArgumentParser) -> None:
    add_connect_option(v)
    v.add_argument(
        "--duration", type=float, metavar="S", help="stop after S seconds (default: run until Ctrl-C)"
    )
    add_curve_option(v)
    add_json_option(v)
    v.set_defaults(func=cmd_bridge)


def cmd_bridge(args) -> int:
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if args.kind == "vmc":
        from tracker.stream.bridges.vmc import VmcSender

        host, port = parse_host_port(args.to, VMC_DEFAULT_PORT)
        sender = VmcSender(host, port, root_motion=not args.no_root_motion)
        on_idle = sender.send_idle
    else:
        from tracker.stream.bridges.livelink import LiveLinkFaceEncoder, LiveLinkFaceSender

        host, port = parse_host_port(args.to, LIVELINK_DEFAULT_PORT)
        sender = LiveLinkFaceSender(host, port, LiveLinkFaceEncoder(args.subject, fps=args.fps))
        on_idle = None
    print(f"bridging {args.connect} -> {args.kind} {host}:{port} (Ctrl-C to stop)")
    stats = None
    try:
        with Subscriber(args.connect, curve_keys_dir=args.curve_keys) as sub:
            stats = run_bridge(sub, sender.send, on_idle=on_idle, stop=stop, duration_s=args.duration)
    except KeyboardInterrupt:
        pass
    finally:
        sender.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print(f"sent {sender.sent} frames")
    write_json(args.json, {"kind": args.kind, "to": f"{host}:{port}", "frames_sent": sender.sent,
                           "duration_s": stats.duration_s if stats else None})  # fmt: skip
    return 0
