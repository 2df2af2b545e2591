"""What every bridge shares: the destination, the face that drives the avatar, the subscribe -> send loop."""

from __future__ import annotations

import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Callable

from tracker.core.errors import ConfigError
from tracker.stream.protocol import StreamResult

log = logging.getLogger(__name__)


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
class UdpDestination:
    """A UDP destination resolved once (a per-frame DNS lookup would stall frames and hide a typo).

    Attributes:
        host, port: As given.
        family: ``socket.AF_INET`` or ``socket.AF_INET6``.
        sockaddr: The resolved address to pass to ``sendto``.
    """

    host: str
    port: int
    family: int
    sockaddr: tuple

    @classmethod
    def resolve(cls, host: str, port: int) -> UdpDestination:
        """Resolves ``host`` (a name or an IPv4/IPv6 address) for UDP.

        Raises:
            ConfigError: if the host cannot be resolved or the port is out of range.
        """
        if not 0 < int(port) < 65536:
            raise ConfigError(f"port {port} out of range 1..65535")
        try:
            infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise ConfigError(f"cannot resolve the destination host {host!r}: {exc}") from None
        family, _, _, _, sockaddr = next((i for i in infos if i[0] == socket.AF_INET), infos[0])
        return cls(host, int(port), family, sockaddr)

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def resolve_destination(text: str, default_port: int) -> UdpDestination:
    """``--to HOST:PORT`` text -> a resolved :class:`UdpDestination` (ConfigError on a bad or unknown host)."""
    host, port = parse_host_port(text, default_port)
    return UdpDestination.resolve(host, port)


@dataclasses.dataclass(frozen=True)
class BridgeStats:
    """What a bridge run did.

    Attributes:
        frames_sent: Results forwarded with a tracked face (pose and weights went out).
        idle_sent: Keep-alives: results without a tracked face, and the calls made while nothing arrived.
        duration_s: How long the loop ran.
        results_received: Results taken from the stream (backlogs skipped by ``latest_only`` not counted).
        silent_warnings: Times the loop warned that nothing at all arrived for ``warn_silence_s``.
    """

    frames_sent: int
    idle_sent: int
    duration_s: float
    results_received: int = 0
    silent_warnings: int = 0


def run_bridge(
    subscriber,
    on_result: Callable[[StreamResult], bool | None],
    *,
    on_idle: Callable[[], None] | None = None,
    idle_after_ms: float = 500.0,
    stop: threading.Event | None = None,
    duration_s: float | None = None,
    max_frames: int | None = None,
    warn_silence_s: float | None = 3.0,
) -> BridgeStats:
    """Forwards the newest result to ``on_result`` until stopped; calls ``on_idle`` while nothing arrives.

    Only the newest result is forwarded (a backlog is skipped): an avatar must show the present. When not
    a single message (not even metadata) arrives for ``warn_silence_s`` a warning names the endpoint (a
    wrong ``--connect`` or a tracker that is not running looks exactly like that), once per silence.

    Args:
        subscriber: A connected :class:`~tracker.stream.subscriber.Subscriber`.
        on_result: Sends one result to the target; returns False when it sent no tracked face (a
            keep-alive) and True or None when it did.
        on_idle: Called every ``idle_after_ms`` without results (e.g. to report "tracking lost").
        stop: Ends the loop when set.
        duration_s: Ends after this long.
        max_frames: Ends after this many forwarded frames with a face.
        warn_silence_s: Seconds without any message before the warning (None: never warn).
    """
    t0 = time.monotonic()
    sent = idle = received = warnings = 0
    last_count, last_arrival, warned = subscriber.stats().received, t0, False
    endpoint = getattr(subscriber, "endpoint", "the stream")
    while not (stop is not None and stop.is_set()):
        now = time.monotonic()
        if duration_s is not None and now - t0 >= duration_s:
            break
        if max_frames is not None and sent >= max_frames:
            break
        wait_ms = idle_after_ms if duration_s is None else max(0.0, min(idle_after_ms, (t0 + duration_s - now) * 1e3))
        msg = subscriber.recv_latest(wait_ms)
        count = subscriber.stats().received
        if count != last_count:
            last_count, last_arrival, warned = count, time.monotonic(), False
        elif (warn_silence_s is not None and not warned
              and time.monotonic() - last_arrival >= warn_silence_s):  # fmt: skip
            log.warning("nothing received from %s for %.0f s: is a tracker publishing there (check --connect)?",
                        endpoint, time.monotonic() - last_arrival)  # fmt: skip
            warned, warnings = True, warnings + 1
        if msg is None:
            if on_idle is not None and (duration_s is None or time.monotonic() - t0 < duration_s):
                on_idle()
                idle += 1
            continue
        received += 1
        if on_result(msg) is False:
            idle += 1
        else:
            sent += 1
    return BridgeStats(sent, idle, time.monotonic() - t0, received, warnings)
