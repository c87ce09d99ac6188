"""`make up`'s restart policy (launcher.supervise.Restarts): waits that double, and giving up."""

from __future__ import annotations

from launcher.supervise import Restarts


def test_waits_double_with_each_crash_up_to_the_cap():
    r = Restarts(limit=10, window_s=600, first_wait_s=0.5, max_wait_s=4)
    assert [r.next_wait("worker", now=t) for t in range(6)] == [0.5, 1, 2, 4, 4, 4]


def test_past_the_limit_within_the_window_it_gives_up():
    r = Restarts(limit=3, window_s=60)
    assert all(r.next_wait("triton", now=t) is not None for t in (0, 1, 2))
    assert r.next_wait("triton", now=3) is None


def test_crashes_older_than_the_window_are_forgotten():
    r = Restarts(limit=2, window_s=60, first_wait_s=1)
    r.next_wait("ingest", now=0)
    r.next_wait("ingest", now=10)
    assert r.next_wait("ingest", now=65) == 2  # the one at 0 s has left the window: 2 recent crashes
    assert r.next_wait("ingest", now=200) == 1


def test_each_process_counts_its_own_crashes():
    r = Restarts(limit=1, window_s=60)
    assert r.next_wait("envoy", now=0) is not None
    assert r.next_wait("redis", now=0) is not None
    assert r.next_wait("envoy", now=1) is None


def test_a_stop_signal_wins_over_a_child_that_exited_meanwhile():
    """SIGTERM to the whole group (systemd) ends children and the launcher together: it must stop,
    not restart the children one by one."""
    import signal
    import subprocess
    import sys
    import threading

    from launcher import supervise

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD})
    try:
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)  # pending here: blocked in this thread
        assert supervise.wait([child]) == "SIGTERM"
        assert not supervise.stop_requested()  # taken
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
