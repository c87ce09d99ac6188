"""End-to-end benchmark of the mesh: submit → SUCCEEDED, as a producer sees it.

    python -m scripts.bench_mesh                    # starts an isolated stack (PostgreSQL if DATABASE_URL)
    python -m scripts.bench_mesh --ingest H:P --orchestrator H:P   # or measures a running one

One StreamSeries stream sends length-64 series (one job per model each) at a fixed offered
rate, paced open-loop so a slow mesh cannot slow the producer down; a WatchJobs stream times
each job's terminal event. Latency is from the moment a series is handed to the stream to the
moment its job's SUCCEEDED event arrives. A sweep over offered loads, then one long run at the
sustained target, each with a progress line; then Triton alone on the same kind of series
(``scripts.bench_triton``), driven directly with as many requests in flight as the workers keep,
and the mesh's efficiency: its best done/s over Triton's jobs/s. Prints a table, writes JSON and
a PNG of latency and achieved jobs/s against offered jobs/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
import numpy as np
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import ingest_service_pb2_grpc as ipb_grpc
from satlas.v1 import job_state_pb2 as js
from satlas.v1 import orchestrator_service_pb2 as opb
from satlas.v1 import orchestrator_service_pb2_grpc as opb_grpc

from satkit import cli, patterns
from scripts import bench_triton

MODELS = cli.DEFAULT_MODELS
TERMINAL = {js.JOB_STATE_SUCCEEDED, js.JOB_STATE_FAILED, js.JOB_STATE_CANCELLED}
JOBS_PER_MESSAGE = 16  # orchestrator_svc.settings: jobs one Celery message carries (ORCHESTRATOR_JOBS_PER_MESSAGE)
WORKER_CONCURRENCY = 4  # satkit.stack: worker processes (WORKER_CONCURRENCY), one Triton stream each


@dataclass
class Run:
    offered_jobs_s: float
    seconds: float
    jobs: int
    succeeded: int
    failed: int
    unfinished: int  # accepted, but no terminal event by the end of the drain (still queued or running)
    rejected: int
    throughput_jobs_s: float  # terminal jobs per second, first submit to last completion
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    cpu_ms_per_job: dict[str, float] = field(default_factory=dict)  # by process, this load generator included

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.jobs if self.jobs else 0.0


class Completions:
    """Terminal events from WatchJobs: job_id -> (arrival time, state)."""

    def __init__(self, address: str):
        self.channel = grpc.insecure_channel(address)
        stub = opb_grpc.OrchestratorServiceStub(self.channel)
        self.call = stub.WatchJobs(opb.WatchJobsRequest(states=sorted(TERMINAL)))
        self.done: dict[str, tuple[float, int]] = {}
        self.call.initial_metadata()  # subscribed from here on
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for event in self.call:
                self.done.setdefault(event.job.job_id, (time.perf_counter(), event.job.state))
        except grpc.RpcError:
            pass

    def close(self) -> None:
        self.call.cancel()
        self.channel.close()


def make_series(n: int, length: int, seed: int = 0) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [patterns.random_series(rng, length=length).values.tolist() for _ in range(n)]


class CpuMeter:
    """CPU seconds (user + system) used by each of a stack's process groups and by this process:
    where the time per job goes. Each service runs in its own process group (satkit.supervise),
    so a group is a service with its children (the worker's pool, Triton's backend stubs)."""

    def __init__(self, groups: dict[str, int], commands: dict[str, str] | None = None):
        self.groups = {pgid: name for name, pgid in groups.items()}
        self.commands = {comm: name for name, comm in (commands or {}).items()}  # servers not started here
        self.tick = os.sysconf("SC_CLK_TCK")

    def read(self) -> dict[str, float]:
        used = dict.fromkeys([*self.groups.values(), *self.commands.values()], 0.0)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                comm, _, rest = (entry / "stat").read_text().partition(" (")[2].rpartition(")")
                fields = rest.split()
            except OSError:  # gone meanwhile
                continue
            # After the command: pgrp is field 2; utime, stime, and the same of reaped children 11-14.
            name = self.groups.get(int(fields[2])) or self.commands.get(comm)
            if name:
                used[name] += sum(map(int, fields[11:15])) / self.tick
        me = os.times()
        return used | {"bench client": me.user + me.system}

    @staticmethod
    def per_job(before: dict[str, float], after: dict[str, float], jobs: int) -> dict[str, float]:
        if not jobs:
            return {}
        per = {n: round(1000 * (after[n] - before.get(n, 0.0)) / jobs, 2) for n in after}
        return dict(sorted(per.items(), key=lambda kv: -kv[1])) | {"total": round(sum(per.values()), 2)}


def cpu_line(run: "Run") -> str:
    c = run.cpu_ms_per_job
    return "  cpu ms/job: " + ", ".join(f"{n} {v:.2f}" for n, v in c.items()) if c else ""


def progress_line(label: str, elapsed_s: float, total_s: float, submitted: int, done: int, failed: int,
                  done_per_s: float) -> str:
    """One step's state: ``300 jobs/s   12.5/60 s  submitted 3750  done 3602  failed 0  298.4 done/s``."""
    clock = f"{elapsed_s:5.1f}/{total_s:.0f} s" + (" (draining)" if elapsed_s > total_s else "")
    return (f"{label}  {clock}  submitted {submitted}  done {done}  failed {failed}  "
            f"{done_per_s:.1f} done/s")


