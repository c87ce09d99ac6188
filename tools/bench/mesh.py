"""End-to-end benchmark of the mesh: submit → SUCCEEDED, as a producer sees it.

    python -m tools.bench.mesh                    # starts an isolated stack (PostgreSQL if DATABASE_URL)
    python -m tools.bench.mesh --ingest H:P --orchestrator H:P   # or measures a running one

The producer sends length-64 series (one job per model each) at a fixed offered rate, paced
open-loop so a slow mesh cannot slow it down: by default what is due in one BatchSubmitSeries call
at most every 5 ms, each series timed from when it was due (``--batch-gap-ms 0``: one StreamSeries
message per series, as the simulator sends). A WatchJobs stream times each job's terminal event
(tools.bench.measure). A sweep over offered loads, then a long run
at the sustained rate, each step ``--repeat`` times (median and spread); then Triton alone on the
same series, at the same time for both models (the mesh's mix), in two layouts (one series per
request; a message's series as the rows of one request, at most the models' max_batch_size), each
repeated, and the mesh's efficiency: its best median done/s over Triton's best median jobs/s.
Prints a table, where the CPU went (per process) and where the latency went (per stage, from the
timestamps on each job's event: measure.STAGES), writes JSON and a PNG. Ctrl-C or SIGTERM stops
it, and the stack it started, at once. With a PostgreSQL DATABASE_URL the run gets a fresh
database on that server (tools.bench.database).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import signal
import statistics
import tempfile
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

from launcher.settings import WORKER_CONCURRENCY
from orchestrator_svc.settings import JOBS_PER_MESSAGE
from satkit.settings import DATABASE_URL, TRITON_URL
from tools.bench import triton as bench_triton
from tools.bench.database import fresh_database, vacuum_if_no_autovacuum
from tools.bench.measure import (
    MODELS,
    STAGES,
    STOP,
    Completions,
    CpuMeter,
    Progress,
    Run,
    make_series,
    offered_run,
    stages_line,
)

SUMMARISED = ("throughput_jobs_s", "p50_ms", "p95_ms", "p99_ms", "backlog_growth_jobs_s")


def spread(values: list[float]) -> dict[str, float]:
    return {"median": float(statistics.median(values)), "min": float(min(values)), "max": float(max(values))}


def _median(values: list[float]) -> float:
    """The median of the runs that had a figure (a stage no job of a run went through is NaN)."""
    there = [v for v in values if not math.isnan(v)]
    return statistics.median(there) if there else float("nan")


@dataclass
class Step:
    """One offered load, run ``len(runs)`` times."""

    offered_jobs_s: float
    seconds: float
    runs: list[Run]

    def summary(self) -> dict:
        out = {k: spread([getattr(r, k) for r in self.runs]) for k in SUMMARISED}
        out["cpu_ms_per_job"] = spread([r.cpu_ms_per_job.get("total", 0.0) for r in self.runs])
        out["success_rate_min"] = min(r.success_rate for r in self.runs)
        staged = [r.stages_ms for r in self.runs if r.stages_ms]
        out["stages_ms"] = {name: {q: _median([r[name][q] for r in staged]) for q in ("p50", "p95")}
                            for name in staged[0]} if staged else {}
        return out

    @property
    def done_s(self) -> float:
        return statistics.median(r.throughput_jobs_s for r in self.runs)


def run_step(args, completions: Completions, cpu: CpuMeter | None, load: float, seconds: float, series) -> Step:
    runs = []
    for k in range(args.repeat):
        if args.vacuum_url and vacuum_if_no_autovacuum(args.vacuum_url):
            args.vacuumed = True
        label = f"{load:.0f} jobs/s" + (f" ({k + 1}/{args.repeat})" if args.repeat > 1 else "")
        runs.append(offered_run(args.ingest, completions, load, seconds, series, progress=Progress(label, seconds),
                                cpu=cpu, batch_gap_s=args.batch_gap_ms / 1000))
        print(row(runs[-1]), flush=True)
        if runs[-1].cpu_ms_per_job:
            print("  cpu ms/job: " + ", ".join(f"{'mesh total' if n == 'total' else n} {v:.2f}"
                                                for n, v in runs[-1].cpu_ms_per_job.items()), flush=True)
        if runs[-1].stages_ms:
            print("  latency ms p50/p95 by stage: " + stages_line(runs[-1].stages_ms), flush=True)
    return Step(load, seconds, runs)


def triton_alone(url: str, length: int, layouts: dict[str, tuple[int, int]], seconds: float, repeat: int) -> dict:
    """Both models at once, as the mesh loads Triton, in each layout (concurrency, series per
    request); each layout ``repeat`` times. The best layout by median is the reference."""
    out = {}
    for name, (concurrency, rows) in layouts.items():
        cells = [asyncio.run(bench_triton.run_mix(url, list(MODELS), length, concurrency, seconds, 1.0, rows))
                 for _ in range(repeat)]
        out[name] = {"concurrency": concurrency, "rows": rows, "cells": [asdict(c) for c in cells],
                     "jobs_s": spread([c.throughput for c in cells]), "errors": sum(c.errors for c in cells)}
        print(f"Triton alone, {name} ({concurrency} clients x {rows} series per request per model): "
              f"median {out[name]['jobs_s']['median']:.1f} jobs/s", flush=True)
    best = max(out, key=lambda n: out[n]["jobs_s"]["median"])
    return {"url": url, "length": length, "layouts": out, "best_layout": best, "jobs_s": out[best]["jobs_s"]["median"]}


def row(r: Run) -> str:
    return (f"{r.offered_jobs_s:9.0f} {r.seconds:5.0f} {r.jobs:6d} {r.throughput_jobs_s:7.1f} {100 * r.success_rate:6.1f} "
            f"{r.p50_ms:7.1f} {r.p95_ms:7.1f} {r.p99_ms:7.1f} {r.backlog_growth_jobs_s:8.1f}")


def table(steps: list[Step], triton: dict | None) -> str:
    """Medians, with the spread (min–max) of done/s and p95 over the repetitions."""
    lines = [f"{'offered/s':>9} {'secs':>5} {'reps':>4} {'done/s (min-max)':>24} {'ok %':>6} {'p50 ms':>7} "
             f"{'p95 ms (min-max)':>24} {'backlog/s':>9} {'cpu ms/job':>10}"]
    for s in steps:
        m = s.summary()
        done, p95 = m["throughput_jobs_s"], m["p95_ms"]
        lines.append(f"{s.offered_jobs_s:9.0f} {s.seconds:5.0f} {len(s.runs):4d} "
                     f"{done['median']:8.1f} ({done['min']:6.1f}-{done['max']:6.1f}) {100 * m['success_rate_min']:6.1f} "
                     f"{m['p50_ms']['median']:7.1f} {p95['median']:8.1f} ({p95['min']:6.1f}-{p95['max']:6.1f}) "
                     f"{m['backlog_growth_jobs_s']['median']:9.1f} {m['cpu_ms_per_job']['median']:10.2f}")
    if triton:
        for name, lay in triton["layouts"].items():
            j = lay["jobs_s"]
            lines.append(f"Triton alone, {name}: {j['median']:.1f} jobs/s ({j['min']:.1f}-{j['max']:.1f})"
                         + ("  <- best" if name == triton["best_layout"] else ""))
    return "\n".join(lines)


def stages_table(steps: list[Step]) -> str:
    """Where the latency went: each stage's p50/p95 ms per step (medians over the runs)."""
    staged = [(s, m) for s in steps if (m := s.summary()["stages_ms"])]
    if not staged:
        return ""
    lines = ["where the latency went, ms p50/p95 (medians of the runs):",
             f"{'offered/s':>9} " + " ".join(f"{name:>13}" for name in STAGES)]
    for s, m in staged:
        lines.append(f"{s.offered_jobs_s:9.0f} " + " ".join(f"{m[n]['p50']:6.1f}/{m[n]['p95']:<6.1f}" for n in STAGES))
    lines += [f"  {name}: {what}" for name, what in STAGES.items()]
    return "\n".join(lines)


