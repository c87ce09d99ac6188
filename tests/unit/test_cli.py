"""Unit tests of tools.cli's own logic: arguments, errors, and the watch and list loops.

No servers: RPC errors are hand-built, and the watch/list loops get fake stubs.
"""

from __future__ import annotations

import json
import threading

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from satlas.v1 import ingest_service_pb2, job_pb2, job_state_pb2, orchestrator_service_pb2

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


def test_a_file_is_sent_in_calls_of_at_most_a_thousand_lines_and_3_mib():
    small = [ingest_service_pb2.SubmitSeriesRequest(series={"values": [1.0] * 8}) for _ in range(2500)]
    assert [len(c) for c in cli.chunks(small)] == [1000, 1000, 500]
    big = [ingest_service_pb2.SubmitSeriesRequest(series={"values": [1.0] * 4096}) for _ in range(250)]
    sizes = [sum(r.ByteSize() for r in c) for c in cli.chunks(big)]
    assert sum(len(c) for c in cli.chunks(big)) == 250 and len(sizes) > 1 and max(sizes) <= cli.BATCH_BYTES
    assert cli.chunks([]) == []


def test_read_rows_takes_a_series_a_line_and_names_a_bad_line(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("1,2,3\n\n4 5 6\n")
    assert inputs.read_rows(str(path)) == [(1, [1.0, 2.0, 3.0]), (3, [4.0, 5.0, 6.0])]  # numbered by line
    path.write_text("1,2\n3,x\n")
    with pytest.raises(ValueError, match="line 2"):
        inputs.read_rows(str(path))


def test_a_failed_batch_call_says_whether_it_created_anything():
    refused = cli._batch_failed(FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT, "bad"), [3, 4, 6], 0)
    assert refused.startswith("the call of lines 3-6 created nothing")
    lost = cli._batch_failed(FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "late"), [7], 2)
    assert "line 7 may have created its jobs" in lost and lost.endswith("the 2 series before it were accepted (above)")


@pytest.mark.parametrize("argv", [["submit-batch", "--file", "f", "--per-call", "0"],
                                  ["submit-batch", "--file", "f", "--per-call", "1001"]])
def test_per_call_is_one_to_a_thousand(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(argv)
    assert exc.value.code == 2 and "must be 1 to 1000" in capsys.readouterr().err


def test_follow_all_follows_many_jobs_with_a_few_threads(monkeypatch):
    followed, alive = [], []

    def follow(stub, job_id, show, lock):
        alive.append(threading.active_count())
        followed.append(job_id)
        return 0

    monkeypatch.setattr(cli, "follow", follow)
    assert cli.follow_all(None, [f"j{i}" for i in range(500)], print, at_once=4) == 0
    assert sorted(followed) == sorted(f"j{i}" for i in range(500))  # each once
    assert max(alive) <= threading.active_count() + 4
