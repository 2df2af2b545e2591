"""What every bridge shares: choosing the face to drive the avatar, and the subscribe -> send loop."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable

from tracker.core.errors import ConfigError
from tracker.core.types import FaceState
from tracker.stream.protocol import StreamResult

log = logging.getLogger(__name__)


def primary_face(msg: StreamResult) -> tuple[int, FaceState] | None:
    """The face that drives a single avatar: the most confident face that is not lost.

    Returns:
        (index into ``msg.result.faces``, face), or None when no face is tracked.
    """
    live = [(i, f) for i, f in enumerate(msg.result.faces) if f.state != "lost"]
    if not live:
        return None
    return max(live, key=lambda item: item[1].confidence)


def parse_host_port(text: str, default_port: int) -> tuple[str, int]:
    """``"HOST:PORT"``, ``"HOST"`` or ``":PORT"`` -> (host, port); the host defaults to 127.0.0.1."""
    host, sep, port = text.rpartition(":")
    if not sep:  # no colon: the whole text is the host
        host, port = text, ""
    host = host.strip("[]") or "127.0.0.1"
    try:
        p = int(port) if port else default_port
    except ValueError:
        raise ConfigError(f"expected HOST:PORT, got {text!r}") from None
    if not 0 < p < 65536:
        raise ConfigError(f"port out of range in {text!r}")
    return host, p


@dataclasses.dataclass(frozen=True)
class BridgeStats:
    frames_sent: int
    idle_sent: int
    duration_s: float


def run_bridge(
    subscriber,
    on_result: Callable[[StreamResult], None],
    *,
    on_idle: Callable[[], None] | None = None,
    idle_after_ms: float = 500.0,
    stop: threading.Event | None = None,
    duration_s: float | None = None,
    max_frames: int | None = None,
) -> BridgeStats:
    """Forwards the newest result to ``on_result`` until stopped; calls ``on_idle`` while nothing arrives.

    Only the newest result is forwarded (a backlog is skipped): an avatar must show the present.

    Args:
        subscriber: A connected :class:`~tracker.stream.subscriber.Subscriber`.
        on_result: Sends one result to the target.
        on_idle: Called every ``idle_after_ms`` without results (e.g. to report "tracking lost").
        stop: Ends the loop when set.
        duration_s: Ends after this long.
        max_frames: Ends after this many results.
    """
    t0 = time.monotonic()
    sent = idle = 0
    while not (stop is not None and stop.is_set()):
        if duration_s is not None and time.monotonic() - t0 >= duration_s:
            break
        if max_frames is not None and sent >= max_frames:
            break
        msg = subscriber.recv_latest(idle_after_ms)
        if msg is None:
            if on_idle is not None:
                on_idle()
                idle += 1
            continue
        on_result(msg)
        sent += 1
    return BridgeStats(sent, idle, time.monotonic() - t0)
