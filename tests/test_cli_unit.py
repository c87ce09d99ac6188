"""Unit tests of tools.cli's own logic: arguments, series input, states, output, errors.

No servers: RPC errors are hand-built, and the watch/list loops get fake stubs.
"""

from __future__ import annotations

import io
import json

import grpc
import pytest
from google.protobuf import timestamp_pb2
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from satlas.v1 import (
    analysis_service_pb2,
    job_pb2,
    job_state_pb2,
    orchestrator_service_pb2,
)

from tools import cli, display, inputs

S = job_state_pb2.JobState


# --- arguments -----------------------------------------------------------------------------


def test_global_defaults_come_from_the_environment(monkeypatch):
    for name in ("INGEST_ADDR", "ORCHESTRATOR_ADDR", "ANALYSIS_ADDR"):
        monkeypatch.delenv(name, raising=False)
    args = cli.build_parser().parse_args(["models"])
    assert (args.ingest, args.orchestrator, args.analysis) == ("127.0.0.1:50051", "127.0.0.1:50052", "127.0.0.1:50053")
    assert args.timeout == 10.0 and args.json is False

    monkeypatch.setenv("INGEST_ADDR", "ingest:1")
    monkeypatch.setenv("ORCHESTRATOR_ADDR", "orch:2")
    monkeypatch.setenv("ANALYSIS_ADDR", "analysis:3")
    args = cli.build_parser().parse_args(["--timeout", "2.5", "--json", "models"])
    assert (args.ingest, args.orchestrator, args.analysis) == ("ingest:1", "orch:2", "analysis:3")
    assert args.timeout == 2.5 and args.json is True


def test_submit_arguments():
    args = cli.build_parser().parse_args(
        ["submit", "--values", "1,2,3", "--label", "site=a", "--label", "k=v=w", "--series-id", "s1",
         "--idempotency-key", "key-1", "--watch"]
    )
    assert args.func is cli.cmd_submit
    assert args.values == "1,2,3" and args.series_id == "s1" and args.idempotency_key == "key-1" and args.watch
    assert args.label == [("site", "a"), ("k", "v=w")]  # only the first '=' splits
    assert inputs.split_models(args.models) == ["vae_timeseries", "transformer_timeseries"]
    assert inputs.split_models(" vae_timeseries , ,x ") == ["vae_timeseries", "x"]


@pytest.mark.parametrize(
    "argv",
    [
        ["submit"],  # a series source is required
        ["submit", "--values", "1", "--pattern", "linear"],  # and only one
        ["submit", "--pattern", "sawtooth"],
        ["submit", "--values", "1", "--label", "novalue"],
        ["list", "--state", "done"],
        ["analyze", "--values", "1,2"],  # --model is required
        ["get"],
    ],
)
def test_bad_arguments_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_filter_arguments():
    p = cli.build_parser()
    args = p.parse_args(["watch-all", "--model", "a", "--model", "b", "--state", "succeeded", "--state", "FAILED"])
    assert args.model == ["a", "b"] and args.state == [S.JOB_STATE_SUCCEEDED, S.JOB_STATE_FAILED]
    args = p.parse_args(["list", "--model", "m", "--state", "queued", "--page-size", "5", "--page-token", "t", "--all"])
    assert (args.model, args.state, args.page_size, args.page_token, args.all) == (
        "m", [S.JOB_STATE_QUEUED], 5, "t", True)
    assert p.parse_args(["stats", "--window", "30"]).window == 30.0
    assert p.parse_args(["stats"]).window is None
    args = p.parse_args(["analyze", "--model", "vae_timeseries", "--pattern", "linear", "--length", "20", "--seed", "3"])
    assert (args.func, args.model, args.pattern, args.length, args.seed) == (cli.cmd_analyze, "vae_timeseries",
                                                                              "linear", 20, 3)
    assert p.parse_args(["watch", "j1"]).job_id == "j1"
    assert p.parse_args(["cancel", "j1"]).func is cli.cmd_cancel