class Progress:
    """A step's progress: one line rewritten in place on a terminal, a plain line every
    ``every_s`` otherwise (a log, a pipe). ``done/s`` is over the last interval."""

    def __init__(self, label: str, total_s: float, stream=None, every_s: float | None = None):
        self.label, self.total_s = label, total_s
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.every_s = every_s if every_s is not None else (0.5 if self.tty else 5.0)
        self._last: tuple[float, int] | None = None  # (time, done) of the last update

    def update(self, elapsed_s: float, submitted: int, done: int, failed: int, now: float | None = None) -> str:
        now = time.perf_counter() if now is None else now
        last_t, last_done = self._last or (now - elapsed_s, 0)
        rate = (done - last_done) / (now - last_t) if now > last_t else 0.0
        self._last = (now, done)
        line = progress_line(self.label, elapsed_s, self.total_s, submitted, done, failed, rate)
        self.stream.write(f"\r\033[K{line}" if self.tty else line + "\n")
        self.stream.flush()
        return line

    def close(self) -> None:
        """Clears the in-place line, so what is printed next starts on a clean line."""
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


def paced_requests(series: list[list[float]], per_s: float, total: int, sent_at: dict[int, float] | None = None,
                   stop: threading.Event | None = None):
    """``total`` StreamSeries requests (one job per model each) at ``per_s`` series a second,
    paced open-loop from the first; ``sent_at`` gets each one's hand-off time, ``stop`` ends early."""
    stop = stop or threading.Event()
    start = time.perf_counter()
    for i in range(total):
        delay = start + i / per_s - time.perf_counter()
        if stop.wait(delay) if delay > 0 else stop.is_set():
            return
        if sent_at is not None:
            sent_at[i] = time.perf_counter()
        yield ipb.StreamSeriesRequest(sequence=i, submission=ipb.SubmitSeriesRequest(
            series={"values": series[i % len(series)]}, models=MODELS))


