"""Check: `facetrack run --fast` tracks every presented frame of every clip, and --csv/--jsonl hold them all.

For each clip the reference frame count is what a plain OpenCV decode presents (edit lists applied); the run
must give one JSONL line per presented frame and one CSV row per face per frame.

    .venv/bin/python scripts/lossless_check.py ../shared/data/videos ../shared/data/videos_extra --json out/lossless.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
from tqdm import tqdm

VIDEO_SUFFIXES = (".mp4", ".m4v", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".gif")


def presented_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


def check(clip: Path, work: Path, port: int) -> dict:
    csv_path, jsonl, report = work / "r.csv", work / "r.jsonl", work / "r.json"
    cmd = [sys.executable, "-m", "tools.cli", "-q", "run", "--source", f"video:{clip}", "--fast", "--csv", str(csv_path),
           "--jsonl", str(jsonl), "--json", str(report), "--publish", f"tcp://127.0.0.1:{port}"]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    row = {"clip": clip.name, "rc": proc.returncode, "presented": presented_frames(clip)}
    if proc.returncode != 0:
        row["error"] = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return row
    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    faces = sum(len(line["faces"]) for line in lines)
    rows = max(0, len(csv_path.read_text().splitlines()) - 1)
    stats = json.loads(report.read_text())["pipeline"]
    row.update(tracked=stats["frames_tracked"], dropped=stats["frames_dropped"], jsonl_lines=len(lines),
               faces=faces, csv_rows=rows)  # fmt: skip
    row["ok"] = row["tracked"] == row["jsonl_lines"] == row["presented"] and rows == faces and stats["frames_dropped"] == 0
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", nargs="+", type=Path)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--port", type=int, default=5611)
    args = ap.parse_args()
    clips = sorted(p for d in args.folders for p in d.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for clip in tqdm(clips, desc="clips", unit="clip"):
            results.append(check(clip, Path(tmp), args.port))
    bad = [r for r in results if not r.get("ok")]
    print(f"{len(results) - len(bad)} of {len(results)} clips: every presented frame tracked and written")
    for r in bad:
        print("NOT OK:", json.dumps(r))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"clips": results}, indent=2))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
