"""python -m orchestrator_svc: serve OrchestratorService + JobControlService."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from satlas.internal.v1 import job_control_service_pb2_grpc as jc_grpc
from satlas.v1 import orchestrator_service_pb2_grpc as pb_grpc

from orchestrator_svc import db, metrics, migrate
from orchestrator_svc.admission import RECOUNT_S
from orchestrator_svc.dispatch import Dispatcher
from orchestrator_svc.events import EventHub
from orchestrator_svc.peers import Peers
from orchestrator_svc.service import Core, JobControl, Orchestrator
from orchestrator_svc.settings import Settings
from orchestrator_svc.store import JobStore
from satkit import logs, server, tracing
from satkit.queue import make_celery
from satkit.settings import load

log = logging.getLogger("orchestrator_svc")


async def reconcile_forever(core: Core, settings: Settings) -> None:
    """Re-dispatch jobs that made no progress for a while (lost publish, broker or worker)."""
    while True:
        await asyncio.sleep(settings.reconcile_every_s)
        try:
            await core.redispatch_stuck(settings.stuck_after_s)
        except Exception as exc:
            log.warning("reconciler: %s", exc)


async def count_unfinished_forever(core: Core) -> None:
    """Keeps the admission bound's count of unfinished jobs fresh (orchestrator_svc.admission)."""
    while True:
        try:
            began = core.admission.since
            core.admission.recount(await core.db(core.store.unfinished), began)
        except Exception as exc:  # the database away: the count in hand goes on growing with admissions
            log.warning("unfinished jobs not counted: %s", exc)
        await asyncio.sleep(RECOUNT_S)


@asynccontextmanager
async def lifespan(settings: Settings) -> AsyncIterator[Core]:
    if settings.migrate:
        await asyncio.to_thread(migrate.upgrade, settings.database_url)
    engine = db.make_engine(settings.database_url)
    hub = EventHub(settings.redis_url, publish_every_s=settings.publish_every_s)
    await hub.start()
    core = Core(JobStore(engine, max_attempts=settings.max_attempts), hub, max_unfinished=settings.max_unfinished)
    core.set_dispatcher(Dispatcher(make_celery(settings.broker_url, "satlas-orchestrator"),
                                   settings.jobs_per_message, core.mark_queued,
                                   ahead=settings.dispatch_ahead, linger_s=settings.dispatch_linger_s,
                                   gap_s=settings.dispatch_gap_s))
    await core.writer.start()
    await core.dispatcher.start()
    peers = Peers(hub, core.replay)
    await peers.start()
    reconciler = asyncio.create_task(reconcile_forever(core, settings))
    counter = asyncio.create_task(count_unfinished_forever(core)) if settings.max_unfinished else None
    try:
        with metrics.jobs_in_state(core.store.unfinished_counts):
            yield core
    finally:
        reconciler.cancel()
        if counter:
            counter.cancel()
        await core.writer.stop()  # writes in hand commit (and dispatch) before the dispatcher stops
        await core.dispatcher.stop()
        await peers.stop()
        await hub.stop(last=peers.leave)
        core.writer.close()
        core.pool.shutdown(wait=True)
        engine.dispose()


def register(srv, core: Core) -> list[str]:
    pb_grpc.add_OrchestratorServiceServicer_to_server(Orchestrator(core), srv)
    jc_grpc.add_JobControlServiceServicer_to_server(JobControl(core), srv)
    return ["satlas.v1.OrchestratorService", "satlas.internal.v1.JobControlService"]


async def main(settings: Settings) -> None:
    await server.serve("orchestrator", settings.address, partial(lifespan, settings), register,
                       grace_s=settings.grace_s, max_message_bytes=server.INTERNAL_MAX_MESSAGE_BYTES,
                       ending=lambda core: core.hub.end_watches(), metrics_addr=settings.metrics_addr)


if __name__ == "__main__":
    logs.setup("orchestrator")
    tracing.setup("orchestrator")
    try:
        asyncio.run(main(load(Settings)))
    finally:
        tracing.shutdown()