# --- series input --------------------------------------------------------------------------


def test_parse_numbers_accepts_commas_lines_and_spaces():
    assert inputs.parse_numbers("1,2.5, -3\n4\n\n5e2 ,6") == [1.0, 2.5, -3.0, 4.0, 500.0, 6.0]
    assert inputs.parse_numbers("") == []
    with pytest.raises(ValueError, match="not a number: 'x'"):
        inputs.parse_numbers("1,x")


def _series_args(*argv):
    return cli.build_parser().parse_args(["submit", *argv])


def test_series_from_values_with_id_and_labels():
    series = inputs.build_series(_series_args("--values=-1,2,3", "--series-id", "s", "--label", "a=1"))
    assert list(series.values) == [-1.0, 2.0, 3.0]
    assert series.series_id == "s" and dict(series.labels) == {"a": "1"}


def test_series_from_file_and_stdin(tmp_path, monkeypatch):
    path = tmp_path / "s.txt"
    path.write_text("1\n2\n3.5\n")
    assert inputs.series_values(_series_args("--file", str(path))) == [1.0, 2.0, 3.5]
    monkeypatch.setattr("sys.stdin", io.StringIO("4,5,6\n"))
    assert inputs.series_values(_series_args("--file", "-")) == [4.0, 5.0, 6.0]


def test_series_from_pattern_is_seeded():
    a = inputs.series_values(_series_args("--pattern", "seasonal", "--length", "40", "--seed", "7"))
    b = inputs.series_values(_series_args("--pattern", "seasonal", "--length", "40", "--seed", "7"))
    c = inputs.series_values(_series_args("--pattern", "seasonal", "--length", "40", "--seed", "8"))
    assert len(a) == 40 and a == b and a != c
    assert len(inputs.series_values(_series_args("--pattern", "random_walk"))) == 128  # default length


def test_empty_series_is_refused():
    with pytest.raises(ValueError, match="empty"):
        inputs.series_values(_series_args("--values", ","))


# --- states --------------------------------------------------------------------------------


def test_state_names_are_short():
    assert display.state_name(S.JOB_STATE_SUCCEEDED) == "SUCCEEDED"
    assert display.state_name(S.JOB_STATE_CANCELLED) == "CANCELLED"
    assert display.state_name(S.JOB_STATE_UNSPECIFIED) == "UNSPECIFIED"
    assert display.state_name(42) == "42"


@pytest.mark.parametrize("text", ["succeeded", "SUCCEEDED", "Succeeded", "job_state_succeeded", "JOB_STATE_SUCCEEDED"])
def test_parse_state_spellings(text):
    assert inputs.parse_state(text) == S.JOB_STATE_SUCCEEDED


def test_parse_state_covers_every_state_but_unspecified():
    assert {inputs.parse_state(s) for s in inputs.STATE_CHOICES} == set(S.values()) - {S.JOB_STATE_UNSPECIFIED}
    with pytest.raises(Exception, match="unknown state"):
        inputs.parse_state("unspecified")


# --- output --------------------------------------------------------------------------------


def _ts(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds)


def _job(**overrides) -> job_pb2.Job:
    job = job_pb2.Job(
        job_id="job-123",
        model_name="transformer_timeseries",
        state=S.JOB_STATE_SUCCEEDED,
        series_id="sensor-9",
        labels={"site": "a"},
        series_length=128,
        attempts=1,
        version=4,
        create_time=_ts(1_700_000_000),
        end_time=_ts(1_700_000_001),
        timings=job_pb2.JobTimings(queue_seconds=0.0123, inference_seconds=0.0045, total_seconds=0.0201),
        worker="host:77",
        result=job_pb2.JobResult(
            predictions=[float(i) for i in range(20)],
            anomaly_score=0.25,
            anomaly_flag=True,
            anomaly_scores=[0.1, 0.2],
            model_version="1",
            outputs={"forecast": job_pb2.Values(values=[1.0] * 20)},
        ),
    )
    for k, v in overrides.items():
        if isinstance(v, Message):
            getattr(job, k).CopyFrom(v)
        else:
            setattr(job, k, v)
    return job


