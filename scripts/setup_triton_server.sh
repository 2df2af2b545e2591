#!/usr/bin/env bash
# Sets up a real Triton Inference Server for the loopback tests (tests/engines/test_triton.py), idempotently.
#
# The nvidia-pytriton wheel (PyPI) bundles a `tritonserver` binary and Triton's Python backend, which run on
# a CPU-only machine; it ships no ONNX Runtime backend, so the tests serve CoarseNet through the Python
# backend (`facetrack engines export-triton --triton-backend python`: model.py runs ONNX Runtime). The wheel
# itself is not installed into .venv (it pins numpy<2); it is unpacked into <cache>/triton. The backend's
# stub embeds the system's libpython3.11 and was built against numpy 1, so its numpy (<2) and onnxruntime
# go into <cache>/triton/stubpy. Tests skip, naming this script, when any of it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
HOME_DIR=${FACETRACK_TRITON_HOME:-$(.venv/bin/python -c "from tracker.core.assets import cache_dir; print(cache_dir() / 'triton')")}
SERVER="$HOME_DIR/pytriton/tritonserver/bin/tritonserver"
if [ -x "$SERVER" ] && [ -d "$HOME_DIR/stubpy/numpy" ] && [ -d "$HOME_DIR/stubpy/onnxruntime" ]; then
  exit 0
fi
echo "setup_triton_server: unpacking nvidia-pytriton into $HOME_DIR"
mkdir -p "$HOME_DIR/wheel"
.venv/bin/pip download -q --no-deps "nvidia-pytriton==0.7.0" -d "$HOME_DIR/wheel"
.venv/bin/python -m zipfile -e "$HOME_DIR"/wheel/nvidia_pytriton-0.7.0-*.whl "$HOME_DIR"
chmod +x "$SERVER" "$HOME_DIR"/pytriton/tritonserver/python_backend_stubs/*/triton_python_backend_stub
.venv/bin/pip install -q --target "$HOME_DIR/stubpy" "numpy<2" "onnxruntime<1.24"
echo "setup_triton_server: ready ($SERVER)"
