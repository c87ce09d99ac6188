"""Command-line client for Satlas: submit series, follow jobs, read stats and models.

    python -m tools.cli submit --pattern seasonal --length 128 --watch
    python -m tools.cli get JOB_ID
    python -m tools.cli list --state failed --all

It talks to the three public services with the generated stubs only. Output is short and
human by default; ``--json`` prints the response messages as proto3 JSON instead (one
compact line per event for the streaming commands, so the output is JSON Lines).
"""

from __future__ import annotations

import argparse
import sys
import threading

import grpc
from satlas.v1 import (
    analysis_service_pb2,
    analysis_service_pb2_grpc,
    ingest_service_pb2,
    ingest_service_pb2_grpc,
    model_admin_service_pb2,
    model_admin_service_pb2_grpc,
    orchestrator_service_pb2,
    orchestrator_service_pb2_grpc,
)

from satkit import client
from satkit.jobs import DEFAULT_MODELS, TERMINAL_STATES
from satkit.settings import ANALYSIS_ADDR, INGEST_ADDR, ORCHESTRATOR_ADDR
from tools import display, inputs, patterns

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
            if job.state in TERMINAL_STATES:
                break
    finally:
        call.cancel()
    return 0 if last_state == display.JobState.JOB_STATE_SUCCEEDED else 1


def printer(args):
    if args.json:
        return lambda job: print(display.to_json(job, stream=True), flush=True)
    return lambda job: print(display.event_line(job), flush=True)


def follow_all(stub, job_ids: list[str], show, at_once: int = 32) -> int:
    """Follows several jobs at once (a thread per WatchJob stream, ``at_once`` at most), so no
    job's early states are missed while another is being watched. Past ``at_once`` a job is
    followed when a thread is free: its stream starts with its state then, which may be its end."""
    lock = threading.Lock()
    codes: dict[str, int] = {}
    todo = iter(job_ids)

    def run():
        while (job_id := next(todo, None)) is not None:  # next() on one iterator: under the GIL, each id once
            try:
                codes[job_id] = follow(stub, job_id, show, lock)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.CANCELLED:
                    with lock:
                        codes[job_id] = display.print_error(exc)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(min(len(job_ids), at_once))]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.2)  # short joins keep Ctrl-C responsive
    return max([codes.get(j, 1) for j in job_ids], default=0)


def cmd_submit(args) -> int:
    models = inputs.split_models(args.models)
    request = ingest_service_pb2.SubmitSeriesRequest(
        series=inputs.build_series(args), models=models, idempotency_key=args.idempotency_key or "",
        horizon=args.horizon,
    )
    with connect(args, args.ingest) as channel:
        response = ingest_service_pb2_grpc.IngestServiceStub(channel).SubmitSeries(request, timeout=args.timeout)
    if args.json:
        print(display.to_json(response))
    else:
        for model, job_id in zip(models, response.job_ids):
            print(f"{model}  {job_id}")
    if not args.watch:
        return 0
    with connect(args, args.orchestrator) as channel:
        return follow_all(orchestrator(channel), list(response.job_ids), printer(args))


BATCH_MOST = 1000  # series per BatchSubmitSeries call (the contract's limit)
BATCH_BYTES = 3 * 1024 * 1024  # and bytes, inside the ingest's message limit (INGEST_MAX_MESSAGE_BYTES, 4 MiB)


def per_call(text: str) -> int:
    n = int(text)
    if not 1 <= n <= BATCH_MOST:
        raise argparse.ArgumentTypeError(f"must be 1 to {BATCH_MOST}, got {n}")
    return n


def chunks(requests: list, most: int = BATCH_MOST, most_bytes: int = BATCH_BYTES) -> list[list]:
    """Consecutive runs of ``requests`` of at most ``most`` items and ``most_bytes`` (an item past
    that alone)."""
    out: list[list] = []
    size = 0
    for r in requests:
        n = r.ByteSize() + 4  # with its tag and length
        if not out or len(out[-1]) == most or (out[-1] and size + n > most_bytes):
            out.append([])
            size = 0
        out[-1].append(r)
        size += n
    return out


