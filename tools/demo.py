"""Guided demo of a running Satlas (``make up``), after the older system's ``demo_system.py``.

    python -m tools.demo
    python -m tools.demo --pause 3                  # time to look at each step
    python -m tools.demo --database-url postgresql://user@host/satlas

A gRPC client that walks through the whole system, one heading per step: the health of each
service; the models Triton serves (ListModels); one series of each of the five patterns
submitted to both models (SubmitSeries); the jobs followed live on WatchJobs, every state change
with its time since the submit; a forecast and the anomaly points found; a bad series rejected
with INVALID_ARGUMENT and its field violation; the older system's SQL checks run against the
database; and where the dashboard and Flower are. Exit status 0 when every job SUCCEEDED and
every check held, 1 otherwise, 2 when a service is not serving.
"""

from __future__ import annotations

import argparse
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import sqlalchemy as sa
from satlas.v1 import analysis_service_pb2 as apb
from satlas.v1 import analysis_service_pb2_grpc as apb_grpc
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import ingest_service_pb2_grpc as ipb_grpc
from satlas.v1 import orchestrator_service_pb2 as opb
from satlas.v1 import orchestrator_service_pb2_grpc as opb_grpc

from launcher.probes import http_answers
from launcher.settings import ENVOY_PORT, FLOWER_PORT, StackSettings
from satkit.jobs import DEFAULT_MODELS, TERMINAL_STATES
from satkit.settings import sqlalchemy_url
from tools import cli, display, inputs, patterns
from tools.loadtest import service_health
from tools.simulator import sample

VAE, TRANSFORMER = MODELS = DEFAULT_MODELS
FORECAST_SHOWN = 5
ANOMALY_POINTS = 3  # the most unusual points shown per series
BAD_SERIES = [1.0, float("nan"), 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0]  # series.values[1] is not a number

# The older system's documented queries (../shared/seeds), unchanged, after a count by state.
SQL_CHECKS = [
    ("jobs by state and model",
     "SELECT status, model_name, COUNT(*) AS jobs FROM inference_results GROUP BY status, model_name "
     "ORDER BY status, model_name;"),
    ("the latest jobs",
     "SELECT job_id, model_name, status, created_at FROM inference_results ORDER BY created_at DESC LIMIT 10;"),
    ("completed jobs per model",
     "SELECT model_name, COUNT(*) FROM inference_results WHERE status = 'completed' GROUP BY model_name;"),
    ("completed jobs and mean inference time per model",
     "SELECT model_name, COUNT(*) AS total, AVG(CAST(metrics->>'inference_time' AS FLOAT)) AS avg_inference_time "
     "FROM inference_results WHERE status = 'completed' GROUP BY model_name;"),
]
DEMO_ROWS_SQL = ("SELECT job_id, model_name, status, CAST(metrics->>'inference_time' AS FLOAT) AS inference_time "
                 "FROM inference_results WHERE job_id IN :ids ORDER BY model_name, created_at")


# --- defaults ---------------------------------------------------------------------------


def default_database_url(environ=None) -> str:
    """The database ``make up`` uses: DATABASE_URL, else SQLite under SATLAS_RUN_DIR (launcher.settings)."""
    return StackSettings.from_env(environ).job_database_url


def default_dashboard_url(environ=None) -> str:
    return f"http://localhost:{ENVOY_PORT.read(environ)}/"


def default_flower_url(environ=None) -> str:
    return f"http://localhost:{FLOWER_PORT.read(environ)}"


# --- what is shown ----------------------------------------------------------------------


@dataclass(frozen=True)
class Tracked:
    pattern: str
    model: str


