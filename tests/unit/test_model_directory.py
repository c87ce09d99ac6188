"""The ingest's model list (ingest_svc.models.ModelDirectory): a stalled ListModels (Triton
frozen behind the analysis service) must not hold up submissions for models already known."""

from __future__ import annotations

import asyncio
import time

from satlas.v1 import analysis_service_pb2 as apb

from ingest_svc.models import ModelDirectory


class Stub:
    """ListModels answering from ``models``, or hanging once ``stalled`` is set."""

    def __init__(self):
        self.models = [apb.Model(name="vae_timeseries", ready=True)]  # limits 0: unset here
        self.calls = 0
        self.stalled = asyncio.Event()

    async def ListModels(self, request, timeout=None, wait_for_ready=None):  # noqa: N802 (gRPC's name)
        self.calls += 1
        if self.stalled.is_set():
            await asyncio.sleep(timeout)
            raise TimeoutError("stalled")
        return apb.ListModelsResponse(models=self.models)


async def test_a_stale_list_is_served_while_it_refreshes_in_the_background():
    stub = Stub()
    directory = ModelDirectory(stub, ttl_s=0.05)
    assert "vae_timeseries" in await directory.get(["vae_timeseries"])
    stub.stalled.set()
    await asyncio.sleep(0.1)  # stale now
    began = time.monotonic()
    for _ in range(20):
        assert "vae_timeseries" in await directory.get(["vae_timeseries"])
    assert time.monotonic() - began < 1.0  # none waited on the stalled call (it takes 10 s)
    await asyncio.sleep(0.01)
    assert stub.calls == 2  # one background refresh at a time
    directory._background.cancel()


async def test_an_unknown_name_waits_for_a_refresh():
    stub = Stub()
    directory = ModelDirectory(stub)
    await directory.get(["vae_timeseries"])
    stub.models.append(apb.Model(name="third_model", ready=True))
    directory.fetched_at -= 2  # past the once-a-second bound
    assert "third_model" in await directory.get(["third_model"])


async def test_a_known_model_that_is_loading_again_stays_known():
    stub = Stub()
    directory = ModelDirectory(stub)
    await directory.get(["vae_timeseries"])
    stub.models = [apb.Model(name="vae_timeseries", ready=False, max_length=4096),
                   apb.Model(name="new_one", ready=False)]
    await directory.refresh()
    assert set(directory.models) == {"vae_timeseries"}  # a model never seen ready is not offered
    assert directory.models["vae_timeseries"].max_length == 0  # with the limits it had when ready
