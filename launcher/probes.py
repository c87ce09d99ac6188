"""Health probes the launcher (and the tools) wait on: gRPC health, a Celery ping, an HTTP answer."""

from __future__ import annotations

import urllib.error
import urllib.request

WORKER_HOSTNAME = "worker1@%h"


class GrpcHealth:
    """grpc.health.v1 Check of the server as a whole (service "")."""

    def __init__(self, target: str):
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        self._grpc, self._pb = grpc, health_pb2
        # Short reconnect backoff: the default grows to minutes while the server is still starting.
        self.channel = grpc.insecure_channel(target, options=[
            ("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 500)])
        self.stub = health_pb2_grpc.HealthStub(self.channel)

    def __call__(self) -> bool:
        try:
            reply = self.stub.Check(self._pb.HealthCheckRequest(service=""), timeout=1.0)
        except self._grpc.RpcError:
            return False
        return reply.status == self._pb.HealthCheckResponse.SERVING

    def close(self) -> None:
        self.channel.close()


class WorkerPing:
    """A Celery control ping to one worker: it answers once it consumes from the broker."""

    def __init__(self, broker_url: str, hostname: str):
        from celery import Celery

        self.app = Celery("satlas-stack", broker=broker_url, set_as_current=False)
        self.destination = [worker_nodename(hostname)]

    def __call__(self) -> bool:
        try:
            return bool(self.app.control.ping(destination=self.destination, timeout=1.0))
        except Exception:  # broker hiccup: try again next round
            return False

    def close(self) -> None:
        self.app.close()


def worker_nodename(hostname: str = WORKER_HOSTNAME) -> str:
    from celery.utils.nodenames import host_format  # the worker's own expansion of %h

    return host_format(hostname)


def http_answers(url: str, ok_below: int = 500) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1.0):
            return True
    except urllib.error.HTTPError as exc:
        return exc.code < ok_below
    except OSError:  # URLError, refused, timeout
        return False