def cmd_submit_batch(args) -> int:
    """Each non-empty line of the file a series, for the same models; calls of up to --per-call
    series (and BATCH_BYTES), each all or none. With a key, line N goes under KEY-N: the same
    command again creates nothing twice."""
    models = inputs.split_models(args.models)
    rows = inputs.read_rows(args.file)  # (line number, values)
    requests = [ingest_service_pb2.SubmitSeriesRequest(
        series={"values": values}, models=models, horizon=args.horizon,
        idempotency_key=f"{args.idempotency_key}-{line}" if args.idempotency_key else "") for line, values in rows]
    job_ids: list[str] = []
    with connect(args, args.ingest) as channel:
        stub = ingest_service_pb2_grpc.IngestServiceStub(channel)
        first = 0
        for chunk in chunks(requests, args.per_call):
            lines = [line for line, _ in rows[first:first + len(chunk)]]
            try:
                response = stub.BatchSubmitSeries(ingest_service_pb2.BatchSubmitSeriesRequest(requests=chunk),
                                                  timeout=args.timeout)
            except grpc.RpcError as exc:
                print(_batch_failed(exc, lines, first), file=sys.stderr)
                raise
            for line, answer in zip(lines, response.responses):
                if args.json:
                    print(display.to_json(answer))
                else:
                    for model, job_id in zip(models, answer.job_ids):
                        print(f"{line}  {model}  {job_id}")
                job_ids.extend(answer.job_ids)
            first += len(chunk)
    if not args.watch:
        return 0
    with connect(args, args.orchestrator) as channel:
        return follow_all(orchestrator(channel), job_ids, printer(args))


# Refused before anything was written: the whole call created nothing.
REFUSED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAUTHENTICATED,
           grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.NOT_FOUND}


def _batch_failed(exc: grpc.RpcError, lines: list[int], done_before: int) -> str:
    span = f"lines {lines[0]}-{lines[-1]}" if len(lines) > 1 else f"line {lines[0]}"
    if exc.code() in REFUSED:
        said = f"the call of {span} created nothing (requests[i] is its i-th series, from 0)"
    else:  # a deadline or a lost connection: the jobs may have been created all the same
        said = (f"the call of {span} may have created its jobs (run again with the same --idempotency-key to "
                f"create none twice)")
    return said + (f"; the {done_before} series before it were accepted (above)" if done_before else "")


def cmd_get(args) -> int:
    with connect(args, args.orchestrator) as channel:
        response = orchestrator(channel).GetJob(
            orchestrator_service_pb2.GetJobRequest(job_id=args.job_id), timeout=args.timeout
        )
    print(display.to_json(response) if args.json else display.job_text(response.job))
    return 0


def cmd_watch(args) -> int:
    with connect(args, args.orchestrator) as channel:
        return follow(orchestrator(channel), args.job_id, printer(args))


def cmd_watch_all(args) -> int:
    request = orchestrator_service_pb2.WatchJobsRequest(model_names=args.model or [], states=args.state or [])
    show = printer(args)
    with connect(args, args.orchestrator) as channel:
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
    with connect(args, args.orchestrator) as channel:
        stub = orchestrator(channel)
        while True:
            response = stub.ListJobs(request, timeout=args.timeout)
            jobs += response.jobs
            if not (args.all and response.next_page_token):
                break
            request.page_token = response.next_page_token
    next_token = response.next_page_token
    if args.json:
        print(display.to_json(orchestrator_service_pb2.ListJobsResponse(jobs=jobs, next_page_token=next_token)))
        return 0
    print(display.jobs_table(jobs))
    if next_token:  # on stderr, so the display.table alone can be piped on
        print(f"more: --page-token {next_token}", file=sys.stderr)
    return 0


