"""Option groups shared by several subcommands, defined once."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DEFAULT_PUBLISH_ENDPOINT = "tcp://127.0.0.1:5555"


def add_json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON to PATH")


def add_connect_option(parser: argparse.ArgumentParser, default: str = DEFAULT_PUBLISH_ENDPOINT) -> None:
    parser.add_argument("--connect", default=default, metavar="EP", help=f"ZeroMQ endpoint to subscribe to (default {default})")


def add_publish_option(parser: argparse.ArgumentParser, default: str | None = DEFAULT_PUBLISH_ENDPOINT) -> None:
    parser.add_argument(
        "--publish", default=default, metavar="EP",
        help=f"ZeroMQ endpoint to bind the result stream to (default {default}; loopback only unless you ask)",
    )  # fmt: skip


def add_curve_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--curve-keys", type=Path, metavar="DIR",
        help="encrypt and authenticate the stream with ZeroMQ CURVE keys from DIR (`facetrack stream keygen DIR`)",
    )  # fmt: skip


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: Path | None, payload: dict) -> None:
    """Writes ``payload`` (numpy values allowed) to ``path`` if given."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(payload), indent=2) + "\n")
    log.info("wrote %s", path)
