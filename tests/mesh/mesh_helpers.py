"""What the tests against a running stack share: series, submitting, waiting, watching, the table."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import struct
import threading
import time
import urllib.request
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

import grpc
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import ingest_service_pb2_grpc as ipb_grpc
from satlas.v1 import job_state_pb2 as js
from satlas.v1 import orchestrator_service_pb2 as opb
from satlas.v1 import orchestrator_service_pb2_grpc as opb_grpc

from satkit.jobs import DEFAULT_MODELS, TERMINAL_STATES

MODELS = list(DEFAULT_MODELS)
TERMINAL = TERMINAL_STATES


def series(n: int, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [10 + (i % 12) + rng.random() for i in range(n)]


def stream_submit(ingest, lengths: list[int], models=MODELS, timeout: float = 120) -> list[str]:
    """Submit one series per length over StreamSeries; returns every job id."""
    requests = (ipb.StreamSeriesRequest(submission={"series": {"values": series(n, i)}, "models": models},
                                        sequence=i) for i, n in enumerate(lengths))
    responses = list(ingest.StreamSeries(requests, timeout=timeout))
    assert all(not r.HasField("error") for r in responses), [r.error for r in responses if r.HasField("error")]
    return [i for r in responses for i in r.job_ids]


def wait_terminal(orchestrator, job_ids, timeout=180.0):
    deadline, jobs = time.monotonic() + timeout, {}
    pending = set(job_ids)
    last: dict[str, object] = {}
    while pending and time.monotonic() < deadline:
        for job_id in list(pending):
            try:
                job = orchestrator.GetJob(opb.GetJobRequest(job_id=job_id), timeout=10, wait_for_ready=True).job
            except grpc.RpcError:  # an orchestrator being restarted
                break
            last[job_id] = job
            if job.state in TERMINAL:
                jobs[job_id] = job
                pending.discard(job_id)
        time.sleep(0.2)
    # Where the unfinished ones stand (state, attempts, worker): what a failure needs first.
    stuck = Counter((js.JobState.Name(last[j].state), last[j].attempts, last[j].worker) for j in pending if j in last)
    assert not pending, f"{len(pending)} jobs never finished: {dict(stuck)}"
    return jobs


def flower_saw_tasks_succeed(flower_url: str, timeout: float = 20.0) -> None:
    """Until Flower lists a ``satlas.run_jobs`` task in SUCCESS (task events reach it in batches,
    analysis_svc.worker.consumer)."""
    url = (flower_url + "/tasks/datatable?draw=1&start=0&length=50&order%5B0%5D%5Bcolumn%5D=0"
           "&columns%5B0%5D%5Bdata%5D=started&order%5B0%5D%5Bdir%5D=desc")
    deadline = time.monotonic() + timeout
    while True:
        with urllib.request.urlopen(url, timeout=10) as page:
            tasks = json.load(page)["data"]
        if any(t.get("name") == "satlas.run_jobs" and t.get("state") == "SUCCESS" for t in tasks):
            return
        assert time.monotonic() < deadline, tasks[:3]
        time.sleep(0.5)


def query(database_url: str, sql: sa.TextClause, params: dict | None = None) -> list[sa.Row]:
    """Rows straight from the database, bypassing the services."""
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg2://"))
    try:
        with engine.connect() as conn:
            return list(conn.execute(sql, params or {}))
    finally:
        engine.dispose()


def total_jobs(database_url: str) -> int:
    """Rows in inference_results now (GetStats may answer from its one-second cache)."""
    return query(database_url, sa.text("SELECT COUNT(*) FROM inference_results"))[0][0]


@contextmanager
def clients_of(mesh):
    """(IngestService, OrchestratorService) stubs on the stack's own addresses."""
    ingest, orchestrator = grpc.insecure_channel(mesh.ingest), grpc.insecure_channel(mesh.orchestrator)
    try:
        yield ipb_grpc.IngestServiceStub(ingest), opb_grpc.OrchestratorServiceStub(orchestrator)
    finally:
        ingest.close()
        orchestrator.close()


