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
    v.add_argument("--no-perfect-sync", action="store_true", help="do not send the 52 Perfect Sync blendshapes")
    v.add_argument("--no-presets", action="store_true",
                   help="do not send the VRM presets (Blink, A, I, U, E, O, Joy, ...) derived from the ARKit weights")
    v.add_argument("--no-eye-bones", action="store_true", help="do not send LeftEye/RightEye bone rotations")
    _common(v)
    v = kinds.add_parser("livelink", help=f"Unreal Live Link Face UDP (default port {LIVELINK_DEFAULT_PORT})")
    v.add_argument("--to", default=f"127.0.0.1:{LIVELINK_DEFAULT_PORT}", metavar="HOST:PORT",
                   help=f"Unreal machine (default 127.0.0.1:{LIVELINK_DEFAULT_PORT})")  # fmt: skip
    v.add_argument("--subject", default="facetrack", help="Live Link subject name (default facetrack)")
    v.add_argument("--fps", type=int, default=60, help="frame rate written into the timecode (default 60)")
    add_invert_options(v)
    _common(v)


def _common(v: argparse.ArgumentParser) -> None:
    add_connect_option(v)
    v.add_argument(
        "--duration", type=float, metavar="S", help="stop after S seconds (default: run until Ctrl-C)"
    )
    v.add_argument("--warn-silence-s", type=float, default=3.0, metavar="S",
                   help="warn when nothing at all arrives from --connect for S seconds (default 3)")  # fmt: skip
    add_curve_option(v)
    add_json_option(v)
    v.set_defaults(func=cmd_bridge)


def add_invert_options(v: argparse.ArgumentParser) -> None:
    """``--invert-yaw/pitch/roll`` for Live Link angles (the bridge and the Live Link CSV export)."""
    for axis in ("yaw", "pitch", "roll"):
        v.add_argument(f"--invert-{axis}", action="store_true",
                       help=f"negate the Live Link {axis} curves (for a rig that reads the axis the other way)")  # fmt: skip


def signs_from_args(args):
    from tracker.stream.bridges.livelink import AngleSigns

    return AngleSigns(args.invert_yaw, args.invert_pitch, args.invert_roll)


def cmd_bridge(args) -> int:
    # The destination is resolved here, once: an unknown host stops the command before anything starts.
    if args.kind == "vmc":
        from tracker.stream.bridges.vmc import VmcSender

        host, port = parse_host_port(args.to, VMC_DEFAULT_PORT)
        sender = VmcSender(host, port, root_motion=not args.no_root_motion, perfect_sync=not args.no_perfect_sync,
                           presets=not args.no_presets, eye_bones=not args.no_eye_bones)  # fmt: skip
        on_idle = sender.send_idle
    else:
        from tracker.stream.bridges.livelink import LiveLinkFaceEncoder, LiveLinkFaceSender

        host, port = parse_host_port(args.to, LIVELINK_DEFAULT_PORT)
        encoder = LiveLinkFaceEncoder(args.subject, fps=args.fps, signs=signs_from_args(args))
        sender = LiveLinkFaceSender(host, port, encoder)
        on_idle = None
    stop = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"bridging {args.connect} -> {args.kind} {sender.destination} (Ctrl-C to stop)")
    stats = sub_stats = None
    try:
        with Subscriber(args.connect, curve_keys_dir=args.curve_keys) as sub:
            try:
                stats = run_bridge(sub, sender.send, on_idle=on_idle, stop=stop, duration_s=args.duration,
                                   warn_silence_s=args.warn_silence_s)  # fmt: skip
            finally:
                sub_stats = sub.stats()
    except KeyboardInterrupt:
        pass
    finally:
        sender.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    keepalives = stats.idle_sent if stats else 0
    received = sub_stats.received if sub_stats else 0
    print(f"sent {sender.sent} tracked frames and {keepalives} keep-alives (no tracked face); "
          f"received {received} messages")  # fmt: skip
    payload = {"kind": args.kind, "to": str(sender.destination), "frames_sent": sender.sent, "keepalives": keepalives,
               "messages_received": received, "results_received": stats.results_received if stats else 0,
               "silent_warnings": stats.silent_warnings if stats else 0,
               "duration_s": stats.duration_s if stats else None}  # fmt: skip
    if sub_stats is not None:
        payload |= {"clamped_weights": sub_stats.clamped_weights,
                    "normalised_quaternions": sub_stats.normalised_quaternions}  # fmt: skip
    if args.kind == "vmc":
        payload["bundles"] = sender.bundles
    write_json(args.json, payload)
    return 0
