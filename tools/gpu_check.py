"""The Python half of ``scripts/gpu_check.sh``: parity, benchmarks and the one JSON summary.

``python -m tools.gpu_check parity --out FILE``
    Tracks the first frames of developer clips twice, on ONNX Runtime (fp32, the reference) and on
    TensorRT fp16, and compares each frame's first face: landmark distance (px) and ARKit coefficients.
    Passes when the landmarks' p95 is within ``--max-landmark-px`` (0.5) and every ARKit value within
    ``--max-arkit`` (0.02).
``python -m tools.gpu_check summary --dir DIR --out FILE``
    Collects what the shell script left in DIR (``steps.tsv``: name, exit code, seconds per step; the JSON
    files the steps wrote) into one summary with an overall verdict.

The comparison and the summary are plain functions over arrays and files (tested on the CPU:
tests/tools/test_gpu_check.py); only ``parity`` itself needs a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tools.options import write_json
from tracker.core.errors import ConfigError, TrackerError

log = logging.getLogger(__name__)

MAX_LANDMARK_PX = 0.5
MAX_ARKIT = 0.02
#: Step JSON files the summary folds in, by the name the shell script gives them.
STEP_FILES = ("build", "parity", "bench", "e2e")


@dataclasses.dataclass(frozen=True)
class Parity:
    """How far one backend's tracking is from the reference's on the same frames.

    Attributes:
        frames: Frames where both found a face (compared).
        missing: Frames where only one of them found a face.
        landmark_p95_px: 95th percentile of the per-point distance over all compared points, px.
        landmark_max_px: Largest per-point distance, px.
        arkit_max: Largest absolute ARKit difference (0..1 scale).
        arkit_p95: 95th percentile of the absolute ARKit differences.
    """

    frames: int
    missing: int
    landmark_p95_px: float
    landmark_max_px: float
    arkit_max: float
    arkit_p95: float

    def passes(self, max_landmark_px: float = MAX_LANDMARK_PX, max_arkit: float = MAX_ARKIT) -> bool:
        return self.frames > 0 and self.landmark_p95_px <= max_landmark_px and self.arkit_max <= max_arkit


def compare_tracks(reference: Sequence[tuple[np.ndarray, np.ndarray] | None],
                   candidate: Sequence[tuple[np.ndarray, np.ndarray] | None]) -> Parity:  # fmt: skip
    """Compares two runs frame by frame.

    Args:
        reference: Per frame, ((68,2) px landmarks, (52,) ARKit) of the first face, or None (no face).
        candidate: The same for the backend under test.

    Raises:
        ConfigError: when the runs cover different numbers of frames.
    """
    if len(reference) != len(candidate):
        raise ConfigError(f"runs differ in length: {len(reference)} vs {len(candidate)} frames")
    dists, arkit = [], []
    missing = 0
    for ref, cand in zip(reference, candidate, strict=True):
        if ref is None and cand is None:
            continue
        if ref is None or cand is None:
            missing += 1
            continue
        dists.append(np.linalg.norm(np.asarray(cand[0], np.float64) - np.asarray(ref[0], np.float64), axis=-1))
        arkit.append(np.abs(np.asarray(cand[1], np.float64) - np.asarray(ref[1], np.float64)))
    if not dists:
        return Parity(0, missing, float("nan"), float("nan"), float("nan"), float("nan"))
    d, a = np.concatenate(dists), np.concatenate(arkit)
    return Parity(len(dists), missing, float(np.percentile(d, 95)), float(d.max()), float(a.max()),
                  float(np.percentile(a, 95)))  # fmt: skip


def read_steps(path: Path) -> list[dict]:
    """``steps.tsv`` lines ``name<TAB>exit code<TAB>seconds`` -> records (malformed lines are reported)."""
    steps = []
    if not path.is_file():
        return steps
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        try:
            name, rc, seconds = parts[0], int(parts[1]), float(parts[2])
        except (IndexError, ValueError):
            raise ConfigError(f"{path}:{n}: expected 'name<TAB>exit code<TAB>seconds', got {line!r}") from None
        steps.append({"name": name, "rc": rc, "seconds": seconds, "ok": rc == 0})
    return steps


def summarize(folder: Path) -> dict:
    """One summary of a gpu_check run folder: steps, each step's JSON, the verdict."""
    folder = Path(folder)
    steps = read_steps(folder / "steps.tsv")
    results: dict = {}
    for name in STEP_FILES:
        f = folder / f"{name}.json"
        if f.is_file():
            try:
                results[name] = json.loads(f.read_text())
            except json.JSONDecodeError as exc:
                results[name] = {"error": f"{f.name} is not valid JSON: {exc}"}
    machine = folder / "machine.txt"
    parity_ok = bool(results.get("parity", {}).get("passes", False))
    failed = [s["name"] for s in steps if not s["ok"]]
    return {
        "schema": 1,
        "machine": machine.read_text().strip() if machine.is_file() else "",
        "steps": steps,
        "total_seconds": round(sum(s["seconds"] for s in steps), 1),
        "failed_steps": failed,
        "results": results,
        "passes": bool(steps) and not failed and parity_ok,
    }


