"""The queues between threads; the source decides which one (ARCHITECTURE §7).

* :class:`DropOldestQueue` -- live sources: ``put`` never blocks and evicts the oldest item (latency beats
  completeness).
* :class:`BlockingQueue` -- files and image folders: ``put`` waits for room, so every item arrives in order
  (completeness beats speed).

Both take ``put(item, stop)`` / ``get(timeout_s)`` / ``wake()`` and count ``dropped``; :func:`handoff_for`
picks one.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Generic, TypeVar

from tracker.core.errors import ConfigError

T = TypeVar("T")


class DropOldestQueue(Generic[T]):
    """Thread-safe FIFO of at most ``maxsize`` items; ``put`` never blocks and evicts the oldest item.

    Attributes:
        dropped: How many items were evicted so far.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ConfigError(f"queue size must be >= 1, got {maxsize}")
        self._items: collections.deque[T] = collections.deque()
        self._maxsize = maxsize
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, item: T, stop: threading.Event | None = None) -> bool:
        """Appends ``item``; returns False when an older item had to be dropped to make room."""
        with self._cond:
            evicted = len(self._items) >= self._maxsize
            if evicted:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()
            return not evicted

    def get(self, timeout_s: float) -> T | None:
        """Removes and returns the oldest item, waiting up to ``timeout_s``; None on timeout."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        with self._cond:
            while not self._items:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            return self._items.popleft()

    def wake(self) -> None:
        """Wakes a waiting :meth:`get` (used on shutdown)."""
        with self._cond:
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


class BlockingQueue(DropOldestQueue[T]):
    """Thread-safe FIFO of at most ``maxsize`` items whose ``put`` waits for room: nothing is ever dropped.

    ``put`` gives up (returning False, the item not queued) only when ``stop`` is set, so a shutdown never
    waits on a consumer that has gone away.
    """

    def put(self, item: T, stop: threading.Event | None = None) -> bool:
        with self._cond:
            while len(self._items) >= self._maxsize:
                if stop is not None and stop.is_set():
                    return False
                self._cond.wait(0.05)
            self._items.append(item)
            self._cond.notify_all()
            return True

    def get(self, timeout_s: float) -> T | None:
        item = super().get(timeout_s)
        if item is not None:
            with self._cond:
                self._cond.notify_all()  # a producer waits for the room this made
        return item


def handoff_for(lossless: bool, maxsize: int) -> DropOldestQueue:
    """The queue a source's frames (and their results) need: blocking for files, drop-oldest for cameras."""
    return BlockingQueue(maxsize) if lossless else DropOldestQueue(maxsize)
