"""The one class that owns a thread: :class:`Worker` (ARCHITECTURE §7).

Every thread of the runtime (the track stage, each sink, the publisher's feeder) is a ``Worker``: a
daemon thread running ``target(stop_event)``, a stop event the target polls, the first exception the
target raised (handed to an ``on_error`` callback and kept for the caller to re-raise), and a join with a
timeout that reports, instead of hanging, a thread stuck in a driver call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Worker:
    """A named thread with a stop event, error capture and a bounded join.

    Args:
        name: Thread name (``worker-<name>``) and the name used in logs.
        target: ``target(stop_event)``; runs once on the thread and should return soon after the event is
            set. Its exception ends the worker and is kept in :attr:`error`.
        on_error: Called on the worker thread with the exception (e.g. to stop the whole pipeline).
        on_stop: Called by :meth:`stop` after the event is set (e.g. to wake a queue the target waits on).
        stop_event: The event to use, for an owner that already has one its other code waits on (a source's
            pacing sleeps, a publisher's loop); a new one by default.
    """

    def __init__(self, name: str, target: Callable[[threading.Event], None],
                 on_error: Callable[[BaseException], None] | None = None,
                 on_stop: Callable[[], None] | None = None,
                 stop_event: threading.Event | None = None) -> None:  # fmt: skip
        self.name = name
        self._target = target
        self._on_error = on_error
        self._on_stop = on_stop
        self.stop_event = stop_event if stop_event is not None else threading.Event()
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"worker-{name}", daemon=True)

    def _run(self) -> None:
        try:
            self._target(self.stop_event)
        except BaseException as exc:  # handed to the owner, re-raised in the caller's thread
            self.error = exc
            log.debug("worker %s failed: %r", self.name, exc)
            if self._on_error is not None:
                self._on_error(exc)

    def start(self) -> Worker:
        if not self._thread.is_alive() and self._thread.ident is None:
            self._thread.start()
        return self

    @property
    def started(self) -> bool:
        return self._thread.ident is not None

    @property
    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Asks the target to return (sets the event, then wakes it through ``on_stop``); never blocks."""
        self.stop_event.set()
        if self._on_stop is not None:
            self._on_stop()

    def join(self, timeout_s: float) -> bool:
        """Waits up to ``timeout_s`` for the thread; True when it has ended (or never started)."""
        if self._thread.is_alive():
            self._thread.join(max(0.0, timeout_s))
        if self._thread.is_alive():
            log.warning("worker %s did not stop within %.1f s; left behind (daemon)", self.name, timeout_s)
            return False
        return True


__all__ = ["Worker"]
