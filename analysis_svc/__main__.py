"""python -m analysis_svc: serve AnalysisService (Analyze, ListModels) and ModelAdminService."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from satlas.v1 import analysis_service_pb2_grpc as pb_grpc
from satlas.v1 import model_admin_service_pb2_grpc as admin_grpc

from analysis_svc.admin import ModelAdmin
from analysis_svc.service import Analysis
from analysis_svc.settings import Settings
from satkit import logs, server
from satkit.settings import load


@asynccontextmanager
async def lifespan(settings: Settings) -> AsyncIterator[Analysis]:
    servicer = Analysis(settings)
    try:
        yield servicer
    finally:
        await servicer.close()


def register(srv, servicer: Analysis) -> list[str]:
    pb_grpc.add_AnalysisServiceServicer_to_server(servicer, srv)
    admin_grpc.add_ModelAdminServiceServicer_to_server(ModelAdmin(servicer), srv)
    return ["satlas.v1.AnalysisService", "satlas.v1.ModelAdminService"]


async def main(settings: Settings) -> None:
    await server.serve("analysis", settings.address, partial(lifespan, settings), register,
                       grace_s=settings.grace_s, metrics_addr=settings.metrics_addr)


if __name__ == "__main__":
    logs.setup("analysis")
    asyncio.run(main(load(Settings)))
