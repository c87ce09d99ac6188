"""python -m analysis_svc: serve AnalysisService (Analyze, ListModels)."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from satlas.v1 import analysis_service_pb2_grpc as pb_grpc

from analysis_svc.service import Analysis
from analysis_svc.settings import Settings
from satkit import logs, server


async def main(settings: Settings) -> None:
    servicer = Analysis(settings)

    @asynccontextmanager
    async def lifespan():
        try:
            yield
        finally:
            await servicer.channel.close()

    def register(srv):
        pb_grpc.add_AnalysisServiceServicer_to_server(servicer, srv)
        return ["satlas.v1.AnalysisService"]

    await server.serve("analysis", settings.address, register, lifespan, grace_s=settings.grace_s)


if __name__ == "__main__":
    logs.setup("analysis")
    asyncio.run(main(Settings.from_env()))
