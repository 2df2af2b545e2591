"""Starts the real ``tritonserver`` from the nvidia-pytriton wheel on loopback, for the Triton tests.

``scripts/setup_triton_server.sh`` (run by scripts/bootstrap.sh) unpacks the wheel into
``<cache>/triton`` and puts numpy<2 and onnxruntime for the Python backend's stub into
``<cache>/triton/stubpy``. Three things make that stub run here (found while making this work):

- the stub links ``libcudart`` from the wheel's ``nvidia_pytriton.libs`` through a relative rpath that
  only holds inside the wheel's own layout: ``LD_LIBRARY_PATH`` points at it;
- the stub embeds the system's ``libpython3.11`` (Debian's 3.11.2, not the venv's 3.11.7) and initialises
  it ignoring ``PYTHONPATH``; the backend folder is on its ``sys.path``, so the copy of
  ``triton_python_backend_utils.py`` (the first module the stub imports) gets one line that puts
  ``PYTHONPATH``'s folders first;
- the stub was built against numpy 1: with numpy 2 its output tensors come back empty.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tracker.core.assets import cache_dir

SETUP = "bash scripts/setup_triton_server.sh"
_PATH_SHIM = ("import os as _os, sys as _sys; _sys.path[:0] = [p for p in _os.environ.get('PYTHONPATH', '')"
              ".split(_os.pathsep) if p and p not in _sys.path]  # facetrack: the stub ignores PYTHONPATH\n")  # fmt: skip


def triton_home() -> Path:
    return Path(os.environ.get("FACETRACK_TRITON_HOME") or cache_dir() / "triton")


def missing_reason() -> str | None:
    """None when the server, its Python backend and the stub's packages are there; else why not."""
    home = triton_home()
    server = home / "pytriton/tritonserver/bin/tritonserver"
    if not os.access(server, os.X_OK):
        return f"no tritonserver at {server}; run `{SETUP}`"
    for pkg in ("numpy", "onnxruntime"):
        if not (home / "stubpy" / pkg).is_dir():
            return f"the stub's {pkg} is missing in {home / 'stubpy'}; run `{SETUP}`"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _backend_dir(home: Path, dest: Path) -> Path:
    """A Python backend folder: the wheel's backend library, the 3.11 stub, the utils with the path shim."""
    src = home / "pytriton/tritonserver"
    python = dest / "python"
    python.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / "backends/python/libtriton_python.so", python)
    shutil.copy2(src / "python_backend_stubs/3.11/triton_python_backend_stub", python)
    utils = (src / "backends/python/triton_python_backend_utils.py").read_text()
    (python / "triton_python_backend_utils.py").write_text(_PATH_SHIM + utils)
    return dest


@contextlib.contextmanager
def running_server(repo: Path, workdir: Path, ready_timeout_s: float = 60.0) -> Iterator[tuple[str, Path]]:
    """Serves ``repo`` on 127.0.0.1 (free ports); yields (``grpc://127.0.0.1:PORT``, the server's log file).

    Raises:
        RuntimeError: when the server exits or is not ready in time (with the end of its log).
    """
    home = triton_home()
    backends = _backend_dir(home, workdir / "backends")
    grpc_port, http_port = _free_port(), _free_port()
    log_path = workdir / "tritonserver.log"
    env = {**os.environ, "LD_LIBRARY_PATH": str(home / "nvidia_pytriton.libs"),
           "PYTHONPATH": str(home / "stubpy")}  # fmt: skip
    cmd = [str(home / "pytriton/tritonserver/bin/tritonserver"), f"--model-repository={repo}",
           f"--backend-directory={backends}", "--grpc-address=127.0.0.1", f"--grpc-port={grpc_port}",
           "--http-address=127.0.0.1", f"--http-port={http_port}", "--allow-metrics=false",
           "--exit-timeout-secs=5"]  # fmt: skip
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    try:
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(url=f"127.0.0.1:{grpc_port}")
        deadline = time.monotonic() + ready_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"tritonserver exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(Exception):
                if client.is_server_ready():
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"tritonserver not ready after {ready_timeout_s} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        client.close()
        yield f"grpc://127.0.0.1:{grpc_port}", log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
