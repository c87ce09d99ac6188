"""Child processes that never outlive their launcher, and a wait that any stop signal ends.

Python runs signal handlers in the main thread only, and a signal delivered to another thread
(gRPC starts several) does not interrupt a main thread blocked in ``waitpid``. So a launcher
blocks SIGINT/SIGTERM/SIGCHLD in every thread and takes them with ``sigwait`` instead.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
_WAITED = STOP_SIGNALS | {signal.SIGCHLD}
_PR_SET_PDEATHSIG = 1
# Looked up once here: in a forked child, dlopen/dlsym can wait forever on a loader lock that
# another thread of the parent (gRPC's) held at fork time. Seen as a hung Stack.restart.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def block_signals() -> None:
    """Call before any thread starts: threads inherit the mask, so only ``wait`` sees the signals."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _WAITED)


def child_setup() -> None:
    """``preexec_fn`` for children: default signal mask, and SIGTERM when the launcher dies."""
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def spawn(command: list[str], log_file=None, *, mode: str = "ab", **popen_kwargs) -> subprocess.Popen:
    """Start a child with its output in ``log_file`` (None: the launcher's terminal), no stdin, in
    its own process group (a stop reaches what it forks: backend stubs, a worker's pool; Ctrl-C
    reaches only the launcher, which stops the rest in order) and dying with its launcher."""
    if log_file is None:
        return subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True,
                                preexec_fn=child_setup, **popen_kwargs)
    with open(log_file, mode) as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=child_setup, **popen_kwargs)


def stop_requested() -> bool:
    """A stop signal is pending (blocked signals wait here until taken)."""
    return bool(STOP_SIGNALS & signal.sigpending())


def wait(processes: Iterable[subprocess.Popen]) -> str:
    """Block until a stop signal arrives or a process exits; says which (a signal's name, such as
    ``SIGTERM``, or what exited). A stop signal wins over a child that exited meanwhile."""
    processes = list(processes)
    while True:
        if stop_requested():
            return signal.Signals(signal.sigwait(STOP_SIGNALS)).name
        for p in processes:
            if p.poll() is not None:
                return f"{p.args[0] if isinstance(p.args, list) else p.args} exited with code {p.returncode}"
        signum = signal.sigwait(_WAITED)
        if signum in STOP_SIGNALS:
            return signal.Signals(signum).name


def sleep_unless_stopped(seconds: float) -> bool:
    """Sleep, unless a stop signal comes first (True then). A child's exit meanwhile does not end it."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        signum = signal.sigtimedwait(_WAITED, left)
        if signum is not None and signum.si_signo in STOP_SIGNALS:
            return True
    return False


@dataclass
class Restarts:
    """When to start a crashed process again, as compose's ``restart: on-failure`` with a limit:
    waits double from ``first_wait_s`` with each crash inside ``window_s`` (up to ``max_wait_s``);
    past ``limit`` crashes inside the window, ``None``: give up, something is wrong for good."""

    limit: int = 5
    window_s: float = 60.0
    first_wait_s: float = 0.5
    max_wait_s: float = 10.0
    crashes: dict[str, deque] = field(default_factory=dict)

    def next_wait(self, name: str, now: float | None = None) -> float | None:
        now = time.monotonic() if now is None else now
        recent = self.crashes.setdefault(name, deque())
        recent.append(now)
        while now - recent[0] > self.window_s:
            recent.popleft()
        if len(recent) > self.limit:
            return None
        return min(self.max_wait_s, self.first_wait_s * 2 ** (len(recent) - 1))


def ready_or_stopped(wait_ready: Callable[[], None], stop: Callable[[], None]) -> None:
    """``wait_ready()``; a server that does not get ready (or a Ctrl-C meanwhile) is stopped again."""
    try:
        wait_ready()
    except BaseException:
        stop()
        raise
