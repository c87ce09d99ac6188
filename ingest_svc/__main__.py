"""python -m ingest_svc: serve IngestService."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import grpc
from satlas.internal.v1 import job_control_service_pb2_grpc as jc_grpc
from satlas.v1 import analysis_service_pb2_grpc as apb_grpc
from satlas.v1 import ingest_service_pb2_grpc as pb_grpc

from ingest_svc.batcher import Batcher
from ingest_svc.models import ModelDirectory
from ingest_svc.quota import Quota
from ingest_svc.service import Ingest
from ingest_svc.settings import Settings
from satkit import logs, server, tracing
from satkit.settings import load

CREATE_TIMEOUT_S = 30.0  # the longest a CreateJobs call may take when the caller set no deadline


@asynccontextmanager
async def lifespan(settings: Settings) -> AsyncIterator[Ingest]:
    addr = settings.orchestrator_addr  # one, or the replicas' list (round robin)
    orchestrator = grpc.aio.insecure_channel(server.target(addr),
                                             options=server.channel_options() + server.balanced(addr))
    analysis = grpc.aio.insecure_channel(settings.analysis_addr, options=server.channel_options())
    control = jc_grpc.JobControlServiceStub(orchestrator)

    async def create_jobs(request, timeout: float):
        return await control.CreateJobs(request, timeout=timeout, wait_for_ready=True)

    batcher = Batcher(create_jobs, max_batch=settings.max_batch, max_wait_s=settings.max_wait_s,
                      max_in_flight=settings.max_in_flight, max_pending=settings.max_pending,
                      max_timeout_s=CREATE_TIMEOUT_S, gap_s=settings.gap_s)
    await batcher.start()
    models = ModelDirectory(apb_grpc.AnalysisServiceStub(analysis), settings.models_ttl_s)
    try:
        yield Ingest(batcher, models, Quota(settings.quota_jobs_per_s, settings.quota_burst))
    finally:
        await models.close()
        await batcher.stop()
        await orchestrator.close()
        await analysis.close()


def register(srv, servicer: Ingest) -> list[str]:
    pb_grpc.add_IngestServiceServicer_to_server(servicer, srv)
    return ["satlas.v1.IngestService"]


def server_options(settings: Settings) -> list[tuple[str, int]]:
    # Without the probe a stream's window stays ~64 KB: in an overload at three times the mesh's
    # maximum, the probe let requests wait unread for 3-10 s (answers in 1.7-2.1 s without it).
    return [] if settings.bdp_probe else [("grpc.http2.bdp_probe", 0)]


async def main(settings: Settings) -> None:
    await server.serve("ingest", settings.address, partial(lifespan, settings), register,
                       grace_s=settings.grace_s, max_message_bytes=settings.max_message_bytes,
                       metrics_addr=settings.metrics_addr, options=server_options(settings))


if __name__ == "__main__":
    logs.setup("ingest")
    tracing.setup("ingest")
    try:
        asyncio.run(main(load(Settings)))
    finally:
        tracing.shutdown()
