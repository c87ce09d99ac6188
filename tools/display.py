"""How the project's clients show jobs, results, stats, models and errors on a terminal."""

from __future__ import annotations

import datetime as dt
import sys
from datetime import datetime, timezone

import grpc
from google.protobuf import json_format
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from satlas.v1 import job_state_pb2

PREVIEW = 8  # values shown of a result; a series can hold 4096

JobState = job_state_pb2.JobState


def short_id(job_id: str) -> str:
    """A job id as the dashboard shows it (web/src/components/Bits.tsx shortId): the last 8
    characters, since version-7 ids begin with the time."""
    return job_id[-8:]


def state_name(state: int) -> str:
    """SUCCEEDED rather than JOB_STATE_SUCCEEDED; a number the stubs do not know stays a number."""
    try:
        return JobState.Name(state).removeprefix("JOB_STATE_")
    except ValueError:
        return str(state)


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


def cell(value) -> str:
    """One value of a SQL row, short: 4 significant digits, times to the millisecond, ids whole."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, ".4g")
    if isinstance(value, str):  # SQLite hands back its stored text, datetimes included
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
    return str(value)


def rows_table(rows) -> str:
    """SQL rows (SQLAlchemy ``Row``s) as a table under their column names."""
    if not rows:
        return "(no rows)"
    return table(list(rows[0]._fields), [[cell(v) for v in r] for r in rows])