class Follow:
    """Which events of the demo's jobs to print: each job's state changes once, newest version only,
    timed from ``t0`` (the first submit, a perf_counter reading)."""

    def __init__(self, jobs: dict[str, Tracked], t0: float):
        self.jobs, self.t0 = jobs, t0
        self.seen: dict[str, tuple[int, int]] = {}  # job_id -> (version, state) last shown
        self.final: dict[str, object] = {}  # job_id -> its terminal Job

    @property
    def waiting(self) -> list[str]:
        return [j for j in self.jobs if j not in self.final]

    def see(self, job, at: float) -> str | None:
        """The line for this event, or None (not one of ours, a replay, no change of state)."""
        tracked = self.jobs.get(job.job_id)
        version, state = self.seen.get(job.job_id, (-1, None))
        if tracked is None or job.version <= version:
            return None
        self.seen[job.job_id] = (job.version, job.state)
        if job.state in TERMINAL_STATES:
            self.final[job.job_id] = job
        if job.state == state:
            return None
        line = (f"  +{(at - self.t0) * 1000:7.1f} ms  {tracked.pattern:<12} {tracked.model:<23} "
                f"{display.state_name(job.state):<9}")
        timings = display.timings_text(job.timings)
        if timings:
            line += "  " + timings
        if job.error:
            line += f"  error: {job.error}"
        return line.rstrip()


def top_points(scores, k: int = ANOMALY_POINTS) -> list[tuple[int, float]]:
    """(index, score) of the k highest per-point anomaly scores, highest first."""
    return sorted(enumerate(scores), key=lambda p: (-p[1], p[0]))[:k]


