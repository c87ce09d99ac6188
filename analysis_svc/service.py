"""AnalysisService: synchronous inference (no queue, nothing stored) and the model list."""

from __future__ import annotations

import asyncio
import time

import grpc
from satlas.v1 import analysis_service_pb2 as pb
from satlas.v1 import analysis_service_pb2_grpc as pb_grpc
from tritonclient.grpc import service_pb2_grpc as tpb_grpc

from analysis_svc.catalogue import Catalogue
from analysis_svc.settings import Settings
from analysis_svc.tensors import build_request, check_length, parse_response
from satkit.jobs import cut_to_horizon, horizon_problem
from satkit.server import triton_channel_options
from satkit.validation import abort_invalid

PASSTHROUGH = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


class Analysis(pb_grpc.AnalysisServiceServicer):
    def __init__(self, settings: Settings):
        self.settings = settings
        options = triton_channel_options()
        self.channel = grpc.aio.insecure_channel(settings.triton_url, options=options)
        self.triton = tpb_grpc.GRPCInferenceServiceStub(self.channel)
        # Model descriptions come through the same sync code the worker uses, off the event loop.
        self.sync_channel = grpc.insecure_channel(settings.triton_url, options=options)
        self.catalogue = Catalogue(tpb_grpc.GRPCInferenceServiceStub(self.sync_channel),
                                   settings.triton_timeout_s, settings.catalogue_ttl_s)

    async def close(self) -> None:
        await self.channel.close()
        self.sync_channel.close()

    async def from_catalogue(self, context, call, *args):
        try:
            return await asyncio.to_thread(call, *args)
        except grpc.RpcError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"Triton: {exc.code().name}: {exc.details()}")

    async def ListModels(self, request, context):
        models = await self.from_catalogue(context, self.catalogue.get, True)
        return pb.ListModelsResponse(models=[m.to_proto() for m in sorted(models.values(), key=lambda m: m.name)])

    async def Analyze(self, request, context):
        model = await self.from_catalogue(context, self.catalogue.find, request.model_name)
        if model is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.model_name!r} is not served")
        if not model.ready:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"model {request.model_name!r} is not ready")
        problem = check_length(model, len(request.series.values))
        if problem:
            await abort_invalid(context, [("series.values", problem)])
        if problem := horizon_problem(model.name, model.horizon, request.horizon):
            await abort_invalid(context, [("horizon", problem)])
        timeout = self.settings.triton_timeout_s
        if context.time_remaining() is not None:  # the caller's deadline travels on to Triton
            timeout = min(timeout, context.time_remaining())
        t0 = time.perf_counter()
        try:
            response = await self.triton.ModelInfer(build_request(model, request.series.values), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                await abort_invalid(context, [("series", exc.details())])
            code = exc.code() if exc.code() in PASSTHROUGH else grpc.StatusCode.INTERNAL
            await context.abort(code, f"Triton: {exc.code().name}: {exc.details()}")
        elapsed = time.perf_counter() - t0
        result = parse_response(model, response, len(request.series.values))
        cut_to_horizon(result, model.horizon, request.horizon)
        return pb.AnalyzeResponse(result=result, inference_seconds=elapsed)
