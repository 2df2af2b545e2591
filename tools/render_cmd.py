"""``facetrack render bench|gallery``: renderer timings and reference images to check by eye."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from tools.options import add_json_option, write_json

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="renderer timings and reference images")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)

    v = verbs.add_parser("bench", help="time a 640x480 full-head frame, a 128x128 crop and batched crops")
    v.add_argument("--frames", type=int, default=60, help="renders per measurement (default 60)")
    v.add_argument("--batch", type=int, default=64, help="crops per batch call (default 64)")
    add_json_option(v)
    v.set_defaults(func=cmd_bench)

    v = verbs.add_parser(
        "gallery", help="write reference PNGs (frontal, 45°, jaw+smile, overlays, performance)"
    )
    v.add_argument("--out", type=Path, default=Path("render_gallery"), help="output folder")
    v.add_argument("--seed", type=int, default=3)
    v.set_defaults(func=cmd_gallery)


def cmd_bench(args) -> int:
    from tracker.render.bench import benchmark_renderer

    res = benchmark_renderer(frames=args.frames, batch=args.batch)
    f, c, b = res["full_640x480"], res["crop_128"], res["batch_128"]
    print(f"renderer: {res['gl_renderer']}  ({res['cpu_count']} CPUs, load {res['load_average'][0]:.1f})")
    print(
        f"640x480 full head : p50 {f['p50_ms']:.1f} ms  p95 {f['p95_ms']:.1f} ms  (CPU {f['cpu_p50_ms']:.1f} ms)"
    )
    print(
        f"128x128 crop      : p50 {c['p50_ms']:.1f} ms  p95 {c['p95_ms']:.1f} ms  (CPU {c['cpu_p50_ms']:.1f} ms)"
    )
    print(f"128x128 batch x{b['batch']}: {b['crops_per_s']:.1f} crops/s ({b['ms_per_crop']:.1f} ms/crop)")
    print(f"numpy geometry    : {res['cpu_geometry_ms']:.1f} ms CPU per frame (vertices + normals)")
    write_json(args.json, res)
    return 0


def cmd_gallery(args) -> int:
    from tracker.render.gallery import write_gallery

    for path in write_gallery(args.out, seed=args.seed):
        print(path)
    return 0