@contextmanager
def paused(mesh, name: str):
    """``name`` hangs (SIGSTOP) inside the block and goes on (SIGCONT) after it, whatever happens."""
    mesh.kill(name, signal.SIGSTOP)
    try:
        yield
    finally:
        mesh.kill(name, signal.SIGCONT)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def group_gone(pgid: int) -> bool:
    """No process of the group is left (orphaned pool processes, once init has reaped them)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


def kill_worker_holding_jobs(mesh, clients, lengths: list[int]) -> tuple[list[str], dict[str, str]]:
    """Submit one series per length and SIGKILL the worker while it holds some of their jobs; a
    fresh worker starts once the dead one's pool processes are gone. Returns the job ids and their
    statuses at the kill.

    Triton hangs from before the submission, so no job can finish before the kill (a message of
    batched requests is otherwise over in milliseconds, and a fast mesh finished every job before
    the submission returned), and goes on before the fresh worker starts (this process's fork, in
    Popen, once waited forever in gRPC's fork handler while it hung). A submission first, so that
    the ingest knows the models: it does not ask the hanging Triton."""
    ingest, orchestrator = clients
    wait_terminal(orchestrator, stream_submit(ingest, [32]))
    worker = mesh.processes["worker"]
    with paused(mesh, "triton"):
        job_ids = stream_submit(ingest, lengths)
        wait_for(lambda: any(r.status == "running" for r in table_rows(mesh.database_url, job_ids)), 60,
                 "a job to start")
        time.sleep(0.5)  # every worker process has claimed its message
        mesh.kill("worker", signal.SIGKILL)
        at_kill = {r.job_id: r.status for r in table_rows(mesh.database_url, job_ids)}
    wait_for(lambda: group_gone(worker.pid), 10, "the worker's pool processes to go")
    mesh.restart("worker")
    return job_ids, at_kill


def rpc_error_within(call, *args, **kwargs) -> tuple[grpc.RpcError, float]:
    """The error ``call`` raises and the seconds it took (AssertionError if it succeeds)."""
    t0 = time.monotonic()
    try:
        call(*args, **kwargs)
    except grpc.RpcError as exc:
        return exc, time.monotonic() - t0
    raise AssertionError(f"{call} did not fail")


class EventLog:
    """Every WatchJobs event from a background thread, re-subscribing when the stream breaks."""

    def __init__(self, address: str):
        self.channel = grpc.insecure_channel(address)
        self.stub = opb_grpc.OrchestratorServiceStub(self.channel)
        self.events: list[tuple[str, int, int]] = []  # (job_id, state, version)
        self.subscribed = threading.Event()
        self.reconnects = 0
        self._stop = threading.Event()
        self._call = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "EventLog":
        self._thread.start()
        assert self.subscribed.wait(30), "WatchJobs never answered"
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._call is not None:
            self._call.cancel()
        self._thread.join(10)
        self.channel.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._call = self.stub.WatchJobs(opb.WatchJobsRequest(), wait_for_ready=True)
            try:
                # The stream's headers arrive once the server has subscribed.
                self._call.initial_metadata()
                self.subscribed.set()
                for event in self._call:
                    self.events.append((event.job.job_id, event.job.state, event.job.version))
            except grpc.RpcError:
                if self._stop.is_set():
                    return
                self.reconnects += 1
                time.sleep(0.2)

    def terminal_counts(self, job_ids) -> Counter:
        ids = set(job_ids)
        return Counter(j for j, state, _ in self.events if j in ids and state in TERMINAL)

    def states_of(self, job_ids) -> set[int]:
        ids = set(job_ids)
        return {state for j, state, _ in self.events if j in ids}


def table_rows(database_url: str, job_ids) -> list[sa.Row]:
    """The jobs' rows of inference_results, straight from the database."""
    return query(database_url, sa.text("SELECT job_id, status, attempts, dispatches, version FROM inference_results "
                                       "WHERE job_id IN :ids").bindparams(sa.bindparam("ids", expanding=True)),
                 {"ids": list(job_ids)})


def processes_marked(marker: str) -> list[int]:
    """PIDs (but this one) whose environment holds ``marker``: every child of a tool inherits it."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:  # gone, or not ours
                pass
    return found


ALLOWED = "http://localhost:5173"  # an origin Envoy's CORS lets call grpc-web


def frame(message) -> bytes:
    body = message.SerializeToString()
    return struct.pack(">BI", 0, len(body)) + body


class GrpcWeb:
    """One grpc-web call over HTTP/1.1: what connect-web's grpc-web transport sends."""

    def __init__(self, address: str, method: str, request, origin: str = ALLOWED, token: str = "",
                 context=None, deadline: str = ""):
        host, port = address.rsplit(":", 1)
        self.conn = (http.client.HTTPSConnection(host, int(port), timeout=30, context=context) if context
                     else http.client.HTTPConnection(host, int(port), timeout=30))
        headers = {"content-type": "application/grpc-web+proto", "x-grpc-web": "1",
                   "accept": "application/grpc-web+proto", "origin": origin}
        if deadline:
            headers["grpc-timeout"] = deadline
        if token:
            headers["authorization"] = f"Bearer {token}"
        self.conn.request("POST", f"/{method}", body=frame(request), headers=headers)
        self.response = self.conn.getresponse()
        self.trailers: dict[str, str] = {}

    def messages(self):
        """Each data frame's bytes as it arrives; the trailer frame fills ``trailers``."""
        while True:
            head = self.response.read(5)
            if len(head) < 5:
                return
            flags, length = struct.unpack(">BI", head)
            body = self.response.read(length)
            if flags & 0x80:
                for line in body.decode().strip().split("\r\n"):
                    key, _, value = line.partition(":")
                    self.trailers[key.strip().lower()] = value.strip()
                return
            yield body

    @property
    def status(self) -> int:
        return int(self.trailers.get("grpc-status", self.response.getheader("grpc-status", "-1")))

    def close(self) -> None:
        self.conn.close()


def scrape(url: str) -> dict[tuple, float]:
    """A Prometheus endpoint's samples: {(name, sorted labels): value}."""
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def count(samples: dict, name: str, **labels) -> float:
    want = {k: str(v) for k, v in labels.items()}
    return sum(v for (n, ls), v in samples.items() if n == name and want.items() <= dict(ls).items())
