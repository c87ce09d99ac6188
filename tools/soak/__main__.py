"""Chaos soak: a steady load while every part of the stack is killed on a schedule, then a check
that nothing accepted was lost or doubled.

    python -m tools.soak                                   # 1 hour, 100 jobs/s, SQLite
    python -m tools.soak --database postgresql             # on a PostgreSQL server of its own
    python -m tools.soak --duration 0 --every 15           # each fault once (the test's short soak)
    python -m tools.soak --stack .run                      # against a running `make up` (its stack.json)

It starts ``make up``'s launcher (``python -m launcher``) on free ports in a directory of its own,
which restarts whatever dies; offers ``--rate`` jobs/s (tools.soak.load); injects the faults of
``--faults`` in turn every ``--every`` seconds (tools.soak.faults); stops the load, waits for every
accepted job to end, and checks the record against the database (tools.soak.check). Prints the
report and writes it as JSON with a PNG beside it. Exit status 0 when nothing was lost, doubled
or stuck, 1 otherwise, 130 when stopped by Ctrl-C or SIGTERM (which stop it and all it started).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path

from launcher import supervise
from launcher.stack import ROOT, signal_pid
from tools.soak import check, report
from tools.soak.faults import KINDS, Injector
from tools.soak.load import Feed, Producers, Record
from tools.soak.postgres import PrivatePostgres

# The soak's own stack: a job lost by a fault is dispatched again after 10 s unchanged (30 by default).
STACK_ENV = {"ORCHESTRATOR_STUCK_S": "10", "ORCHESTRATOR_RECONCILE_S": "1", "STACK_STOP_TIMEOUT": "5",
             "STACK_RESTART_LIMIT": "8"}


class Interrupted(Exception):
    pass


def say(line: str) -> None:
    print(f"{datetime.now():%H:%M:%S}  {line}", flush=True)


def parse(argv):
    parser = argparse.ArgumentParser(prog="python -m tools.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=3600.0,
                        help="seconds of load (0: long enough for each fault once)")
    parser.add_argument("--rate", type=float, default=100.0, help="offered jobs/s")
    parser.add_argument("--every", type=float, default=180.0, help="seconds between faults")
    parser.add_argument("--warmup", type=float, default=20.0, help="seconds of load before the first fault")
    parser.add_argument("--faults", default=",".join(KINDS),
                        type=lambda v: tuple(k.strip() for k in v.split(",") if k.strip()),
                        help="the kinds, injected in turn (postgres only with --database postgresql)")
    parser.add_argument("--stall", type=float, default=15.0,
                        help="seconds Triton stays stopped (past the workers' 10 s call deadline)")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite",
                        help="postgresql: a private server (initdb), so it can be restarted")
    parser.add_argument("--replicas", type=int, default=1,
                        help="orchestrator replicas (2 or more need --database postgresql); killed in turn")
    parser.add_argument("--stack", help="a running stack's run directory (its stack.json) instead of a new one")
    parser.add_argument("--drain", type=float, default=180.0, help="seconds to wait for the last jobs to end")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="bench-results/soak.json", help="the report (the PNG goes beside it)")
    args = parser.parse_args(argv)
    unknown = set(args.faults) - set(KINDS)
    if unknown:
        parser.error(f"unknown faults {sorted(unknown)}; known: {', '.join(KINDS)}")
    if "postgres" in args.faults and args.database != "postgresql":
        args.faults = tuple(k for k in args.faults if k != "postgres")
    if args.replicas > 1 and args.database != "postgresql" and not args.stack:
        parser.error("--replicas needs --database postgresql")
    if args.database == "postgresql" and not args.stack and not PrivatePostgres.available():
        parser.error("--database postgresql needs initdb and pg_ctl (Debian: postgresql)")
    return args


def plan(args) -> tuple[list[tuple[float, str]], float]:
    """(second, kind) of each fault, and the seconds of load."""
    if args.duration <= 0:
        faults = [(args.warmup + i * args.every, k) for i, k in enumerate(args.faults)]
        return faults, args.warmup + len(args.faults) * args.every
    faults, at, i = [], args.warmup, 0
    while args.faults and at <= args.duration - 10:
        faults.append((at, args.faults[i % len(args.faults)]))
        at, i = at + args.every, i + 1
    return faults, args.duration


def spawn_launcher(run_dir: Path, database_url: str, replicas: int) -> subprocess.Popen:
    env = {**os.environ, **STACK_ENV, "SATLAS_RUN_DIR": str(run_dir), "LOG_FORMAT": "text",
           "ORCHESTRATOR_REPLICAS": str(replicas)}
    for name in ("REDIS_URL", "BROKER_URL", "TRITON_URL", "DATABASE_URL"):
        env.pop(name, None)
    for name in ("INGEST_ADDR", "ORCHESTRATOR_ADDR", "ANALYSIS_ADDR", "INGEST_METRICS_ADDR",
                 "ORCHESTRATOR_METRICS_ADDR", "ANALYSIS_METRICS_ADDR"):
        env[name] = "127.0.0.1:0"
    for name in ("FLOWER_PORT", "ENVOY_PORT", "ENVOY_ADMIN_PORT", "WEB_PORT", "TRITON_HTTP_PORT", "TRITON_GRPC_PORT",
                 "TRITON_METRICS_PORT"):
        env[name] = "0"
    if database_url:
        env["DATABASE_URL"] = database_url
    run_dir.mkdir(parents=True, exist_ok=True)
    say(f"starting the stack (python -m launcher; log {run_dir / 'launcher.log'}) ...")
    return supervise.spawn([sys.executable, "-m", "launcher"], run_dir / "launcher.log", cwd=ROOT, env=env)


def wait_for_stack(launcher: subprocess.Popen, run_dir: Path, stop: threading.Event) -> Path:
    state = run_dir / "stack.json"
    deadline = time.monotonic() + 240
    while not state.exists():
        if launcher.poll() is not None:
            tail = (run_dir / "launcher.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the stack did not start (exit {launcher.returncode}):\n{tail}")
        if time.monotonic() > deadline:
            raise RuntimeError("the stack was not up after 240 s")
        if stop.wait(0.5):
            raise Interrupted()
    return state


def stop_launcher(launcher: subprocess.Popen, run_dir: Path) -> None:
    """SIGTERM: it stops every process it started. What is left after 12 s is SIGKILLed: the
    launcher's group and each of its children's (they run in groups of their own)."""
    try:
        pids = json.loads((run_dir / "stack.json").read_text())["pids"]
    except (OSError, ValueError, KeyError):
        pids = {}
    if launcher.poll() is None:
        launcher.terminate()
        try:
            launcher.wait(12)
        except subprocess.TimeoutExpired:
            pass
    for pid in [launcher.pid, *pids.values()]:
        signal_pid(pid, signal.SIGKILL, group=True)
    launcher.wait()


def running_stack(run_dir: Path) -> Path:
    """The stack.json of a running `make up` in ``run_dir`` (the launcher removes it when it ends)."""
    state = run_dir / "stack.json"
    try:
        launcher = json.loads(state.read_text())["launcher"]
        alive = b"launcher" in Path(f"/proc/{launcher}/cmdline").read_bytes()
    except (OSError, ValueError, KeyError):
        alive = False
    if not alive:
        raise RuntimeError(f"no `make up` runs with its files in {run_dir} (no live launcher in its stack.json)")
    return state


class Progress:
    def __init__(self, record: Record, t0: float):
        self.record, self.t0, self.last = record, t0, (t0, 0, 0)

    def show(self) -> None:
        now = time.monotonic()
        jobs = self.record.accepted_jobs()
        accepted = len(jobs)
        done = len(jobs.keys() & report.first_done(self.record).keys())
        t, a, d = self.last
        span = max(now - t, 1e-6)
        say(f"{now - self.t0:6.0f} s  accepted {(accepted - a) / span:6.1f}/s  done {(done - d) / span:6.1f}/s  "
            f"no terminal event seen {accepted - done}")
        self.last = (now, accepted, done)


def wait_until(stop: threading.Event, when: float, progress: Progress, every: float = 10.0) -> None:
    while (left := when - time.monotonic()) > 0:
        if stop.wait(min(left, every - (time.monotonic() - progress.last[0]) % every)):
            raise Interrupted()
        if time.monotonic() - progress.last[0] >= every - 0.05:
            progress.show()


def soak(args, stop: threading.Event, exits: ExitStack) -> int:
    pg = None
    if args.stack:
        state_file = running_stack(Path(args.stack))
    else:
        run_dir = Path(tempfile.mkdtemp(prefix="satlas-soak-"))
        if args.database == "postgresql":
            pg = PrivatePostgres()
            exits.callback(pg.stop)
            pg.start()
            say(f"PostgreSQL of the soak's own at {pg.url}")
        launcher = spawn_launcher(run_dir, pg.url if pg else "", args.replicas)
        exits.callback(stop_launcher, launcher, run_dir)  # at once: a stop while it starts stops it too
        state_file = wait_for_stack(launcher, run_dir, stop)
    state = json.loads(state_file.read_text())
    orchestrators = state.get("orchestrators") or [state["orchestrator"]]
    say(f"stack up: ingest {state['ingest']}, orchestrator {', '.join(orchestrators)}, envoy {state['envoy']}, "
        f"database {state['database_url'].split(':')[0]}")
    record = Record()
    quiet = lambda line: print(line, flush=True)  # noqa: E731 (streams stamp their own lines)
    feeds = [Feed("orchestrator" + (f" {i + 1}" if len(orchestrators) > 1 else ""), addr, record, quiet).start()
             for i, addr in enumerate(orchestrators)]
    token = Path(state["token_file"]).read_text().strip() if state.get("token_file") else ""
    feeds.append(Feed("envoy", state["envoy"], record, quiet, token=token).start())
    for feed in feeds:
        exits.callback(feed.close)
    injector = Injector(state_file, say, postgres=pg, stall_s=args.stall)
    exits.callback(injector.release_all)
    faults_plan, duration = plan(args)
    faults_plan = [(at, k) for at, k in faults_plan if injector.can(k)]
    time.sleep(1.0)  # the feeds subscribe before the first job
    producers = Producers(state["ingest"], record, args.rate, quiet, seed=args.seed).start()
    exits.callback(producers.close)
    t0 = time.monotonic()
    progress = Progress(record, t0)
    say(f"offering {args.rate:g} jobs/s for {duration:.0f} s; faults: "
        + ", ".join(f"{k} at {at:.0f} s" for at, k in faults_plan))
    for at, kind in faults_plan:
        wait_until(stop, t0 + at, progress)
        injector.inject(kind)
    wait_until(stop, t0 + duration, progress)
    producers.stop()
    seconds = time.monotonic() - t0
    say("load stopped; waiting for the last answers and jobs")
    unanswered = producers.finish(120)
    injector.wait(120)
    accepted = record.accepted_jobs()
    drain_s = check.drain(state["database_url"], sorted(accepted), args.drain, say)
    time.sleep(2.0)  # late events reach the feeds
    for feed in feeds:
        feed.close()
    verdict = check.verdict(record, state["database_url"])
    span = int(time.monotonic() - t0) + 1
    series = report.timeline(record, t0, span)
    report.recovery(injector.faults, series["done"], t0, args.rate)
    out = {
        "command": "python -m tools.soak " + " ".join(sys.argv[1:] if args.argv is None else args.argv),
        "database": state["database_url"].split(":")[0].split("+")[0], "seconds": seconds,
        "orchestrator_replicas": len(orchestrators),
        "load": {"offered_jobs_s": args.rate, "accepted_jobs_s": len(accepted) / seconds,
                 "done_jobs_s": sum(series["done"][:int(seconds)]) / seconds},
        "unanswered_at_end": unanswered, "drain_s": drain_s,
        "faults": report.fault_rows(injector.faults, t0),
        "latency": report.latencies(record, injector.faults, t0),
        "verdict": verdict, "timeline": series,
    }
    print(report.text(out), flush=True)
    png = report.write(out, Path(args.json))
    say(f"wrote {args.json} and {png}")
    return 0 if verdict["ok"] else 1


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.argv = argv
    stop = threading.Event()

    def interrupted(signum, _frame):
        """Ends whatever the main thread waits on; a second signal while stopping is ignored."""
        stop.set()
        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
        raise Interrupted(signal.Signals(signum).name)

    previous = {s: signal.signal(s, interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with ExitStack() as exits:  # its callbacks stop what the soak started, whatever happened
            return soak(args, stop, exits)
    except Interrupted as exc:  # also when it came while stopping
        say(f"interrupted ({exc or 'stop'}); stopped everything it started")
        return 130
    except RuntimeError as exc:  # the stack did not start, or there is none at --stack
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


if __name__ == "__main__":
    raise SystemExit(main())
