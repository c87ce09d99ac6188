"""Command-line client for Satlas: submit series, follow jobs, read stats and models.

    python -m satkit.cli submit --pattern seasonal --length 128 --watch
    python -m satkit.cli get JOB_ID
    python -m satkit.cli list --state failed --all

It talks to the three public services with the generated stubs only. Output is short and
human by default; ``--json`` prints the response messages as proto3 JSON instead (one
compact line per event for the streaming commands, so the output is JSON Lines).
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from datetime import datetime, timezone

import grpc
import numpy
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from satlas.v1 import (
    analysis_service_pb2,
    analysis_service_pb2_grpc,
    ingest_service_pb2,
    ingest_service_pb2_grpc,
    job_state_pb2,
    orchestrator_service_pb2,
    orchestrator_service_pb2_grpc,
    timeseries_pb2,
)

from satkit import patterns

DEFAULT_MODELS = ("vae_timeseries", "transformer_timeseries")
PREVIEW = 8  # values shown of a result; a series can hold 4096

JobState = job_state_pb2.JobState
TERMINAL = {JobState.JOB_STATE_SUCCEEDED, JobState.JOB_STATE_FAILED, JobState.JOB_STATE_CANCELLED}
STATE_CHOICES = ("pending", "queued", "running", "succeeded", "failed", "cancelled")


# --- states -----------------------------------------------------------------------------


def state_name(state: int) -> str:
    """SUCCEEDED rather than JOB_STATE_SUCCEEDED; a number the stubs do not know stays a number."""
    try:
        return JobState.Name(state).removeprefix("JOB_STATE_")
    except ValueError:
        return str(state)


def parse_state(text: str) -> int:
    """argparse type for --state: 'succeeded', 'SUCCEEDED' or 'JOB_STATE_SUCCEEDED'."""
    name = text.strip().upper().removeprefix("JOB_STATE_")
    if name.lower() not in STATE_CHOICES:
        raise argparse.ArgumentTypeError(f"unknown state {text!r}; expected one of {', '.join(STATE_CHOICES)}")
    return JobState.Value("JOB_STATE_" + name)


# --- series input -----------------------------------------------------------------------


def parse_numbers(text: str) -> list[float]:
    """Numbers separated by commas, whitespace or newlines (so both a CSV row and a column work)."""
    values = []
    for token in text.replace(",", " ").split():
        try:
            values.append(float(token))
        except ValueError:
            raise ValueError(f"not a number: {token!r}") from None
    return values


def read_numbers(path: str) -> list[float]:
    if path == "-":
        return parse_numbers(sys.stdin.read())
    with open(path, encoding="utf-8") as f:
        return parse_numbers(f.read())


def pattern_values(pattern: str, length: int, seed: int | None) -> list[float]:
    return patterns.generate(pattern, length, numpy.random.default_rng(seed)).values.tolist()


def parse_label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"label must be KEY=VALUE, got {text!r}")
    return key, value


def series_values(args: argparse.Namespace) -> list[float]:
    if args.values is not None:
        values = parse_numbers(args.values)
    elif args.file is not None:
        values = read_numbers(args.file)
    else:
        values = pattern_values(args.pattern, args.length, args.seed)
    if not values:
        raise ValueError("the series is empty")
    return values


def build_series(args: argparse.Namespace) -> timeseries_pb2.TimeSeries:
    return timeseries_pb2.TimeSeries(
        values=series_values(args), series_id=args.series_id or "", labels=dict(args.label or [])
    )


def split_models(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


# --- formatting -------------------------------------------------------------------------


def num(x: float) -> str:
    return format(x, ".6g")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def preview(values) -> str:
    """The first PREVIEW values and how many more there are, never the whole series."""
    shown = ", ".join(num(v) for v in values[:PREVIEW])
    rest = len(values) - PREVIEW
    return f"{shown}, ... (+{rest} more)" if rest > 0 else shown


def is_set(ts) -> bool:
    return ts.seconds != 0 or ts.nanos != 0


def clock(ts) -> str:
    """Local wall-clock time of a Timestamp, to the millisecond."""
    return ts.ToDatetime(tzinfo=timezone.utc).astimezone().strftime("%H:%M:%S.%f")[:-3]


def date_time(ts) -> str:
    if not is_set(ts):
        return "-"
    return ts.ToDatetime(tzinfo=timezone.utc).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def state_time(job) -> str:
    """When the job entered its current state, from the job's own timestamps (the first event
    of a watch can be old); now if the job does not say."""
    stamp = {
        JobState.JOB_STATE_PENDING: job.create_time,
        JobState.JOB_STATE_QUEUED: job.queue_time,
        JobState.JOB_STATE_RUNNING: job.start_time,
    }.get(job.state, job.end_time)
    if is_set(stamp):
        return clock(stamp)
    return datetime.now().strftime("%H:%M:%S.%f")[:-3]


def timings_text(t) -> str:
    """Only the timings already measured: a QUEUED job has none yet."""
    parts = [
        f"{name} {ms(value)}"
        for name, value in (("queue", t.queue_seconds), ("inference", t.inference_seconds), ("total", t.total_seconds))
        if value > 0
    ]
    return ", ".join(parts)


def event_line(job) -> str:
    """One line per state change, shared by watch, watch-all and submit --watch."""
    line = f"{state_time(job)}  {job.job_id}  {job.model_name}  {state_name(job.state):<9}  v{job.version}"
    timings = timings_text(job.timings)
    if timings:
        line += "  " + timings
    if job.error:
        line += f"  error: {job.error}"
    return line


def result_lines(result) -> list[str]:
    lines = []
    if result.model_version:
        lines.append(f"model version  {result.model_version}")
    if result.predictions:
        lines.append(f"predictions    [{len(result.predictions)}] {preview(result.predictions)}")
    # anomaly_score is a plain double, so "no anomaly output" and "score 0" look alike; the
    # per-point scores tell them apart.
    if result.anomaly_scores or result.anomaly_score or result.anomaly_flag:
        flag = "ANOMALY" if result.anomaly_flag else "normal"
        lines.append(f"anomaly        score {num(result.anomaly_score)} ({flag})")
    if result.anomaly_scores:
        lines.append(f"anomaly scores [{len(result.anomaly_scores)}] {preview(result.anomaly_scores)}")
    if result.outputs:
        outputs = ", ".join(f"{name}[{len(v.values)}]" for name, v in sorted(result.outputs.items()))
        lines.append(f"outputs        {outputs}")
    return lines


def job_text(job) -> str:
    labels = " ".join(f"{k}={v}" for k, v in sorted(job.labels.items()))
    rows = [
        ("job", job.job_id),
        ("state", state_name(job.state)),
        ("model", job.model_name),
        ("series", f"{job.series_id or '-'} ({job.series_length} points)" + (f"  {labels}" if labels else "")),
        ("created", date_time(job.create_time)),
        ("timings", timings_text(job.timings) or "-"),
        ("attempts", str(job.attempts)),
        ("worker", job.worker or "-"),
        ("version", str(job.version)),
    ]
    if job.error:
        rows.append(("error", job.error))
    lines = [f"{k:<14} {v}" for k, v in rows]
    if job.HasField("result"):
        lines += result_lines(job.result)
    return "\n".join(lines)


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [header, *rows])


def jobs_table(jobs) -> str:
    rows = [
        [
            j.job_id,
            j.model_name,
            state_name(j.state),
            str(j.series_length),
            str(j.attempts),
            date_time(j.create_time),
            f"{j.timings.total_seconds * 1000:.1f}" if j.timings.total_seconds else "-",
        ]
        for j in jobs
    ]
    return table(["JOB_ID", "MODEL", "STATE", "LENGTH", "ATTEMPTS", "CREATED", "TOTAL_MS"], rows)


def counts_text(c) -> str:
    return (
        f"total {c.total}  pending {c.pending}  queued {c.queued}  running {c.running}  "
        f"succeeded {c.succeeded}  failed {c.failed}  cancelled {c.cancelled}"
    )


def latency_text(lat) -> str:
    if not lat.count:
        return "-"
    return f"p50 {ms(lat.p50)}  p95 {ms(lat.p95)}  p99 {ms(lat.p99)}  mean {ms(lat.mean)}  (n={lat.count})"


def stats_text(s) -> str:
    window = s.window.seconds + s.window.nanos / 1e9
    when = clock(s.compute_time) if is_set(s.compute_time) else "-"
    lines = [
        f"window        {num(window)} s (computed {when})",
        f"jobs          {counts_text(s.totals)}",
        f"queue depth   {s.queue_depth}   active workers {s.active_workers}",
        f"throughput    {s.throughput:.2f} jobs/s   success rate {s.success_rate * 100:.1f} %",
        f"latency       {latency_text(s.latency)}",
    ]
    if s.models:
        rows = [
            [
                m.model_name,
                str(m.totals.total),
                str(m.totals.succeeded),
                str(m.totals.failed),
                f"{m.throughput:.2f}",
                f"{m.success_rate * 100:.1f}",
                f"{m.latency.p50 * 1000:.1f}",
                f"{m.latency.p95 * 1000:.1f}",
                f"{m.mean_inference_seconds * 1000:.1f}",
            ]
            for m in s.models
        ]
        header = ["MODEL", "TOTAL", "SUCCEEDED", "FAILED", "JOBS/S", "SUCCESS_%", "P50_MS", "P95_MS", "INFER_MS"]
        lines += ["", table(header, rows)]
    return "\n".join(lines)


def tensor_text(t) -> str:
    shape = "[" + ",".join(str(d) for d in t.shape) + "]"
    return f"{t.name} {t.data_type} {shape}" + (f" -> {t.role}" if t.role else "")


def model_text(m) -> str:
    lines = [
        f"{m.name}  versions {','.join(m.versions) or '-'}  {'ready' if m.ready else 'NOT READY'}"
        f"  task {m.task or '-'}  backend {m.backend or '-'}",
        f"  length {m.min_length}..{m.max_length}  window {m.window}  horizon {m.horizon}"
        f"  max batch {m.max_batch_size}",
    ]
    if m.description:
        lines.append(f"  {m.description}")
    lines += [f"  in   {tensor_text(t)}" for t in m.inputs]
    lines += [f"  out  {tensor_text(t)}" for t in m.outputs]
    return "\n".join(lines)


def to_json(message, stream: bool = False) -> str:
    # Streams print one compact object per line; single answers are indented for reading.
    return json_format.MessageToJson(message, indent=None if stream else 2)


# --- errors -----------------------------------------------------------------------------


def field_violations(exc: grpc.RpcError) -> list[tuple[str, str]]:
    """The google.rpc.BadRequest violations in the call's rich status, if it carries any."""
    try:
        status = rpc_status.from_call(exc)
    except (ValueError, AttributeError):  # not a call, or a status that disagrees with it
        return []
    if status is None:
        return []
    found = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            found += [(v.field, v.description) for v in bad.field_violations]
    return found


