"""What seeing inside costs: the mesh benchmark's sustained throughput with tracing off and on,
against the same mesh before its metrics and traces existed.

    python -m tools.bench.observe      # `make bench-observe`; --baseline REV --rate 2000 --seconds 10 --repeat 5

Stacks side by side, each its own ``make up`` (``python -m launcher``, Prometheus off, the front
door open) on its own free ports and SQLite file, all sharing one local Triton:

- ``before``: the code at ``--baseline`` (a git worktree; default: the commit before issue 15's
  process metrics and traces);
- ``off``: this code, no OTEL_EXPORTER_OTLP_ENDPOINT: tracing off, metrics served (nobody scrapes);
- ``on``: tracing on at full sampling, spans sent to an OTLP receiver in this process (tools.otlp_sink),
  which costs these 2 cores what a collector on the same host would;
- ``on 10 %``: OTEL_TRACES_SAMPLER=parentbased_traceidratio with ARG 0.1.

Each round runs every stack in turn (drift hits them alike): the StreamSeries stream at ``--rate``
jobs/s, past what the mesh sustains, timed by a WatchJobs stream (tools.bench.measure): done/s is
the sustained throughput. Medians and spread of ``--repeat`` rounds, each as a ratio to ``before``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from tools.bench.measure import Completions, make_series, offered_run
from tools.bench.mesh import spread
from tools.otlp_sink import Sink

ROOT = Path(__file__).resolve().parents[2]
BASELINE = "62d5e5f"  # main before issue 15's worker/ingest metrics, Prometheus and traces
OPEN = {"token": "", "ca": ""}


class LauncherStack:
    """``python -m launcher`` from a source tree, on free ports, until ``stop``."""

    def __init__(self, tree: Path, run_dir: Path, env: dict[str, str], triton_url: str, log: Path):
        free = "127.0.0.1:0"
        self.run_dir = run_dir
        child = {**os.environ, "PYTHONPATH": f"{tree / 'gen' / 'python'}{os.pathsep}{tree}",
                 "SATLAS_RUN_DIR": str(run_dir), "TRITON_URL": triton_url, "SATLAS_AUTH": "off",
                 "INGEST_ADDR": free, "ORCHESTRATOR_ADDR": free, "ANALYSIS_ADDR": free, "ENVOY_PORT": "0",
                 "ENVOY_ADMIN_PORT": "0", "WEB_PORT": "0", "FLOWER_PORT": "0", "PROMETHEUS_ADDR": "off",
                 "INGEST_METRICS_ADDR": free, "ORCHESTRATOR_METRICS_ADDR": free, "ANALYSIS_METRICS_ADDR": free,
                 "WORKER_METRICS_ADDR": free, "OTEL_EXPORTER_OTLP_ENDPOINT": "", **env}
        self.process = subprocess.Popen([sys.executable, "-m", "launcher"], cwd=tree, env=child,
                                        stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        state = run_dir / "stack.json"
        deadline = time.monotonic() + 180
        while not state.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the stack in {tree} did not start; see {log}")
            time.sleep(0.5)
        s = json.loads(state.read_text())
        self.ingest, self.orchestrator = s["ingest"], s["orchestrator"]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def worktree(exits: ExitStack, rev: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(where), rev], check=True,
                   capture_output=True)
    exits.callback(subprocess.run, ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(where)],
                   capture_output=True)
    return where


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", default=BASELINE, help="the commit measured as `before`")
    parser.add_argument("--rate", type=float, default=2000.0, help="jobs/s offered (past the mesh's sustained rate)")
    parser.add_argument("--seconds", type=float, default=10.0, help="per stack and round")
    parser.add_argument("--repeat", type=int, default=5, help="rounds")
    parser.add_argument("--json", type=Path, default=Path("bench-results/observe.json"))
    args = parser.parse_args(argv)
    from launcher.triton_local import LocalTriton, TritonSettings, free_port

    run = Path(tempfile.mkdtemp(prefix="satlas-observe-"))
    series = make_series(256, 64)
    with ExitStack() as exits:
        sink = exits.enter_context(Sink(keep=False))
        print("starting the local Triton ...", flush=True)
        ports = set()
        while len(ports) < 3:
            ports.add(free_port())
        http, grpc_port, metrics = sorted(ports)
        triton = exits.enter_context(LocalTriton(TritonSettings(work_dir=run / "triton", http_port=http,
                                                                grpc_port=grpc_port, metrics_port=metrics)))
        before = worktree(exits, args.baseline, run / "baseline")
        traced = {"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint, "OTEL_EXPORTER_OTLP_INSECURE": "true"}
        configs = {"before": (before, {}), "off": (ROOT, {}), "on": (ROOT, traced),
                   "on 10 %": (ROOT, {**traced, "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                                      "OTEL_TRACES_SAMPLER_ARG": "0.1"})}
        stacks = {}
        for name, (tree, env) in configs.items():
            print(f"starting `{name}` ({tree}) ...", flush=True)
            stacks[name] = LauncherStack(tree, run / name.replace(" ", "").replace("%", ""), env,
                                         triton.settings.grpc_url, run / f"{name.replace(' ', '_')}.log")
            exits.callback(stacks[name].stop)
        results: dict[str, list[float]] = {n: [] for n in configs}
        for r in range(args.repeat):
            for name, stack in stacks.items():
                completions = Completions(stack.orchestrator, OPEN)
                try:
                    got = offered_run(stack.ingest, completions, args.rate, args.seconds, series, door=OPEN)
                finally:
                    completions.close()
                results[name].append(got.throughput_jobs_s)
                print(f"round {r + 1} {name:<8} {got.throughput_jobs_s:7.1f} done/s (p95 {got.p95_ms:6.0f} ms)",
                      flush=True)
                time.sleep(2)  # one stack's backlog does not land on the next
        spans = sink.count
    ref = statistics.median(results["before"])
    report = {"baseline": args.baseline, "rate_jobs_s": args.rate, "seconds": args.seconds, "repeat": args.repeat,
              "spans_received": spans, "stacks": {}}
    print(f"\n{'stack':<8} {'done/s median (min-max)':>26} {'vs before':>10}")
    for name, values in results.items():
        s = spread(values)
        report["stacks"][name] = {"done_s": s, "vs_before": s["median"] / ref, "runs": values}
        print(f"{name:<8} {s['median']:10.1f} ({s['min']:.1f}-{s['max']:.1f}) {s['median'] / ref:10.3f}")
    print(f"spans received: {spans}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
