#!/usr/bin/env bash
# Re-measures the figures in docs/benchmarks.md (JSON + PNG under out/bench/). Run after `make setup`.
# Takes about 15-25 minutes on a 2-core CPU; nothing here is part of the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export FACETRACK_ASSETS=${FACETRACK_ASSETS:-$(pwd)/../shared/assets}
DATA=${FACETRACK_DATA:-$(pwd)/../shared/data}
OUT=out/bench
mkdir -p "$OUT"
FT=.venv/bin/facetrack

$FT assets build --json "$OUT/assets_build.json"
$FT render bench --frames 60 --json "$OUT/render.json" || true
$FT engines bench --json "$OUT/engines.json"
$FT eval detection --images "$DATA/landmarks68" --json "$OUT/detection.json"
$FT stream bench --json "$OUT/stream.json"
$FT eval synthetic --frames 600 --seed 1000 --json "$OUT/synthetic.json"
$FT eval synthetic --frames 600 --seed 1000 --no-filter --json "$OUT/synthetic_nofilter.json"
$FT eval landmarks --images "$DATA/landmarks68/helen" --json "$OUT/helen.json"
$FT eval landmarks --images "$DATA/landmarks68/afw" --json "$OUT/afw.json"
for clip in "$DATA"/videos/*.mp4; do
  name=$(basename "$clip" .mp4)
  $FT -q eval video --video "$clip" --json "$OUT/video_${name}.json"
done
for name in liveportrait_d0 liveportrait_d13 liveportrait_d18 liveportrait_d19; do
  $FT -q eval video --video "$DATA/videos/$name.mp4" --no-filter --json "$OUT/video_${name}_nofilter.json"
done
# One face at 640x480 (the issue's reference size): d19 letterboxed into a 640x480 clip, then tracked.
.venv/bin/python - "$DATA/videos/liveportrait_d19.mp4" "$OUT/d19_640x480.mp4" <<'PY'
import sys, cv2, numpy as np
cap = cv2.VideoCapture(sys.argv[1]); fps = cap.get(cv2.CAP_PROP_FPS)
out = cv2.VideoWriter(sys.argv[2], cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
while True:
    ok, frame = cap.read()
    if not ok:
        break
    canvas = np.zeros((480, 640, 3), np.uint8)
    h, w = frame.shape[:2]
    canvas[(480 - h) // 2:(480 - h) // 2 + h, (640 - w) // 2:(640 - w) // 2 + w] = frame
    out.write(canvas)
out.release()
PY
$FT -q eval video --video "$OUT/d19_640x480.mp4" --json "$OUT/video_d19_640x480.json"
$FT demo --frames 300 --json "$OUT/demo.json"
echo "results in $OUT"