def offered_run(ingest_addr: str, completions: Completions, jobs_per_s: float, seconds: float,
                series: list[list[float]], drain_s: float = 30.0, progress: Progress | None = None,
                cpu: CpuMeter | None = None) -> Run:
    per_series = len(MODELS)
    rate = jobs_per_s / per_series  # series per second
    total = max(1, int(rate * seconds))
    sent_at: dict[int, float] = {}
    job_sent: dict[str, float] = {}
    accepted: list[str] = []  # job ids in arrival order; read by the progress thread (appends are atomic)
    rejected = 0
    cpu_before = cpu.read() if cpu else {}
    start = time.perf_counter()
    ticking = threading.Event()

    def tick() -> None:
        while not ticking.wait(progress.every_s):
            ends = [completions.done.get(j) for j in accepted[:]]
            done = [state for _, state in filter(None, ends)]
            progress.update(time.perf_counter() - start, len(sent_at) * per_series, len(done),
                            sum(state != js.JOB_STATE_SUCCEEDED for state in done))

    ticker = threading.Thread(target=tick, daemon=True) if progress else None
    if ticker:
        ticker.start()
    try:
        with grpc.insecure_channel(ingest_addr) as channel:
            stub = ipb_grpc.IngestServiceStub(channel)
            for r in stub.StreamSeries(paced_requests(series, rate, total, sent_at), timeout=seconds + 120):
                if r.HasField("error"):
                    rejected += 1
                for job_id in r.job_ids:
                    job_sent[job_id] = sent_at[r.sequence]
                    accepted.append(job_id)
        deadline = time.perf_counter() + drain_s
        while time.perf_counter() < deadline and any(j not in completions.done for j in job_sent):
            time.sleep(0.05)
    finally:
        ticking.set()
        if ticker:
            ticker.join()
            progress.close()
    ends = {j: completions.done[j] for j in job_sent if j in completions.done}
    cpu_used = CpuMeter.per_job(cpu_before, cpu.read(), len(ends)) if cpu else {}
    latencies = np.array([(t - job_sent[j]) * 1000 for j, (t, state) in ends.items() if state == js.JOB_STATE_SUCCEEDED])
    first = min(sent_at.values())
    last = max((t for t, _ in ends.values()), default=first)
    p50, p95, p99, worst = (np.percentile(latencies, [50, 95, 99, 100]) if latencies.size else (0.0,) * 4)
    return Run(
        offered_jobs_s=jobs_per_s, seconds=seconds, jobs=len(job_sent),
        succeeded=int(latencies.size), failed=sum(s != js.JOB_STATE_SUCCEEDED for _, s in ends.values()),
        unfinished=len(job_sent) - len(ends), rejected=rejected,
        throughput_jobs_s=len(ends) / (last - first) if last > first else 0.0,
        p50_ms=float(p50), p95_ms=float(p95), p99_ms=float(p99), max_ms=float(worst), cpu_ms_per_job=cpu_used,
    )


@dataclass
class TritonAlone:
    """Triton driven directly, without the mesh: what the mesh's jobs/s are measured against."""

    url: str
    length: int
    in_flight: int  # requests outstanding at any moment, split evenly over the models
    cells: list[bench_triton.Cell]  # one per model, measured at the same time

    @property
    def jobs_s(self) -> float:
        return sum(c.throughput for c in self.cells)

    @property
    def seconds(self) -> float:
        return max((c.seconds for c in self.cells), default=0.0)

    @property
    def errors(self) -> int:
        return sum(c.errors for c in self.cells)


