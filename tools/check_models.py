"""Single-model check: one job per model through the whole mesh, followed with WatchJob.

    python -m tools.check_models                 # every model Triton serves
    python -m tools.check_models --models vae_timeseries

Prints, per model, the job id, total and inference time, the model's type and its first
predictions. Exit status 0 when every job SUCCEEDED, 1 otherwise, 2 when a service is unreachable.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from satlas.v1 import analysis_service_pb2 as apb
from satlas.v1 import analysis_service_pb2_grpc as apb_grpc
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import ingest_service_pb2_grpc as ipb_grpc
from satlas.v1 import job_state_pb2 as js
from satlas.v1 import orchestrator_service_pb2 as opb
from satlas.v1 import orchestrator_service_pb2_grpc as opb_grpc

from tools import cli, display, inputs, patterns

FIRST = 5  # predictions shown


@dataclass
class Check:
    model: str
    task: str
    job_id: str = ""
    state: int = js.JOB_STATE_UNSPECIFIED
    total_s: float = 0.0
    inference_s: float = 0.0
    first: tuple[float, ...] = ()
    error: str = ""
    elapsed_ms: float = 0.0  # submit to the terminal event, as this client saw it

    @property
    def ok(self) -> bool:
        return self.state == js.JOB_STATE_SUCCEEDED

    def lines(self) -> list[str]:
        head = f"{self.model} ({self.task or 'model'}): {'OK' if self.ok else 'FAILED'}"
        if not self.job_id:
            return [head, f"  error      {self.error}"]
        out = [head, f"  job        {self.job_id}  {display.state_name(self.state)}",
               f"  total      {display.ms(self.total_s)}", f"  inference  {display.ms(self.inference_s)}"]
        if self.first:
            out.append(f"  first {len(self.first)} predictions  [{', '.join(f'{v:.4g}' for v in self.first)}]")
        if self.error:
            out.append(f"  error      {self.error}")
        return out


def check(ingest, orchestrator, model: apb.Model, values: list[float], timeout: float) -> Check:
    result = Check(model.name, model.task)
    request = ipb.SubmitSeriesRequest(series={"values": values}, models=[model.name])
    t0 = time.perf_counter()
    try:
        result.job_id = ingest.SubmitSeries(request, timeout=10).job_ids[0]
        job = None
        for event in orchestrator.WatchJob(opb.WatchJobRequest(job_id=result.job_id), timeout=timeout):
            job = event.job
    except grpc.RpcError as exc:
        result.error = f"{exc.code().name}: {exc.details()}"
        return result
    finally:
        result.elapsed_ms = (time.perf_counter() - t0) * 1000
    result.state, result.error = job.state, job.error
    result.total_s, result.inference_s = job.timings.total_seconds, job.timings.inference_seconds
    result.first = tuple(job.result.predictions[:FIRST])
    return result


def main(argv: list[str] | None = None, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_address_options(parser)
    parser.add_argument("--models", help="comma-separated (default: every model that is served)")
    parser.add_argument("--pattern", default="seasonal", choices=patterns.PATTERNS)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for each job")
    args = parser.parse_args(argv)
    channels = [cli.connect(args, a) for a in (args.ingest, args.orchestrator, args.analysis)]
    try:
        ingest, orchestrator = ipb_grpc.IngestServiceStub(channels[0]), opb_grpc.OrchestratorServiceStub(channels[1])
        try:
            served = {m.name: m for m in apb_grpc.AnalysisServiceStub(channels[2]).ListModels(
                apb.ListModelsRequest(), timeout=10).models}
        except grpc.RpcError as exc:
            out(f"cannot list models at {args.analysis}: {exc.code().name}")
            return 2
        names = inputs.split_models(args.models) if args.models else sorted(served)
        values = inputs.pattern_values(args.pattern, args.length, args.seed)
        checks = [check(ingest, orchestrator, served.get(n) or apb.Model(name=n), values, args.timeout) for n in names]
    finally:
        for c in channels:
            c.close()
    for c in checks:
        out("\n".join(c.lines()))
    failed = [c.model for c in checks if not c.ok]
    out(f"{len(checks) - len(failed)} of {len(checks)} models OK" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed or not checks else 0


if __name__ == "__main__":
    sys.exit(main())
