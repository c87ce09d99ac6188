"""Faults on a running mesh (PostgreSQL, embedded Valkey, Triton, real processes): a worker
SIGKILLed with jobs in flight, an orchestrator SIGKILLed mid-run. Every accepted job must end in
exactly one terminal state, with one row and one terminal event."""

from __future__ import annotations

import signal
import time

import grpc
import pytest
from mesh_helpers import (
    MODELS,
    EventLog,
    clients_of,
    kill_worker_holding_jobs,
    paused,
    rpc_error_within,
    series,
    stream_submit,
    table_rows,
    total_jobs,
    wait_for,
    wait_terminal,
)
from satlas.v1 import analysis_service_pb2 as apb
from satlas.v1 import analysis_service_pb2_grpc as apb_grpc
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import job_state_pb2 as js

from launcher.stack import Stack, StackSettings

# Re-dispatch after 3 s without progress (30 s by default) so a test does not wait long.
FAST_RECONCILER = {"ORCHESTRATOR_STUCK_S": "3", "ORCHESTRATOR_RECONCILE_S": "0.5"}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory, postgres_url):
    settings = StackSettings.isolated(tmp_path_factory.mktemp("faults"), database_url=postgres_url,
                                      env=FAST_RECONCILER)
    with Stack(settings) as stack:
        yield stack


@pytest.fixture()
def clients(mesh):
    with clients_of(mesh) as stubs:
        yield stubs


def assert_once_each(mesh, events: EventLog, job_ids: list[str], every_event_seen: bool) -> None:
    rows = table_rows(mesh.database_url, job_ids)
    assert len(rows) == len(job_ids) == len({r.job_id for r in rows})  # one row per job, none extra
    assert {r.status for r in rows} == {"completed"}
    time.sleep(1.5)  # room for a late duplicate event to show up
    counts = events.terminal_counts(job_ids)
    assert max(counts.values()) == 1, [j for j, n in counts.items() if n > 1]
    if every_event_seen:
        assert set(counts) == set(job_ids)


def test_worker_sigkilled_with_100_jobs_in_flight(mesh, clients):
    ingest, orchestrator = clients
    with EventLog(mesh.orchestrator) as events:
        job_ids, at_kill = kill_worker_holding_jobs(mesh, clients, [1500 + 7 * i for i in range(50)])
        assert len(job_ids) == 100
        unfinished = [j for j, s in at_kill.items() if s != "completed"]
        assert unfinished, "every job finished before the kill: nothing was in flight"
        jobs = wait_terminal(orchestrator, job_ids, timeout=120)
        assert {j.state for j in jobs.values()} == {js.JOB_STATE_SUCCEEDED}
        assert_once_each(mesh, events, job_ids, every_event_seen=True)
    rows = {r.job_id: r for r in table_rows(mesh.database_url, job_ids)}
    # Jobs the dead worker held unacked came back through the reconciler, not Celery's 300 s redelivery.
    assert any(rows[j].dispatches > 1 for j in unfinished)
    assert all(rows[j].attempts <= 3 for j in job_ids)
    print(f"worker kill: {len(unfinished)} of 100 jobs unfinished at the kill "
          f"({sum(s == 'running' for s in at_kill.values())} running); "
          f"{sum(r.dispatches > 1 for r in rows.values())} re-dispatched; all 100 SUCCEEDED once")


def test_orchestrator_sigkilled_and_restarted_mid_run(mesh, clients):
    ingest, orchestrator = clients
    with EventLog(mesh.orchestrator) as events:
        # Every other series long (slower batches): a fast mesh could finish 300 short ones by the kill.
        job_ids = stream_submit(ingest, [64 if i % 2 else 1500 + 7 * (i // 2) for i in range(300)])
        wait_for(lambda: events.terminal_counts(job_ids), 60, "a job to finish")
        mesh.kill("orchestrator", signal.SIGKILL)
        at_kill = {r.job_id: r.status for r in table_rows(mesh.database_url, job_ids)}
        assert sum(s == "completed" for s in at_kill.values()) < len(job_ids), "nothing was in flight"
        time.sleep(1.0)  # workers meet a dead orchestrator
        mesh.restart("orchestrator")
        jobs = wait_terminal(orchestrator, job_ids, timeout=120)
        assert {j.state for j in jobs.values()} == {js.JOB_STATE_SUCCEEDED}
        assert events.reconnects >= 1
        # Events published while the orchestrator was down are gone with it, but none may repeat.
        assert_once_each(mesh, events, job_ids, every_event_seen=False)
        print(f"orchestrator kill: {sum(s != 'completed' for s in at_kill.values())} of {len(job_ids)} jobs "
              f"unfinished at the kill; all SUCCEEDED once; {events.reconnects} WatchJobs reconnect(s)")


def test_a_callers_deadline_holds_while_the_orchestrator_hangs(mesh, clients):
    ingest, orchestrator = clients
    request = ipb.SubmitSeriesRequest(series={"values": series(64)}, models=MODELS, idempotency_key="deadline-1")
    before = total_jobs(mesh.database_url)
    with paused(mesh, "orchestrator"):
        error, waited = rpc_error_within(ingest.SubmitSeries, request, timeout=1.0)
    assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and waited < 2.5
    # The producer retries with its key: whatever the first try left behind, two jobs in all.
    job_ids = ingest.SubmitSeries(request, timeout=30).job_ids
    assert len(job_ids) == 2 and total_jobs(mesh.database_url) == before + 2
    assert {j.state for j in wait_terminal(orchestrator, job_ids).values()} == {js.JOB_STATE_SUCCEEDED}


def test_analyze_gives_up_at_the_callers_deadline_while_triton_hangs(mesh):
    with grpc.insecure_channel(mesh.analysis) as channel:
        analysis = apb_grpc.AnalysisServiceStub(channel)
        request = apb.AnalyzeRequest(series={"values": series(40)}, model_name="transformer_timeseries")
        assert analysis.Analyze(request, timeout=10).result.predictions  # warm: the model list is cached
        with paused(mesh, "triton"):
            error, waited = rpc_error_within(analysis.Analyze, request, timeout=1.0)
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED and waited < 2.5
        assert analysis.Analyze(request, timeout=10).result.predictions