def triton_alone(url: str, length: int, in_flight: int, seconds: float, warmup: float = 1.0) -> TritonAlone:
    """Both models at once, as the workers load Triton: one length-``length`` series per request
    (shape [1, length]) and ``in_flight`` requests outstanding (each worker process keeps a
    message's jobs, both models mixed, in flight on its stream). bench_triton's clients send
    back to back, so this is what Triton sustains when it never waits for the mesh."""
    per_model = max(1, in_flight // len(MODELS))

    async def both() -> list[bench_triton.Cell]:
        return list(await asyncio.gather(*(bench_triton.run_cell(url, m, length, per_model, seconds, warmup)
                                           for m in MODELS)))

    return TritonAlone(url, length, per_model * len(MODELS), asyncio.run(both()))


def efficiency(runs: list[Run], triton: TritonAlone | None) -> float | None:
    """The mesh's best done/s over the jobs/s Triton sustains alone (None without a Triton figure)."""
    if triton is None or not triton.jobs_s or not runs:
        return None
    return max(r.throughput_jobs_s for r in runs) / triton.jobs_s


def plot(runs: list[Run], sustained: Run | None, triton: TritonAlone | None, length: int, path: Path) -> None:
    """Latency (p50/p95/p99, log scale) and achieved jobs/s against offered jobs/s, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5))
    FigureCanvasAgg(fig)
    latency, throughput = fig.subplots(1, 2)
    offered = [r.offered_jobs_s for r in runs]
    for q, colour in (("p50", "tab:blue"), ("p95", "tab:orange"), ("p99", "tab:red")):
        latency.plot(offered, [getattr(r, f"{q}_ms") for r in runs], marker="o", color=colour, label=q)
        if sustained:
            latency.plot([sustained.offered_jobs_s], [getattr(sustained, f"{q}_ms")], marker="*", markersize=12,
                         linestyle="none", color=colour)
    latency.set_yscale("log")
    latency.set(xlabel="offered jobs/s", ylabel="submit → SUCCEEDED, ms (log)", title="latency")
    latency.grid(True, which="both", alpha=0.3)
    latency.legend(title=f"★ {sustained.seconds:.0f} s run" if sustained else None)

    top = max([*offered, *([sustained.offered_jobs_s] if sustained else [])], default=1.0)
    throughput.plot([0, top], [0, top], linestyle="--", color="grey", label="achieved = offered")
    throughput.plot(offered, [r.throughput_jobs_s for r in runs], marker="o", color="tab:blue", label="mesh")
    if sustained:
        throughput.plot([sustained.offered_jobs_s], [sustained.throughput_jobs_s], marker="*", markersize=12,
                        linestyle="none", color="tab:blue", label=f"mesh, {sustained.seconds:.0f} s")
    title = "throughput"
    ratio = efficiency(runs + ([sustained] if sustained else []), triton)
    if ratio is not None:
        title += f" (Triton alone {triton.jobs_s:.0f} jobs/s; mesh efficiency {100 * ratio:.1f} %)"
        if triton.jobs_s <= 1.5 * top:  # far above, it would flatten the mesh's curve: the title says it
            throughput.axhline(triton.jobs_s, linestyle=":", color="tab:green", label="Triton alone")
    throughput.set(xlabel="offered jobs/s", ylabel="achieved jobs/s", title=title)
    throughput.set_ylim(bottom=0)
    throughput.grid(True, alpha=0.3)
    throughput.legend()
    fig.suptitle(f"Satlas mesh: length-{length} series, {' + '.join(MODELS)}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def table(runs: list[Run], triton: TritonAlone | None = None) -> str:
    head = f"{'offered/s':>9} {'secs':>5} {'jobs':>6} {'done/s':>7} {'ok %':>6} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7}"
    rows = [f"{r.offered_jobs_s:9.0f} {r.seconds:5.0f} {r.jobs:6d} {r.throughput_jobs_s:7.1f} "
            f"{100 * r.success_rate:6.1f} {r.p50_ms:7.1f} {r.p95_ms:7.1f} {r.p99_ms:7.1f} {r.max_ms:7.1f}"
            for r in runs]
    if triton:  # Triton alone: as many jobs as it answered; latency is per model, in the JSON
        requests = sum(c.requests for c in triton.cells)
        ok = 100 * requests / (requests + triton.errors) if requests + triton.errors else 0.0
        rows.append(f"{'Triton':>9} {triton.seconds:5.0f} {requests:6d} {triton.jobs_s:7.1f} {ok:6.1f}"
                    + f" {'-':>7}" * 4)
    return "\n".join([head, *rows])


def efficiency_line(runs: list[Run], triton: TritonAlone | None) -> str:
    ratio = efficiency(runs, triton)
    if ratio is None:
        return "efficiency: no Triton figure"
    best = max(r.throughput_jobs_s for r in runs)
    return (f"efficiency: mesh best {best:.1f} done/s / Triton alone {triton.jobs_s:.1f} jobs/s = {100 * ratio:.1f} %"
            f"  (Triton: length {triton.length}, {' + '.join(MODELS)}, {triton.in_flight} requests in flight)")


def triton_ready(url: str) -> bool:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        return all(client.is_model_ready(m, client_timeout=5) for m in MODELS)
    except Exception:  # unreachable, or an older server without the models
        return False
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ingest", help="a running stack's ingest host:port (default: start one)")
    parser.add_argument("--orchestrator", help="a running stack's orchestrator host:port")
    parser.add_argument("--triton", help="that stack's Triton gRPC host:port (default: the started stack's; "
                                         "with --ingest, TRITON_URL or 127.0.0.1:8001)")
    parser.add_argument("--sweep", default="50,100,200,300,400,500", help="offered loads in jobs/s")
    parser.add_argument("--step-seconds", type=float, default=10.0)
    parser.add_argument("--sustain", type=float, default=300.0, help="jobs/s of the long run (0: none)")
    parser.add_argument("--sustain-seconds", type=float, default=60.0)
    parser.add_argument("--triton-seconds", type=float, default=5.0,
                        help="seconds of Triton alone after the mesh steps (0: none)")
    parser.add_argument("--triton-in-flight", type=int,
                        help="requests in flight on Triton alone (default: worker processes x jobs per message, "
                             f"WORKER_CONCURRENCY x ORCHESTRATOR_JOBS_PER_MESSAGE = "
                             f"{WORKER_CONCURRENCY} x {JOBS_PER_MESSAGE})")
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--json", default="bench-results/mesh.json")
    parser.add_argument("--png", help="the plot (default: next to the JSON, e.g. bench-results/mesh.png)")
    args = parser.parse_args(argv)
    png = Path(args.png) if args.png else Path(args.json).with_suffix(".png")

    stack = None
    if not args.ingest:
        from satkit.stack import Stack, StackSettings

        settings = StackSettings.isolated(Path(tempfile.mkdtemp(prefix="satlas-bench-")),
                                          database_url=os.environ.get("DATABASE_URL", ""),
                                          worker_concurrency=int(os.environ.get("WORKER_CONCURRENCY",
                                                                                WORKER_CONCURRENCY)))
        print("starting an isolated stack ...", flush=True)
        stack = Stack(settings).start()
        args.ingest, args.orchestrator = stack.ingest, stack.orchestrator
        args.triton = args.triton or stack.triton_url
    args.triton = args.triton or os.environ.get("TRITON_URL", "127.0.0.1:8001")
    workers = stack.settings.worker_concurrency if stack else int(os.environ.get("WORKER_CONCURRENCY",
                                                                                  WORKER_CONCURRENCY))
    in_flight = args.triton_in_flight or workers * int(os.environ.get("ORCHESTRATOR_JOBS_PER_MESSAGE",
                                                                        JOBS_PER_MESSAGE))
    triton = None
    try:
        series = make_series(256, args.length)
        completions = Completions(args.orchestrator)
        # A PostgreSQL server on this machine works for the mesh too: its backends are counted.
        local_pg = stack and stack.database_url.startswith("postgresql") and any(
            h in stack.database_url for h in ("@127.0.0.1", "@localhost", "@/"))
        cpu = CpuMeter({name: p.pid for name, p in stack.processes.items()},
                       {"postgresql": "postgres"} if local_pg else None) if stack else None
        offered_run(args.ingest, completions, 50, 2, series)  # warm-up: connections, model list, caches
        runs = []
        loads = [float(x) for x in args.sweep.split(",") if x]
        for load in loads:
            progress = Progress(f"{load:.0f} jobs/s", args.step_seconds)
            runs.append(offered_run(args.ingest, completions, load, args.step_seconds, series, progress=progress,
                                    cpu=cpu))
            print(table(runs[-1:]).splitlines()[-1], flush=True)
            print(cpu_line(runs[-1]), flush=True)
        sustained = None
        if args.sustain:
            progress = Progress(f"{args.sustain:.0f} jobs/s", args.sustain_seconds)
            sustained = offered_run(args.ingest, completions, args.sustain, args.sustain_seconds, series,
                                    progress=progress, cpu=cpu)
            print(table([sustained]).splitlines()[-1], flush=True)
            print(cpu_line(sustained), flush=True)
        completions.close()
        if args.triton_seconds > 0:
            if triton_ready(args.triton):
                print(f"Triton alone at {args.triton}: {args.triton_seconds:g} s, {in_flight} requests in flight ...",
                      flush=True)
                triton = triton_alone(args.triton, args.length, in_flight, args.triton_seconds)
                print(table([], triton).splitlines()[-1], flush=True)
            else:
                print(f"Triton at {args.triton} is not ready with {', '.join(MODELS)}: no Triton figure "
                      "(--triton sets its address)", flush=True)
    finally:
        if stack:
            stack.stop()
    everything = runs + ([sustained] if sustained else [])
    print()
    print(table(everything, triton))
    print(efficiency_line(everything, triton))
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "database": (stack.database_url.split(":")[0] if stack else "external"),
        "length": args.length, "models": list(MODELS),
        "sweep": [asdict(r) | {"success_rate": r.success_rate} for r in runs],
        "sustained": asdict(sustained) | {"success_rate": sustained.success_rate} if sustained else None,
        "triton": {"url": triton.url, "length": triton.length, "in_flight": triton.in_flight,
                   "seconds": triton.seconds, "jobs_s": triton.jobs_s, "errors": triton.errors,
                   "models": [asdict(c) for c in triton.cells]} if triton else None,
        "mesh_max_jobs_s": max((r.throughput_jobs_s for r in everything), default=0.0),
        "efficiency": efficiency(everything, triton),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    plot(runs, sustained, triton, args.length, png)
    print(f"wrote {args.json} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
