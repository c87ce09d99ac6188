"""Traces across the mesh, received over OTLP/gRPC by an in-test receiver (tools.otlp_sink): every
job's trace holds the ingest's, the orchestrator's and the worker's spans, its id is the job's
``trace_id``, a caller's ``traceparent`` is continued, and the batch spans (the Celery message, the
worker's run, each Triton request) link the jobs they carry."""

from __future__ import annotations

import time

import grpc
import pytest
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import ingest_service_pb2_grpc as ipb_grpc
from satlas.v1 import job_state_pb2 as js
from satlas.v1 import orchestrator_service_pb2 as opb
from satlas.v1 import orchestrator_service_pb2_grpc as opb_grpc

from launcher.stack import Stack, StackSettings
from tools.otlp_sink import Sink

CALLER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
VIEWER = "http://127.0.0.1:16686/trace/{trace_id}"
HOPS = {("ingest", "ingest.submit"), ("orchestrator", "orchestrator.create"),
        ("analysis-worker", "worker.infer"), ("orchestrator", "orchestrator.report")}


@pytest.fixture(scope="module")
def traced(tmp_path_factory, triton):
    with Sink() as sink:
        settings = StackSettings.isolated(
            tmp_path_factory.mktemp("traced-stack"), triton_url=triton.settings.grpc_url,
            trace_url=VIEWER, env={"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint, "OTEL_EXPORTER_OTLP_INSECURE": "true",
                                   "OTEL_BSP_SCHEDULE_DELAY": "100"})  # ms: spans reach the sink soon after they end
        with Stack(settings) as stack:
            yield stack, sink


def run(stack: Stack, models: list[str], metadata=()) -> list:
    with grpc.insecure_channel(stack.ingest) as i, grpc.insecure_channel(stack.orchestrator) as o:
        ids = ipb_grpc.IngestServiceStub(i).SubmitSeries(ipb.SubmitSeriesRequest(
            series={"values": [float(k % 7) for k in range(64)]}, models=models), metadata=metadata, timeout=10).job_ids
        return [list(opb_grpc.OrchestratorServiceStub(o).WatchJob(opb.WatchJobRequest(job_id=j), timeout=60))[-1].job
                for j in ids]


def spans_of(sink: Sink, trace_id: str, wanted: set, timeout_s: float = 20) -> list:
    deadline = time.monotonic() + timeout_s
    while True:
        spans = sink.traces().get(trace_id, [])
        if wanted <= {(s.service, s.name) for s in spans} or time.monotonic() > deadline:
            return spans
        time.sleep(0.2)


def test_every_job_has_one_trace_through_ingest_orchestrator_and_worker(traced):
    stack, sink = traced
    jobs = [job for model in ("vae_timeseries", "transformer_timeseries", "vae_timeseries")
            for job in run(stack, [model])]
    assert all(j.state == js.JOB_STATE_SUCCEEDED for j in jobs)
    assert len({j.trace_id for j in jobs}) == 3 and all(len(j.trace_id) == 32 for j in jobs)
    for job in jobs:
        spans = spans_of(sink, job.trace_id, HOPS)
        assert HOPS <= {(s.service, s.name) for s in spans}, (job.job_id, [(s.service, s.name) for s in spans])
        by_name = {s.name: s for s in spans}
        # One chain: the caller-less submission is the root; each hop is the child of the one before.
        assert by_name["ingest.submit"].parent_id == ""
        assert by_name["orchestrator.create"].parent_id == by_name["ingest.submit"].span_id
        assert by_name["worker.infer"].parent_id == by_name["orchestrator.create"].span_id
        assert by_name["orchestrator.report"].parent_id == by_name["worker.infer"].span_id
        assert by_name["worker.infer"].attributes["satlas.job_id"] == job.job_id
        assert by_name["worker.infer"].attributes["satlas.model"] == job.model_name
        assert by_name["worker.infer"].attributes["satlas.batch_size"] >= 1
        assert by_name["orchestrator.report"].attributes["satlas.outcome"] == "ok"
        assert by_name["orchestrator.create"].attributes["satlas.job_ids"] == [job.job_id]
        assert not any(s.error for s in spans)
    # GetJob gives the same id as the stream did.
    with grpc.insecure_channel(stack.orchestrator) as o:
        assert opb_grpc.OrchestratorServiceStub(o).GetJob(
            opb.GetJobRequest(job_id=jobs[0].job_id), timeout=10).job.trace_id == jobs[0].trace_id