def efficiency(steps: list[Step], triton: dict | None) -> float | None:
    if not triton or not triton["jobs_s"] or not steps:
        return None
    return max(s.done_s for s in steps) / triton["jobs_s"]


def plot(steps: list[Step], sustained: Step | None, triton: dict | None, length: int, path: Path) -> None:
    """Latency (median p50/p95/p99, log scale) and achieved jobs/s against offered jobs/s, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5))
    FigureCanvasAgg(fig)
    latency, throughput = fig.subplots(1, 2)
    offered = [s.offered_jobs_s for s in steps]
    med = lambda s, k: s.summary()[k]["median"]  # noqa: E731
    for q, colour in (("p50", "tab:blue"), ("p95", "tab:orange"), ("p99", "tab:red")):
        latency.plot(offered, [med(s, f"{q}_ms") for s in steps], marker="o", color=colour, label=q)
        if sustained:
            latency.plot([sustained.offered_jobs_s], [med(sustained, f"{q}_ms")], marker="*", markersize=12,
                         linestyle="none", color=colour)
    latency.set_yscale("log")
    latency.set(xlabel="offered jobs/s", ylabel="submit → SUCCEEDED, ms (log)", title="latency (median of runs)")
    latency.grid(True, which="both", alpha=0.3)
    latency.legend(title=f"★ {sustained.seconds:.0f} s run" if sustained else None)
    top = max([*offered, *([sustained.offered_jobs_s] if sustained else [])], default=1.0)
    throughput.plot([0, top], [0, top], linestyle="--", color="grey", label="achieved = offered")
    done = [s.summary()["throughput_jobs_s"] for s in steps]
    throughput.errorbar(offered, [d["median"] for d in done], yerr=[[d["median"] - d["min"] for d in done],
                        [d["max"] - d["median"] for d in done]], marker="o", color="tab:blue", label="mesh", capsize=3)
    if sustained:
        throughput.plot([sustained.offered_jobs_s], [sustained.done_s], marker="*", markersize=12, linestyle="none",
                        color="tab:blue", label=f"mesh, {sustained.seconds:.0f} s")
    title = "throughput"
    ratio = efficiency(steps + ([sustained] if sustained else []), triton)
    if ratio is not None:
        title += f" (Triton alone {triton['jobs_s']:.0f} jobs/s; efficiency {100 * ratio:.1f} %)"
        if triton["jobs_s"] <= 1.5 * top:
            throughput.axhline(triton["jobs_s"], linestyle=":", color="tab:green", label="Triton alone")
    throughput.set(xlabel="offered jobs/s", ylabel="achieved jobs/s", title=title)
    throughput.set_ylim(bottom=0)
    throughput.grid(True, alpha=0.3)
    throughput.legend()
    fig.suptitle(f"Satlas mesh: length-{length} series, {' + '.join(MODELS)}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def triton_max_batch(url: str) -> int | None:
    """The most series one request may carry to every model (their configs' max_batch_size), or
    None when Triton there is not ready with them."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    try:
        if not all(client.is_model_ready(m, client_timeout=5) for m in MODELS):
            return None
        return min(max(1, client.get_model_config(m, client_timeout=5).config.max_batch_size) for m in MODELS)
    except Exception:  # unreachable, or an older server without the models
        return None
    finally:
        client.close()


def _interrupted(signum, _frame) -> None:
    """Ctrl-C or SIGTERM: end the paced runs and unwind to the stack's stop (once: a second
    signal while stopping is ignored, so the stop completes)."""
    STOP.set()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ingest", help="a running stack's ingest host:port (default: start one)")
    parser.add_argument("--orchestrator", help="a running stack's orchestrator host:port")
    parser.add_argument("--triton", help="that stack's Triton gRPC host:port (default: the started stack's; "
                                         "with --ingest, TRITON_URL or 127.0.0.1:8001)")
    parser.add_argument("--sweep", default="150,1000,2000,3000,4000,5000,6000", help="offered loads in jobs/s")
    parser.add_argument("--step-seconds", type=float, default=10.0)
    parser.add_argument("--sustain", type=float, default=1200.0, help="jobs/s of the long run (0: none)")
    parser.add_argument("--sustain-seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each step (median and spread)")
    parser.add_argument("--triton-seconds", type=float, default=5.0,
                        help="seconds of Triton alone per layout and run, after the mesh steps (0: none)")
    parser.add_argument("--triton-in-flight", type=int,
                        help="requests in flight on Triton alone, one series each (default: worker processes x "
                             f"jobs per message = {WORKER_CONCURRENCY.default} x {JOBS_PER_MESSAGE.default})")
    parser.add_argument("--batch-gap-ms", type=float, default=5.0,
                        help="the producer sends what is due in one BatchSubmitSeries call at most once per this many "
                             "ms [5]; 0: a StreamSeries message per series")
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--json", default="bench-results/mesh.json")
    parser.add_argument("--png", help="the plot (default: next to the JSON, e.g. bench-results/mesh.png)")
    return parser.parse_args(argv)


def start_stack(args, exits: ExitStack, workers: int):
    """An isolated stack (on PostgreSQL, in a database of the run's own: tools.bench.database)."""
    from launcher.stack import Stack, StackSettings

    database_url = exits.enter_context(fresh_database(DATABASE_URL.raw() or ""))
    args.vacuum_url = database_url
    settings = StackSettings.isolated(Path(tempfile.mkdtemp(prefix="satlas-bench-")), database_url=database_url,
                                      worker_concurrency=workers, stop_timeout_s=5.0)
    print("starting an isolated stack ...", flush=True)
    stack = Stack(settings).start()
    args.ingest, args.orchestrator = stack.ingest, stack.orchestrator
    args.triton = args.triton or stack.triton_url
    return stack


def cpu_meter(stack) -> CpuMeter | None:
    if stack is None:
        return None
    # A PostgreSQL server on this machine works for the mesh too: its backends are counted.
    local_pg = stack.database_url.startswith("postgresql") and any(
        h in stack.database_url for h in ("@127.0.0.1", "@localhost", "@/"))
    return CpuMeter({name: p.pid for name, p in stack.processes.items()}, {"postgresql": "postgres"} if local_pg else None)


def measure(args, stack, workers: int, per_message: int) -> tuple[list[Step], Step | None, dict | None]:
    """The mesh steps, the sustained run, then Triton alone."""
    steps, sustained, triton = [], None, None
    series = make_series(256, args.length)
    completions = Completions(args.orchestrator)
    cpu = cpu_meter(stack)
    offered_run(args.ingest, completions, 50, 2, series)  # warm-up: connections, model list, caches
    print(f"{'offered/s':>9} {'secs':>5} {'jobs':>6} {'done/s':>7} {'ok %':>6} {'p50 ms':>7} {'p95 ms':>7} "
          f"{'p99 ms':>7} {'backlog/s':>8}", flush=True)
    for load in [float(x) for x in args.sweep.split(",") if x]:
        steps.append(run_step(args, completions, cpu, load, args.step_seconds, series))
    if args.sustain:
        sustained = run_step(args, completions, cpu, args.sustain, args.sustain_seconds, series)
    completions.close()
    most = triton_max_batch(args.triton) if args.triton_seconds > 0 else None
    if most:
        in_flight = args.triton_in_flight or workers * per_message
        # As the worker sends them: a message's series per model, as many per request as the models take.
        rows = max(1, min(per_message // len(MODELS), most))
        layouts = {"one series per request": (max(1, in_flight // len(MODELS)), 1), "batched": (workers, rows)}
        triton = triton_alone(args.triton, args.length, layouts, args.triton_seconds, args.repeat)
    elif args.triton_seconds > 0:
        print(f"Triton at {args.triton} is not ready with {', '.join(MODELS)}: no Triton figure", flush=True)
    return steps, sustained, triton


def step_report(s: Step | None) -> dict | None:
    if s is None:
        return None
    return {"offered_jobs_s": s.offered_jobs_s, "seconds": s.seconds, "summary": s.summary(),
            "runs": [asdict(r) | {"success_rate": r.success_rate} for r in s.runs]}


def report(args, argv, stack, steps: list[Step], sustained: Step | None, triton: dict | None) -> None:
    """Prints the table and the efficiency; writes the JSON and the PNG."""
    everything = steps + ([sustained] if sustained else [])
    ratio = efficiency(everything, triton)
    print()
    if args.vacuumed:
        print("(the PostgreSQL server runs without autovacuum: the benchmark ran VACUUM before each run)")
    print(table(everything, triton))
    if ratio is not None:
        print(f"efficiency: mesh best median {max(s.done_s for s in everything):.1f} done/s / Triton alone "
              f"({triton['best_layout']}) {triton['jobs_s']:.1f} jobs/s = {100 * ratio:.1f} %")
    print(stages_table(everything))
    out = {
        "command": "python -m tools.bench.mesh " + " ".join(argv or []),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "database": (stack.database_url.split(":")[0] if stack else "external"),
        "vacuumed_between_runs": args.vacuumed,
        "producer": f"BatchSubmitSeries, a call per {args.batch_gap_ms:g} ms at most" if args.batch_gap_ms
        else "StreamSeries, a message per series",
        "length": args.length, "models": list(MODELS), "repeat": args.repeat,
        "steps": [step_report(s) for s in steps], "sustained": step_report(sustained), "triton": triton,
        "mesh_max_jobs_s": max((s.done_s for s in everything), default=0.0), "efficiency": ratio,
        "stages": STAGES,
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    png = Path(args.png) if args.png else Path(args.json).with_suffix(".png")
    plot(steps, sustained, triton, args.length, png)
    print(f"wrote {args.json} and {png}")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    args.vacuum_url, args.vacuumed = "", False
    STOP.clear()
    previous = {s: signal.signal(s, _interrupted) for s in (signal.SIGINT, signal.SIGTERM)}
    workers = WORKER_CONCURRENCY.read()
    per_message = JOBS_PER_MESSAGE.read()
    stack, exits = None, ExitStack()
    try:
        if not args.ingest:
            stack = start_stack(args, exits, workers)
        args.triton = args.triton or TRITON_URL.read()
        steps, sustained, triton = measure(args, stack, workers, per_message)
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted ({exc}); stopping", flush=True)
        return 130
    finally:
        if stack:
            stack.stop()
        exits.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    report(args, argv, stack, steps, sustained, triton)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
