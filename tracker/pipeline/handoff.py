"""A small bounded queue that drops the oldest item when full (latency beats completeness, ARCHITECTURE §7)."""

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

    def put(self, item: T) -> bool:
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