def error_lines(exc: grpc.RpcError) -> list[str]:
    code = exc.code() if hasattr(exc, "code") else None
    name = code.name if code is not None else "UNKNOWN"
    details = (exc.details() if hasattr(exc, "details") else None) or "(no details)"
    lines = [f"error: {name}: {details}"]
    lines += [f"  {field}: {description}" for field, description in field_violations(exc)]
    return lines


def exit_code(exc: grpc.RpcError) -> int:
    code = exc.code() if hasattr(exc, "code") else None
    return 2 if code == grpc.StatusCode.INVALID_ARGUMENT else 1


def print_error(exc: grpc.RpcError) -> int:
    for line in error_lines(exc):
        print(line, file=sys.stderr)
    return exit_code(exc)


# --- commands ---------------------------------------------------------------------------


def orchestrator(channel):
    return orchestrator_service_pb2_grpc.OrchestratorServiceStub(channel)


def follow(stub, job_id: str, show, lock: threading.Lock | None = None) -> int:
    """Prints every state change of one job until it ends; 0 if it SUCCEEDED, else 1.

    No deadline: a job may wait in the queue for a long time."""
    call = stub.WatchJob(orchestrator_service_pb2.WatchJobRequest(job_id=job_id))
    last_version, last_state = -1, None
    try:
        for response in call:
            job = response.job
            if job.version <= last_version:  # a replayed event (see Job.version)
                continue
            last_version = job.version
            if job.state != last_state:
                last_state = job.state
                with lock or threading.Lock():
                    show(job)
            if job.state in TERMINAL:
                break
    finally:
        call.cancel()
    return 0 if last_state == JobState.JOB_STATE_SUCCEEDED else 1


