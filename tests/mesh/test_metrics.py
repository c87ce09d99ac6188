"""Every gRPC service's Prometheus endpoint on the running stack: each call counted by method and
status code (go-grpc-prometheus's names), exactly, validation refusals included; the
orchestrator's jobs by model and state, with their stage timings."""

from __future__ import annotations

import time

import grpc
import pytest
from mesh_helpers import count, scrape
from satlas.v1 import analysis_service_pb2 as apb
from satlas.v1 import analysis_service_pb2_grpc as apb_grpc
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import ingest_service_pb2_grpc as ipb_grpc
from satlas.v1 import orchestrator_service_pb2 as opb
from satlas.v1 import orchestrator_service_pb2_grpc as opb_grpc


@pytest.fixture(scope="module")
def mesh(shared_stack):
    return shared_stack


def test_each_service_counts_its_calls_by_method_and_code(mesh):
    urls = {n: mesh.metrics_url(n) for n in ("ingest", "orchestrator", "analysis")}
    before = {n: scrape(u) for n, u in urls.items()}
    with grpc.insecure_channel(mesh.orchestrator) as o, grpc.insecure_channel(mesh.ingest) as i, \
            grpc.insecure_channel(mesh.analysis) as a:
        for _ in range(2):
            with pytest.raises(grpc.RpcError):
                opb_grpc.OrchestratorServiceStub(o).GetJob(opb.GetJobRequest(job_id="no-such-job"), timeout=10)
        with pytest.raises(grpc.RpcError):  # refused by validation: counted too
            ipb_grpc.IngestServiceStub(i).SubmitSeries(ipb.SubmitSeriesRequest(), timeout=10)
        job = ipb_grpc.IngestServiceStub(i).SubmitSeries(
            ipb.SubmitSeriesRequest(series={"values": [float(k % 7) for k in range(32)]}, models=["vae_timeseries"]),
            timeout=10).job_ids[0]
        list(opb_grpc.OrchestratorServiceStub(o).WatchJob(opb.WatchJobRequest(job_id=job), timeout=60))
        for _ in range(3):
            apb_grpc.AnalysisServiceStub(a).Analyze(apb.AnalyzeRequest(
                model_name="transformer_timeseries", series={"values": [float(k % 5) for k in range(32)]}), timeout=10)
    after = {n: scrape(u) for n, u in urls.items()}

    def delta(service: str, name: str, **labels) -> float:
        return count(after[service], name, **labels) - count(before[service], name, **labels)

    orch = "satlas.v1.OrchestratorService"
    assert delta("orchestrator", "grpc_server_started_total", grpc_service=orch, grpc_method="GetJob") == 2
    assert delta("orchestrator", "grpc_server_handled_total", grpc_service=orch, grpc_method="GetJob",
                 grpc_code="NOT_FOUND", grpc_type="unary") == 2
    assert delta("orchestrator", "grpc_server_handled_total", grpc_method="WatchJob", grpc_code="OK",
                 grpc_type="server_stream") == 1
    assert delta("ingest", "grpc_server_handled_total", grpc_method="SubmitSeries", grpc_code="INVALID_ARGUMENT") == 1
    assert delta("ingest", "grpc_server_handled_total", grpc_method="SubmitSeries", grpc_code="OK") == 1
    assert delta("analysis", "grpc_server_handled_total", grpc_method="Analyze", grpc_code="OK") == 3
    assert delta("analysis", "grpc_server_handling_seconds_count", grpc_method="Analyze") == 3
    assert delta("analysis", "grpc_server_handling_seconds_sum", grpc_method="Analyze") > 0
    # The internal service is counted too (the worker's reports), under its own name.
    assert count(after["orchestrator"], "grpc_server_handled_total",
                 grpc_service="satlas.internal.v1.JobControlService", grpc_method="ReportResults") >= 1


def settled(address: str, timeout_s: float = 60) -> None:
    """Until no job of the shared stack is unfinished (an earlier test's would count meanwhile)."""
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(address) as channel:
        stats = opb_grpc.OrchestratorServiceStub(channel).GetStats
        while True:
            t = stats(opb.GetStatsRequest(), timeout=10).totals
            if t.pending + t.queued + t.running == 0:
                return
            assert time.monotonic() < deadline, t
            time.sleep(0.5)


def test_the_orchestrator_counts_jobs_by_model_and_state_with_their_stage_timings(mesh):
    url = mesh.metrics_url("orchestrator")
    settled(mesh.orchestrator)
    before = scrape(url)
    with grpc.insecure_channel(mesh.orchestrator) as o, grpc.insecure_channel(mesh.ingest) as i:
        ids = ipb_grpc.IngestServiceStub(i).SubmitSeries(ipb.SubmitSeriesRequest(
            series={"values": [float(k % 7) for k in range(48)]}, models=["vae_timeseries", "transformer_timeseries"]),
            timeout=10).job_ids
        jobs = [list(opb_grpc.OrchestratorServiceStub(o).WatchJob(opb.WatchJobRequest(job_id=j), timeout=60))[-1].job
                for j in ids]
    after = scrape(url)

    def delta(name: str, **labels) -> float:
        return count(after, name, **labels) - count(before, name, **labels)

    for job in jobs:
        model = job.model_name
        assert delta("satlas_jobs_submitted_total", model=model) == 1
        assert delta("satlas_jobs_finished_total", model=model, state="succeeded") == 1
        for stage in ("queue", "inference", "total"):
            assert delta("satlas_job_duration_seconds_count", model=model, stage=stage) == 1
        # The histogram holds the very figures the job reports (and the dashboard shows).
        assert delta("satlas_job_duration_seconds_sum", model=model, stage="total") == pytest.approx(
            job.timings.total_seconds, abs=1e-6)
