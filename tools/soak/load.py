"""The soak's producers and watchers, and their record of what happened.

Producers offer a steady load, half over one StreamSeries stream and half as unary SubmitSeries
calls, each request under an idempotency key of its own. Whatever breaks, they send it again
under the same key until it is answered (as a producer should); a few answered requests are sent
once more on purpose, and every answer for a key must carry the same job ids. Watchers follow
WatchJobs (terminal events) straight from the orchestrator and through Envoy, reopening when a
fault breaks them, and keep every event they saw.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
import numpy as np
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import ingest_service_pb2_grpc as ipb_grpc
from satlas.v1 import orchestrator_service_pb2 as opb
from satlas.v1 import orchestrator_service_pb2_grpc as opb_grpc
from satlas.v1 import timeseries_pb2 as tpb

from satkit import client
from satkit.jobs import DEFAULT_MODELS, TERMINAL_STATES, watched
from tools import patterns
from tools.streams import Reopening, Stream

# Answers that say "not now": the request goes again under its key. Anything else is a rejection.
RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED,
             grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN, grpc.StatusCode.ABORTED,
             grpc.StatusCode.CANCELLED}
RETRYABLE_CODES = {c.value[0] for c in RETRYABLE}
BACKOFF_S = (0.2, 0.5, 1.0, 2.0)


@dataclass
class Submission:
    key: str
    models: tuple[str, ...]
    length: int
    via: str  # "stream" or "unary"
    sent: float  # monotonic, first send
    answers: list[tuple[str, ...]] = field(default_factory=list)
    accepted: float | None = None  # monotonic, first answer
    tries: int = 0
    rejected: str = ""


@dataclass
class Event:
    job_id: str
    state: int
    version: int
    at: float  # monotonic
    error: str


class Record:
    """Everything the producers and watchers saw, by key and by job id. Thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.submissions: dict[str, Submission] = {}
        self.job_key: dict[str, str] = {}
        self.events: dict[str, list[Event]] = defaultdict(list)  # watcher name -> its events

    def sending(self, s: Submission) -> None:
        with self.lock:
            self.submissions.setdefault(s.key, s).tries += 1

    def answered(self, key: str, job_ids, at: float) -> None:
        with self.lock:
            s = self.submissions[key]
            s.answers.append(tuple(job_ids))
            if s.accepted is None:
                s.accepted = at
                for job_id in job_ids:
                    self.job_key[job_id] = key

    def rejected(self, key: str, why: str) -> None:
        with self.lock:
            self.submissions[key].rejected = why

    def saw(self, watcher: str, job) -> None:
        with self.lock:
            self.events[watcher].append(Event(job.job_id, job.state, job.version, time.monotonic(), job.error))

    def accepted_jobs(self) -> dict[str, Submission]:
        with self.lock:
            return {j: self.submissions[k] for j, k in self.job_key.items()}


class Feed(Reopening):
    """WatchJobs for terminal states, through ``address``; reopened when broken."""

    def __init__(self, name: str, address: str, record: Record, say, token: str = ""):
        self.what = f"WatchJobs via {name}"
        super().__init__(say)
        self.name, self.record = name, record
        self.channel = client.channel(address, token=token, ca="")
        self.stub = opb_grpc.OrchestratorServiceStub(self.channel)

    def _open(self):
        return self.stub.WatchJobs(opb.WatchJobsRequest(states=sorted(TERMINAL_STATES), batched=True))

    def _handle(self, response) -> None:
        for job in watched(response):
            self.record.saw(self.name, job)

    def start(self) -> "Feed":
        self.thread.start()
        return self

    def close(self) -> None:
        self.halt()
        self.channel.close()


