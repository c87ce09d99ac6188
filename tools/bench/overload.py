"""Overload: offer several times the mesh's maximum and check that it holds.

    python -m tools.bench.overload                  # 3 x the maximum for 60 s, on an isolated stack
    python -m tools.bench.overload --factor 3 --seconds 60 --max-unfinished 50000

First the maximum: ``--probe-seconds`` at ``--probe-rate`` jobs/s, done/s counted in the database.
Then ``--factor`` times that for ``--seconds``, open-loop from ``--producers`` processes (one
StreamSeries stream each, length-64 series, both models). Meanwhile the resident memory of every
process group of the stack is sampled each second. Then the backlog drains. It holds when every
request got an answer in time (accepted, or RESOURCE_EXHAUSTED), no other error came back, memory
stopped growing (the second half of the run adds little), and every accepted job finished.
Prints a report and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import grpc
import sqlalchemy as sa
from satlas.v1 import ingest_service_pb2_grpc as ipb_grpc

from orchestrator_svc.db import make_engine
from tools.bench.measure import MODELS, make_series, paced_requests

ANSWER_LIMIT_S = 30.0  # a request unanswered this long counts as hung


def produce(ingest: str, jobs_per_s: float, seconds: float, out: Path) -> None:
    """One producer process: a paced StreamSeries stream; what came back, written to ``out``."""
    series = make_series(64, 64)
    rate = jobs_per_s / len(MODELS)
    total = int(rate * seconds)
    sent_at: dict[int, float] = {}
    codes: Counter = Counter()
    messages: dict[str, str] = {}  # the first of each refusal
    job_ids: list[str] = []
    by_code: dict[str, float] = {}  # the slowest answer of each code
    by_second: dict[int, float] = {}  # the slowest answer to what was sent in each second of the run
    with grpc.insecure_channel(ingest) as channel:
        stub = ipb_grpc.IngestServiceStub(channel)
        try:
            for r in stub.StreamSeries(paced_requests(series, rate, total, sent_at), timeout=seconds + 120):
                took = time.perf_counter() - sent_at[r.sequence]
                second = int(sent_at[r.sequence] - sent_at[0])
                by_second[second] = max(by_second.get(second, 0.0), took)
                by_code[str(r.error.code)] = max(by_code.get(str(r.error.code), 0.0), took)
                codes[r.error.code] += 1
                if r.error.code:
                    messages.setdefault(str(r.error.code), r.error.message)
                job_ids.extend(r.job_ids)
        except grpc.RpcError as exc:
            codes[f"stream {exc.code().name}"] += 1
    out.write_text(json.dumps({"sent": len(sent_at), "codes": {str(k): v for k, v in codes.items()},
                               "messages": messages,
                               "job_ids": job_ids, "slowest_answer_s": max(by_code.values(), default=0.0),
                               "slowest_by_code_s": by_code,
                               "slowest_by_second_s": [by_second.get(k, 0.0)
                                                       for k in range(max(by_second, default=-1) + 1)],
                               "unanswered": len(sent_at) - sum(v for k, v in codes.items() if isinstance(k, int))}))


def group_rss_mb(groups: dict[str, int]) -> dict[str, float]:
    """Resident MB of every process in each process group (a service with its children)."""
    by_group = {pgid: name for name, pgid in groups.items()}
    out = dict.fromkeys(groups, 0.0)
    page_mb = os.sysconf("SC_PAGE_SIZE") / 2**20
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rpartition(")")[2].split()
                pages = int((entry / "statm").read_text().split()[1])
            except (OSError, IndexError):
                continue
            name = by_group.get(int(stat[2]))
            if name:
                out[name] += pages * page_mb
    return out


def count(engine, where: str) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text(f"SELECT count(*) FROM inference_results {where}")).scalar()


def count_by_status(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.text("SELECT status, count(*) FROM inference_results "
                                         "WHERE status IN ('pending','queued','running') GROUP BY status")).all())


def run_producers(ingest: str, jobs_per_s: float, seconds: float, producers: int, work: Path) -> list[dict]:
    procs = []
    for k in range(producers):
        out = work / f"producer-{k}.json"
        procs.append((subprocess.Popen([sys.executable, "-m", "tools.bench.overload", "--produce", ingest,
                                        str(jobs_per_s / producers), str(seconds), str(out)]), out))
    for p, _ in procs:
        p.wait()
    return [json.loads(out.read_text()) for _, out in procs]


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--produce":
        produce(sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), Path(sys.argv[5]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--factor", type=float, default=3.0, help="times the measured maximum")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--probe-rate", type=float, default=4000.0, help="jobs/s offered to find the maximum")
    parser.add_argument("--probe-seconds", type=float, default=8.0)
    parser.add_argument("--max-rate", type=float, help="the maximum, if known (no probe)")
    parser.add_argument("--producers", type=int, default=3, help="producer processes")
    parser.add_argument("--max-unfinished", type=int, help="ORCHESTRATOR_MAX_UNFINISHED of the stack")
    parser.add_argument("--drain", type=float, default=300.0, help="seconds for the backlog to finish")
    parser.add_argument("--json", default="bench-results/overload.json")
    args = parser.parse_args(argv)

    from launcher.stack import Stack, StackSettings

    work = Path(tempfile.mkdtemp(prefix="satlas-overload-"))
    env = {"ORCHESTRATOR_MAX_UNFINISHED": str(args.max_unfinished)} if args.max_unfinished else {}
    print("starting an isolated stack ...", flush=True)
    with Stack(StackSettings.isolated(work, env=env, stop_timeout_s=5.0)) as stack:
        engine = make_engine(stack.database_url)
        groups = {n: p.pid for n, p in stack.processes.items()}
        if args.max_rate:
            maximum = args.max_rate
        else:
            before = count(engine, "WHERE status = 'completed'")
            run_producers(stack.ingest, args.probe_rate, args.probe_seconds, 1, work)
            maximum = (count(engine, "WHERE status = 'completed'") - before) / args.probe_seconds
            print(f"maximum: {maximum:.0f} jobs/s done while {args.probe_rate:.0f} were offered", flush=True)
            deadline = time.monotonic() + args.drain
            while count(engine, "WHERE status IN ('pending','queued','running')") and time.monotonic() < deadline:
                time.sleep(1)
        offered = args.factor * maximum
        print(f"offering {offered:.0f} jobs/s ({args.factor:g} x) for {args.seconds:.0f} s "
              f"from {args.producers} producers", flush=True)
        samples: list[dict] = []
        sampling = threading.Event()

        def sample() -> None:
            t0 = time.monotonic()
            while not sampling.wait(1.0):
                rss = group_rss_mb(groups)
                samples.append({"t": round(time.monotonic() - t0, 1), "rss_mb": rss,
                                "unfinished": count(engine, "WHERE status IN ('pending','queued','running')")})
                print(f"  {samples[-1]['t']:5.0f} s  unfinished {samples[-1]['unfinished']:6d}  "
                      + "  ".join(f"{n} {v:.0f}" for n, v in rss.items()) + " MB", flush=True)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        results = run_producers(stack.ingest, offered, args.seconds, args.producers, work)
        sampling.set()
        sampler.join()
        accepted = [j for r in results for j in r["job_ids"]]
        began, said = time.monotonic(), 0.0
        while (left := count(engine, "WHERE status IN ('pending','queued','running')")) and \
                time.monotonic() - began < args.drain:
            if time.monotonic() - said >= 10:  # a drain that stalls shows where
                said = time.monotonic()
                by = count_by_status(engine)
                print(f"  draining: {left} unfinished ({by}) after {said - began:.0f} s", flush=True)
            time.sleep(1)
        drained_s = time.monotonic() - began
        statuses = Counter()
        with engine.connect() as conn:
            for i in range(0, len(accepted), 900):
                for status, n in conn.execute(sa.text(
                        "SELECT status, count(*) FROM inference_results WHERE job_id IN :ids GROUP BY status")
                        .bindparams(sa.bindparam("ids", expanding=True)), {"ids": accepted[i:i + 900]}):
                    statuses[status] += n
        engine.dispose()
    codes = Counter()
    for r in results:
        codes.update(r["codes"])
    half = [s for s in samples if s["t"] > args.seconds / 2]
    growth = {n: round(half[-1]["rss_mb"][n] - half[0]["rss_mb"][n], 1) for n in groups} if len(half) > 1 else {}
    peak = {n: round(max(s["rss_mb"][n] for s in samples), 1) for n in groups} if samples else {}
    sent = sum(r["sent"] for r in results)
    out = {
        "command": "python -m tools.bench.overload " + " ".join(sys.argv[1:] if argv is None else argv),
        "maximum_jobs_s": maximum, "offered_jobs_s": offered, "seconds": args.seconds,
        "requests": sent, "answers": dict(codes), "unanswered": sum(r["unanswered"] for r in results),
        "messages": {k: v for r in results for k, v in r["messages"].items()},
        "slowest_answer_s": max(r["slowest_answer_s"] for r in results), "accepted_jobs": len(accepted),
        "slowest_by_code_s": {c: max(r["slowest_by_code_s"].get(c, 0.0) for r in results) for c in codes},
        "slowest_by_second_s": [round(max(s), 2) for s in zip(*(r["slowest_by_second_s"] for r in results))],
        "statuses": dict(statuses), "drained_s": drained_s, "peak_rss_mb": peak,
        "rss_growth_second_half_mb": growth, "peak_unfinished": max((s["unfinished"] for s in samples), default=0),
        "samples": samples,
    }
    ok = (out["unanswered"] == 0 and out["slowest_answer_s"] < ANSWER_LIMIT_S
          and set(codes) <= {"0", "8"} and statuses.get("completed", 0) == len(accepted))
    out["ok"] = ok
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2))
    print(f"requests {sent}: answers by code {dict(codes)} (0 accepted, 8 RESOURCE_EXHAUSTED), unanswered "
          f"{out['unanswered']}, slowest answer {out['slowest_answer_s']:.1f} s ("
          + ", ".join(f"code {c}: {v:.1f} s" for c, v in sorted(out["slowest_by_code_s"].items())) + ")")
    print("slowest answer to what was sent in each second: "
          + " ".join(f"{v:.1f}" for v in out["slowest_by_second_s"]))
    print(f"jobs accepted {len(accepted)} ({len(accepted) / args.seconds:.0f}/s): {dict(statuses)}, "
          f"drained in {drained_s:.0f} s; peak unfinished {out['peak_unfinished']}")
    print("peak MB: " + ", ".join(f"{n} {v:.0f}" for n, v in peak.items()))
    print("growth over the second half, MB: " + ", ".join(f"{n} {v:+.0f}" for n, v in growth.items()))
    print(f"wrote {args.json}; " + ("it held" if ok else "it did NOT hold"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
