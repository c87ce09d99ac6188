"""The soak's report: load held, faults and the recovery from each, latency before, during and
after the faults, the verdict; as text, JSON and a PNG of throughput over time with the faults marked."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from tools.soak.faults import Fault
from tools.soak.load import Record

RECOVERED = 0.8  # done/s back to this share of the offered rate, over WINDOW_S, counts as recovered
WINDOW_S = 3


def first_done(record: Record) -> dict[str, float]:
    """Each job's earliest terminal event, across watchers."""
    done: dict[str, float] = {}
    for events in record.events.values():
        for e in events:
            if e.at < done.get(e.job_id, float("inf")):
                done[e.job_id] = e.at
    return done


def timeline(record: Record, t0: float, seconds: int) -> dict[str, list[int]]:
    """Jobs accepted and done in each second from ``t0``."""
    accepted, done = np.zeros(seconds, int), np.zeros(seconds, int)
    jobs = record.accepted_jobs()
    for job_id, at in first_done(record).items():
        if job_id in jobs and 0 <= at - t0 < seconds:
            done[int(at - t0)] += 1
    for s in {s.key: s for s in jobs.values()}.values():
        if s.accepted is not None and 0 <= s.accepted - t0 < seconds:
            accepted[int(s.accepted - t0)] += len(s.answers[0])
    return {"accepted": accepted.tolist(), "done": done.tolist()}


def recovery(faults: list[Fault], done: list[int], t0: float, rate: float) -> None:
    """Seconds from each fault until done/s held ``RECOVERED`` of the offered rate for ``WINDOW_S``."""
    for f in faults:
        start = int(f.at - t0)
        for t in range(start, len(done) - WINDOW_S + 1):
            if min(done[t:t + WINDOW_S]) >= RECOVERED * rate:
                f.recovered_s = max(0.0, t - (f.at - t0))
                break


def latencies(record: Record, faults: list[Fault], t0: float) -> dict[str, dict]:
    """p50/p95 of submit → first terminal event, for jobs sent before the first fault, while one was
    in effect (from the fault to its recovery), and after the last."""
    done = first_done(record)
    windows = [(f.at, f.at + max(f.recovered_s or 0.0, f.back_s or 0.0) + WINDOW_S) for f in faults]
    groups: dict[str, list[float]] = {"before": [], "during": [], "between and after": []}
    for job_id, s in record.accepted_jobs().items():
        if job_id not in done:
            continue
        ms = 1000 * (done[job_id] - s.sent)
        if not faults or s.sent < faults[0].at:
            groups["before"].append(ms)
        elif any(a <= s.sent < b for a, b in windows):
            groups["during"].append(ms)
        else:
            groups["between and after"].append(ms)
    return {k: {"jobs": len(v), "p50_ms": float(np.percentile(v, 50)) if v else None,
                "p95_ms": float(np.percentile(v, 95)) if v else None} for k, v in groups.items()}


def text(out: dict) -> str:
    v, load = out["verdict"], out["load"]
    lines = [f"soak: {out['seconds']:.0f} s at {load['offered_jobs_s']:g} jobs/s offered on {out['database']}; "
             f"accepted {load['accepted_jobs_s']:.1f} jobs/s, done {load['done_jobs_s']:.1f} jobs/s",
             "faults:"]
    for f in out["faults"]:
        back = f"back {f['back_s']:.1f} s" if f["back_s"] is not None else "back: -"
        rec = f"recovered {f['recovered_s']:.1f} s" if f["recovered_s"] is not None else "recovered: never"
        lines.append(f"  {f['at_s']:7.1f} s  {f['kind']:<13} {back:<13} {rec:<18} {f['detail']}")
    lines.append("latency, submit -> terminal event:")
    for name, g in out["latency"].items():
        if g["jobs"]:
            lines.append(f"  {name:<18} {g['jobs']:7d} jobs  p50 {g['p50_ms']:8.1f} ms  p95 {g['p95_ms']:8.1f} ms")
    lines.append(f"requests {v['requests']} (retried {v['retried_requests']}, resent on purpose "
                 f"{v['resent_on_purpose']}, unanswered {v['unanswered_requests']}, rejected {v['rejected_requests']})")
    lines.append(f"jobs accepted {v['accepted_jobs']}: {v['statuses']}")
    lines.append(f"lost {len(v['lost'])}, stuck {len(v['stuck'])}, doubled {len(v['doubled'])}, "
                 f"key mismatches {len(v['key_mismatch'])}, failed without a reason {len(v['failed_without_reason'])}")
    for name, w in v["watchers"].items():
        lines.append(f"  WatchJobs via {name}: {w['terminal_events']} terminal events for {w['jobs_seen']} jobs, "
                     f"{w['repeated_same_version']} repeats of a version, {len(w['succeeded_twice'])} succeeded twice")
    if v["failure_reasons"]:
        lines.append("failure reasons: " + "; ".join(f"{n} x {r!r}" for r, n in v["failure_reasons"].items()))
    lines.append("verdict: " + ("nothing lost, nothing doubled" if v["ok"] else "FAILED"))
    return "\n".join(lines)


def plot(out: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    series = out["timeline"]
    step = max(1, len(series["done"]) // 400)  # an hour in 10 s means; a short run second by second
    binned = {k: np.asarray(v[:len(v) // step * step], float).reshape(-1, step).mean(axis=1) for k, v in series.items()}
    t = np.arange(len(binned["done"])) * step
    per = f" ({step} s means)" if step > 1 else ""
    ax.plot(t, binned["accepted"], color="tab:grey", linewidth=0.8, label=f"accepted jobs/s{per}")
    ax.plot(t, binned["done"], color="tab:blue", linewidth=1.0, label=f"done jobs/s (terminal event){per}")
    ax.axhline(out["load"]["offered_jobs_s"], color="tab:green", linestyle=":", label="offered")
    top = max([*binned["done"], *binned["accepted"], 1])
    for f in out["faults"]:
        ax.axvline(f["at_s"], color="tab:red", alpha=0.6, linewidth=0.8)
        ax.text(f["at_s"], top * 1.02, f["kind"], rotation=90, fontsize=7, va="bottom", ha="right", color="tab:red")
    ax.set(xlabel="seconds", ylabel="jobs/s", ylim=(0, top * 1.35),
           title=f"Satlas soak on {out['database']}: {out['verdict']['accepted_jobs']} jobs, "
                 f"{len(out['faults'])} faults; lost {len(out['verdict']['lost'])}, "
                 f"doubled {len(out['verdict']['doubled'])}, stuck {len(out['verdict']['stuck'])}")
    ax.legend(loc="lower left", fontsize=8)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.soak.report RUN.json``: the text and the PNG again, from a run's JSON."""
    import sys

    for name in argv if argv is not None else sys.argv[1:]:
        out = json.loads(Path(name).read_text())
        print(text(out))
        plot(out, Path(name).with_suffix(".png"))
    return 0


def write(out: dict, json_path: Path) -> Path:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(out, indent=2))
    png = json_path.with_suffix(".png")
    plot(out, png)
    return png


def fault_rows(faults: list[Fault], t0: float) -> list[dict]:
    return [asdict(f) | {"at_s": round(f.at - t0, 2)} for f in faults]


if __name__ == "__main__":
    raise SystemExit(main())