def printer(args):
    if args.json:
        return lambda job: print(to_json(job, stream=True), flush=True)
    return lambda job: print(event_line(job), flush=True)


def follow_all(stub, job_ids: list[str], show) -> int:
    """Follows several jobs at once (one thread per WatchJob stream), so no job's early
    states are missed while another is being watched."""
    lock = threading.Lock()
    codes: dict[str, int] = {}

    def run(job_id):
        try:
            codes[job_id] = follow(stub, job_id, show, lock)
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                with lock:
                    codes[job_id] = print_error(exc)

    threads = [threading.Thread(target=run, args=(j,), daemon=True) for j in job_ids]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)  # short joins keep Ctrl-C responsive
    return max([codes.get(j, 1) for j in job_ids], default=0)


def cmd_submit(args) -> int:
    models = split_models(args.models)
    request = ingest_service_pb2.SubmitSeriesRequest(
        series=build_series(args), models=models, idempotency_key=args.idempotency_key or ""
    )
    with grpc.insecure_channel(args.ingest) as channel:
        response = ingest_service_pb2_grpc.IngestServiceStub(channel).SubmitSeries(request, timeout=args.timeout)
    if args.json:
        print(to_json(response))
    else:
        for model, job_id in zip(models, response.job_ids):
            print(f"{model}  {job_id}")
    if not args.watch:
        return 0
    with grpc.insecure_channel(args.orchestrator) as channel:
        return follow_all(orchestrator(channel), list(response.job_ids), printer(args))


