"""Reconnecting a live camera that stopped delivering frames (unplugged, USB reset, driver hiccup).

A camera counts as gone after ``failures_before_reconnect`` consecutive failed reads; then it is reopened
with exponential backoff, a bounded number of times, and every wait honours the source's stop event so
``close()`` never waits for the backoff. When every attempt fails the caller raises a
:class:`~tracker.core.errors.CameraError` that says what happened and what to check.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable

from tracker.core.errors import ConfigError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ReconnectPolicy:
    """How a live source reacts to failed reads.

    Attributes:
        failures_before_reconnect: Consecutive failed reads before the camera counts as gone (a single
            dropped frame is normal on USB and must not cost a reopen).
        max_attempts: Reopen attempts before giving up with a CameraError; 0 disables reconnecting.
        initial_backoff_s: Wait before the first attempt; doubled after each failure.
        max_backoff_s: Cap on a single wait.
    """

    failures_before_reconnect: int = 5
    max_attempts: int = 6
    initial_backoff_s: float = 0.25
    max_backoff_s: float = 4.0

    def __post_init__(self) -> None:
        if self.failures_before_reconnect < 1:
            raise ConfigError(f"failures_before_reconnect must be >= 1, got {self.failures_before_reconnect}")
        if self.max_attempts < 0:
            raise ConfigError(f"max_attempts must be >= 0, got {self.max_attempts}")
        if not (0 <= self.initial_backoff_s <= self.max_backoff_s):
            raise ConfigError(
                f"need 0 <= initial_backoff_s <= max_backoff_s, got {self.initial_backoff_s}, {self.max_backoff_s}"
            )

    def delays_s(self) -> list[float]:
        """The wait before each attempt, seconds."""
        return [min(self.initial_backoff_s * 2**i, self.max_backoff_s) for i in range(self.max_attempts)]


@dataclasses.dataclass(frozen=True)
class ReconnectOutcome:
    """What :func:`reconnect` did.

    Attributes:
        ok: The camera was reopened.
        stopped: The stop event was set while waiting (the source is closing; not an error).
        attempts: Reopen attempts made.
        waited_s: Total time spent, seconds.
        last_error: The last attempt's failure message, if any.
    """

    ok: bool
    stopped: bool
    attempts: int
    waited_s: float
    last_error: str = ""


def reconnect(
    source_id: str, reopen: Callable[[], None], policy: ReconnectPolicy, stop: threading.Event
) -> ReconnectOutcome:
    """Reopens a camera with bounded exponential backoff.

    Args:
        source_id: For log messages.
        reopen: Releases and reopens the device; raises (any exception) when the device is still absent.
        policy: Attempts and backoff.
        stop: Set when the source is closing; checked during every wait.

    Returns:
        The outcome; the caller raises when ``not ok and not stopped``.
    """
    t0 = time.monotonic()
    last = ""
    for attempt, delay in enumerate(policy.delays_s(), start=1):
        if stop.wait(delay):
            return ReconnectOutcome(False, True, attempt - 1, time.monotonic() - t0, last)
        try:
            reopen()
        except Exception as exc:  # the device is still gone; any driver error means "try again later"
            last = f"{type(exc).__name__}: {exc}"
            log.warning(
                "%s: reconnect attempt %d/%d failed: %s", source_id, attempt, policy.max_attempts, last
            )
            continue
        log.warning("%s: reconnected after %d attempt(s), %.1f s", source_id, attempt, time.monotonic() - t0)
        return ReconnectOutcome(True, False, attempt, time.monotonic() - t0)
    return ReconnectOutcome(False, stop.is_set(), policy.max_attempts, time.monotonic() - t0, last)