def sqlite_path(url: str) -> Path | None:
    """The file of a sqlite:/// URL (None for any other database or an in-memory one)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        return None
    return Path(url[len(prefix):].split("?", 1)[0])


def indent(text: str, by: str = "  ") -> str:
    return "\n".join(by + line for line in text.splitlines())


# --- the walk ---------------------------------------------------------------------------


class Feed:
    """Every WatchJobs event, stamped on arrival, read on a background thread."""

    def __init__(self, stub):
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.call = stub.WatchJobs(opb.WatchJobsRequest())
        self.call.initial_metadata()  # subscribed from here on: no event of the submits is missed
        threading.Thread(target=self._read, name="watch-jobs", daemon=True).start()

    def _read(self) -> None:
        try:
            for event in self.call:
                self.events.put((time.perf_counter(), event.job))
        except grpc.RpcError:
            pass

    def close(self) -> None:
        self.call.cancel()


class Demo:
    def __init__(self, args: argparse.Namespace, out: Callable[[str], None]):
        self.args, self.out = args, out
        self.step_no = 0
        self.problems: list[str] = []
        self.jobs: dict[str, Tracked] = {}
        self.t0 = 0.0  # the first submit
        self.final: dict[str, object] = {}

    def step(self, title: str) -> None:
        if self.step_no and self.args.pause > 0:
            time.sleep(self.args.pause)
        self.step_no += 1
        heading = f"{self.step_no}. {title}"
        self.out("")
        self.out(heading)
        self.out("=" * len(heading))

    def run(self) -> int:
        a = self.args
        self.out(f"Satlas demo: ingest {a.ingest}, orchestrator {a.orchestrator}, analysis {a.analysis}")
        if not self.health():
            return 2
        with cli.connect(a, a.ingest) as ic, cli.connect(a, a.orchestrator) as oc, \
                cli.connect(a, a.analysis) as ac:
            ingest, orchestrator = ipb_grpc.IngestServiceStub(ic), opb_grpc.OrchestratorServiceStub(oc)
            if not self.models(apb_grpc.AnalysisServiceStub(ac)):
                return 1
            feed = Feed(orchestrator)
            try:
                self.submit(ingest)
                self.follow(feed, orchestrator)
            finally:
                feed.close()
            self.results(orchestrator)
            self.bad_series(ingest)
        self.sql()
        self.where_to_look()
        return self.verdict()

    def health(self) -> bool:
        self.step("Health of each service (grpc.health.v1)")
        lines, down = service_health(self.args)
        for line in lines:
            self.out(f"  {line}")
        if down:
            self.out(f"not serving: {', '.join(down)}. Is the stack up (make up)?")
        return not down

    def models(self, analysis) -> bool:
        self.step("The models Triton serves (AnalysisService.ListModels)")
        served = {m.name: m for m in analysis.ListModels(apb.ListModelsRequest(), timeout=10).models}
        for m in served.values():
            self.out(indent(display.model_text(m)))
        missing = [n for n in MODELS if not (n in served and served[n].ready)]
        if missing:
            self.out(f"not ready: {', '.join(missing)}")
        return not missing

    def submit(self, ingest) -> None:
        a = self.args
        self.step(f"One series of each pattern, to both models (IngestService.SubmitSeries, {a.length} points)")
        for i, pattern in enumerate(patterns.PATTERNS):
            values = inputs.pattern_values(pattern, a.length, a.seed + i)
            request = ipb.SubmitSeriesRequest(series={"values": values, "series_id": f"demo-{pattern}"},
                                              models=list(MODELS))
            if not self.t0:
                self.t0 = time.perf_counter()
            job_ids = ingest.SubmitSeries(request, timeout=10).job_ids
            self.out(f"  {pattern:<12} {sample(values)}")
            for model, job_id in zip(MODELS, job_ids):
                self.jobs[job_id] = Tracked(pattern, model)
                self.out(f"    {model:<23} job {job_id}")

    def follow(self, feed: Feed, orchestrator) -> None:
        self.step("Following them live (OrchestratorService.WatchJobs): time since the first submit, state, timings")
        follow = Follow(self.jobs, self.t0)
        deadline = time.perf_counter() + self.args.timeout
        heard = time.perf_counter()  # the last change of one of ours
        while follow.waiting and time.perf_counter() < deadline:
            if time.perf_counter() - heard > 1.0:  # a quiet second: ask for the open jobs (an event may be lost)
                for job_id in follow.waiting:
                    feed.events.put((time.perf_counter(),
                                     orchestrator.GetJob(opb.GetJobRequest(job_id=job_id), timeout=10).job))
                heard = time.perf_counter()
            try:
                at, job = feed.events.get(timeout=0.2)
            except queue.Empty:
                continue
            line = follow.see(job, at)
            if line:
                heard = at
                self.out(line)
        self.final = follow.final
        ok = sum(j.state == display.JobState.JOB_STATE_SUCCEEDED for j in self.final.values())
        self.out(f"  {ok} of {len(self.jobs)} jobs SUCCEEDED")
        if ok < len(self.jobs):
            unfinished = len(follow.waiting)
            self.problems.append(f"{len(self.jobs) - ok} of {len(self.jobs)} jobs did not succeed"
                                 + (f" ({unfinished} unfinished after {self.args.timeout:g} s)" if unfinished else ""))

    def results(self, orchestrator) -> None:
        self.step("Results (OrchestratorService.GetJob): forecasts and anomaly points")
        by = {(t.pattern, t.model): job_id for job_id, t in self.jobs.items()}
        for pattern in patterns.PATTERNS:
            forecast = orchestrator.GetJob(opb.GetJobRequest(job_id=by[pattern, TRANSFORMER]), timeout=10).job
            vae = orchestrator.GetJob(opb.GetJobRequest(job_id=by[pattern, VAE]), timeout=10).job
            self.out(f"  {pattern}")
            if forecast.result.predictions:
                first = ", ".join(f"{v:.4g}" for v in forecast.result.predictions[:FORECAST_SHOWN])
                self.out(f"    forecast   next {len(forecast.result.predictions)} points: [{first}, ...]")
            else:
                self.out(f"    forecast   none ({display.state_name(forecast.state)} {forecast.error})".rstrip())
            r = vae.result
            if r.anomaly_scores:
                points = ", ".join(f"#{i} (score {s:.3g})" for i, s in top_points(r.anomaly_scores))
                self.out(f"    anomaly    score {r.anomaly_score:.3g}, {'ANOMALY' if r.anomaly_flag else 'normal'};"
                         f" most unusual points: {points}")
            else:
                self.out(f"    anomaly    none ({display.state_name(vae.state)} {vae.error})".rstrip())

    def bad_series(self, ingest) -> None:
        self.step("A bad series is rejected (INVALID_ARGUMENT with google.rpc.BadRequest)")
        self.out(f"  values {BAD_SERIES}")
        try:
            ingest.SubmitSeries(ipb.SubmitSeriesRequest(series={"values": BAD_SERIES}, models=list(MODELS)),
                                timeout=10)
        except grpc.RpcError as exc:
            violations = display.field_violations(exc)
            self.out(f"  status     {exc.code().name}")
            for field, description in violations:
                self.out(f"  violation  {field}: {description}")
            if not violations:
                self.out(f"  message    {exc.details()}")
            if exc.code() != grpc.StatusCode.INVALID_ARGUMENT or not violations:
                self.problems.append(f"the bad series got {exc.code().name}, not INVALID_ARGUMENT with violations")
            return
        self.out("  accepted!")
        self.problems.append("the bad series was accepted")

    def sql(self) -> None:
        url = self.args.database_url
        self.step(f"SQL checks on the database ({url.split('://')[0]})")
        path = sqlite_path(url)
        if path is not None and not path.exists():  # connecting would create an empty file
            self.out(f"  no database at {path}")
            self.problems.append("no database there (--database-url)")
            return
        engine = sa.create_engine(sqlalchemy_url(url))
        try:
            with engine.connect() as conn:
                for title, query in SQL_CHECKS:
                    self.out(f"  -- {title}\n  {query}")
                    self.out(indent(display.rows_table(conn.execute(sa.text(query)).all()), "    "))
                    self.out("")
                self.out("  -- this demo's jobs")
                query = sa.text(DEMO_ROWS_SQL).bindparams(sa.bindparam("ids", expanding=True))
                rows = conn.execute(query, {"ids": list(self.jobs)}).all()
                self.out(indent(display.rows_table(rows), "    "))
        except sa.exc.SQLAlchemyError as exc:
            self.out(f"  cannot read {url}: {exc.__class__.__name__}: {str(exc).splitlines()[0]}")
            self.problems.append("the database could not be read (--database-url)")
            return
        finally:
            engine.dispose()
        completed = sum(r.status == "completed" for r in rows)
        if len(rows) < len(self.jobs):
            self.problems.append(f"the database holds {len(rows)} of the demo's {len(self.jobs)} jobs: "
                                 "is --database-url the stack's database?")
        elif completed < len(self.jobs):
            self.problems.append(f"{completed} of the demo's {len(self.jobs)} rows are 'completed'")

    def where_to_look(self) -> None:
        self.step("Where to look next")
        dashboard = self.args.dashboard_url.rstrip("/") + "/"
        for what, url in (("dashboard", dashboard), ("live view", dashboard + "dashboard.html"),
                          ("Flower", self.args.flower_url)):
            self.out(f"  {what:<10} {url:<40} {'answers' if http_answers(url) else 'no answer'}")

    def verdict(self) -> int:
        self.out("")
        if self.problems:
            self.out("DEMO FAILED: " + "; ".join(self.problems))
            return 1
        self.out(f"Demo done: all {len(self.jobs)} jobs SUCCEEDED.")
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_address_options(parser)
    parser.add_argument("--database-url", default=default_database_url(),
                        help="the stack's database for the SQL checks (default: DATABASE_URL, else the "
                             "stack's SQLite file under SATLAS_RUN_DIR, .run/satlas.db)")
    parser.add_argument("--dashboard-url", default=default_dashboard_url(),
                        help="Envoy's front door (default http://localhost:$ENVOY_PORT/, 8080)")
    parser.add_argument("--flower-url", default=default_flower_url(),
                        help="Flower (default http://localhost:$FLOWER_PORT, 5555)")
    parser.add_argument("--length", type=int, default=64, help="points per series (default 64)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the first series (default 1)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the jobs (default 60)")
    parser.add_argument("--pause", type=float, default=0.0, help="seconds between steps (default 0)")
    return parser


def _terminated(_signum, _frame) -> None:
    raise KeyboardInterrupt("SIGTERM")


def main(argv: list[str] | None = None, out: Callable[[str], None] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or (lambda line: print(line, flush=True))
    previous = None
    if threading.current_thread() is threading.main_thread():  # SIGTERM ends it as Ctrl-C does
        previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return Demo(args, out).run()
    except grpc.RpcError as exc:
        for line in display.error_lines(exc):
            out(line)
        return 1
    except KeyboardInterrupt:
        out("interrupted")
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
