"""Prometheus metrics of a service: its own ``/metrics`` endpoint, and every gRPC call it serves
counted by method and status under the names gRPC dashboards already expect
(go-grpc-prometheus's: ``grpc_server_started_total``, ``grpc_server_handled_total``,
``grpc_server_handling_seconds``)."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, start_http_server

log = logging.getLogger(__name__)

LABELS = ("grpc_type", "grpc_service", "grpc_method")
STARTED = Counter("grpc_server_started", "RPCs started on the server.", LABELS)
HANDLED = Counter("grpc_server_handled", "RPCs completed on the server, whatever their status.",
                  (*LABELS, "grpc_code"))
SECONDS = Histogram("grpc_server_handling_seconds", "Time from the start of an RPC to its status.", LABELS,
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))


def wanted(address: str) -> bool:
    """A metrics address says where to serve; "off" or "" says not to."""
    return bool(address) and address.lower() != "off"


def serve(address: str, registry: CollectorRegistry = REGISTRY) -> int | None:
    """``/metrics`` on ``address`` (host:port; port 0: a free one); "off" or "" serves none. Returns the port."""
    if not wanted(address):
        return None
    host, _, port = address.rpartition(":")
    server, _ = start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1", registry=registry)
    bound = server.server_address[1]
    log.info("metrics on http://%s:%d/metrics", host, bound)
    return bound


def _kind(handler) -> str:
    if handler.request_streaming and handler.response_streaming:
        return "bidi_stream"
    if handler.request_streaming:
        return "client_stream"
    return "server_stream" if handler.response_streaming else "unary"


def _code(context, exc: BaseException | None) -> str:
    """The status the call ended with: what the handler set (abort), else what the exception means."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int) and code:
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), "UNKNOWN")
    if exc is None:
        return "OK"
    return "CANCELLED" if isinstance(exc, asyncio.CancelledError) else "UNKNOWN"


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Outermost, so that calls refused by validation count too."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        service, _, method = handler_call_details.method.strip("/").partition("/")
        labels = (_kind(handler), service, method)
        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary_unary(request, context):
                began = _start(labels)
                exc = None
                try:
                    return await inner(request, context)
                except BaseException as e:
                    exc = e
                    raise
                finally:
                    _end(labels, context, exc, began)

            return grpc.unary_unary_rpc_method_handler(unary_unary, handler.request_deserializer,
                                                       handler.response_serializer)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(_counted_stream(handler.unary_stream, labels),
                                                        handler.request_deserializer, handler.response_serializer)
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(_counted_stream(handler.stream_stream, labels),
                                                         handler.request_deserializer, handler.response_serializer)
        return handler  # client streaming: none in these services


def _counted_stream(inner, labels):
    """A server-streaming handler (its request one message or an iterator) that counts its call."""

    async def stream(request, context):
        began = _start(labels)
        exc = None
        try:
            async for item in inner(request, context):
                yield item
        except BaseException as e:
            exc = e
            raise
        finally:
            _end(labels, context, exc, began)

    return stream


def _start(labels) -> float:
    STARTED.labels(*labels).inc()
    return time.perf_counter()


def _end(labels, context, exc: BaseException | None, began: float) -> None:
    HANDLED.labels(*labels, _code(context, exc)).inc()
    SECONDS.labels(*labels).observe(time.perf_counter() - began)
