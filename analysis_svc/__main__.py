"""python -m analysis_svc: serve AnalysisService (Analyze, ListModels)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from satlas.v1 import analysis_service_pb2_grpc as pb_grpc

from analysis_svc.service import Analysis
from analysis_svc.settings import Settings
from satkit import logs, server
from satkit.settings import load


async def main(settings: Settings) -> None:
    @asynccontextmanager
    async def lifespan():
        servicer = Analysis(settings)
        try:
            yield servicer
        finally:
            await servicer.close()

    def register(srv, servicer: Analysis):
        pb_grpc.add_AnalysisServiceServicer_to_server(servicer, srv)
        return ["satlas.v1.AnalysisService"]

    await server.serve("analysis", settings.address, lifespan, register, grace_s=settings.grace_s)


if __name__ == "__main__":
    logs.setup("analysis")
    asyncio.run(main(load(Settings)))
