#!/usr/bin/env bash
# The GPU check: one command on a machine with an NVIDIA GPU, about 8 minutes.
#
#   bash scripts/gpu_check.sh [OUT.json]        (default gpu_check.json; the run folder is gpu_check/)
#
# 1. installs the GPU extra into .venv (onnxruntime-gpu replaces onnxruntime; TensorRT 10/11; cuda-python)
# 2. builds the TensorRT engines (`facetrack engines build`, the tracker's own profiles)
# 3. runs the gpu-marked tests (`pytest -m gpu --device cuda`)
# 4. compares TensorRT fp16 with ONNX Runtime on developer clips (landmarks p95 <= 0.5 px, ARKit <= 0.02)
# 5. benchmarks CoarseNet at batch 1/8/64/256 and the tracker end to end on TensorRT
# 6. writes one JSON summary (python -m tools.gpu_check summary)
# Each step's exit code and time go to gpu_check/steps.tsv; a failing step does not stop the later ones.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu_check.json}
DIR=${GPU_CHECK_DIR:-gpu_check}
PY=.venv/bin/python
FT=.venv/bin/facetrack
VIDEOS=${GPU_CHECK_VIDEOS:-../shared/data/videos}
CLIP=${GPU_CHECK_CLIP:-$(ls "$VIDEOS"/*.mp4 2>/dev/null | head -1)}
if [ -z "${FACETRACK_ASSETS:-}" ] && [ -d ../shared/assets ]; then export FACETRACK_ASSETS=$(cd ../shared/assets && pwd); fi
mkdir -p "$DIR"
: > "$DIR/steps.tsv"

step() {  # step NAME TIMEOUT_S COMMAND...: runs it with a deadline, logs to DIR/NAME.log, records rc and seconds
  local name=$1 limit=$2; shift 2
  local t0=$(date +%s%N)
  echo "== $name: $*"
  timeout "$limit" "$@" > "$DIR/$name.log" 2>&1
  local rc=$?
  local ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  printf '%s\t%s\t%d.%03d\n' "$name" "$rc" $((ms / 1000)) $((ms % 1000)) >> "$DIR/steps.tsv"
  tail -3 "$DIR/$name.log"
  return 0
}

{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1; uname -srm; } > "$DIR/machine.txt"
cat "$DIR/machine.txt"

[ -x "$PY" ] || bash scripts/bootstrap.sh
# onnxruntime and onnxruntime-gpu both own the `onnxruntime` module: remove the CPU one first.
step install 240 bash -c ".venv/bin/pip uninstall -q -y onnxruntime; .venv/bin/pip install -q -e '.[gpu,dev,triton]'"
step build 180 "$FT" engines build --json "$DIR/build.json"
step gpu_tests 180 "$PY" -m pytest -q -p no:cacheprovider -m gpu --device cuda tests/engines tests/tracker
step parity 150 "$PY" -m tools.gpu_check parity --videos "$VIDEOS" --clips 2 --frames 60 --out "$DIR/parity.json"
step bench 90 "$FT" engines bench --models coarsenet --backend tensorrt --batch 1,8,64,256 --iters 50 --json "$DIR/bench.json"
if [ -n "$CLIP" ]; then
  step e2e 90 "$FT" eval video --video "$CLIP" --backend tensorrt --frames 300 --json "$DIR/e2e.json"
fi
"$PY" -m tools.gpu_check summary --dir "$DIR" --out "$OUT"
