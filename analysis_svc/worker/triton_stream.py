"""One long-lived Triton ``ModelStreamInfer`` stream per worker process.

Requests carry ids and Triton's stream responses (errors included) echo them, so many
requests are in flight on one stream and Triton's dynamic batcher sees them together.
tritonclient's own stream drops the id from error responses, hence this small client.
"""

from __future__ import annotations

import itertools
import queue
import re
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

import grpc
from tritonclient.grpc import service_pb2 as tpb
from tritonclient.grpc import service_pb2_grpc as tpb_grpc

from analysis_svc.worker import metrics
from satkit.server import triton_channel_options

_CLOSE = object()
# Error texts that mean "try again later" rather than "this request is wrong".
# What a retry can fix. The last two: a Python-backend stub that died with the request in it (Triton
# killed or restarting); the chaos soak saw a job fail on the first as if its series were bad.
# "unknown model"/"no available versions": unloaded or reloading meanwhile (the worker only sends to
# models its catalogue saw in the repository; one that is not there at all fails before Triton).
_TRANSIENT = re.compile(r"unavailable|not ready|exceeds? (the )?timeout|try again|queue (is )?full|shutting down"
                        r"|failed to retrieve the response|stub process|unknown model|no available versions",
                        re.IGNORECASE)


class TritonUnavailable(Exception):
    """The stream broke or timed out: worth retrying."""


class TritonRejected(Exception):
    """Triton answered this request with an error that retrying cannot fix."""


def classify(error_message: str) -> Exception:
    return TritonUnavailable(error_message) if _TRANSIENT.search(error_message) else TritonRejected(error_message)


class _Stream:
    def __init__(self, stub):
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        self.pending: dict[str, Future] = {}
        self.lock = threading.Lock()
        self.alive = True
        self.call = stub.ModelStreamInfer(iter(self.requests.get, _CLOSE))
        threading.Thread(target=self._read, name="triton-stream", daemon=True).start()

    def _read(self) -> None:
        reason: Exception = TritonUnavailable("Triton stream closed")
        try:
            for response in self.call:
                with self.lock:
                    future = self.pending.pop(response.infer_response.id, None)
                if future is None:
                    continue
                future.seconds = time.perf_counter() - future.sent  # this request's own time on Triton
                if response.error_message:
                    future.set_exception(classify(response.error_message))
                else:
                    future.set_result(response.infer_response)
        except grpc.RpcError as exc:
            reason = TritonUnavailable(f"Triton stream broke: {exc.code().name}: {exc.details()}")
        with self.lock:
            self.alive = False
            orphans, self.pending = self.pending, {}
        for future in orphans.values():
            future.set_exception(reason)

    def send(self, request: tpb.ModelInferRequest) -> Future:
        future: Future = Future()
        future.sent, future.seconds = time.perf_counter(), 0.0
        with self.lock:
            if not self.alive:
                raise TritonUnavailable("Triton stream closed")
            self.pending[request.id] = future
        self.requests.put(request)
        return future

    def close(self) -> None:
        self.requests.put(_CLOSE)
        self.call.cancel()


class TritonStream:
    def __init__(self, url: str):
        self.channel = grpc.insecure_channel(url, options=triton_channel_options())
        self.stub = tpb_grpc.GRPCInferenceServiceStub(self.channel)
        self._stream: _Stream | None = None
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._opened = 0

    def _current(self) -> _Stream:
        with self._lock:
            if self._stream is None or not self._stream.alive:
                if self._opened:
                    metrics.RECONNECTS.inc()
                self._opened += 1
                self._stream = _Stream(self.stub)
            return self._stream

    def infer_many(self, requests: list[tpb.ModelInferRequest], timeout: float) -> list[tuple[object, float]]:
        """Send all, then wait for all. Each entry of the result is (a ModelInferResponse or the
        exception for that request (TritonUnavailable or TritonRejected), the request's seconds
        from send to answer)."""
        stream = self._current()
        futures = []
        for request in requests:
            request.id = str(next(self._ids))
            try:
                futures.append(stream.send(request))
            except TritonUnavailable as exc:
                failed: Future = Future()
                failed.seconds = 0.0
                failed.set_exception(exc)
                futures.append(failed)
        out = []
        for future in futures:
            try:
                out.append((future.result(timeout), future.seconds))
            except FutureTimeout:
                out.append((TritonUnavailable(f"no answer from Triton within {timeout:.1f}s"), timeout))
                self.reset()
            except (TritonUnavailable, TritonRejected) as exc:
                out.append((exc, future.seconds))
        return out

    def reset(self) -> None:
        with self._lock:
            if self._stream is not None:
                self._stream.close()
                self._stream = None

    def close(self) -> None:
        self.reset()
        self.channel.close()