def cmd_get(args) -> int:
    with grpc.insecure_channel(args.orchestrator) as channel:
        response = orchestrator(channel).GetJob(
            orchestrator_service_pb2.GetJobRequest(job_id=args.job_id), timeout=args.timeout
        )
    print(to_json(response) if args.json else job_text(response.job))
    return 0


def cmd_watch(args) -> int:
    with grpc.insecure_channel(args.orchestrator) as channel:
        return follow(orchestrator(channel), args.job_id, printer(args))


def cmd_watch_all(args) -> int:
    request = orchestrator_service_pb2.WatchJobsRequest(model_names=args.model or [], states=args.state or [])
    show = printer(args)
    with grpc.insecure_channel(args.orchestrator) as channel:
        call = orchestrator(channel).WatchJobs(request)
        try:
            for response in call:
                show(response.job)
        except KeyboardInterrupt:  # the normal way to stop a live feed
            return 0
        finally:
            call.cancel()
    return 0


def cmd_list(args) -> int:
    request = orchestrator_service_pb2.ListJobsRequest(
        model_name=args.model or "", states=args.state or [], page_size=args.page_size or 0,
        page_token=args.page_token or "",
    )
    jobs = []
    with grpc.insecure_channel(args.orchestrator) as channel:
        stub = orchestrator(channel)
        while True:
            response = stub.ListJobs(request, timeout=args.timeout)
            jobs += response.jobs
            if not (args.all and response.next_page_token):
                break
            request.page_token = response.next_page_token
    next_token = response.next_page_token
    if args.json:
        print(to_json(orchestrator_service_pb2.ListJobsResponse(jobs=jobs, next_page_token=next_token)))
        return 0
    print(jobs_table(jobs))
    if next_token:  # on stderr, so the table alone can be piped on
        print(f"more: --page-token {next_token}", file=sys.stderr)
    return 0


def cmd_cancel(args) -> int:
    with grpc.insecure_channel(args.orchestrator) as channel:
        response = orchestrator(channel).CancelJob(
            orchestrator_service_pb2.CancelJobRequest(job_id=args.job_id), timeout=args.timeout
        )
    if args.json:
        print(to_json(response))
    else:
        # A job that had already finished comes back unchanged, so say which happened.
        job = response.job
        done = "" if job.state == JobState.JOB_STATE_CANCELLED else " (already finished; not cancelled)"
        print(f"{job.job_id}  {state_name(job.state)}{done}")
    return 0


def cmd_stats(args) -> int:
    request = orchestrator_service_pb2.GetStatsRequest()
    if args.window is not None:
        request.window.FromNanoseconds(round(args.window * 1e9))
    with grpc.insecure_channel(args.orchestrator) as channel:
        response = orchestrator(channel).GetStats(request, timeout=args.timeout)
    print(to_json(response) if args.json else stats_text(response))
    return 0


