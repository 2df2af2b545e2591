import threading
import time

import pytest

from tracker.core.errors import ConfigError
from tracker.pipeline.handoff import BlockingQueue, DropOldestQueue, handoff_for


def test_drops_the_oldest_and_counts():
    q = DropOldestQueue(2)
    assert q.put(1) and q.put(2) and not q.put(3)
    assert q.dropped == 1 and len(q) == 2
    assert q.get(0.0) == 2 and q.get(0.0) == 3 and q.get(0.0) is None


def test_get_waits_and_wake_returns_promptly():
    q = DropOldestQueue(1)
    threading.Timer(0.05, q.put, args=("x",)).start()
    assert q.get(1.0) == "x"
    t0 = time.perf_counter()
    assert q.get(0.2) is None  # empty: returns None at the timeout, not later
    assert 0.15 < time.perf_counter() - t0 < 1.0


def test_size_must_be_positive():
    with pytest.raises(ConfigError):
        DropOldestQueue(0)


def test_blocking_queue_waits_for_room_and_never_drops():
    q = BlockingQueue(1)
    assert q.put("a")
    threading.Timer(0.05, q.get, args=(0.0,)).start()  # the consumer takes "a" a little later
    assert q.put("b")  # waited for that room instead of evicting "a"
    assert q.dropped == 0 and q.get(0.0) == "b"


def test_blocking_put_gives_up_on_stop():
    q, stop = BlockingQueue(1), threading.Event()
    q.put("a")
    threading.Timer(0.05, stop.set).start()
    assert q.put("b", stop) is False  # a shutdown never waits on a consumer that went away
    assert len(q) == 1 and q.get(0.0) == "a"


def test_the_source_chooses_the_queue():
    assert isinstance(handoff_for(True, 4), BlockingQueue)
    assert type(handoff_for(False, 1)) is DropOldestQueue
