"""Third-party asset registry: where each asset comes from, its hash and licence, and where it is found.

Assets are never committed. They are found on a search path (``$FACETRACK_ASSETS``, which may list
several folders separated by ``os.pathsep``; then the folders the set-up recorded in the environment's
:func:`config_path`, so ``.venv/bin/facetrack`` finds them in any shell; then the user cache
``<cache>/assets``) and fetched from
upstream by ``facetrack assets fetch``. Every lookup can verify the sha256; a missing or corrupt asset
raises :class:`~tracker.core.errors.AssetError` naming the file, both hashes and the command that fixes it.

The ICT face model arrives upstream as a folder of a git repository whose archives are not byte-stable,
so its identity is :func:`folder_content_sha256`: a hash over the model files' names and contents,
whatever archive (``.tar.xz``, ``.zip``) or folder they arrive in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import lzma
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from tracker.core.errors import AssetError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Asset:
    """One registered third-party asset.

    Attributes:
        name: Registry key (``facetrack assets path NAME``).
        relpath: Path below an asset root, e.g. ``yunet/face_detection_yunet_2023mar.onnx``.
        url: Upstream download address.
        sha256: Hash of the file, or for ``kind == "folder"`` the content hash of the model folder.
        licence: SPDX-style licence of the asset.
        size_bytes: Size of the file as distributed (0 when unknown, e.g. a folder).
        kind: ``"file"`` or ``"folder"`` (a folder that may also arrive packed as .tar.xz/.zip).
        folder: For ``kind == "folder"``: the folder's name inside archives (e.g. ``FaceXModel``).
        description: One line for ``assets list``.
        required: The tracker cannot run without it (``assets list`` fails while it is missing); optional
            assets serve the teacher, baselines or an alternative export.
    """

    name: str
    relpath: str
    url: str
    sha256: str
    licence: str
    size_bytes: int = 0
    kind: str = "file"
    folder: str = ""
    description: str = ""
    required: bool = True


REGISTRY: tuple[Asset, ...] = (
    Asset(
        name="ict-facekit",
        relpath="ict-facekit/FaceXModel.tar.xz",
        url="https://github.com/ICT-VGL/ICT-FaceKit/archive/refs/heads/master.zip",
        sha256="214aa34c660a6e12de7ec1eb9211fc16171ac9f20df40f9b81eb536851ff4f01",
        licence="MIT",
        size_bytes=26763544,
        kind="folder",
        folder="FaceXModel",
        description="ICT Face Model Light (26,719 vertices, 100 identity + 53 expression shapes, cm)",
    ),
    Asset(
        name="yunet",
        relpath="yunet/face_detection_yunet_2023mar.onnx",
        url="https://github.com/opencv/opencv_zoo/raw/main/models/face_detection_yunet/face_detection_yunet_2023mar.onnx",
        sha256="8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4",
        licence="MIT",
        size_bytes=232589,
        description="YuNet face detector, fixed 1x3x640x640 input (opencv_zoo)",
        required=False,
    ),
    Asset(
        name="yunet-dynamic",
        relpath="yunet/yunet_s_dynamic.onnx",
        url="https://github.com/ShiqiYu/libfacedetection.train/raw/master/onnx/yunet_s_dynamic.onnx",
        sha256="daede24002cc8590f457998cc5e6c9e8b82f45f6bd969506a8913cd4ed10a2d3",
        licence="Apache-2.0",
        size_bytes=237823,
        description="YuNet, dynamic batch/height/width export of the same weights",
    ),
    Asset(
        name="mediapipe-face-landmarker",
        relpath="mediapipe/face_landmarker.task",
        url="https://storage.googleapis.com/mediapipe-models/face_landmarker/face_landmarker/float16/1/face_landmarker.task",
        sha256="64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff",
        licence="Apache-2.0",
        size_bytes=3758596,
        description="MediaPipe Face Landmarker (teacher for fitting and baselines; never on the tracking path)",
        required=False,
    ),
    Asset(
        name="mediapipe-canonical-mesh",
        relpath="mediapipe/canonical_face_model.obj",
        url="https://raw.githubusercontent.com/google/mediapipe/master/mediapipe/modules/face_geometry/data/canonical_face_model.obj",
        sha256="8bac80443397e113f41a8b565ea72c59390bc031d9defab289dba7bc0c54e618",
        licence="Apache-2.0",
        size_bytes=45999,
        description="MediaPipe 468-vertex canonical face mesh with UVs",
        required=False,
    ),
)


def get_asset(name: str) -> Asset:
    """Looks an asset up by registry name."""
    for a in REGISTRY:
        if a.name == name:
            return a
    raise AssetError(f"unknown asset {name!r}; known: {', '.join(a.name for a in REGISTRY)}")


def cache_dir() -> Path:
    """The user cache root: ``$FACETRACK_CACHE``, else ``$XDG_CACHE_HOME/facetrack``, else ``~/.cache/facetrack``."""
    if os.environ.get("FACETRACK_CACHE"):
        return Path(os.environ["FACETRACK_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "facetrack"


def config_path() -> Path:
    """The asset folders the set-up recorded for this Python environment: ``<sys.prefix>/etc/facetrack/assets.path``.

    One folder per line. ``scripts/bootstrap.sh`` writes it (``facetrack assets use DIR``), so the venv it made
    finds the same assets in a new shell, with no variable to export. It lives in the environment, not in the
    home folder, so two checkouts with two venvs never see each other's choice.
    """
    return Path(sys.prefix) / "etc" / "facetrack" / "assets.path"


def configured_roots() -> list[Path]:
    """The folders in :func:`config_path` (none when the file does not exist)."""
    try:
        lines = config_path().read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise AssetError(f"cannot read {config_path()}: {exc}; fix or delete it (facetrack assets use DIR)") from exc
    return [Path(line.strip()).expanduser() for line in lines if line.strip() and not line.startswith("#")]


def record_roots(folders: Iterable[Path]) -> Path:
    """Writes ``folders`` (made absolute) into :func:`config_path`; returns the file.

    Raises:
        AssetError: if a folder does not exist.
    """
    folders = [Path(f).expanduser().resolve() for f in folders]
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        raise AssetError(f"not a folder: {', '.join(missing)}; give the folder that holds the assets")
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# asset folders for this environment, written by `facetrack assets use`\n"
                    + "".join(f"{f}\n" for f in folders), encoding="utf-8")  # fmt: skip
    return path


def search_roots() -> list[Path]:
    """Asset roots in search order: ``$FACETRACK_ASSETS``, the recorded folders, then ``<cache>/assets``."""
    roots = [Path(p).expanduser() for p in os.environ.get("FACETRACK_ASSETS", "").split(os.pathsep) if p]
    return roots + configured_roots() + [cache_dir() / "assets"]


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def content_sha256(entries: Iterable[tuple[str, bytes]]) -> str:
    """Hash over (relative name, file sha256) pairs, sorted by name: the identity of a model folder."""
    digests = [(rel, hashlib.sha256(data).hexdigest()) for rel, data in entries]
    h = hashlib.sha256()
    for rel, digest in sorted(digests):
        h.update(rel.encode() + b"\0" + digest.encode() + b"\n")
    return h.hexdigest()


def iter_folder_files(source: Path, folder: str) -> Iterator[tuple[str, bytes]]:
    """Yields (name relative to ``folder``, bytes) for every regular file of a model folder.

    ``source`` may be the folder itself, a ``.tar.xz``/``.tar.gz``/``.tar`` or a ``.zip`` that contains a
    directory called ``folder`` at any depth (e.g. ``ICT-FaceKit-master/FaceXModel/`` in GitHub's zip).

    Raises:
        AssetError: when the source does not exist, is unreadable, or holds no such folder.
    """
    source = Path(source)
    found = False
    try:
        if source.is_dir():
            for p in sorted(source.rglob("*")):
                if p.is_file():
                    found = True
                    yield p.relative_to(source).as_posix(), p.read_bytes()
        elif source.suffix == ".zip":
            with zipfile.ZipFile(source) as zf:
                for info in zf.infolist():
                    rel = _member_rel(info.filename, folder)
                    if rel and not info.is_dir():
                        found = True
                        yield rel, zf.read(info)
        elif tarfile.is_tarfile(source):
            with tarfile.open(source) as tf:
                for member in tf:
                    rel = _member_rel(member.name, folder)
                    if rel and member.isfile():
                        found = True
                        yield rel, tf.extractfile(member).read()
        else:
            raise AssetError(f"{source}: not a folder, .zip or tar archive")
    except (OSError, EOFError, tarfile.TarError, zipfile.BadZipFile, lzma.LZMAError) as exc:
        raise AssetError(
            f"{source}: cannot read the archive ({exc}). It is truncated or corrupt: "
            f"re-run `facetrack assets fetch` or restore it from upstream."
        ) from exc
    if not found:
        raise AssetError(f"{source}: holds no '{folder}/' folder with files")


def _member_rel(member: str, folder: str) -> str | None:
    parts = member.replace("\\", "/").strip("/").split("/")
    if folder in parts:
        rest = parts[parts.index(folder) + 1 :]
        return "/".join(rest) if rest else None
    return None


def folder_content_sha256(source: Path, folder: str) -> str:
    """Content hash of a model folder, identical for the folder and any archive of it."""
    return content_sha256(iter_folder_files(source, folder))


@dataclasses.dataclass(frozen=True)
class AssetStatus:
    """Result of checking one asset on disk."""

    asset: Asset
    path: Path | None
    state: str  # "ok", "missing", "mismatch", "unverified"
    actual_sha256: str = ""

    @property
    def ok(self) -> bool:
        return self.state in ("ok", "unverified")


def _candidates(asset: Asset, root: Path) -> list[Path]:
    base = root / asset.relpath
    if asset.kind != "folder":
        return [base]
    folder = base.parent / asset.folder
    return [folder, base, base.parent / (asset.folder + ".zip")]


def locate(asset: Asset) -> Path | None:
    """First existing copy of ``asset`` on the search path, or None."""
    for root in search_roots():
        for cand in _candidates(asset, root):
            if cand.exists():
                return cand
    return None


def asset_hash(asset: Asset, path: Path) -> str:
    """The hash that identifies ``asset`` at ``path`` (file hash, or folder content hash)."""
    if asset.kind == "folder":
        return folder_content_sha256(path, asset.folder)
    return file_sha256(path)


def check(asset: Asset, verify: bool = True) -> AssetStatus:
    """Finds an asset and (optionally) re-hashes it."""
    path = locate(asset)
    if path is None:
        return AssetStatus(asset, None, "missing")
    if not verify:
        return AssetStatus(asset, path, "unverified")
    try:
        actual = asset_hash(asset, path)
    except AssetError as exc:
        log.warning("%s", exc)
        return AssetStatus(asset, path, "mismatch", "unreadable")
    return AssetStatus(asset, path, "ok" if actual == asset.sha256 else "mismatch", actual)


def require(name: str, verify: bool = True) -> Path:
    """Path of a present (and, by default, verified) asset.

    Raises:
        AssetError: if it is missing or its hash differs, naming the file, both hashes and the fix.
    """
    asset = get_asset(name)
    st = check(asset, verify=verify)
    if st.state == "missing":
        roots = ", ".join(str(r) for r in search_roots())
        raise AssetError(
            f"asset {name!r} ({asset.relpath}) not found in: {roots}. "
            f"Run `facetrack assets fetch {name}` (downloads {asset.url}) or set FACETRACK_ASSETS to a "
            f"folder that holds it."
        )
    if st.state == "mismatch":
        raise AssetError(
            f"asset {name!r} at {st.path} is corrupt: sha256 expected {asset.sha256}, got {st.actual_sha256}. "
            f"Run `facetrack assets fetch {name} --force` to download it again."
        )
    return st.path


def fetch(asset: Asset, force: bool = False, progress: bool = True) -> Path:
    """Downloads ``asset`` into the user cache, verifies it and returns its path.

    Nothing already on disk is replaced until the new download has been verified.
    """
    st = check(asset)
    if st.state == "ok" and not force:
        return st.path
    dest_root = cache_dir() / "assets"
    dest = dest_root / asset.relpath
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        part = Path(tmp) / (Path(asset.url).name or "download")
        _download(asset.url, part, asset.size_bytes if asset.kind == "file" else 0, progress)
        actual = asset_hash(asset, part)
        if actual != asset.sha256:
            raise AssetError(
                f"download of {asset.name!r} from {asset.url} has sha256 {actual}, expected {asset.sha256}; "
                f"upstream changed or the download was damaged. Nothing was replaced."
            )
        if asset.kind == "folder":
            final = dest.parent / asset.folder
            staging = Path(tmp) / asset.folder
            for rel, data in iter_folder_files(part, asset.folder):
                out = staging / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(data)
            if final.exists():
                shutil.rmtree(final)
            staging.rename(final)
            return final
        os.replace(part, dest)
    return dest


def _download(url: str, out: Path, expected_size: int, progress: bool) -> None:
    from tqdm import tqdm

    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(out, "wb") as f:
            total = int(resp.headers.get("Content-Length") or expected_size or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=out.name, disable=not progress) as bar:
                while chunk := resp.read(_CHUNK):
                    f.write(chunk)
                    bar.update(len(chunk))
    except OSError as exc:
        raise AssetError(
            f"cannot download {url}: {exc}. On a machine without internet, copy the asset into a folder "
            f"and point FACETRACK_ASSETS at it."
        ) from exc


def read_bytes(name: str) -> bytes:
    """The bytes of a file asset (verified)."""
    return require(name).read_bytes()


__all__ = [
    "Asset", "AssetStatus", "REGISTRY", "asset_hash", "cache_dir", "check", "content_sha256", "fetch", "file_sha256",
    "folder_content_sha256", "get_asset", "iter_folder_files", "locate", "read_bytes", "require",
    "search_roots",
]  # fmt: skip
