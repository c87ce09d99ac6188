"""The models jobs may name, with their length limits, from AnalysisService.ListModels."""

from __future__ import annotations

import asyncio
import logging
import time

from satlas.v1 import analysis_service_pb2 as apb

log = logging.getLogger(__name__)


class ModelDirectory:
    def __init__(self, analysis_stub, ttl_s: float = 10.0):
        self.stub = analysis_stub
        self.ttl_s = ttl_s
        self.models: dict[str, apb.Model] = {}
        self.fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def get(self, names) -> dict[str, apb.Model]:
        """Known models; refreshes when stale or when a name is missing (at most once a second)."""
        age = time.monotonic() - self.fetched_at
        if age > self.ttl_s or (age > 1.0 and any(n not in self.models for n in names)):
            await self.refresh()
        return self.models

    async def refresh(self) -> None:
        async with self._lock:
            response = await self.stub.ListModels(apb.ListModelsRequest(), timeout=10, wait_for_ready=True)
            self.models = {m.name: m for m in response.models if m.ready}
            self.fetched_at = time.monotonic()
