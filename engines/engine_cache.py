"""On-disk cache of built TensorRT engines (and their timing caches), safe under concurrent builders.

A TensorRT engine is only valid for the exact ONNX file, TensorRT version, GPU model and precision it
was built with, so the cache key holds all of them (plus the optimisation profile, since an engine only
accepts shapes inside the profile it was built for): :class:`EngineCacheKey`. Files live in
``<user cache>/tensorrt/`` (``tracker.core.assets.cache_dir()``), one ``.engine`` and a ``.json`` sidecar that
records the key in readable form.

Two processes that need the same engine at once (two tracker instances started together, or a build
while a tracker starts) must not both write the file or read a half-written one: the builder holds an
exclusive ``fcntl`` lock on ``<engine>.lock`` and checks again under the lock whether another process
finished meanwhile; every file is written to a temporary name and moved in place with ``os.replace``,
which is atomic, so readers see either no file or a complete one. This module holds no TensorRT code and
is tested on machines without a GPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from tracker.core.assets import cache_dir
from tracker.core.errors import EngineError

log = logging.getLogger(__name__)

try:  # POSIX; on other systems the atomic rename alone keeps readers safe (two builds may both run).
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

PRECISIONS = ("fp32", "fp16")

#: A TensorRT optimisation profile: input name -> (min, opt, max) shapes.
Profile = Mapping[str, tuple[Sequence[int], Sequence[int], Sequence[int]]]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "x"


def profile_signature(profile: Profile | None) -> tuple:
    """A hashable, order-independent form of a profile: ((name, min, opt, max), ...)."""
    if not profile:
        return ()
    return tuple(
        (name, tuple(int(d) for d in lo), tuple(int(d) for d in opt), tuple(int(d) for d in hi))
        for name, (lo, opt, hi) in sorted(profile.items())
    )


@dataclasses.dataclass(frozen=True)
class EngineCacheKey:
    """Everything a serialised TensorRT engine depends on.

    Attributes:
        onnx_sha256: sha256 of the ONNX file's bytes.
        tensorrt_version: ``tensorrt.__version__``.
        gpu_name: CUDA device name, e.g. ``"NVIDIA GeForce RTX 3080"``.
        compute_capability: ``"major.minor"``, e.g. ``"8.6"``.
        precision: ``"fp16"`` or ``"fp32"``.
        profile: :func:`profile_signature` of the optimisation profile.
    """

    onnx_sha256: str
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    profile: tuple = ()

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise EngineError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not re.fullmatch(r"[0-9a-f]{64}", self.onnx_sha256):
            raise EngineError(f"onnx_sha256 must be 64 hex digits, got {self.onnx_sha256!r}")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["profile"] = [
            {"input": n, "min": list(a), "opt": list(b), "max": list(c)} for n, a, b, c in self.profile
        ]
        return d

    @property
    def digest(self) -> str:
        """sha256 over the whole key (hex)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()

    def filename(self, stem: str) -> str:
        """``<model>.<precision>.<gpu>-sm<cc>.trt<version>.<digest12>.engine``: readable and unique."""
        cc = self.compute_capability.replace(".", "")
        return (
            f"{_slug(stem)}.{self.precision}.{_slug(self.gpu_name)}-sm{cc}."
            f"trt{_slug(self.tensorrt_version)}.{self.digest[:12]}.engine"
        )


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that readers see the old file, no file, or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def file_lock(path: Path, timeout_s: float = 1800.0, poll_s: float = 0.2) -> Iterator[None]:
    """Holds an exclusive advisory lock on ``path`` (created if needed) across processes.

    Args:
        path: The lock file.
        timeout_s: How long to wait for another holder (a TensorRT build can take minutes).
        poll_s: Wait between attempts.

    Raises:
        EngineError: when the lock is not free within ``timeout_s``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        if fcntl is None:  # pragma: no cover - Windows
            yield
            return
        deadline = time.monotonic() + timeout_s
        waited = False
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    log.info("waiting for another process holding %s", path)
                    waited = True
                if time.monotonic() > deadline:
                    raise EngineError(
                        f"{path}: still locked by another process after {timeout_s:.0f} s; if no build is running, "
                        f"delete the lock file"
                    ) from None
                time.sleep(poll_s)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class EngineCache:
    """Serialised engines and timing caches in one folder.

    Args:
        root: The folder; defaults to ``<user cache>/tensorrt``.
        lock_timeout_s: How long to wait for another process's build of the same engine.
    """

    def __init__(self, root: Path | str | None = None, lock_timeout_s: float = 1800.0) -> None:
        self.root = Path(root) if root is not None else cache_dir() / "tensorrt"
        self.lock_timeout_s = lock_timeout_s

    def path_for(self, key: EngineCacheKey, stem: str) -> Path:
        return self.root / key.filename(stem)

    def load(self, key: EngineCacheKey, stem: str) -> bytes | None:
        """The cached engine's bytes, or None."""
        path = self.path_for(key, stem)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def get_or_build(
        self, key: EngineCacheKey, stem: str, build: Callable[[], bytes], rebuild: bool = False
    ) -> tuple[bytes, bool]:
        """The cached engine, building and storing it first when absent.

        Only one process builds a given key at a time; the others wait for it and then read its result.

        Args:
            key: The engine's cache key.
            stem: Model name used in the file name.
            build: Returns the serialised engine; called at most once, under the lock.
            rebuild: Build even if a cached engine exists (e.g. it failed to deserialise).

        Returns:
            (engine bytes, True if this call built it).
        """
        path = self.path_for(key, stem)
        if not rebuild and (data := self.load(key, stem)) is not None:
            return data, False
        with file_lock(path.with_suffix(".lock"), self.lock_timeout_s):
            # Another process may have finished the same build while we waited for the lock.
            if not rebuild and (data := self.load(key, stem)) is not None:
                log.info("using the engine another process just built: %s", path.name)
                return data, False
            data = build()
            if not data:
                raise EngineError(f"building {path.name} produced no engine")
            atomic_write_bytes(path.with_suffix(".json"), (json.dumps(key.to_dict() | {"file": path.name,
                               "built_at": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=2) + "\n").encode())  # fmt: skip
            atomic_write_bytes(path, data)
        log.info("cached engine %s (%.1f MB)", path, len(data) / 1e6)
        return data, True

    def invalidate(self, key: EngineCacheKey, stem: str) -> None:
        """Removes a cached engine (e.g. one that no longer deserialises)."""
        path = self.path_for(key, stem)
        with file_lock(path.with_suffix(".lock"), self.lock_timeout_s):
            for p in (path, path.with_suffix(".json")):
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()

    def entries(self) -> list[dict]:
        """The sidecar records of every cached engine (for ``facetrack engines list``)."""
        out = []
        for side in sorted(self.root.glob("*.json")):
            try:
                rec = json.loads(side.read_text())
            except (OSError, ValueError):
                continue
            engine = side.with_suffix(".engine")
            if engine.is_file():
                out.append(rec | {"path": str(engine), "size_bytes": engine.stat().st_size})
        return out

    # ------------------------------------------------------------------ timing caches
    def timing_cache_path(self, tensorrt_version: str, gpu_name: str, compute_capability: str) -> Path:
        """One timing cache per TensorRT version and GPU, shared by every model's builds."""
        cc = compute_capability.replace(".", "")
        return self.root / f"timing.{_slug(gpu_name)}-sm{cc}.trt{_slug(tensorrt_version)}.cache"

    def read_timing_cache(self, path: Path) -> bytes:
        try:
            return Path(path).read_bytes()
        except FileNotFoundError:
            return b""

    def update_timing_cache(self, path: Path, merge: Callable[[bytes], bytes]) -> None:
        """Replaces the timing cache with ``merge(current bytes)`` under the lock.

        ``merge`` combines what is on disk now (another process may have added to it since this one
        read it) with this process's new timings, so concurrent builds of different models lose nothing.
        """
        with file_lock(Path(path).with_suffix(".lock"), self.lock_timeout_s):
            data = merge(self.read_timing_cache(path))
            if data:
                atomic_write_bytes(path, data)


__all__ = [
    "EngineCache", "EngineCacheKey", "PRECISIONS", "Profile", "atomic_write_bytes", "file_lock", "profile_signature",
]  # fmt: skip