def test_job_text_shows_summary_and_only_a_preview():
    text = display.job_text(_job())
    assert "state          SUCCEEDED" in text
    assert "model          transformer_timeseries" in text
    assert "timings        queue 12.3 ms, inference 4.5 ms, total 20.1 ms" in text
    assert "attempts       1" in text and "worker         host:77" in text
    assert "sensor-9 (128 points)  site=a" in text
    assert "predictions    [20] 0, 1, 2, 3, 4, 5, 6, 7, ... (+12 more)" in text
    assert "anomaly        score 0.25 (ANOMALY)" in text
    assert "outputs        forecast[20]" in text
    assert "19" not in text.split("predictions")[1].split("\n")[0]  # never the whole series
    assert "error" not in text


def test_job_text_failed_without_result():
    job = _job(state=S.JOB_STATE_FAILED, error="model exploded", worker="")
    job.ClearField("result")
    job.timings.Clear()
    text = display.job_text(job)
    assert "state          FAILED" in text and "error          model exploded" in text
    assert "timings        -" in text and "worker         -" in text
    assert "predictions" not in text and "anomaly" not in text


def test_result_lines_without_anomaly_outputs():
    lines = display.result_lines(job_pb2.JobResult(predictions=[1.5, 2.0], model_version="2"))
    assert lines == ["model version  2", "predictions    [2] 1.5, 2"]


def test_event_line_uses_the_state_timestamp():
    job = _job()
    line = display.event_line(job)
    assert line.startswith(display.clock(job.end_time) + "  job-123  transformer_timeseries  SUCCEEDED  v4")
    assert line.endswith("queue 12.3 ms, inference 4.5 ms, total 20.1 ms")
    queued = job_pb2.Job(job_id="j", model_name="m", state=S.JOB_STATE_QUEUED, version=2, queue_time=_ts(5),
                         error="")
    assert display.event_line(queued) == f"{display.clock(_ts(5))}  j  m  QUEUED     v2"
    failed = job_pb2.Job(job_id="j", model_name="m", state=S.JOB_STATE_FAILED, version=3, error="boom")
    assert display.event_line(failed).endswith("FAILED     v3  error: boom")  # no end_time: now, still one line


def test_jobs_table():
    text = display.jobs_table([_job(), _job(job_id="j2", state=S.JOB_STATE_QUEUED, timings=job_pb2.JobTimings())])
    header, first, second = text.splitlines()
    assert header.split() == ["JOB_ID", "MODEL", "STATE", "LENGTH", "ATTEMPTS", "CREATED", "TOTAL_MS"]
    assert first.split()[:5] == ["job-123", "transformer_timeseries", "SUCCEEDED", "128", "1"]
    assert first.split()[-1] == "20.1" and second.split()[-1] == "-"
    assert first.index("SUCCEEDED") == second.index("QUEUED")  # columns line up


