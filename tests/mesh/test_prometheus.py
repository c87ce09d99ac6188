"""A real Prometheus (Debian's), started by the stack with its rendered scrape configuration and the
committed rules, scrapes every part: each metric family answers PromQL after a known number of
jobs, with exact counts; the worker's sums survive a killed pool process (multiprocess mode); the
rules load; every expression of the Grafana dashboard evaluates."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.parse
import urllib.request
from pathlib import Path

import grpc
import pytest
from satlas.internal.v1 import job_control_service_pb2 as jc
from satlas.internal.v1 import job_control_service_pb2_grpc as jc_grpc
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import ingest_service_pb2_grpc as ipb_grpc
from satlas.v1 import job_state_pb2 as js
from satlas.v1 import orchestrator_service_pb2 as opb
from satlas.v1 import orchestrator_service_pb2_grpc as opb_grpc
from test_metrics import count, scrape, settled

from launcher.stack import Stack, StackSettings

ROOT = Path(__file__).resolve().parents[2]
MODELS = ("vae_timeseries", "transformer_timeseries")
JOBS = ("ingest", "orchestrator", "analysis", "worker", "triton", "flower", "envoy")
pytestmark = pytest.mark.skipif(not Path("/usr/bin/prometheus").exists(),
                                reason="Debian's prometheus is not installed (scripts/system_deps.sh installs it)")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, triton):
    t = triton.settings
    settings = StackSettings.isolated(
        tmp_path_factory.mktemp("prometheus-stack"), triton_url=t.grpc_url,
        triton_metrics_addr=f"{t.host}:{t.metrics_port}", prometheus_addr="127.0.0.1:0", scrape_interval="1s",
        # A job left RUNNING 3 s is sent again: the poison test makes one (the others finish in well under that).
        env={"ORCHESTRATOR_STUCK_S": "3", "ORCHESTRATOR_RECONCILE_S": "1"})
    with Stack(settings) as s:
        yield s


def query(stack: Stack, expr: str) -> list[dict]:
    url = f"{stack.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = json.load(urllib.request.urlopen(url, timeout=10))
    assert body["status"] == "success", body
    return body["data"]["result"]


def value(stack: Stack, expr: str) -> float:
    """One number: the sum of what ``expr`` gives (0 when it gives nothing)."""
    return sum(float(r["value"][1]) for r in query(stack, expr))


def until(check, timeout_s: float = 30, what: str = ""):
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"not within {timeout_s:g} s: {what}"
        time.sleep(0.5)


def scraped(stack: Stack, down: tuple[str, ...] = ()) -> None:
    """Until Prometheus has scraped everything once more (targets report their last scrape), every
    target up but those of ``down``."""
    began = time.time()

    def fresh():
        url = f"{stack.prometheus_url}/api/v1/targets?state=active"
        targets = json.load(urllib.request.urlopen(url, timeout=10))["data"]["activeTargets"]
        return all((t["health"] == "up" or t["labels"]["job"] in down)
                   and _seconds_since_epoch(t["lastScrape"]) > began + 0.05 for t in targets)

    until(fresh, 20, "a scrape of every target after now")


def _seconds_since_epoch(rfc3339: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def submit(stack: Stack, n: int) -> list[str]:
    with grpc.insecure_channel(stack.ingest) as channel:
        ingest = ipb_grpc.IngestServiceStub(channel)
        ids = []
        for k in range(n):
            ids += ingest.SubmitSeries(ipb.SubmitSeriesRequest(
                series={"values": [float((i + k) % 9) for i in range(64)]}, models=MODELS), timeout=10).job_ids
        return ids


def test_every_target_is_up(stack):
    def all_up():
        found = {r["metric"]["job"]: r["value"][1] for r in query(stack, "up")}
        return set(found) == set(JOBS) and all(v == "1" for v in found.values()) and found

    until(all_up, 40, "up == 1 for every job")


def test_each_family_answers_promql_with_exact_counts(stack):
    settled(stack.orchestrator)
    scraped(stack)
    families = {
        "submitted": 'sum by (model) (satlas_jobs_submitted_total)',
        "succeeded": 'sum by (model) (satlas_jobs_finished_total{state="succeeded"})',
        "durations": 'sum by (model, stage) (satlas_job_duration_seconds_count)',
        "grpc": 'sum by (grpc_method, grpc_code) (grpc_server_handled_total{job="ingest"})',
        "admitted": 'sum by (model) (satlas_ingest_jobs_admitted_total)',
        "submissions": 'sum by (code) (satlas_ingest_submissions_total)',
        "worker_jobs": 'sum by (model, outcome) (satlas_worker_jobs_total)',
        "batched": 'sum by (model) (satlas_worker_batch_size_sum)',
        "requests": 'sum by (model) (satlas_worker_triton_request_seconds_count)',
        "triton": 'sum by (model) (nv_inference_request_success)',
        "events": 'sum(satlas_events_published_total)',
    }

    def snapshot():
        return {name: {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in query(stack, expr)}
                for name, expr in families.items()}

    def delta(after, before, name, **labels):
        want = set(labels.items())
        return sum(v for k, v in after[name].items() if want <= set(k)) - \
            sum(v for k, v in before[name].items() if want <= set(k))

    before = snapshot()
    n = 5
    ids = submit(stack, n)
    with grpc.insecure_channel(stack.ingest) as channel:  # one refused message on a stream
        answers = list(ipb_grpc.IngestServiceStub(channel).StreamSeries(iter([ipb.StreamSeriesRequest(
            sequence=1, submission=ipb.SubmitSeriesRequest(series={"values": [1.0] * 64}, models=["no_such_model"]))]),
            timeout=10))
        assert answers[0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    settled(stack.orchestrator)

    def counted():  # the worker counts an outcome once the orchestrator took it: a moment after
        scraped(stack)
        got = snapshot()
        return all(delta(got, before, name, model=m) == n for m in MODELS for name in ("succeeded", "worker_jobs")) \
            and got

    after = until(counted, 30, "every job counted by the orchestrator and the worker")
    assert len(ids) == 2 * n
    for model in MODELS:
        assert delta(after, before, "submitted", model=model) == n
        assert delta(after, before, "succeeded", model=model) == n
        for stage in ("queue", "inference", "total"):
            assert delta(after, before, "durations", model=model, stage=stage) == n
        assert delta(after, before, "admitted", model=model) == n
        assert delta(after, before, "worker_jobs", model=model, outcome="ok") == n
        assert delta(after, before, "batched", model=model) == n  # every job rode in exactly one request
        requests = delta(after, before, "requests", model=model)
        assert 1 <= requests <= n
        assert delta(after, before, "triton", model=model) == requests  # Triton counted the same requests
    assert delta(after, before, "grpc", grpc_method="SubmitSeries", grpc_code="OK") == n
    assert delta(after, before, "grpc", grpc_method="StreamSeries", grpc_code="OK") == 1
    assert delta(after, before, "submissions", code="OK") == n
    assert delta(after, before, "submissions", code="INVALID_ARGUMENT") == 1
    # One orchestrator: no other replica to publish to, so no event went to Redis (its own watchers
    # had them at once; tests/mesh/test_replicas.py counts them where there are two).
    assert delta(after, before, "events") == 0
    # Nothing unfinished: the queue-depth gauge says so, like GetStats.
    assert {r["metric"]["state"]: r["value"][1] for r in query(stack, "max by (state) (satlas_jobs_in_state)")} == {
        "pending": "0", "queued": "0", "running": "0"}
    assert value(stack, "sum(satlas_ingest_backlog)") == 0
    # The gRPC latency histogram and Flower's and Envoy's own metrics are there too.
    assert value(stack, 'sum(grpc_server_handling_seconds_count{job="orchestrator"})') > 0
    assert query(stack, '{job="flower", __name__=~"flower_.+"}')
    assert value(stack, 'sum(envoy_cluster_upstream_rq_total)') >= 0 and query(stack, 'envoy_server_live')


def test_a_job_left_stuck_is_redispatched_then_failed_as_poison(stack):
    """The worker stopped, one job claimed by hand and left: the reconciler sends it again; claimed
    past ORCHESTRATOR_MAX_ATTEMPTS (3), it fails as poison. Both are counted, and the queue-depth
    gauge shows the job waiting meanwhile."""
    settled(stack.orchestrator)
    scraped(stack)
    redispatched = value(stack, "sum(satlas_jobs_redispatched_total)")
    poisoned = value(stack, 'sum(satlas_jobs_poisoned_total{model="vae_timeseries"})')
    stack.stop("worker")
    try:
        with grpc.insecure_channel(stack.ingest) as i, grpc.insecure_channel(stack.orchestrator) as o:
            job = ipb_grpc.IngestServiceStub(i).SubmitSeries(ipb.SubmitSeriesRequest(
                series={"values": [1.0, 2.0] * 16}, models=["vae_timeseries"]), timeout=10).job_ids[0]
            until(lambda: value(stack, 'max by (state) (satlas_jobs_in_state{state=~"pending|queued"})') == 1, 10,
                  "the gauge shows the waiting job")
            control = jc_grpc.JobControlServiceStub(o)
            start = jc.StartJobsRequest(job_ids=[job], worker="test:stuck")
            assert list(control.StartJobs(start, timeout=10).job_ids) == [job]
            orch = opb_grpc.OrchestratorServiceStub(o)
            until(lambda: orch.GetJob(opb.GetJobRequest(job_id=job), timeout=10).job.state != js.JOB_STATE_RUNNING, 20,
                  "the reconciler sends the stuck job again")
            for _ in range(2):
                assert list(control.StartJobs(start, timeout=10).job_ids) == [job]
            assert list(control.StartJobs(start, timeout=10).job_ids) == []  # the fourth start: poison
            final = orch.GetJob(opb.GetJobRequest(job_id=job), timeout=10).job
            assert final.error.startswith("gave up after 3 attempts"), final
    finally:
        stack.restart("worker")
    scraped(stack)
    assert value(stack, "sum(satlas_jobs_redispatched_total)") - redispatched == 1
    assert value(stack, 'sum(satlas_jobs_poisoned_total{model="vae_timeseries"})') - poisoned == 1


def pool_processes(stack: Stack) -> list[int]:
    leader = stack.processes["worker"].pid
    children = Path(f"/proc/{leader}/task/{leader}/children").read_text().split()
    return [int(c) for c in children]


def test_the_worker_sums_survive_a_killed_pool_process(stack):
    url = stack.metrics_url("worker")

    def ok_jobs() -> float:
        return count(scrape(url), "satlas_worker_jobs_total", outcome="ok")

    settled(stack.orchestrator)
    base = ok_jobs()
    submit(stack, 4)
    # The worker counts an outcome once the orchestrator took it: a moment after the job is done.
    until(lambda: ok_jobs() == base + 8, 20, "the worker counted 8 jobs")
    before = ok_jobs()
    pool = pool_processes(stack)
    assert len(pool) == stack.settings.worker_concurrency
    for pid in pool:  # the whole pool: whichever ran the jobs, its counts must stay
        os.kill(pid, signal.SIGKILL)
    until(lambda: len(set(pool_processes(stack)) - set(pool)) == len(pool), 30, "Celery replaces its pool")
    assert ok_jobs() == before
    submit(stack, 3)
    until(lambda: ok_jobs() == before + 6, 20, "the new pool's counts added to the dead one's")
    scraped(stack)
    assert value(stack, 'sum(satlas_worker_jobs_total{outcome="ok"})') == before + 6


def test_the_rules_load_and_every_dashboard_expression_evaluates(stack):
    def rules() -> list[dict]:
        groups = json.load(urllib.request.urlopen(f"{stack.prometheus_url}/api/v1/rules", timeout=10))["data"]
        return [r for g in groups["groups"] for r in g["rules"]]

    assert {r["type"] for r in rules()} == {"recording", "alerting"}
    until(lambda: all(r["health"] == "ok" for r in rules()), 10, "every rule evaluated without error")
    dashboard = json.loads((ROOT / "grafana" / "dashboards" / "satlas.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if t.get("expr")]
    assert exprs
    answered = 0
    for expr in exprs:
        result = query(stack, expr.replace("$__rate_interval", "1m"))  # an error fails inside query()
        answered += bool(result)
    assert answered >= len(exprs) * 0.8, "most panels show data on a stack that ran jobs"
