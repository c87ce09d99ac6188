"""ModelAdminService: load and unload Triton's models while the stack runs (Triton in explicit
model-control mode). A load of a served model is Triton's reload: the old version answers until
the new one is ready, so jobs in flight finish on one or the other."""

from __future__ import annotations

import asyncio

import grpc
from satlas.v1 import model_admin_service_pb2 as pb
from satlas.v1 import model_admin_service_pb2_grpc as pb_grpc
from tritonclient.grpc import service_pb2 as tpb

from analysis_svc.service import Analysis

LOAD_TIMEOUT_S = 120.0  # a model's load (ONNX Runtime sessions, the Python backend's stubs)


class ModelAdmin(pb_grpc.ModelAdminServiceServicer):
    def __init__(self, analysis: Analysis):
        self.analysis = analysis  # its Triton channel and its catalogue, refreshed after a change

    async def LoadModel(self, request, context):
        await self._described(context, request.model_name)  # NOT_FOUND before Triton's vaguer error
        await self._call(context, self.analysis.triton.RepositoryModelLoad,
                         tpb.RepositoryModelLoadRequest(model_name=request.model_name))
        try:  # loaded: a failed read of its description must not say otherwise
            model = (await asyncio.to_thread(self.analysis.catalogue.get, True)).get(request.model_name)
        except grpc.RpcError:
            model = None
        return pb.LoadModelResponse(model=model.to_proto() if model else None)

    async def UnloadModel(self, request, context):
        await self._described(context, request.model_name)
        await self._call(context, self.analysis.triton.RepositoryModelUnload,
                         tpb.RepositoryModelUnloadRequest(model_name=request.model_name))
        return pb.UnloadModelResponse()

    async def _call(self, context, method, request) -> None:
        remaining = context.time_remaining()
        try:
            await method(request, timeout=min(LOAD_TIMEOUT_S, remaining) if remaining else LOAD_TIMEOUT_S)
        except grpc.aio.AioRpcError as exc:
            details = exc.details() or ""
            code = exc.code() if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) \
                else grpc.StatusCode.FAILED_PRECONDITION  # the model is there but would not load
            await context.abort(code, f"Triton: {exc.code().name}: {details}")

    async def _described(self, context, name: str) -> None:
        """NOT_FOUND unless Triton's repository, read afresh, has the model."""
        models = await self.analysis.from_catalogue(context, self.analysis.catalogue.get, True)
        if name not in models:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"model {name!r} is not in Triton's repository")
