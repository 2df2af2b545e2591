"""Optional ZeroMQ CURVE encryption and client authentication for the stream.

``generate_keys(DIR)`` writes, with ``zmq.auth.create_certificates``::

    DIR/server.key                  server public key (give it to every client)
    DIR/server.key_secret           server secret key (stays with the publisher)
    DIR/<client>.key                client public key
    DIR/<client>.key_secret         client secret key (copy it, with server.key, to the client machine)
    DIR/authorized_clients/<client>.key   public keys the publisher accepts

A publisher started with the directory becomes a CURVE server and a ``ThreadAuthenticator`` accepts
only clients whose public key lies in ``authorized_clients/``: any other client completes no handshake
and receives nothing. Traffic is encrypted (Curve25519 + XSalsa20-Poly1305).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from tracker.core.errors import ConfigError, StreamError

log = logging.getLogger(__name__)

SERVER_NAME = "server"
DEFAULT_CLIENT_NAME = "client"
AUTHORIZED_DIR = "authorized_clients"


@dataclasses.dataclass(frozen=True)
class ServerKeys:
    """The publisher's keypair and where the accepted client public keys live."""

    public: bytes
    secret: bytes
    authorized_dir: Path


@dataclasses.dataclass(frozen=True)
class ClientKeys:
    """A client's keypair and the server public key it expects."""

    public: bytes
    secret: bytes
    server_public: bytes


def _check_curve() -> None:
    if not zmq.has("curve"):
        raise StreamError(
            "this libzmq was built without CURVE support; install pyzmq's wheels (they include it)"
        )


def generate_keys(key_dir: str | os.PathLike, clients: tuple[str, ...] = (DEFAULT_CLIENT_NAME,),
                  force: bool = False) -> dict[str, Path]:  # fmt: skip
    """Creates the server keypair (unless present) and one keypair per client name, and authorises them.

    Args:
        key_dir: Directory to write to (created if missing).
        clients: Client names; each gets ``<name>.key`` / ``<name>.key_secret``.
        force: Replace existing keypairs of the same names.

    Returns:
        Paths by role: ``server_public``, ``server_secret``, and ``<name>_public`` / ``<name>_secret``.
    """
    _check_curve()
    root = Path(key_dir)
    auth = root / AUTHORIZED_DIR
    auth.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    for name in (SERVER_NAME, *clients):
        if not name or "/" in name or name == AUTHORIZED_DIR or (name == SERVER_NAME and name in clients):
            raise ConfigError(f"bad key name {name!r}")
        public, secret = root / f"{name}.key", root / f"{name}.key_secret"
        if force or not (public.exists() and secret.exists()):
            zmq.auth.create_certificates(root, name)
            os.chmod(secret, 0o600)
            log.info("wrote keypair %s", public.with_suffix(""))
        out[f"{name}_public"], out[f"{name}_secret"] = public, secret
        if name != SERVER_NAME:
            shutil.copyfile(public, auth / public.name)
    return out


def _load(path: Path, need_secret: bool) -> tuple[bytes, bytes | None]:
    if not path.exists():
        raise ConfigError(f"CURVE key file {path} is missing; create keys with `facetrack stream keygen DIR`")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (ValueError, OSError) as exc:
        raise ConfigError(f"cannot read CURVE key file {path}: {exc}") from exc
    if need_secret and not secret:
        raise ConfigError(f"{path} holds no secret key")
    return public, secret


def load_server_keys(key_dir: str | os.PathLike) -> ServerKeys:
    """Loads the server keypair and checks the authorised-clients directory exists."""
    _check_curve()
    root = Path(key_dir)
    public, secret = _load(root / f"{SERVER_NAME}.key_secret", need_secret=True)
    auth = root / AUTHORIZED_DIR
    if not auth.is_dir() or not any(auth.glob("*.key")):
        raise ConfigError(f"{auth} holds no client public keys; no client could connect")
    return ServerKeys(public, secret, auth)  # type: ignore[arg-type]


def load_client_keys(key_dir: str | os.PathLike, name: str = DEFAULT_CLIENT_NAME) -> ClientKeys:
    """Loads a client's keypair and the server's public key from one directory."""
    _check_curve()
    root = Path(key_dir)
    public, secret = _load(root / f"{name}.key_secret", need_secret=True)
    server_public, _ = _load(root / f"{SERVER_NAME}.key", need_secret=False)
    return ClientKeys(public, secret, server_public)  # type: ignore[arg-type]


def start_authenticator(context: zmq.Context, keys: ServerKeys) -> ThreadAuthenticator:
    """Starts a ZAP authenticator on ``context`` accepting the authorised client keys (any address).

    The caller owns it and must call ``stop()``.
    """
    auth = ThreadAuthenticator(context, log=logging.getLogger(__name__ + ".zap"))
    auth.start()
    auth.configure_curve(domain="*", location=str(keys.authorized_dir))
    return auth


def make_server(socket: zmq.Socket, keys: ServerKeys) -> None:
    """Turns ``socket`` into a CURVE server (call before bind)."""
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public
    socket.curve_server = True


def make_client(socket: zmq.Socket, keys: ClientKeys) -> None:
    """Turns ``socket`` into a CURVE client of the server whose public key it holds (call before connect)."""
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public
    socket.curve_serverkey = keys.server_public
