"""Server streams that survive a broken connection: read on their own thread, reopened with backoff.

``Stream`` is a StreamSeries call that sends its unanswered requests again on the new call (their
idempotency keys make that safe); ``Watcher`` follows WatchJobs and asks GetJob for what it missed."""

from __future__ import annotations

import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime

import grpc
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import orchestrator_service_pb2 as opb

from satkit.jobs import TERMINAL_STATES, watched

BACKOFF_S = (0.5, 1.0, 2.0, 5.0)  # waits before reopening a broken stream; the last repeats

EARLY_MAX = 10_000  # results kept for jobs whose ids have not come back yet


def now_text() -> str:
    return datetime.now().strftime("%H:%M:%S.%f")[:-3]


class Reopening:
    """A server stream read on its own thread and reopened with backoff when the server breaks it."""
    what = "stream"

    def __init__(self, say: Callable[[str], None]):
        self.say, self.stopped, self.call = say, threading.Event(), None
        self.thread = threading.Thread(target=self._run, name=self.what, daemon=True)

    def _run(self) -> None:
        attempt = 0  # failures since the last message
        while True:
            self.call = self._open()
            try:
                for message in self.call:
                    attempt = 0
                    self._handle(message)
                if self._finished():
                    return
                problem = "the server ended it"
            except grpc.RpcError as exc:
                problem = f"{exc.code().name}: {exc.details()}"
            if self.stopped.is_set():
                return
            wait, attempt = BACKOFF_S[min(attempt, len(BACKOFF_S) - 1)], attempt + 1
            self.say(f"{now_text()}  {self.what} broken ({problem}); reopening in {wait:g} s")
            if self.stopped.wait(wait):
                return

    def _finished(self) -> bool:
        return False

    def halt(self) -> None:
        self.stopped.set()
        if self.call is not None:
            self.call.cancel()
        self.thread.join(5)


class Stream(Reopening):
    """The StreamSeries call. Requests not yet answered go out again on a reopened call; their
    idempotency keys make that safe (a request the dead call did deliver returns its first jobs)."""
    what = "ingest stream"

    def __init__(self, stub, on_answer: Callable, say: Callable[[str], None]):
        super().__init__(say)
        self.stub, self.on_answer = stub, on_answer
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.unanswered: OrderedDict[int, ipb.StreamSeriesRequest] = OrderedDict()
        self.outbox: queue.Queue = queue.Queue()
        self.closing = False

    def send(self, request: ipb.StreamSeriesRequest) -> None:
        with self.lock:
            self.unanswered[request.sequence] = request
            self.outbox.put(request)

    def close(self, timeout: float) -> list[int]:
        """Half-closes, waits up to ``timeout`` for the answers; the sequences still unanswered."""
        with self.lock:
            self.closing = True
            self.outbox.put(None)
            self.idle.wait_for(lambda: not self.unanswered, max(0.0, timeout))
            left = list(self.unanswered)
        self.halt()
        return left

    def _open(self):
        with self.lock:
            self.outbox.put(None)  # ends the reader gRPC keeps on the previous call's requests
            self.outbox = outbox = queue.Queue()
            for request in [*self.unanswered.values(), *[None] * self.closing]:
                outbox.put(request)
        return self.stub.StreamSeries(iter(outbox.get, None))

    def _handle(self, response: ipb.StreamSeriesResponse) -> None:
        with self.lock:
            request = self.unanswered.get(response.sequence)
        if request is not None:
            self.on_answer(request, response)
        with self.lock:
            self.unanswered.pop(response.sequence, None)
            if not self.unanswered:
                self.idle.notify_all()

    def _finished(self) -> bool:
        with self.lock:
            return self.closing and not self.unanswered


class Watcher(Reopening):
    """This run's results from WatchJobs. A job can end before its id comes back from the ingest,
    so results of unknown ids are kept a while; the feed misses what ends before it subscribes or
    while it is down, so overdue jobs are asked for with GetJob."""
    what = "results feed"

    def __init__(self, stub, models, lock: threading.RLock, on_result: Callable, say: Callable[[str], None]):
        super().__init__(say)
        self.stub, self.on_result = stub, on_result
        self.request = opb.WatchJobsRequest(model_names=models, states=sorted(TERMINAL_STATES), batched=True)
        self.lock, self.done = lock, threading.Condition(lock)
        self.expected: dict[str, float] = {}  # job id -> when its id came back
        self.early: OrderedDict[str, object] = OrderedDict()

    def _open(self):
        return self.stub.WatchJobs(self.request)

    def expect(self, job_ids) -> None:
        with self.lock:
            for job_id in job_ids:
                self.expected[job_id] = time.monotonic()
                if job_id in self.early:
                    self._take(self.early.pop(job_id))

    def _handle(self, response: opb.WatchJobsResponse) -> None:
        for job in watched(response):
            self._take(job)

    def _take(self, job) -> None:
        with self.lock:
            if self.expected.pop(job.job_id, None) is None:
                self.early[job.job_id] = job
                while len(self.early) > EARLY_MAX:
                    self.early.popitem(last=False)
                return
            self.on_result(job)
            self.done.notify_all()

    def catch_up(self, older_than: float) -> None:
        with self.lock:
            overdue = [j for j, t in self.expected.items() if time.monotonic() - t >= older_than]
        for job_id in overdue:
            try:
                job = self.stub.GetJob(opb.GetJobRequest(job_id=job_id), timeout=5).job
            except grpc.RpcError:
                return  # the orchestrator is away; the next round tries again
            with self.lock:
                if job.state in TERMINAL_STATES and job_id in self.expected:
                    self._take(job)

    def drain(self, deadline: float) -> int:
        """Waits for the outstanding results until ``deadline``; how many are still missing."""
        while self.expected and time.monotonic() < deadline:
            with self.lock:
                self.done.wait(min(1.0, max(0.0, deadline - time.monotonic())))
            self.catch_up(1.0)
        self.catch_up(0.0)
        self.halt()
        return len(self.expected)
