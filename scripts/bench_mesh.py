"""End-to-end benchmark of the mesh: submit → SUCCEEDED, as a producer sees it.

    python -m scripts.bench_mesh                    # starts an isolated stack (PostgreSQL if DATABASE_URL)
    python -m scripts.bench_mesh --ingest H:P --orchestrator H:P   # or measures a running one

One StreamSeries stream sends length-64 series (one job per model each) at a fixed offered
rate, paced open-loop so a slow mesh cannot slow the producer down; a WatchJobs stream times
each job's terminal event. Latency is from the moment a series is handed to the stream to the
moment its job's SUCCEEDED event arrives. A sweep over offered loads, then one long run at the
sustained target. Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc
import numpy as np
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import ingest_service_pb2_grpc as ipb_grpc
from satlas.v1 import job_state_pb2 as js
from satlas.v1 import orchestrator_service_pb2 as opb
from satlas.v1 import orchestrator_service_pb2_grpc as opb_grpc

from satkit import patterns

MODELS = ("vae_timeseries", "transformer_timeseries")
TERMINAL = {js.JOB_STATE_SUCCEEDED, js.JOB_STATE_FAILED, js.JOB_STATE_CANCELLED}


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


def offered_run(ingest_addr: str, completions: Completions, jobs_per_s: float, seconds: float,
                series: list[list[float]], drain_s: float = 30.0) -> Run:
    per_series = len(MODELS)
    rate = jobs_per_s / per_series  # series per second
    total = max(1, int(rate * seconds))
    sent_at: dict[int, float] = {}
    outbox: queue.Queue = queue.Queue()

    def requests():
        start = time.perf_counter()
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent_at[i] = time.perf_counter()
            yield ipb.StreamSeriesRequest(sequence=i, submission=ipb.SubmitSeriesRequest(
                series={"values": series[i % len(series)]}, models=MODELS))

    with grpc.insecure_channel(ingest_addr) as channel:
        stub = ipb_grpc.IngestServiceStub(channel)
        for response in stub.StreamSeries(requests(), timeout=seconds + 120):
            outbox.put(response)
    job_sent: dict[str, float] = {}
    rejected = 0
    while not outbox.empty():
        r = outbox.get()
        if r.HasField("error"):
            rejected += 1
        for job_id in r.job_ids:
            job_sent[job_id] = sent_at[r.sequence]
    deadline = time.perf_counter() + drain_s
    while time.perf_counter() < deadline and any(j not in completions.done for j in job_sent):
        time.sleep(0.05)
    ends = {j: completions.done[j] for j in job_sent if j in completions.done}
    latencies = np.array([(t - job_sent[j]) * 1000 for j, (t, state) in ends.items() if state == js.JOB_STATE_SUCCEEDED])
    first = min(sent_at.values())
    last = max((t for t, _ in ends.values()), default=first)
    p50, p95, p99, worst = (np.percentile(latencies, [50, 95, 99, 100]) if latencies.size else (0.0,) * 4)
    return Run(
        offered_jobs_s=jobs_per_s, seconds=seconds, jobs=len(job_sent),
        succeeded=int(latencies.size), failed=sum(s != js.JOB_STATE_SUCCEEDED for _, s in ends.values()),
        unfinished=len(job_sent) - len(ends), rejected=rejected,
        throughput_jobs_s=len(ends) / (last - first) if last > first else 0.0,
        p50_ms=float(p50), p95_ms=float(p95), p99_ms=float(p99), max_ms=float(worst),
    )


def table(runs: list[Run]) -> str:
    head = f"{'offered/s':>9} {'secs':>5} {'jobs':>6} {'done/s':>7} {'ok %':>6} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7}"
    rows = [f"{r.offered_jobs_s:9.0f} {r.seconds:5.0f} {r.jobs:6d} {r.throughput_jobs_s:7.1f} "
            f"{100 * r.success_rate:6.1f} {r.p50_ms:7.1f} {r.p95_ms:7.1f} {r.p99_ms:7.1f} {r.max_ms:7.1f}"
            for r in runs]
    return "\n".join([head, *rows])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ingest", help="a running stack's ingest host:port (default: start one)")
    parser.add_argument("--orchestrator", help="a running stack's orchestrator host:port")
    parser.add_argument("--sweep", default="50,100,200,300", help="offered loads in jobs/s")
    parser.add_argument("--step-seconds", type=float, default=10.0)
    parser.add_argument("--sustain", type=float, default=300.0, help="jobs/s of the long run (0: none)")
    parser.add_argument("--sustain-seconds", type=float, default=60.0)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--json", default="bench-results/mesh.json")
    args = parser.parse_args(argv)

    stack = None
    if not args.ingest:
        from satkit.stack import Stack, StackSettings

        settings = StackSettings.isolated(Path(tempfile.mkdtemp(prefix="satlas-bench-")),
                                          database_url=os.environ.get("DATABASE_URL", ""))
        print("starting an isolated stack ...", flush=True)
        stack = Stack(settings).start()
        args.ingest, args.orchestrator = stack.ingest, stack.orchestrator
    try:
        series = make_series(256, args.length)
        completions = Completions(args.orchestrator)
        offered_run(args.ingest, completions, 50, 2, series)  # warm-up: connections, model list, caches
        runs = []
        loads = [float(x) for x in args.sweep.split(",") if x]
        for load in loads:
            runs.append(offered_run(args.ingest, completions, load, args.step_seconds, series))
            print(table(runs[-1:]).splitlines()[-1], flush=True)
        sustained = None
        if args.sustain:
            sustained = offered_run(args.ingest, completions, args.sustain, args.sustain_seconds, series)
            print(table([sustained]).splitlines()[-1], flush=True)
        completions.close()
    finally:
        if stack:
            stack.stop()
    print()
    print(table(runs + ([sustained] if sustained else [])))
    report = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "database": (stack.database_url.split(":")[0] if stack else "external"),
        "length": args.length, "models": list(MODELS),
        "sweep": [asdict(r) | {"success_rate": r.success_rate} for r in runs],
        "sustained": asdict(sustained) | {"success_rate": sustained.success_rate} if sustained else None,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
