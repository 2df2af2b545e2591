"""The one thread owner: error capture, prompt stop, bounded join."""

import threading

from tracker.pipeline.worker import Worker


def test_error_is_kept_and_reported():
    seen = []

    def target(stop):
        raise RuntimeError("injected: device gone")

    w = Worker("w", target, on_error=seen.append).start()
    assert w.join(2.0)
    assert isinstance(w.error, RuntimeError) and seen == [w.error]


def test_stop_sets_the_event_and_wakes_the_target():
    woken = threading.Event()

    def target(stop):
        woken.wait(5.0)  # stands for a queue wait that only the on_stop hook ends
        assert stop.is_set()

    w = Worker("w", target, on_stop=woken.set).start()
    w.stop()
    assert w.join(2.0) and w.error is None


def test_join_of_a_stuck_thread_returns_false_instead_of_hanging():
    release = threading.Event()
    w = Worker("stuck", lambda stop: release.wait(10.0)).start()
    try:
        assert w.join(0.1) is False and w.is_alive
    finally:
        release.set()
    assert w.join(2.0)


def test_join_before_start_is_true():
    assert Worker("never", lambda stop: None).join(0.0)