class Producers:
    """``rate`` jobs/s, paced open-loop, until ``stop``; ``finish`` then waits for every answer."""

    def __init__(self, ingest: str, record: Record, rate: float, say, *, seed: int = 0, resend: float = 0.05,
                 lengths: tuple[int, int] = (32, 256), models: tuple[str, ...] = DEFAULT_MODELS):
        self.record, self.rate, self.say, self.resend = record, rate, say, resend
        self.models, self.lengths = models, lengths
        self.rng = random.Random(seed)
        self.run_id = uuid.uuid4().hex[:8]
        self.series = self._series_pool(seed, 64)
        self.channel = grpc.insecure_channel(ingest)
        self.stub = ipb_grpc.IngestServiceStub(self.channel)
        self.stream = Stream(self.stub, self._stream_answer, say)
        self.unary = ThreadPoolExecutor(16, thread_name_prefix="submit")
        self.stopping, self.halted = threading.Event(), threading.Event()
        self.sequence = 0
        self.seq_lock = threading.Lock()
        self.pacer = threading.Thread(target=self._pace, name="pacer", daemon=True)
        self.outstanding = 0
        self.out_lock = threading.Condition()

    def _series_pool(self, seed: int, n: int) -> list[np.ndarray]:
        rng = np.random.default_rng(seed)
        return [patterns.random_series(rng, length=self.lengths[1]).values for _ in range(n)]

    def start(self) -> "Producers":
        self.stream.thread.start()
        self.pacer.start()
        return self

    # Pacing: the next request goes when its jobs are due, whatever the mesh does.
    def _pace(self) -> None:
        due = time.monotonic()
        while not self.stopping.is_set():
            models = self.models if self.rng.random() < 0.5 else (self.rng.choice(self.models),)
            length = self.rng.randint(*self.lengths)
            values = self.series[self.rng.randrange(len(self.series))][:length]
            s = Submission(f"soak-{self.run_id}-{uuid.uuid4().hex}", models, length,
                           "stream" if self.rng.random() < 0.5 else "unary", time.monotonic())
            self._track(+1)
            self.record.sending(s)
            request = ipb.SubmitSeriesRequest(series=tpb.TimeSeries(values=values.tolist()), models=list(models),
                                              idempotency_key=s.key)
            self._send(s, request)
            due += len(models) / self.rate
            time.sleep(max(0.0, due - time.monotonic()))

    def _track(self, delta: int) -> None:
        with self.out_lock:
            self.outstanding += delta
            self.out_lock.notify_all()

    def _send(self, s: Submission, request: ipb.SubmitSeriesRequest) -> None:
        if s.via == "stream":
            with self.seq_lock:
                self.sequence += 1
                self.stream.send(ipb.StreamSeriesRequest(sequence=self.sequence, submission=request))
        else:
            self.unary.submit(self._unary, s, request)

    def _unary(self, s: Submission, request: ipb.SubmitSeriesRequest) -> None:
        attempt = 0
        while not self.halted.is_set():
            try:
                response = self.stub.SubmitSeries(request, timeout=10)
            except grpc.RpcError as exc:
                if exc.code() not in RETRYABLE:
                    self.record.rejected(s.key, f"{exc.code().name}: {exc.details()}")
                    break
                attempt += 1
                self.record.sending(s)
                time.sleep(BACKOFF_S[min(attempt, len(BACKOFF_S)) - 1])
                continue
            self._answered(s, request, response.job_ids)
            break
        self._track(-1)

    def _stream_answer(self, request: ipb.StreamSeriesRequest, response: ipb.StreamSeriesResponse) -> None:
        key = request.submission.idempotency_key
        s = self.record.submissions[key]
        if response.error.code:
            if response.error.code in RETRYABLE_CODES:
                if not self.halted.is_set():  # again under its key, on a new sequence, after a pause
                    self.record.sending(s)
                    threading.Timer(BACKOFF_S[1], self._send, (s, request.submission)).start()
                    return
            else:
                self.record.rejected(key, f"code {response.error.code}: {response.error.message}")
        else:
            self._answered(s, request.submission, response.job_ids)
        self._track(-1)

    def _answered(self, s: Submission, request: ipb.SubmitSeriesRequest, job_ids) -> None:
        first = s.accepted is None
        self.record.answered(s.key, job_ids, time.monotonic())
        if first and self.rng.random() < self.resend and not self.stopping.is_set():
            self._track(+1)  # the same request once more, on purpose: its answer must match
            self.unary.submit(self._unary, s, request)

    def stop(self) -> None:
        """No new requests; those sent still get their answers."""
        self.stopping.set()
        self.pacer.join(10)

    def finish(self, timeout: float) -> int:
        """Waits up to ``timeout`` for every request's answer; how many are left unanswered."""
        with self.out_lock:
            self.out_lock.wait_for(lambda: self.outstanding <= 0, timeout)
            left = self.outstanding
        self.close()
        return left

    def close(self) -> None:
        """At once: unanswered requests stay unanswered."""
        self.stopping.set()
        self.halted.set()
        self.stream.halt()
        self.unary.shutdown(wait=False, cancel_futures=True)
        self.channel.close()
