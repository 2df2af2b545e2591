"""``facetrack record``: write a live stream to a self-describing log (and optionally a CSV)."""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from tqdm import tqdm

from tools.options import add_connect_option, add_curve_option, add_json_option, on_sigterm, write_json
from tracker.stream.recording import LogWriter, export_csv, record_stream
from tracker.stream.subscriber import Subscriber


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "record", help="record a result stream to a log file (replay with `facetrack replay`)",
        description="Appends every message as received, with its receive time; the file stays readable up "
        "to the last complete message if the recording is killed. Stop with Ctrl-C.",
    )  # fmt: skip
    add_connect_option(p)
    p.add_argument("--out", type=Path, required=True, metavar="FILE", help="log file to write")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--max-messages", type=int, metavar="N", help="stop after N messages")
    p.add_argument("--csv", type=Path, metavar="PATH", help="also export the recording as CSV when done")
    p.add_argument("--csv-format", choices=("arkit", "livelink"), default="arkit",
                   help="CSV layout (see `facetrack stream export-csv --help`; default arkit)")  # fmt: skip
    add_curve_option(p)
    add_json_option(p)
    p.set_defaults(func=cmd_record)


def cmd_record(args) -> int:
    stop = threading.Event()
    previous = on_sigterm(stop.set)
    writer = LogWriter(args.out, info={"endpoint": args.connect})
    bar = tqdm(total=args.max_messages, unit="msg", desc=f"recording {args.out.name}", leave=False)
    try:
        with Subscriber(args.connect, curve_keys_dir=args.curve_keys, rcvhwm=1000) as sub:
            try:
                stats = record_stream(sub, writer, stop=stop, duration_s=args.duration,
                                      max_messages=args.max_messages, on_message=lambda _: bar.update())  # fmt: skip
            except KeyboardInterrupt:
                stats = None
    finally:
        bar.close()
        writer.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    print(f"recorded {writer.records} messages ({writer.bytes / 1e6:.2f} MB) to {args.out}")
    payload = {"path": args.out, "messages": writer.records, "bytes": writer.bytes}
    if stats is not None:
        payload |= {"results": stats.results, "metadata": stats.metadata, "duration_s": stats.duration_s}
    if args.csv is not None:
        rows = export_csv(args.out, args.csv, format=args.csv_format)
        print(f"wrote {rows} rows to {args.csv}")
        payload["csv_rows"] = rows
    write_json(args.json, payload)
    return 0