def test_a_callers_traceparent_is_continued_and_batch_spans_link_the_jobs(traced):
    stack, sink = traced
    jobs = run(stack, ["vae_timeseries", "transformer_timeseries"], metadata=[("traceparent", CALLER)])
    caller_trace, caller_span = CALLER[3:35], CALLER[36:52]
    assert [j.trace_id for j in jobs] == [caller_trace] * 2
    spans = spans_of(sink, caller_trace, HOPS)
    submit = next(s for s in spans if s.name == "ingest.submit")
    assert submit.parent_id == caller_span
    assert sorted(s.attributes["satlas.job_id"] for s in spans if s.name == "worker.infer") == \
        sorted(j.job_id for j in jobs)
    # The worker's span of each job links the Triton request that carried it; that request is a
    # child of the worker's run of the Celery message, which continues the orchestrator's dispatch
    # span from the message's headers and links every job it carries.
    def batch_spans_in():  # the worker's run ends after the report, so its spans may come later
        found = {s.span_id: s for s in sink.taken()}
        requests = [found.get(i.links[0][1]) for i in spans if i.name == "worker.infer"]
        runs = [found.get(r.parent_id) for r in requests if r]
        return found if all(requests) and all(runs) and all(found.get(r.parent_id) for r in runs) else None

    deadline = time.monotonic() + 20
    while (everything := batch_spans_in()) is None:
        assert time.monotonic() < deadline, "the batch spans never came"
        time.sleep(0.2)
    for infer in (s for s in spans if s.name == "worker.infer"):
        (request_trace, request_span), = infer.links
        request = everything[request_span]
        assert request.name == "triton.infer" and request.attributes["satlas.model"] == infer.attributes["satlas.model"]
        batch = everything[request.parent_id]
        assert batch.name == "worker.run_jobs" and batch.service == "analysis-worker"
        assert (caller_trace, infer.parent_id) in batch.links
        dispatch = everything[batch.parent_id]
        assert dispatch.name == "orchestrator.dispatch" and dispatch.trace_id == batch.trace_id
        assert (caller_trace, infer.parent_id) in dispatch.links


def test_a_malformed_traceparent_starts_a_new_trace(traced):
    stack, sink = traced
    (job,) = run(stack, ["vae_timeseries"], metadata=[("traceparent", "00-zz-not-a-trace")])
    assert len(job.trace_id) == 32
    spans = spans_of(sink, job.trace_id, HOPS)
    assert next(s for s in spans if s.name == "ingest.submit").parent_id == ""


def test_the_dashboard_links_a_job_to_its_trace(traced):
    from playwright.sync_api import expect, sync_playwright

    from tools.bench import dashboard as bench_dashboard

    stack, _ = traced
    (job,) = run(stack, ["transformer_timeseries"])
    with sync_playwright() as pw:
        browser = bench_dashboard.launch(pw)
        try:
            page = browser.new_page()
            page.goto(stack.signed_in_url())  # keeps the token for the session, as the sign-in view does
            expect(page.locator(".overview .tile").first).to_be_visible(timeout=15_000)
            page.goto(f"{stack.dashboard_url}#/jobs/{job.job_id}")
            link = page.get_by_test_id("trace-id").locator("a")
            expect(link).to_have_text(job.trace_id, timeout=15_000)
            assert link.get_attribute("href") == VIEWER.replace("{trace_id}", job.trace_id)
            expect(page.get_by_test_id("job-explained")).to_contain_text("most of it")
        finally:
            browser.close()


@pytest.fixture(scope="module")
def ratio_zero(tmp_path_factory, triton):
    """Sampling configured to keep no new trace: only a caller's sampled traceparent is followed."""
    with Sink() as sink:
        settings = StackSettings.isolated(
            tmp_path_factory.mktemp("sampled-stack"), triton_url=triton.settings.grpc_url,
            env={"OTEL_EXPORTER_OTLP_ENDPOINT": sink.endpoint, "OTEL_EXPORTER_OTLP_INSECURE": "true",
                 "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                 "OTEL_TRACES_SAMPLER_ARG": "0"})
        with Stack(settings) as stack:
            yield stack, sink


def test_sampling_keeps_the_sampled_jobs_with_their_batch_spans_and_nothing_else(ratio_zero):
    stack, sink = ratio_zero
    (unsampled,) = run(stack, ["vae_timeseries"])
    (followed,) = run(stack, ["vae_timeseries"], metadata=[("traceparent", CALLER)])
    assert len(unsampled.trace_id) == 32 and followed.trace_id == CALLER[3:35]  # both still name a trace
    spans = spans_of(sink, followed.trace_id, HOPS)
    assert HOPS <= {(s.service, s.name) for s in spans}
    # The message and the worker's run of it are new traces the ratio would drop: kept, being linked
    # to a sampled job.
    deadline = time.monotonic() + 20
    while not {"worker.run_jobs", "orchestrator.dispatch", "triton.infer"} <= {s.name for s in sink.taken()}:
        assert time.monotonic() < deadline, sorted({s.name for s in sink.taken()})
        time.sleep(0.2)
    time.sleep(1)  # what else would come, has
    assert unsampled.trace_id not in sink.traces()
    for s in sink.taken():
        if s.name in ("worker.run_jobs", "orchestrator.dispatch"):
            assert [t for t, _ in s.links] == [followed.trace_id]