def test_stats_and_model_text():
    stats = orchestrator_service_pb2.GetStatsResponse(
        totals=orchestrator_service_pb2.JobCounts(total=10, succeeded=8, failed=1, queued=1),
        throughput=2.5, success_rate=0.875, queue_depth=1, active_workers=2,
        latency=orchestrator_service_pb2.LatencySummary(p50=0.01, p95=0.02, p99=0.03, mean=0.012, count=9),
        models=[orchestrator_service_pb2.ModelStats(model_name="vae_timeseries", mean_inference_seconds=0.002)],
    )
    stats.window.FromSeconds(60)
    text = display.stats_text(stats)
    assert "window        60 s" in text
    assert "total 10  pending 0  queued 1  running 0  succeeded 8  failed 1  cancelled 0" in text
    assert "throughput    2.50 jobs/s   success rate 87.5 %" in text
    assert "p50 10.0 ms  p95 20.0 ms  p99 30.0 ms  mean 12.0 ms  (n=9)" in text
    assert "vae_timeseries" in text.splitlines()[-1] and text.splitlines()[-1].endswith("2.0")

    model = analysis_service_pb2.Model(
        name="vae_timeseries", versions=["1"], ready=True, task="reconstruction", min_length=16, max_length=4096,
        window=64, backend="onnxruntime", max_batch_size=64,
        outputs=[analysis_service_pb2.TensorSpec(name="recon", data_type="TYPE_FP32", shape=[-1, 64],
                                                 role="predictions")],
    )
    text = display.model_text(model)
    assert text.splitlines()[0] == "vae_timeseries  versions 1  ready  task reconstruction  backend onnxruntime"
    assert "length 16..4096  window 64  horizon 0" in text
    assert "  out  recon TYPE_FP32 [-1,64] -> predictions" in text


def test_json_output():
    one = json.loads(display.to_json(orchestrator_service_pb2.GetJobResponse(job=_job())))
    assert one["job"]["state"] == "JOB_STATE_SUCCEEDED" and one["job"]["jobId"] == "job-123"
    assert "\n" not in display.to_json(_job(), stream=True)  # JSON Lines for the streams


# --- errors --------------------------------------------------------------------------------


class FakeRpcError(grpc.RpcError, grpc.Call):
    """An error as a failed call raises it: code, details and the rich status in trailers."""

    def __init__(self, code: grpc.StatusCode, details: str, status: status_pb2.Status | None = None):
        self._code, self._details = code, details
        self._trailers = rpc_status.to_status(status).trailing_metadata if status is not None else ()

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        return self._trailers

    def initial_metadata(self):
        return ()

    def is_active(self):
        return False

    def time_remaining(self):
        return None

    def cancel(self):
        return False

    def add_callback(self, callback):
        return False


def _bad_request() -> FakeRpcError:
    bad = error_details_pb2.BadRequest(field_violations=[
        error_details_pb2.BadRequest.FieldViolation(field="series.values[3]", description="must be a finite number"),
        error_details_pb2.BadRequest.FieldViolation(field="models[1]", description="repeats 'x'"),
    ])
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="2 problems")
    status.details.add().Pack(bad)
    return FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "2 problems", status)


def test_bad_request_violations_are_printed_and_exit_2(capsys):
    assert display.print_error(_bad_request()) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: INVALID_ARGUMENT: 2 problems",
        "  series.values[3]: must be a finite number",
        "  models[1]: repeats 'x'",
    ]


def test_plain_errors_exit_1(capsys):
    assert display.print_error(FakeRpcError(grpc.StatusCode.NOT_FOUND, "job 'nope' not found")) == 1
    assert capsys.readouterr().err == "error: NOT_FOUND: job 'nope' not found\n"
    assert display.error_lines(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "")) == ["error: UNAVAILABLE: (no details)"]


def test_a_status_that_disagrees_with_the_call_is_ignored():
    status = status_pb2.Status(code=code_pb2.NOT_FOUND, message="other")
    exc = FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "bad", status)
    assert display.error_lines(exc) == ["error: INVALID_ARGUMENT: bad"]


def test_main_reports_rpc_errors(monkeypatch, capsys):
    def fail(args):
        raise _bad_request()

    monkeypatch.setattr(cli, "cmd_get", fail)
    assert cli.main(["get", "x"]) == 2
    assert "  models[1]: repeats 'x'" in capsys.readouterr().err


def test_main_reports_bad_local_input(capsys):
    assert cli.main(["submit", "--values", "1,,oops"]) == 2
    assert capsys.readouterr().err == "error: not a number: 'oops'\n"


# --- watch and list loops, with fake stubs -------------------------------------------------


class FakeStream:
    def __init__(self, items):
        self._items = iter(items)
        self.cancelled = False

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._items)

    def cancel(self):
        self.cancelled = True


