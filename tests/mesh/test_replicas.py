"""Two orchestrator replicas on PostgreSQL (ORCHESTRATOR_REPLICAS=2): the ingest and the workers
spread their calls over both, Envoy balances the clients' calls, WatchJobs on either replica sees
every job end, and killing one under load loses nothing while the other carries on."""

from __future__ import annotations

import time

import grpc
import pytest
from mesh_helpers import count, scrape
from satlas.v1 import orchestrator_service_pb2 as opb
from satlas.v1 import orchestrator_service_pb2_grpc as opb_grpc
from support import POSTGRES_ADMIN_URL

from launcher.settings import connect_addr
from launcher.stack import Stack, StackSettings
from satkit.jobs import TERMINAL_STATES
from tools.bench.database import fresh_database
from tools.soak import check
from tools.soak.load import Feed, Producers, Record

# Jobs lost with the killed replica's unsent messages go again after 15 s unchanged (30 by default).
FAST_RECONCILER = {"ORCHESTRATOR_STUCK_S": "15", "ORCHESTRATOR_RECONCILE_S": "0.5"}


@pytest.fixture(scope="module")
def mesh(tmp_path_factory, triton):
    # A database of its own: another stack's reconciler must not take over these jobs.
    with fresh_database(POSTGRES_ADMIN_URL, prefix="satlas_replicas") as url:
        settings = StackSettings.isolated(tmp_path_factory.mktemp("replicas"), database_url=url,
                                          triton_url=triton.settings.grpc_url, orchestrator_replicas=2,
                                          env=FAST_RECONCILER)
        with Stack(settings) as stack:
            yield stack


def replicas(mesh) -> list[str]:
    return [connect_addr(a) for a in mesh.settings.orchestrator_addrs]


def offer(mesh, record: Record, jobs: int, rate: float = 100.0, during=None) -> Producers:
    """``jobs`` jobs at ``rate``; ``during()`` runs half-way. Every request answered before it returns."""
    producers = Producers(mesh.ingest, record, rate, print, resend=0.0).start()
    deadline = time.monotonic() + jobs / rate
    if during:
        time.sleep(jobs / rate / 2)
        during()
    time.sleep(max(0.0, deadline - time.monotonic()))
    producers.stop()
    assert producers.finish(60) == 0
    return producers


def test_either_replica_serves_every_rpc_and_sees_every_job_end(mesh):
    record = Record()
    feeds = [Feed(f"replica {i + 1}", addr, record, print).start() for i, addr in enumerate(replicas(mesh))]
    feeds.append(Feed("envoy", mesh.envoy, record, print, token=mesh.token).start())
    time.sleep(1.0)
    try:
        offer(mesh, record, 300)
        job_ids = sorted(record.accepted_jobs())
        check.drain(mesh.database_url, job_ids, 60, print)
        time.sleep(1.5)
    finally:
        for feed in feeds:
            feed.close()
    for name, events in record.events.items():
        assert {e.job_id for e in events} >= set(job_ids), f"{name} missed jobs"
    for addr in replicas(mesh):
        with grpc.insecure_channel(addr) as channel:
            stub = opb_grpc.OrchestratorServiceStub(channel)
            for job_id in job_ids[:: max(1, len(job_ids) // 20)]:
                assert stub.GetJob(opb.GetJobRequest(job_id=job_id)).job.state in TERMINAL_STATES
            assert stub.ListJobs(opb.ListJobsRequest(page_size=5)).jobs
            assert stub.GetStats(opb.GetStatsRequest()).totals.total >= len(job_ids)
    # Each published its own jobs' changes for the other: pending, queued, running, succeeded
    # (queued is skipped when a fast worker claims a job before the dispatcher marks it).
    published = [count(scrape(mesh.metrics_url(n)), "satlas_events_published_total")
                 for n in ("orchestrator", "orchestrator-2")]
    assert 3 * len(job_ids) <= sum(published) and min(published) > 0


def test_one_replica_killed_under_load_loses_nothing(mesh):
    # The replica to die publishes every 2 s: it dies holding seconds of changes it committed and
    # never published, which the survivor must re-send (orchestrator_svc.peers) for its watchers.
    mesh.restart("orchestrator", env={"ORCHESTRATOR_PUBLISH_EVERY_S": "2"})
    record = Record()
    feeds = [Feed("envoy", mesh.envoy, record, print, token=mesh.token).start(),
             Feed("replica 2", replicas(mesh)[1], record, print).start()]
    time.sleep(1.0)
    try:
        offer(mesh, record, 800, during=lambda: mesh.kill("orchestrator"))
        job_ids = sorted(record.accepted_jobs())
        assert check.drain(mesh.database_url, job_ids, 90, print) < 90
        time.sleep(1.5)
    finally:
        for feed in feeds:
            feed.close()
        mesh.restart("orchestrator")
    resent = count(scrape(mesh.metrics_url("orchestrator-2")), "satlas_events_resent_total")
    verdict = check.verdict(record, mesh.database_url)
    assert verdict["accepted_jobs"] >= 790  # one request may carry one model or both
    assert (verdict["lost"], verdict["stuck"], verdict["doubled"], verdict["key_mismatch"]) == ([], [], [], [])
    assert verdict["statuses"] == {"completed": len(job_ids)}
    assert resent > 0  # the survivor published again what the dead one had not
    # The survivor's own feed never broke: it saw every job end, those the dead one ended included.
    assert {e.job_id for e in record.events["replica 2"]} >= set(job_ids)
