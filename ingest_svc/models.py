"""The models jobs may name, with their length limits, from AnalysisService.ListModels."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
from satlas.v1 import analysis_service_pb2 as apb

log = logging.getLogger(__name__)


class ModelDirectory:
    """Served from memory; refreshed in the background once stale, so that a slow or stalled
    Triton (ListModels waits on it) never holds up a submission for a model already known.
    Only a name not known yet waits for a refresh (at most once a second)."""

    def __init__(self, analysis_stub, ttl_s: float = 10.0):
        self.stub = analysis_stub
        self.ttl_s = ttl_s
        self.models: dict[str, apb.Model] = {}
        self.fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self._background: asyncio.Task | None = None

    async def get(self, names) -> dict[str, apb.Model]:
        """Known models; a missing name waits for a refresh, a stale list is refreshed meanwhile."""
        age = time.monotonic() - self.fetched_at
        if age > 1.0 and any(n not in self.models for n in names):
            await self.refresh()
        elif age > self.ttl_s and (self._background is None or self._background.done()):
            self._background = asyncio.get_running_loop().create_task(self._refresh_quietly())
        return self.models

    async def close(self) -> None:
        if self._background:
            self._background.cancel()
            await asyncio.gather(self._background, return_exceptions=True)

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh()
        except Exception as exc:  # the list in hand stays; the next stale request tries again
            log.warning("model list not refreshed: %s", exc.code().name if isinstance(exc, grpc.aio.AioRpcError)
                        else exc)

    async def refresh(self) -> None:
        asked = time.monotonic()
        async with self._lock:
            if self.fetched_at >= asked:  # refreshed while this one waited for the lock
                return
            response = await self.stub.ListModels(apb.ListModelsRequest(), timeout=10, wait_for_ready=True)
            # A known model that is loading again (Triton restarting) stays known, with the limits it
            # had when ready (an unready one's are defaults): its jobs wait for it.
            self.models = {m.name: m if m.ready else self.models[m.name]
                           for m in response.models if m.ready or m.name in self.models}
            self.fetched_at = time.monotonic()