def _events(*states_versions, job_id="j"):
    return [orchestrator_service_pb2.WatchJobResponse(job=job_pb2.Job(job_id=job_id, state=s, version=v))
            for s, v in states_versions]


class FakeOrchestrator:
    def __init__(self, streams=None, pages=None):
        self.streams, self.pages, self.list_requests = streams or {}, pages or [], []

    def WatchJob(self, request):
        return FakeStream(self.streams[request.job_id])

    def ListJobs(self, request, timeout=None):
        assert timeout is not None  # every unary call has a deadline
        self.list_requests.append(orchestrator_service_pb2.ListJobsRequest.FromString(request.SerializeToString()))
        return self.pages[len(self.list_requests) - 1]


def test_follow_prints_state_changes_and_drops_replays():
    events = _events((S.JOB_STATE_QUEUED, 2), (S.JOB_STATE_QUEUED, 2), (S.JOB_STATE_RUNNING, 3),
                     (S.JOB_STATE_RUNNING, 4), (S.JOB_STATE_SUCCEEDED, 5))
    seen = []
    assert cli.follow(FakeOrchestrator({"j": events}), "j", seen.append) == 0
    assert [(display.state_name(j.state), j.version) for j in seen] == [("QUEUED", 2), ("RUNNING", 3), ("SUCCEEDED", 5)]


@pytest.mark.parametrize("last", [S.JOB_STATE_FAILED, S.JOB_STATE_CANCELLED])
def test_follow_exits_1_unless_succeeded(last):
    assert cli.follow(FakeOrchestrator({"j": _events((S.JOB_STATE_RUNNING, 1), (last, 2))}), "j", lambda j: None) == 1
    assert cli.follow(FakeOrchestrator({"j": []}), "j", lambda j: None) == 1  # stream ended early


def test_follow_all_combines_exit_codes():
    stub = FakeOrchestrator({
        "a": _events((S.JOB_STATE_SUCCEEDED, 3), job_id="a"),
        "b": _events((S.JOB_STATE_RUNNING, 2), (S.JOB_STATE_FAILED, 3), job_id="b"),
    })
    seen = []
    assert cli.follow_all(stub, ["a"], seen.append) == 0
    assert cli.follow_all(stub, ["a", "b"], seen.append) == 1
    assert sorted(j.job_id for j in seen) == ["a", "a", "b", "b"]


def test_list_all_follows_page_tokens(monkeypatch, capsys):
    page = lambda ids, token: orchestrator_service_pb2.ListJobsResponse(  # noqa: E731
        jobs=[job_pb2.Job(job_id=i, model_name="m", state=S.JOB_STATE_SUCCEEDED) for i in ids], next_page_token=token)
    stub = FakeOrchestrator(pages=[page(["a", "b"], "t1"), page(["c"], "")])
    monkeypatch.setattr(cli, "orchestrator", lambda channel: stub)
    assert cli.main(["list", "--state", "succeeded", "--page-size", "2", "--all"]) == 0
    out = capsys.readouterr()
    assert [line.split()[0] for line in out.out.splitlines()] == ["JOB_ID", "a", "b", "c"]
    assert out.err == ""
    assert [r.page_token for r in stub.list_requests] == ["", "t1"]
    assert all(list(r.states) == [S.JOB_STATE_SUCCEEDED] and r.page_size == 2 for r in stub.list_requests)


def test_list_one_page_mentions_the_next_token(monkeypatch, capsys):
    stub = FakeOrchestrator(pages=[orchestrator_service_pb2.ListJobsResponse(
        jobs=[job_pb2.Job(job_id="a")], next_page_token="t1")])
    monkeypatch.setattr(cli, "orchestrator", lambda channel: stub)
    assert cli.main(["--json", "list"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out) == {"jobs": [{"jobId": "a"}], "nextPageToken": "t1"}
    assert len(stub.list_requests) == 1