def _first_face(result) -> tuple[np.ndarray, np.ndarray] | None:
    if not result.faces:
        return None
    face = result.faces[0]
    return np.asarray(face.landmarks68, np.float64), np.asarray(face.arkit, np.float64)


def track_clip(backend: str, clip: Path, frames: int, precision: str = "fp16") -> list:
    """First-face (landmarks, ARKit) per frame of a clip, unfiltered (filters would hide the difference)."""
    from tracker.pipeline.runtime import RuntimeOptions, create_tracker
    from tracker.sources import open_source
    from tracker.tracking import TrackerConfig

    out = []
    config = TrackerConfig(filter=None, use_optical_flow=False)
    with create_tracker(RuntimeOptions(backend=backend, precision=precision), config) as tracker:
        with open_source(f"video:{clip}", realtime=False) as source:
            for frame in source:
                if len(out) >= frames:
                    break
                out.append(_first_face(tracker.process(frame)))
    return out


def cmd_parity(args) -> int:
    clips = sorted(Path(args.videos).glob("*.mp4"))[: args.clips]
    if not clips:
        raise ConfigError(f"no .mp4 clips in {args.videos}")
    per_clip, ref_all, cand_all = [], [], []
    t0 = time.monotonic()
    for clip in clips:
        ref = track_clip("onnxruntime", clip, args.frames)
        cand = track_clip(args.backend, clip, args.frames, args.precision)
        p = compare_tracks(ref, cand)
        per_clip.append({"clip": clip.name, **dataclasses.asdict(p)})
        ref_all += ref
        cand_all += cand
        print(f"{clip.name}: {p.frames} frames, landmarks p95 {p.landmark_p95_px:.3f} px, ARKit max {p.arkit_max:.4f}")
    total = compare_tracks(ref_all, cand_all)
    ok = total.passes(args.max_landmark_px, args.max_arkit)
    write_json(args.out, {"backend": args.backend, "precision": args.precision, "reference": "onnxruntime fp32",
                          "limits": {"landmark_p95_px": args.max_landmark_px, "arkit_max": args.max_arkit},
                          "overall": dataclasses.asdict(total), "clips": per_clip, "passes": ok,
                          "seconds": round(time.monotonic() - t0, 1)})  # fmt: skip
    print(f"parity {'PASS' if ok else 'FAIL'}: p95 {total.landmark_p95_px:.3f} px, ARKit max {total.arkit_max:.4f}")
    return 0 if ok else 1


def cmd_summary(args) -> int:
    summary = summarize(args.dir)
    write_json(args.out, summary)
    print(f"gpu_check {'PASS' if summary['passes'] else 'FAIL'} in {summary['total_seconds']} s; "
          f"failed steps: {', '.join(summary['failed_steps']) or 'none'}")  # fmt: skip
    return 0 if summary["passes"] else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tools.gpu_check", description=__doc__.split("\n\n")[0])
    verbs = p.add_subparsers(dest="verb", required=True)
    v = verbs.add_parser("parity", help="TensorRT fp16 vs ONNX Runtime on developer clips")
    v.add_argument("--videos", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared/data/videos")
    v.add_argument("--clips", type=int, default=3, help="clips compared (default 3)")
    v.add_argument("--frames", type=int, default=90, help="frames per clip (default 90)")
    v.add_argument("--backend", default="tensorrt", choices=("tensorrt", "onnxruntime", "triton"))
    v.add_argument("--precision", default="fp16", choices=("fp16", "fp32"))
    v.add_argument("--max-landmark-px", type=float, default=MAX_LANDMARK_PX)
    v.add_argument("--max-arkit", type=float, default=MAX_ARKIT)
    v.add_argument("--out", type=Path, required=True)
    v.set_defaults(func=cmd_parity)
    v = verbs.add_parser("summary", help="fold a run folder into one JSON")
    v.add_argument("--dir", type=Path, required=True)
    v.add_argument("--out", type=Path, required=True)
    v.set_defaults(func=cmd_summary)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TrackerError as exc:
        print(f"ERROR gpu_check: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