def cmd_models(args) -> int:
    with grpc.insecure_channel(args.analysis) as channel:
        response = analysis_service_pb2_grpc.AnalysisServiceStub(channel).ListModels(
            analysis_service_pb2.ListModelsRequest(), timeout=args.timeout
        )
    if args.json:
        print(to_json(response))
    else:
        print("\n\n".join(model_text(m) for m in response.models) or "no models")
    return 0


def cmd_analyze(args) -> int:
    request = analysis_service_pb2.AnalyzeRequest(series=build_series(args), model_name=args.model)
    with grpc.insecure_channel(args.analysis) as channel:
        response = analysis_service_pb2_grpc.AnalysisServiceStub(channel).Analyze(request, timeout=args.timeout)
    if args.json:
        print(to_json(response))
    else:
        lines = [f"model          {args.model}", f"inference      {ms(response.inference_seconds)}"]
        print("\n".join(lines + result_lines(response.result)))
    return 0


# --- arguments --------------------------------------------------------------------------


def add_series_options(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--values", help="comma-separated numbers, e.g. 1,2,3 (--values=-1,2 when the first is negative)")
    source.add_argument("--file", help="numbers, one per line or comma-separated; '-' reads stdin")
    source.add_argument("--pattern", choices=patterns.PATTERNS, help="a synthetic series from satkit.patterns")
    p.add_argument("--length", type=int, default=128, help="points of a --pattern series (default 128)")
    p.add_argument("--seed", type=int, default=None, help="seed of a --pattern series (default: random)")
    p.add_argument("--series-id", help="your name for the series")
    p.add_argument("--label", type=parse_label, action="append", metavar="KEY=VALUE", help="repeatable")


def add_address_options(parser: argparse.ArgumentParser) -> None:
    """--ingest/--orchestrator/--analysis, defaulting to the stack's env vars: every client tool's."""
    env = os.environ
    parser.add_argument("--ingest", default=env.get("INGEST_ADDR", "127.0.0.1:50051"), help="IngestService address")
    parser.add_argument(
        "--orchestrator", default=env.get("ORCHESTRATOR_ADDR", "127.0.0.1:50052"), help="OrchestratorService address"
    )
    parser.add_argument("--analysis", default=env.get("ANALYSIS_ADDR", "127.0.0.1:50053"), help="AnalysisService address")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m satkit.cli", description="Satlas command-line client.")
    add_address_options(parser)
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline of each call in seconds (default 10)")
    parser.add_argument("--json", action="store_true", help="print the response messages as JSON")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("submit", help="submit a series; one job per model")
    add_series_options(p)
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated (default: both models)")
    p.add_argument("--idempotency-key", help="a retry with the same key returns the first job ids")
    p.add_argument("--watch", action="store_true", help="follow the jobs until they end")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("get", help="show one job")
    p.add_argument("job_id", metavar="JOB_ID")
    p.set_defaults(func=cmd_get)

    p = sub.add_parser("watch", help="follow one job; exit 0 if it succeeded, 1 if not")
    p.add_argument("job_id", metavar="JOB_ID")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("watch-all", help="live feed of job changes (Ctrl-C stops)")
    p.add_argument("--model", action="append", help="only this model (repeatable)")
    p.add_argument("--state", type=parse_state, action="append", help="only changes into this state (repeatable)")
    p.set_defaults(func=cmd_watch_all)

    p = sub.add_parser("list", help="list jobs, newest first")
    p.add_argument("--model", help="only this model")
    p.add_argument("--state", type=parse_state, action="append", help="only this state (repeatable)")
    p.add_argument("--page-size", type=int, help="jobs per page (server default 50, at most 1000)")
    p.add_argument("--page-token", help="next page token of an earlier list")
    p.add_argument("--all", action="store_true", help="follow next_page_token to the last page")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("cancel", help="cancel a job that has not finished")
    p.add_argument("job_id", metavar="JOB_ID")
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("stats", help="totals, throughput, latency")
    p.add_argument("--window", type=float, help="seconds (server default 60, at most 3600)")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("models", help="the models Triton serves")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("analyze", help="run one series through one model directly (no job)")
    p.add_argument("--model", required=True)
    add_series_options(p)
    p.set_defaults(func=cmd_analyze)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except grpc.RpcError as exc:
        return print_error(exc)
    except (ValueError, OSError) as exc:  # bad local input: a series that does not parse, a missing file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0 if args.command == "watch-all" else 130


if __name__ == "__main__":
    sys.exit(main())
