#!/usr/bin/env bash
# Sets up everything facetrack needs on a fresh Debian/Ubuntu machine, idempotently:
#   system libraries (apt-get, when root and missing), a .venv with the CPU extras, the assets, the model cache.
# A second run only checks and returns in a few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

# System libraries: EGL/Mesa for headless OpenGL, libusb for pyrealsense2, libGL/glib for OpenCV, ffmpeg
# for video, Xvfb for a preview window on a machine without a display.
APT_PACKAGES="libegl1 libegl-mesa0 libgl1-mesa-dri libgbm1 libgl1 libglib2.0-0 libusb-1.0-0 ffmpeg xvfb"
missing=""
for p in $APT_PACKAGES; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing system packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "bootstrap: please install these system packages:$missing (e.g. sudo apt-get install$missing)" >&2
  fi
fi

# Node + the npm packages of the independent stream client (tests/clients/node, pinned by its lockfile;
# the zeromq package carries prebuilt libzmq binaries, so nothing is fetched from outside the registry).
if ! command -v npm >/dev/null && [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
  echo "bootstrap: installing nodejs and npm"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
NODE_CLIENT=tests/clients/node
if command -v npm >/dev/null && [ "$(cat "$NODE_CLIENT/node_modules/.facetrack-lock" 2>/dev/null)" != "$(sha256sum "$NODE_CLIENT/package-lock.json" | cut -d' ' -f1)" ]; then
  echo "bootstrap: installing the Node stream client's packages"
  (cd "$NODE_CLIENT" && npm ci --no-audit --no-fund --loglevel=error) \
    && sha256sum "$NODE_CLIENT/package-lock.json" | cut -d' ' -f1 > "$NODE_CLIENT/node_modules/.facetrack-lock" \
    || echo "bootstrap: npm ci failed; tests/clients will install or skip" >&2
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
# Reinstall only when the dependency list changed (stamp = hash of pyproject.toml).
stamp=.venv/.facetrack-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing Python packages (CPU build of torch)"
  .venv/bin/pip install -q --upgrade pip
  # torch first and pinned: this machine has its CPU build on disk; an open range would pull a CUDA build.
  .venv/bin/pip install -q "torch==2.13.0"
  .venv/bin/pip install -q -e ".[cpu,train,realsense,teacher,dev,triton]"
  echo "$want" > "$stamp"
fi

# Assets: use the read-only shared copy where it exists, else the user cache (fetch on a networked machine).
if [ -z "${FACETRACK_ASSETS:-}" ] && [ -d "$ROOT/../shared/assets" ]; then
  export FACETRACK_ASSETS="$ROOT/../shared/assets"
fi
.venv/bin/facetrack -q assets verify >/dev/null || .venv/bin/facetrack assets fetch
# Record the folder in the venv, so `.venv/bin/facetrack` finds the assets in any shell without the variable.
if [ -n "${FACETRACK_ASSETS:-}" ]; then
  IFS=: read -r -a asset_dirs <<< "$FACETRACK_ASSETS"
  .venv/bin/facetrack -q assets use "${asset_dirs[@]}"
fi
.venv/bin/python -c "from tracker.core.face_model import FaceModel; FaceModel.load()"
# A real Triton server for the loopback tests (optional: they skip without it).
bash scripts/setup_triton_server.sh || echo "bootstrap: Triton test server not set up; tests/engines/test_triton.py will skip" >&2
echo "bootstrap: ready (FACETRACK_ASSETS=${FACETRACK_ASSETS:-<user cache>})"
