"""The faults the soak injects, each into a real process found by its PID in the stack's
``stack.json`` (``make up`` writes it and rewrites it once a restarted process is healthy).

``make up`` restarts what exits (launcher.up), so a kill here is followed by its supervisor's
restart; the soak times both. Triton is stalled with SIGSTOP (its whole process group: server
and backend stubs) for longer than the workers' call deadline, then let go with SIGCONT. The
embedded Valkey keeps nothing on disk, so killing it loses every broker message and event.
PostgreSQL is restarted as after a crash (``pg_ctl stop -m immediate``), when the soak runs its own.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

KINDS = ("worker-child", "orchestrator", "ingest", "triton", "redis", "worker", "triton-stall", "envoy",
         "analysis", "postgres")
KILLED = {"orchestrator": "orchestrator", "ingest": "ingest", "triton": "triton", "redis": "redis",
          "worker": "worker", "envoy": "envoy", "analysis": "analysis"}  # kind -> stack.json process


@dataclass
class Fault:
    kind: str
    at: float  # monotonic
    detail: str
    back_s: float | None = None  # until the process was healthy again (None: never, or not a restart)
    recovered_s: float | None = None  # until done/s was back near the offered rate (report.py)


def children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return -1
    return int(fields[11]) + int(fields[12])


def busiest(pids: list[int], over_s: float = 0.3) -> int:
    """The one that used the most CPU over ``over_s``: a pool process in the middle of a batch."""
    before = {p: cpu_ticks(p) for p in pids}
    time.sleep(over_s)
    return max(pids, key=lambda p: cpu_ticks(p) - before[p])


class Injector:
    def __init__(self, stack_json: Path, say, postgres=None, stall_s: float = 15.0, back_timeout_s: float = 180.0):
        self.stack_json, self.say, self.postgres = Path(stack_json), say, postgres
        self.stall_s, self.back_timeout_s = stall_s, back_timeout_s
        self.faults: list[Fault] = []
        self.threads: list[threading.Thread] = []
        self.turn = 0  # which orchestrator replica goes next

    def pids(self) -> dict[str, int]:
        return json.loads(self.stack_json.read_text())["pids"]

    def can(self, kind: str) -> bool:
        """Whether this stack has what the fault needs (an external Triton or Redis is not ours to kill)."""
        if kind == "postgres":
            return self.postgres is not None
        pids = self.pids()
        need = {"worker-child": "worker", "triton-stall": "triton"}.get(kind, KILLED.get(kind))
        return need in pids

    def inject(self, kind: str) -> Fault:
        pids = self.pids()
        if kind == "worker-child":
            pool = children(pids["worker"])
            victim = busiest(pool) if pool else pids["worker"]
            fault = Fault(kind, time.monotonic(), f"SIGKILL pool process {victim} of worker {pids['worker']}")
            os.kill(victim, signal.SIGKILL)
        elif kind in KILLED:
            name = KILLED[kind]
            if name == "orchestrator":  # replicas die in turn
                names = sorted(n for n in pids if n.startswith("orchestrator"))
                name, self.turn = names[self.turn % len(names)], self.turn + 1
            fault = Fault(kind, time.monotonic(), f"SIGKILL {name} (pid {pids[name]})"
                          + (", its data lost (kept in memory only)" if name == "redis" else ""))
            os.kill(pids[name], signal.SIGKILL)
            self._later(self._back, fault, name, pids[name])
        elif kind == "triton-stall":
            fault = Fault(kind, time.monotonic(),
                          f"SIGSTOP triton's group (pid {pids['triton']}) for {self.stall_s:g} s")
            os.killpg(pids["triton"], signal.SIGSTOP)
            self._later(self._release, fault, pids["triton"])
        elif kind == "postgres":
            fault = Fault(kind, time.monotonic(), "PostgreSQL stopped immediately (as a crash), then started")
            self._later(self._restart_postgres, fault)
        else:
            raise ValueError(f"unknown fault {kind!r}; known: {', '.join(KINDS)}")
        self.say(f"fault: {fault.detail}")
        self.faults.append(fault)
        return fault

    def _later(self, target, *args) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self.threads.append(thread)

    def _back(self, fault: Fault, name: str, old_pid: int) -> None:
        deadline = fault.at + self.back_timeout_s
        while time.monotonic() < deadline:
            try:
                pid = self.pids().get(name)
            except (OSError, ValueError):  # being replaced
                pid = None
            if pid and pid != old_pid:
                fault.back_s = time.monotonic() - fault.at
                self.say(f"fault: {name} back after {fault.back_s:.1f} s (pid {pid})")
                return
            time.sleep(0.1)
        self.say(f"fault: {name} not back after {self.back_timeout_s:g} s")

    def _release(self, fault: Fault, pgid: int) -> None:
        time.sleep(self.stall_s)
        try:
            os.killpg(pgid, signal.SIGCONT)
        except ProcessLookupError:
            pass
        fault.back_s = time.monotonic() - fault.at
        self.say(f"fault: triton let go after {fault.back_s:.1f} s")

    def _restart_postgres(self, fault: Fault) -> None:
        took = self.postgres.restart()
        fault.back_s = time.monotonic() - fault.at
        self.say(f"fault: PostgreSQL back after {took:.1f} s")

    def release_all(self) -> None:
        """Lets a stalled Triton go (a soak stopped mid-stall must not leave it frozen)."""
        try:
            os.killpg(self.pids()["triton"], signal.SIGCONT)
        except (OSError, KeyError, ValueError):
            pass

    def wait(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