def cmd_cancel(args) -> int:
    with connect(args, args.orchestrator) as channel:
        response = orchestrator(channel).CancelJob(
            orchestrator_service_pb2.CancelJobRequest(job_id=args.job_id), timeout=args.timeout
        )
    if args.json:
        print(display.to_json(response))
    else:
        # A job that had already finished comes back unchanged, so say which happened.
        job = response.job
        done = "" if job.state == display.JobState.JOB_STATE_CANCELLED else " (already finished; not cancelled)"
        print(f"{job.job_id}  {display.state_name(job.state)}{done}")
    return 0


def cmd_stats(args) -> int:
    request = orchestrator_service_pb2.GetStatsRequest()
    if args.window is not None:
        request.window.FromNanoseconds(round(args.window * 1e9))
    with connect(args, args.orchestrator) as channel:
        response = orchestrator(channel).GetStats(request, timeout=args.timeout)
    print(display.to_json(response) if args.json else display.stats_text(response))
    return 0


def cmd_models(args) -> int:
    with connect(args, args.analysis) as channel:
        response = analysis_service_pb2_grpc.AnalysisServiceStub(channel).ListModels(
            analysis_service_pb2.ListModelsRequest(), timeout=args.timeout
        )
    if args.json:
        print(display.to_json(response))
    else:
        print("\n\n".join(display.model_text(m) for m in response.models) or "no models")
    return 0


def cmd_load_model(args) -> int:
    """Load (or reload) a model from Triton's repository; needs the admin scope through the front door."""
    with connect(args, args.analysis) as channel:
        admin = model_admin_service_pb2_grpc.ModelAdminServiceStub(channel)
        if args.unload:
            admin.UnloadModel(model_admin_service_pb2.UnloadModelRequest(model_name=args.model), timeout=120)
            print(f"{args.model} unloaded")
            return 0
        response = admin.LoadModel(model_admin_service_pb2.LoadModelRequest(model_name=args.model), timeout=120)
    print(display.to_json(response) if args.json else display.model_text(response.model))
    return 0


def cmd_analyze(args) -> int:
    request = analysis_service_pb2.AnalyzeRequest(series=inputs.build_series(args), model_name=args.model,
                                                  horizon=args.horizon)
    with connect(args, args.analysis) as channel:
        response = analysis_service_pb2_grpc.AnalysisServiceStub(channel).Analyze(request, timeout=args.timeout)
    if args.json:
        print(display.to_json(response))
    else:
        lines = [f"model          {args.model}", f"inference      {display.ms(response.inference_seconds)}"]
        print("\n".join(lines + display.result_lines(response.result)))
    return 0


# --- arguments --------------------------------------------------------------------------


