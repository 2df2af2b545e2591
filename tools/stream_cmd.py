"""``facetrack stream keygen|echo|export-csv|bench``: stream utilities."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tools.bridge_cmd import add_invert_options, signs_from_args
from tools.options import add_connect_option, add_curve_option, add_json_option, write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("stream", help="stream utilities: CURVE keys, echo, CSV export, loopback benchmark")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    v = verbs.add_parser("keygen", help="create CURVE keypairs for an encrypted, authenticated stream",
                         description="Writes server.key(_secret), <client>.key(_secret) and authorized_clients/ "
                         "into DIR. Give a client server.key and its own keypair; the publisher needs DIR.")  # fmt: skip
    v.add_argument("dir", type=Path, metavar="DIR")
    v.add_argument(
        "--client", action="append", metavar="NAME", help="client name (repeatable; default client)"
    )
    v.add_argument("--force", action="store_true", help="replace existing keypairs of the same names")
    v.set_defaults(func=cmd_keygen)

    v = verbs.add_parser("echo", help="print a summary line per received result")
    add_connect_option(v)
    v.add_argument("--count", type=int, metavar="N", help="stop after N results")
    v.add_argument("--source-name", metavar="NAME",
                   help="one camera of a multi-camera stream (run --source NAME=SRC); default: every camera")
    v.add_argument(
        "--timeout", type=float, default=None, metavar="S", help="stop after S seconds without data"
    )
    add_curve_option(v)
    v.set_defaults(func=cmd_echo)

    v = verbs.add_parser(
        "export-csv", help="write a stream log as CSV: one row per face per frame, ARKit columns"
    )
    v.add_argument("file", type=Path, metavar="FILE", help="log written by `facetrack record`")
    v.add_argument("--out", type=Path, required=True, metavar="CSV")
    v.add_argument("--format", choices=("arkit", "livelink"), default="arkit",
                   help="arkit: one row per face per frame, facetrack's columns (default); livelink: a Live Link "
                        "Face take (Timecode, BlendShapeCount, 61 PascalCase curves, radians)")  # fmt: skip
    v.add_argument("--fps", type=float, metavar="FPS",
                   help="take rate for livelink timecodes (default: estimated from the capture times)")
    add_invert_options(v)
    v.set_defaults(func=cmd_export_csv)

    v = verbs.add_parser(
        "bench", help="loopback throughput and publish->receive latency (receiver in a subprocess)"
    )
    v.add_argument(
        "--messages", type=int, default=20_000, help="messages in the throughput phase (default 20000)"
    )
    v.add_argument("--faces", type=int, default=1, help="faces per message (default 1)")
    v.add_argument(
        "--rate-hz", type=float, default=250.0, help="publish rate of the latency phase (default 250)"
    )
    v.add_argument("--latency-s", type=float, default=3.0, help="duration of the latency phase (default 3)")
    v.add_argument("--header-only", action="store_true",
                   help="receiver reads only the msgpack header (transport throughput, no typed decode)")  # fmt: skip
    add_json_option(v)
    v.set_defaults(func=cmd_bench)


def cmd_keygen(args) -> int:
    from tracker.stream.curve import generate_keys

    paths = generate_keys(args.dir, clients=tuple(args.client or ("client",)), force=args.force)
    for role, path in paths.items():
        print(f"{role:16s} {path}")
    print(f"publisher: --curve-keys {args.dir}; client: copy server.key and its own .key/.key_secret")
    return 0


def cmd_echo(args) -> int:
    from tracker.stream.subscriber import Subscriber

    n = 0
    with Subscriber(args.connect, curve_keys_dir=args.curve_keys, source_name=args.source_name) as sub:
        idle = None if args.timeout is None else args.timeout * 1e3
        try:
            for msg in sub.results(idle_timeout_ms=idle):
                r = msg.result
                faces = " ".join(
                    f"[{f.track_id} {f.state} c={f.confidence:.2f} ypr=({', '.join(f'{a:.0f}' for a in f.ypr_deg)}) "
                    f"jaw={msg.arkit[i][17]:.2f}]"
                    for i, f in enumerate(r.faces)
                )
                camera = "" if msg.source_name is None else f"{msg.source_name} "
                print(f"{camera}#{msg.seq} frame {r.frame_index} latency {msg.latency_ms:.1f} ms {faces}")
                n += 1
                if args.count is not None and n >= args.count:
                    break
        except KeyboardInterrupt:
            pass
        print(json.dumps(sub.stats().__dict__))
    return 0


def cmd_export_csv(args) -> int:
    from tracker.stream.recording import export_csv

    rows = export_csv(args.file, args.out, format=args.format, fps=args.fps, signs=signs_from_args(args))
    print(f"wrote {rows} rows ({args.format}) to {args.out}")
    return 0


def cmd_bench(args) -> int:
    from tracker.stream.bench import run_benchmark

    res = run_benchmark(args.messages, args.faces, args.rate_hz, args.latency_s, decode=not args.header_only,
                        progress=print)  # fmt: skip
    t, lat = res["throughput"], res["latency"]
    print(f"throughput ({res['faces_per_message']} face, {res['message_bytes']} B/message, {res['receiver']}): "
          f"{t['msgs_per_s']:.0f} msg/s received ({t['received']}/{t['messages']} received); "
          f"publisher {t['publisher_msgs_per_s']:.0f} msg/s")  # fmt: skip
    for key in ("publish_to_receive_ms", "call_to_receive_ms"):
        if lat[key]:
            print(f"{key}: p50 {lat[key]['p50']:.3f}  p99 {lat[key]['p99']:.3f}  max {lat[key]['max']:.3f}")
    write_json(args.json, res)
    return 0
