"""Load test, after the older system's performance suite: health of every service, one request
per model, then N requests at concurrency C; throughput, latency and success judged against
targets.

    python -m tools.loadtest                       # 50 requests at concurrency 10
    python -m tools.loadtest --requests 500 --concurrency 32

A request is one series submitted to one model (models take turns), timed from the submit to
its job's terminal state on WatchJob. Exit status 1 when a target is missed, 2 when a service
is not serving.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from satlas.v1 import analysis_service_pb2 as apb
from satlas.v1 import analysis_service_pb2_grpc as apb_grpc
from satlas.v1 import ingest_service_pb2_grpc as ipb_grpc
from satlas.v1 import orchestrator_service_pb2_grpc as opb_grpc

from launcher.probes import GrpcHealth
from tools import check_models, cli, patterns


@dataclass(frozen=True)
class Targets:  # the older system's
    throughput: float = 30.0  # requests/s, more than
    p95_ms: float = 200.0  # less than
    success: float = 0.95  # more than


@dataclass
class Report:
    requests: int
    succeeded: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def success(self) -> float:
        return self.succeeded / self.requests if self.requests else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("inf")

    def misses(self, t: Targets) -> list[str]:
        out = []
        if not self.throughput > t.throughput:
            out.append(f"throughput {self.throughput:.1f} req/s is not above {t.throughput:g}")
        if not self.percentile(95) < t.p95_ms:
            out.append(f"p95 {self.percentile(95):.1f} ms is not below {t.p95_ms:g}")
        if not self.success > t.success:
            out.append(f"success {100 * self.success:.1f} % is not above {100 * t.success:g} %")
        return out


def run_one(ingest, orchestrator, model: str, values: list[float], timeout: float) -> tuple[bool, float]:
    """(SUCCEEDED?, milliseconds from submit to the terminal event): the single-model check's job."""
    result = check_models.check(ingest, orchestrator, apb.Model(name=model), values, timeout)
    return result.ok, result.elapsed_ms


def load(ingest, orchestrator, models: list[str], requests: int, concurrency: int, length: int,
         timeout: float) -> Report:
    rng = np.random.default_rng(0)
    series = [patterns.random_series(rng, length=length).values.tolist() for _ in range(32)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda i: run_one(ingest, orchestrator, models[i % len(models)],
                                                   series[i % len(series)], timeout), range(requests)))
    seconds = time.perf_counter() - t0
    return Report(requests, sum(ok for ok, _ in results), seconds, [ms for ok, ms in results if ok])


def healthy(address: str) -> bool:
    check = GrpcHealth(address)
    try:
        return check()
    finally:
        check.close()


def service_health(args) -> tuple[list[str], list[str]]:
    """A line per service (name, address, SERVING or NOT SERVING), and the names not serving."""
    services = {"ingest": args.ingest, "orchestrator": args.orchestrator, "analysis": args.analysis}
    down = [name for name, address in services.items() if not healthy(address)]
    return [f"{name:<13}{address:<22}{'NOT SERVING' if name in down else 'SERVING'}"
            for name, address in services.items()], down


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_address_options(parser)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds for one request")
    parser.add_argument("--min-throughput", type=float, default=Targets.throughput)
    parser.add_argument("--max-p95-ms", type=float, default=Targets.p95_ms)
    parser.add_argument("--min-success", type=float, default=Targets.success)
    args = parser.parse_args(argv)
    targets = Targets(args.min_throughput, args.max_p95_ms, args.min_success)

    out("1. health")
    lines, down = service_health(args)
    for line in lines:
        out(f"   {line}")
    if down:
        return 2
    with cli.connect(args, args.ingest) as ic, cli.connect(args, args.orchestrator) as oc, \
            cli.connect(args, args.analysis) as ac:
        ingest, orchestrator = ipb_grpc.IngestServiceStub(ic), opb_grpc.OrchestratorServiceStub(oc)
        models = [m.name for m in apb_grpc.AnalysisServiceStub(ac).ListModels(apb.ListModelsRequest(),
                                                                               timeout=10).models if m.ready]
        out("2. one request per model")
        single_failed = False
        for model in models:
            ok, ms = run_one(ingest, orchestrator, model, patterns.random_series(
                np.random.default_rng(1), length=args.length).values.tolist(), args.timeout)
            single_failed |= not ok
            out(f"   {model:<24}{'SUCCEEDED' if ok else 'FAILED'}  {ms:.1f} ms")
        out(f"3. {args.requests} requests at concurrency {args.concurrency}")
        report = load(ingest, orchestrator, models, args.requests, args.concurrency, args.length, args.timeout)
    out(f"   throughput   {report.throughput:.1f} req/s   (target > {targets.throughput:g})")
    out(f"   latency      p50 {report.percentile(50):.1f} ms  p95 {report.percentile(95):.1f} ms  "
        f"p99 {report.percentile(99):.1f} ms   (target p95 < {targets.p95_ms:g})")
    out(f"   success      {100 * report.success:.1f} %   (target > {100 * targets.success:g} %)")
    misses = report.misses(targets) + (["a single-model request failed"] if single_failed else [])
    out("PASS" if not misses else "MISS: " + "; ".join(misses))
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