def add_series_options(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--values", help="comma-separated numbers, e.g. 1,2,3 (--values=-1,2 when the first is negative)")
    source.add_argument("--file", help="numbers, one per line or comma-separated; '-' reads stdin")
    source.add_argument("--pattern", choices=patterns.ALL_SHAPES,
                        help="a synthetic series from tools.patterns (the last "
                        f"{len(patterns.HELD_OUT_SHAPES)}: shapes no model was trained on)")
    p.add_argument("--length", type=int, default=128, help="points of a --pattern series (default 128)")
    p.add_argument("--seed", type=int, default=None, help="seed of a --pattern series (default: random)")
    p.add_argument("--series-id", help="your name for the series")
    p.add_argument("--label", type=inputs.parse_label, action="append", metavar="KEY=VALUE", help="repeatable")


def add_job_options(p: argparse.ArgumentParser, key_help: str) -> None:
    """What submit and submit-batch ask of the jobs."""
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated (default: both models)")
    p.add_argument("--idempotency-key", help=key_help)
    p.add_argument("--horizon", type=inputs.parse_horizon, default=0,
                   help="forecast points from forecasting models (default: each model's whole horizon)")
    p.add_argument("--watch", action="store_true", help="follow the jobs until they end")


def add_address_options(parser: argparse.ArgumentParser) -> None:
    """--ingest/--orchestrator/--analysis, defaulting to the stack's env vars, and --ca/--token:
    every client tool's."""
    client.add_arguments(parser)
    parser.add_argument("--ingest", default=INGEST_ADDR.read(), help="IngestService address [INGEST_ADDR]")
    parser.add_argument("--orchestrator", default=ORCHESTRATOR_ADDR.read(),
                        help="OrchestratorService address [ORCHESTRATOR_ADDR]")
    parser.add_argument("--analysis", default=ANALYSIS_ADDR.read(), help="AnalysisService address [ANALYSIS_ADDR]")


def connect(args: argparse.Namespace, target: str, options=()) -> grpc.Channel:
    """A channel with the options' token and CA (see ``satkit.client``)."""
    return client.channel(target, options, ca=args.ca, token=args.token)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.cli", description="Satlas command-line client.")
    add_address_options(parser)
    parser.add_argument("--timeout", type=float, default=10.0, help="deadline of each call in seconds (default 10)")
    parser.add_argument("--json", action="store_true", help="print the response messages as JSON")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("submit", help="submit a series; one job per model")
    add_series_options(p)
    add_job_options(p, "a retry with the same key returns the first job ids")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("submit-batch", help="submit a file of series, one per line, in BatchSubmitSeries calls")
    p.add_argument("--file", required=True, help="a series per line, numbers separated by commas or spaces "
                   "(blank lines skipped); '-' reads stdin. Sent in calls of up to --per-call series, each all or "
                   "none: a bad series is named and its call creates nothing")
    p.add_argument("--per-call", type=per_call, metavar=f"1..{BATCH_MOST}", default=BATCH_MOST,
                   help=f"series per call (default {BATCH_MOST}; fewer for a token whose quota burst is smaller "
                   "than a call's jobs)")
    add_job_options(p, "the series on line N is sent under KEY-N: running it again creates nothing twice")
    p.set_defaults(func=cmd_submit_batch)

    p = sub.add_parser("get", help="show one job")
    p.add_argument("job_id", metavar="JOB_ID")
    p.set_defaults(func=cmd_get)

    p = sub.add_parser("watch", help="follow one job; exit 0 if it succeeded, 1 if not")
    p.add_argument("job_id", metavar="JOB_ID")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("watch-all", help="live feed of job changes (Ctrl-C stops)")
    p.add_argument("--model", action="append", help="only this model (repeatable)")
    p.add_argument("--state", type=inputs.parse_state, action="append", help="only changes into this state (repeatable)")
    p.set_defaults(func=cmd_watch_all)

    p = sub.add_parser("list", help="list jobs, newest first")
    p.add_argument("--model", help="only this model")
    p.add_argument("--state", type=inputs.parse_state, action="append", help="only this state (repeatable)")
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

    p = sub.add_parser("load-model", help="load or reload a model from Triton's repository (scope admin)")
    p.add_argument("model", metavar="MODEL")
    p.add_argument("--unload", action="store_true", help="unload it instead: its jobs wait until it is back")
    p.set_defaults(func=cmd_load_model)

    p = sub.add_parser("analyze", help="run one series through one model directly (no job)")
    p.add_argument("--model", required=True)
    p.add_argument("--horizon", type=inputs.parse_horizon, default=0,
                   help="forecast points (default: the model's whole horizon)")
    add_series_options(p)
    p.set_defaults(func=cmd_analyze)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except grpc.RpcError as exc:
        return display.print_error(exc)
    except (ValueError, OSError) as exc:  # bad local input: a series that does not parse, a missing file
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0 if args.command == "watch-all" else 130


if __name__ == "__main__":
    sys.exit(main())
