"""``facetrack replay``: publish a recorded stream log again, with its original timing."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tools.options import add_curve_option, add_json_option, add_publish_option, on_sigterm, write_json
from tracker.core.errors import StreamError
from tracker.stream.publisher import Publisher
from tracker.stream.recording import StreamLog, drop_unused_metadata, first_needed_metadata, replay_log

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay", help="publish a recorded stream log with its original timing",
        description="Timestamps in the headers are moved onto this host's clock so that latencies stay as "
        "recorded. The replay waits (up to --wait-s) for a first subscriber before it starts.",
    )  # fmt: skip
    p.add_argument("file", type=Path, metavar="FILE", help="log written by `facetrack record`")
    add_publish_option(p)
    p.add_argument("--speed", type=float, default=1.0, metavar="X", help="playback rate (default 1.0)")
    p.add_argument("--loop", action="store_true", help="start over at the end until interrupted")
    p.add_argument("--wait-s", type=float, default=5.0, metavar="S",
                   help="wait this long for a subscriber before starting (default 5)")  # fmt: skip
    add_curve_option(p)
    add_json_option(p)
    p.set_defaults(func=cmd_replay)


def cmd_replay(args) -> int:
    if not args.speed > 0:
        raise StreamError(f"--speed must be > 0, got {args.speed}")
    stream_log = StreamLog(args.file)
    records = stream_log.records()
    if not records:
        raise StreamError(f"{args.file} holds no complete message")
    records = drop_unused_metadata(records)
    first_meta = first_needed_metadata(records)
    if first_meta is None:
        log.warning("%s holds no metadata message: subscribers cannot decode its results", args.file)
    stop = threading.Event()
    previous = on_sigterm(stop.set)
    # Only recorded metadata goes out (the publisher repeats the latest one replayed for late subscribers):
    # metadata of the replaying publisher's own would name a session that never appears in the results.
    pub = Publisher(args.publish, queue_size=256, curve_keys_dir=args.curve_keys, own_metadata=False,
                    raw_metadata=None if first_meta is None else first_meta.frames)  # fmt: skip
    errors_ms: list[float] = []
    sent = 0
    try:
        pub.start()
        if not pub.wait_for_subscriber(args.wait_s):
            print(f"no subscriber after {args.wait_s:.0f} s; replaying anyway")
        while not stop.is_set():
            with tqdm(total=len(records), unit="msg", desc=f"replay x{args.speed:g}", leave=False) as bar:
                st = replay_log(
                    records, pub.publish_raw, speed=args.speed, stop=stop, on_message=lambda _: bar.update()
                )
            sent += st.messages
            if st.messages:
                want = (np.asarray(st.record_times_ns) - st.record_times_ns[0]) / args.speed
                got = np.asarray(st.send_times_ns) - st.send_times_ns[0]
                errors_ms += list(np.abs(got - want) / 1e6)
            if not args.loop:
                break
        pub.flush(2.0)
    except KeyboardInterrupt:
        pass
    finally:
        pub.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    err = np.asarray(errors_ms) if errors_ms else np.zeros(1)
    print(f"replayed {sent} messages; timing error p50 {np.median(err):.2f} ms, max {err.max():.2f} ms")
    write_json(args.json, {"messages": sent, "timing_error_ms": {"p50": float(np.median(err)), "max": float(err.max())},
                           "ignored_tail_bytes": stream_log.ignored_tail_bytes})  # fmt: skip
    return 0
