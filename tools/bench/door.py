"""What the front door costs: the same load through Envoy open, with tokens, and with tokens and
TLS, before the same services; and straight to the ingest, for reference.

    python -m tools.bench.door          # `make bench-door`; --rate 2000 --seconds 10 --repeat 3

One isolated stack (tokens on: its own Envoy is the "tokens" door) and two more Envoys before the
same services: one open (no authentication) and one with tokens and TLS (the local CA). Each
round runs every door in turn, so that drift hits them alike:

- stream: the mesh benchmark's StreamSeries stream at ``--rate`` jobs/s, past what the mesh
  sustains, timed by a WatchJobs stream through the same door: done/s is the sustained
  throughput (tools.bench.measure). Envoy checks a stream's token once;
- unary: ``--in-flight`` SubmitSeries calls at a time for ``--seconds``: calls/s, each call's
  token checked.

Medians and spread of ``--repeat`` rounds, each door's as a ratio to the open door's. Writes JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import grpc
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import ingest_service_pb2_grpc as ipb_grpc

from satkit import client
from tools.bench.measure import MODELS, STOP, Completions, make_series, offered_run
from tools.bench.mesh import spread

DOORS = ("direct", "open", "tokens", "tokens+TLS")


def start(exits: ExitStack) -> dict[str, tuple[str, str, dict]]:
    """{door: (ingest address, orchestrator address, channel arguments)} on one isolated stack."""
    from launcher.settings import StackSettings
    from launcher.stack import Stack

    run = Path(tempfile.mkdtemp(prefix="satlas-door-"))
    print("starting an isolated stack and two more Envoys ...", flush=True)
    stack = exits.enter_context(Stack(StackSettings.isolated(run / "stack", stop_timeout_s=5.0)))
    s = stack.settings

    def door(name: str, **settings) -> Stack:
        return exits.enter_context(Stack(StackSettings.isolated(
            run / name, only=("envoy",), ingest_addr=s.ingest_addr, orchestrator_addr=s.orchestrator_addr,
            analysis_addr=s.analysis_addr, web_port=s.web_port, **settings)))

    opened, secured = door("open", auth=False), door("tls", tls=True)
    tls_door = f"localhost:{secured.envoy.rsplit(':', 1)[1]}"  # the name its certificate carries
    return {"direct": (stack.ingest, stack.orchestrator, {"token": "", "ca": ""}),
            "open": (opened.envoy, opened.envoy, {"token": "", "ca": ""}),
            "tokens": (stack.envoy, stack.envoy, {"token": stack.token, "ca": ""}),
            "tokens+TLS": (tls_door, tls_door, {"token": secured.token, "ca": secured.ca_file})}


def unary(address: str, door: dict, in_flight: int, seconds: float, series: list[list[float]]) -> float:
    """SubmitSeries calls per second with ``in_flight`` at a time (one job per call)."""
    done = [0] * in_flight
    with client.channel(address, **door) as channel:
        submit = ipb_grpc.IngestServiceStub(channel).SubmitSeries
        submit(ipb.SubmitSeriesRequest(series={"values": series[0]}, models=MODELS[:1]), timeout=30)  # warm
        end = time.perf_counter() + seconds

        def loop(k: int) -> None:
            i = k
            while time.perf_counter() < end and not STOP.is_set():
                try:
                    submit(ipb.SubmitSeriesRequest(series={"values": series[i % len(series)]}, models=MODELS[:1]),
                           timeout=30)
                    done[k] += 1
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        raise
                i += in_flight

        start = time.perf_counter()
        with ThreadPoolExecutor(in_flight) as pool:
            list(pool.map(loop, range(in_flight)))
        return sum(done) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=2000.0, help="jobs/s offered on the stream (past the mesh's "
                                                                   "sustained rate)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per door, step and round")
    parser.add_argument("--in-flight", type=int, default=16, help="unary calls at a time")
    parser.add_argument("--repeat", type=int, default=3, help="rounds")
    parser.add_argument("--json", type=Path, default=Path("bench-results/door.json"))
    args = parser.parse_args(argv)
    series = make_series(256, 64)
    results: dict[str, dict[str, list[float]]] = {d: {"stream_done_s": [], "stream_p95_ms": [], "unary_calls_s": []}
                                                  for d in DOORS}
    with ExitStack() as exits:
        doors = start(exits)
        for r in range(args.repeat):
            for name in DOORS:
                address, watch, door = doors[name]
                completions = Completions(watch, door)
                try:
                    run = offered_run(address, completions, args.rate, args.seconds, series, door=door)
                finally:
                    completions.close()
                calls = unary(address, door, args.in_flight, args.seconds, series)
                results[name]["stream_done_s"].append(run.throughput_jobs_s)
                results[name]["stream_p95_ms"].append(run.p95_ms)
                results[name]["unary_calls_s"].append(calls)
                print(f"round {r + 1} {name:<11} stream {run.throughput_jobs_s:7.1f} done/s (p95 {run.p95_ms:6.0f} ms)"
                      f"  unary {calls:7.1f} calls/s", flush=True)
                time.sleep(2)  # the backlog of one door does not land on the next
    report = {"rate_jobs_s": args.rate, "seconds": args.seconds, "in_flight": args.in_flight,
              "repeat": args.repeat, "doors": {}}
    print(f"\n{'door':<11} {'stream done/s':>24} {'vs open':>8} {'unary calls/s':>24} {'vs open':>8}")
    for name in DOORS:
        s, u = spread(results[name]["stream_done_s"]), spread(results[name]["unary_calls_s"])
        rs = s["median"] / statistics.median(results["open"]["stream_done_s"])
        ru = u["median"] / statistics.median(results["open"]["unary_calls_s"])
        report["doors"][name] = {"stream_done_s": s, "unary_calls_s": u, "stream_p95_ms": spread(
            results[name]["stream_p95_ms"]), "stream_vs_open": rs, "unary_vs_open": ru}
        print(f"{name:<11} {s['median']:8.1f} ({s['min']:.1f}-{s['max']:.1f}) {rs:8.3f} "
              f"{u['median']:8.1f} ({u['min']:.1f}-{u['max']:.1f}) {ru:8.3f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
