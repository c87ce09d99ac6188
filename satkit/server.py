"""Server bootstrap shared by the three services: a grpc.aio server with the metrics and
validation interceptors, health checking, reflection, explicit limits, and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from satkit import metrics
from satkit.validation import ValidationInterceptor

log = logging.getLogger(__name__)
T = TypeVar("T")
STOP_MARGIN_S = 10.0  # past a stop's grace period

# Keepalive lets long Watch* streams survive idle proxies and notices dead peers.
SERVER_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.so_reuseport", 0),
]


# Between the services: a CreateJobs carries a batch of submissions, each up to the ingest's own
# limit (INGEST_MAX_MESSAGE_BYTES, 4 MiB); the ingest keeps a batch under 8 MiB.
INTERNAL_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def channel_options(max_message_bytes: int = INTERNAL_MAX_MESSAGE_BYTES) -> list[tuple[str, int]]:
    """Options for the services' long-lived client channels to each other."""
    return [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.enable_retries", 1),
    ]


def triton_channel_options() -> list[tuple[str, int]]:
    """For channels to Triton: its server takes a ping more often than every 5 minutes without data
    as a strike and closes the connection after two ("Too many pings", seen on an idle analysis
    server). Its call deadlines (TRITON_TIMEOUT_S) find a dead Triton instead."""
    keep = {"grpc.keepalive_time_ms": 300_000, "grpc.keepalive_permit_without_calls": 0}
    return [(k, keep.get(k, v)) for k, v in channel_options()]


def target(addr: str) -> str:
    """The gRPC target for ``addr``: one host:port, or several comma-separated IP:port (replicas of
    one service) as one ``ipv4:``/``ipv6:`` target, over which ``balanced`` spreads the calls."""
    addrs = [a.strip() for a in addr.split(",") if a.strip()]
    if len(addrs) == 1:
        return addrs[0]
    return ("ipv6:" if any(a.startswith("[") for a in addrs) else "ipv4:") + ",".join(addrs)


def balanced(addr: str) -> list[tuple[str, str]]:
    """Round robin over the replicas of a list ``addr``: a dead one is skipped until it is back."""
    return [("grpc.lb_policy_name", "round_robin")] if "," in addr else []


def create_server(
    address: str, *, max_message_bytes: int = 4 * 1024 * 1024, interceptors: Iterable = (), options: Iterable = ()
) -> tuple[grpc.aio.Server, int]:
    """A server bound to ``address``; port 0 picks a free one (tests). Returns (server, port).
    ``options``: more gRPC channel arguments."""
    server = grpc.aio.server(
        interceptors=[metrics.MetricsInterceptor(), ValidationInterceptor(), *interceptors],
        options=SERVER_OPTIONS
        + [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            *options,
        ],
    )
    port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"could not bind {address}")
    return server, port


@dataclass
class Running:
    """A started server: its bound port, its health servicer and what ``lifespan`` yielded."""

    server: grpc.aio.Server
    port: int
    health: health.aio.HealthServicer
    resources: object


@asynccontextmanager
async def running(
    address: str,
    lifespan: Callable[[], AbstractAsyncContextManager[T]],
    register: Callable[[grpc.aio.Server, T], Iterable[str]],
    *,
    max_message_bytes: int = 4 * 1024 * 1024,
    options: Iterable = (),
) -> AsyncIterator[Running]:
    """A service started and SERVING on ``address`` (port 0: a free one) until the block ends.

    The port is bound first, so a taken port fails before anything else is opened.
    ``lifespan`` opens what the servicers need (database, channels) and yields it;
    ``register(server, it)`` adds the servicers and returns their full service names.
    Tests run a service in-process with it; ``serve`` runs one as a process.
    """
    server, port = create_server(address, max_message_bytes=max_message_bytes, options=options)
    try:
        async with lifespan() as resources:
            names = list(register(server, resources))
            health_servicer = health.aio.HealthServicer()
            health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
            reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
            await server.start()
            try:
                for service in ["", *names]:
                    await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
                yield Running(server, port, health_servicer, resources)
            finally:
                await stop(server, 0)  # before the resources close; a no-op after a graceful stop
    finally:
        await stop(server, 0)  # the port, also when lifespan or register failed before the start


async def stop(server: grpc.aio.Server, grace_s: float) -> None:
    """``server.stop``, bounded: its shutdown waits for every call's task to end, and one that does
    not would hold the stop forever (a test's teardown hung 600 s in CI, the cause not found)."""
    try:
        await asyncio.wait_for(server.stop(grace_s), grace_s + STOP_MARGIN_S)
    except TimeoutError:
        log.warning("the gRPC server did not stop within %.0f s; going on", grace_s + STOP_MARGIN_S)


async def serve(
    name: str,
    address: str,
    lifespan: Callable[[], AbstractAsyncContextManager[T]],
    register: Callable[[grpc.aio.Server, T], Iterable[str]],
    *,
    grace_s: float = 5.0,
    max_message_bytes: int = 4 * 1024 * 1024,
    ending: Callable[[T], None] | None = None,
    metrics_addr: str = "",
    options: Iterable = (),
) -> None:
    """Run one service until SIGINT/SIGTERM, then drain and stop (see ``running``), with its
    Prometheus ``/metrics`` on ``metrics_addr`` ("" for none).

    ``ending(resources)`` runs as the stop begins: it ends the streams that would otherwise hold
    the grace period (``grace_s``) to the last second.
    """
    metrics.serve(metrics_addr)  # first: a taken port fails before anything else is opened
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running(address, lifespan, register, max_message_bytes=max_message_bytes, options=options) as r:
        log.info("%s serving", name, extra={"address": address.rsplit(":", 1)[0] + f":{r.port}"})
        await stop.wait()
        log.info("%s stopping", name)
        await r.health.enter_graceful_shutdown()  # NOT_SERVING first, so balancers move away
        if ending:
            ending(r.resources)
        await stop(r.server, grace_s)
    log.info("%s stopped", name)
