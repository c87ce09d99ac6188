"""AnalysisService: synchronous inference (no queue, nothing stored) and the model list."""

from __future__ import annotations

import time

import grpc
from satlas.v1 import analysis_service_pb2 as pb
from satlas.v1 import analysis_service_pb2_grpc as pb_grpc
from tritonclient.grpc import service_pb2_grpc as tpb_grpc

from analysis_svc import catalogue
from analysis_svc.settings import Settings
from analysis_svc.tensors import build_request, check_length, parse_response
from satkit.server import channel_options
from satkit.validation import abort_invalid


class Analysis(pb_grpc.AnalysisServiceServicer):
    def __init__(self, settings: Settings):
        self.settings = settings
        self.channel = grpc.aio.insecure_channel(settings.triton_url, options=channel_options(64 * 1024 * 1024))
        self.triton = tpb_grpc.GRPCInferenceServiceStub(self.channel)
        self._models: dict[str, catalogue.ModelInfo] = {}
        self._models_at = 0.0

    async def models(self, refresh: bool = False) -> dict[str, catalogue.ModelInfo]:
        if refresh or time.monotonic() - self._models_at > self.settings.catalogue_ttl_s:
            self._models = await catalogue.fetch_async(self.triton, self.settings.triton_timeout_s)
            self._models_at = time.monotonic()
        return self._models

    async def _models_or_unavailable(self, context, refresh=False):
        try:
            return await self.models(refresh)
        except grpc.aio.AioRpcError as exc:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"Triton: {exc.code().name}: {exc.details()}")

    async def ListModels(self, request, context):
        models = await self._models_or_unavailable(context, refresh=True)
        return pb.ListModelsResponse(models=[m.to_proto() for m in sorted(models.values(), key=lambda m: m.name)])

    async def Analyze(self, request, context):
        models = await self._models_or_unavailable(context)
        model = models.get(request.model_name)
        if model is None:
            models = await self._models_or_unavailable(context, refresh=True)
            model = models.get(request.model_name)
        if model is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model {request.model_name!r} is not served")
        if not model.ready:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"model {request.model_name!r} is not ready")
        problem = check_length(model, len(request.series.values))
        if problem:
            await abort_invalid(context, [("series.values", problem)])
        timeout = self.settings.triton_timeout_s
        if context.time_remaining() is not None:  # the caller's deadline travels on to Triton
            timeout = min(timeout, context.time_remaining())
        t0 = time.perf_counter()
        try:
            response = await self.triton.ModelInfer(build_request(model, request.series.values), timeout=timeout)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                await abort_invalid(context, [("series", exc.details())])
            passthrough = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            code = exc.code() if exc.code() in passthrough else grpc.StatusCode.INTERNAL
            await context.abort(code, f"Triton: {exc.code().name}: {exc.details()}")
        elapsed = time.perf_counter() - t0
        return pb.AnalyzeResponse(
            result=parse_response(model, response, len(request.series.values)), inference_seconds=elapsed
        )
