"""What the mesh benchmark measures: one paced run of submissions against a stack (BatchSubmitSeries
calls, or a StreamSeries stream), timed on WatchJobs, with the CPU each process used and the
backlog over time.

The calls run on one grpc.aio event loop in a thread of its own (``io``) and the main thread only
waits, so Ctrl-C and SIGTERM are taken at once (a main thread blocked inside a gRPC call would not
run Python's signal handlers); ``STOP`` ends every paced run early. This process shares the mesh's
cores, so it is kept light: with the sync API's threads it used over a third of a core at 3,000
jobs/s, most of it in thread hand-offs per message (31,000 context switches a second).
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import ingest_service_pb2_grpc as ipb_grpc
from satlas.v1 import job_state_pb2 as js
from satlas.v1 import orchestrator_service_pb2 as opb
from satlas.v1 import orchestrator_service_pb2_grpc as opb_grpc

from satkit import client
from satkit.jobs import DEFAULT_MODELS, TERMINAL_STATES, watched
from tools import patterns

MODELS = DEFAULT_MODELS
STOP = threading.Event()  # set on Ctrl-C/SIGTERM: paced runs end early
GENERATOR = "bench client"  # this process, in the CPU figures: shown, never counted in the mesh's total
_loop: asyncio.AbstractEventLoop | None = None


def io(coro) -> "asyncio.Future":
    """Runs ``coro`` on the benchmark's event loop (started on first use); a concurrent future."""
    global _loop
    if _loop is None:
        _loop = asyncio.new_event_loop()
        threading.Thread(target=_loop.run_forever, daemon=True, name="bench-io").start()
    return asyncio.run_coroutine_threadsafe(coro, _loop)


def wait_for(future) -> None:
    """Waits in short steps, so that a signal reaches the main thread's handler."""
    while not future.done():
        try:
            future.result(0.2)
        except TimeoutError:
            pass


@dataclass
class Run:
    offered_jobs_s: float
    seconds: float
    jobs: int
    succeeded: int
    failed: int
    unfinished: int  # accepted, but no terminal event by the end of the drain (still queued or running)
    rejected: int
    throughput_jobs_s: float  # terminal jobs per second, first submit to last completion
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    cpu_ms_per_job: dict[str, float] = field(default_factory=dict)  # by process, this load generator included
    # Accepted and not yet finished, sampled each second while offering: a backlog that grows
    # (growth in jobs/s, a straight line fitted over the second half) means the mesh is behind.
    backlog: list[int] = field(default_factory=list)
    backlog_growth_jobs_s: float = 0.0
    # Where the latency went: p50 and p95 ms of each stage of the SUCCEEDED jobs (see STAGES).
    stages_ms: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.jobs if self.jobs else 0.0


# A job's way from the producer to its event, cut by the timestamps the orchestrator stamps on it
# (wall clocks: the first and last stage include any skew between this machine and the stack's).
STAGES = {
    "ingest": "sent -> created: the stream, the ingest's batching, CreateJobs and its commit",
    "dispatch": "created -> queued: waiting for a Celery message to fill or for the gap, the publish",
    "broker": "queued -> started: on the broker until a worker's StartJobs committed",
    "run": "started -> ended: the worker's Triton requests, ReportResults and its commit",
    "triton": "the job's own Triton request (its inference_seconds; it may begin before the start commits)",
    "event": "ended -> its WatchJobs event here",
}


class Completions:
    """Terminal events from WatchJobs: job_id -> (arrival time, state); for SUCCEEDED jobs also
    their timestamps (``stamps``: arrival, created, queued, started, ended, wall clock; inference s)."""

    def __init__(self, address: str, door: dict | None = None):
        """``door``: client.channel's ``token`` and ``ca`` (through Envoy), else the defaults."""
        self.done: dict[str, tuple[float, int]] = {}
        self.stamps: dict[str, tuple[float, ...]] = {}
        io(self._subscribe(address, door or {})).result(30)  # subscribed from here on

    async def _subscribe(self, address: str, door: dict) -> None:
        self.channel, metadata = client.aio_channel(address, **door)
        stub = opb_grpc.OrchestratorServiceStub(self.channel)
        # Batched: a message per job cost the orchestrator and this process, on the mesh's cores, more
        # than the job in it (at 3,000 offered: 0.27 -> 0.20 and 0.22 -> 0.13 ms of CPU a job).
        self.call = stub.WatchJobs(opb.WatchJobsRequest(states=sorted(TERMINAL_STATES), batched=True),
                                   metadata=metadata)
        await self.call.initial_metadata()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for event in self.call:
                arrived, wall = time.perf_counter(), time.time()
                for job in watched(event):
                    if job.job_id in self.done:
                        continue
                    self.done[job.job_id] = (arrived, job.state)
                    if job.state == js.JOB_STATE_SUCCEEDED:
                        self.stamps[job.job_id] = (
                            wall, *(t.seconds + t.nanos * 1e-9 for t in (job.create_time, job.queue_time,
                                                                          job.start_time, job.end_time)),
                            job.timings.inference_seconds)
        except (grpc.RpcError, asyncio.CancelledError):
            pass

    def close(self) -> None:
        async def close():
            self.call.cancel()
            await self.channel.close()
            await asyncio.gather(self.reader, return_exceptions=True)

        io(close()).result(10)


def make_series(n: int, length: int, seed: int = 0) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [patterns.random_series(rng, length=length).values.tolist() for _ in range(n)]


class CpuMeter:
    """CPU seconds (user + system) used by each of a stack's process groups and by this process:
    where the time per job goes. Each service runs in its own process group (launcher.supervise),
    so a group is a service with its children (the worker's pool, Triton's backend stubs)."""

    def __init__(self, groups: dict[str, int], commands: dict[str, str] | None = None):
        self.groups = {pgid: name for name, pgid in groups.items()}
        self.commands = {comm: name for name, comm in (commands or {}).items()}  # servers not started here
        self.tick = os.sysconf("SC_CLK_TCK")

    def read(self) -> dict[str, float]:
        used = dict.fromkeys([*self.groups.values(), *self.commands.values()], 0.0)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                comm, _, rest = (entry / "stat").read_text().partition(" (")[2].rpartition(")")
                fields = rest.split()
            except OSError:  # gone meanwhile
                continue
            # After the command: pgrp is field 2; utime, stime, and the same of reaped children 11-14.
            name = self.groups.get(int(fields[2])) or self.commands.get(comm)
            if name:
                used[name] += sum(map(int, fields[11:15])) / self.tick
        me = os.times()
        return used | {GENERATOR: me.user + me.system}

    @staticmethod
    def per_job(before: dict[str, float], after: dict[str, float], jobs: int) -> dict[str, float]:
        """ms per job of each process group; ``total`` is the mesh's: every one but this load generator."""
        if not jobs:
            return {}
        per = {n: round(1000 * (after[n] - before.get(n, 0.0)) / jobs, 3) for n in after}
        mesh = sum(v for n, v in per.items() if n != GENERATOR)
        return dict(sorted(per.items(), key=lambda kv: -kv[1])) | {"total": round(mesh, 3)}


def progress_line(label: str, elapsed_s: float, total_s: float, submitted: int, done: int, failed: int,
                  done_per_s: float) -> str:
    """One step's state: ``300 jobs/s   12.5/60 s  submitted 3750  done 3602  failed 0  298.4 done/s``."""
    clock = f"{elapsed_s:5.1f}/{total_s:.0f} s" + (" (draining)" if elapsed_s > total_s else "")
    return (f"{label}  {clock}  submitted {submitted}  done {done}  failed {failed}  "
            f"{done_per_s:.1f} done/s")


class Progress:
    """A step's progress: one line rewritten in place on a terminal, a plain line every
    ``every_s`` otherwise (a log, a pipe). ``done/s`` is over the last interval."""

    def __init__(self, label: str, total_s: float, stream=None, every_s: float | None = None):
        self.label, self.total_s = label, total_s
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty()
        self.every_s = every_s if every_s is not None else (0.5 if self.tty else 5.0)
        self._last: tuple[float, int] | None = None  # (time, done) of the last update

    def update(self, elapsed_s: float, submitted: int, done: int, failed: int, now: float | None = None) -> str:
        now = time.perf_counter() if now is None else now
        last_t, last_done = self._last or (now - elapsed_s, 0)
        rate = (done - last_done) / (now - last_t) if now > last_t else 0.0
        self._last = (now, done)
        line = progress_line(self.label, elapsed_s, self.total_s, submitted, done, failed, rate)
        self.stream.write(f"\r\033[K{line}" if self.tty else line + "\n")
        self.stream.flush()
        return line

    def close(self) -> None:
        """Clears the in-place line, so what is printed next starts on a clean line."""
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()


def schedule(series: list[list[float]], per_s: float, total: int):
    """(sequence, when it is due (perf_counter), submission) of ``total`` submissions (one job per
    model each) at ``per_s`` series a second, paced open-loop from the first; ``series`` taken in
    turn, each built into a submission once."""
    submissions = [ipb.SubmitSeriesRequest(series={"values": v}, models=MODELS) for v in series]
    start = time.perf_counter()
    for i in range(total):
        yield i, start + i / per_s, submissions[i % len(submissions)]


def paced_requests(series: list[list[float]], per_s: float, total: int, sent_at: dict[int, float] | None = None,
                   stop: threading.Event | None = None):
    """The requests of ``schedule``, each when it is due (for a sync stream); ``sent_at`` gets each
    one's hand-off time, ``stop`` ends early."""
    stop = stop or threading.Event()
    for i, due, submission in schedule(series, per_s, total):
        delay = due - time.perf_counter()
        if stop.wait(delay) if delay > 0 else stop.is_set():
            return
        if sent_at is not None:
            sent_at[i] = time.perf_counter()
        yield ipb.StreamSeriesRequest(sequence=i, submission=submission)


def gathered(series: list[list[float]], per_s: float, total: int, gap_s: float, most: int = 1000):
    """The submissions of ``schedule`` in batches, as a producer that sends what is due at most once
    per ``gap_s`` (and at once after a quieter spell): (due times by sequence, BatchSubmitSeries
    request), each when its first is due."""
    items = schedule(series, per_s, total)
    held = next(items, None)
    last = float("-inf")
    while held is not None:
        wait = max(held[1], last + gap_s) - time.perf_counter()
        if wait > 0:
            yield wait, None
            continue
        batch, held, now = [held], None, time.perf_counter()
        for item in items:
            if item[1] > now or len(batch) == most:
                held = item
                break
            batch.append(item)
        last = now
        yield {i: due for i, due, _ in batch}, ipb.BatchSubmitSeriesRequest(requests=[s for _, _, s in batch])


def backlog_growth(samples: list[int]) -> float:
    """Jobs per second by which the backlog grew over the second half of the samples (one a second)."""
    half = samples[len(samples) // 2:]
    if len(half) < 2:
        return 0.0
    return float(np.polyfit(np.arange(len(half)), half, 1)[0])


class Tally:
    """How many of ``accepted`` (ids, a list that only grows) have ended in ``done``, and how many of
    those did not succeed: counted as they end, not by looking at every id each time."""

    def __init__(self, accepted: list[str], done: dict[str, tuple[float, int]]):
        self.accepted, self.done = accepted, done
        self.seen, self.pending, self.ended, self.failed = 0, [], 0, 0

    def update(self) -> tuple[int, int]:
        """(ended, failed) now."""
        n = len(self.accepted)
        self.pending.extend(self.accepted[self.seen:n])
        self.seen = n
        still = []
        for j in self.pending:
            end = self.done.get(j)
            if end is None:
                still.append(j)
            else:
                self.ended += 1
                self.failed += end[1] != js.JOB_STATE_SUCCEEDED
        self.pending = still
        return self.ended, self.failed


def offered_run(ingest_addr: str, completions: Completions, jobs_per_s: float, seconds: float,
                series: list[list[float]], drain_s: float = 30.0, progress: Progress | None = None,
                cpu: CpuMeter | None = None, door: dict | None = None, batch_gap_s: float = 0.0) -> Run:
    """``batch_gap_s`` 0: one StreamSeries stream, a message per series, each timed from when it
    was handed to the stream; else BatchSubmitSeries calls of what is due, at most one per that
    gap, each series timed from when it was due (its wait in the producer counts)."""
    per_series = len(MODELS)
    rate = jobs_per_s / per_series  # series per second
    total = max(1, int(rate * seconds))
    sent_at: dict[int, float] = {}
    job_sent: dict[str, float] = {}
    accepted: list[str] = []  # job ids in arrival order; read by the ticker thread (appends are atomic)
    rejected = [0]
    backlog: list[int] = []
    cpu_before = cpu.read() if cpu else {}
    start = time.perf_counter()
    ticking = threading.Event()

    def tick() -> None:
        every = progress.every_s if progress else 1.0
        next_sample = start + 1.0
        tally = Tally(accepted, completions.done)
        while not ticking.wait(min(every, 1.0)):
            ended, failed = tally.update()
            if time.perf_counter() >= next_sample and time.perf_counter() - start <= seconds:
                backlog.append(len(accepted) - ended)
                next_sample += 1.0
            if progress:
                progress.update(time.perf_counter() - start, len(sent_at) * per_series, ended, failed)

    async def send(call) -> None:
        """Paced open-loop from the first: a slow mesh does not slow the producer down."""
        for i, due, submission in schedule(series, rate, total):
            if (delay := due - time.perf_counter()) > 0:
                await asyncio.sleep(delay)
            if STOP.is_set():
                break
            sent_at[i] = time.perf_counter()  # handed off
            await call.write(ipb.StreamSeriesRequest(sequence=i, submission=submission))
        await call.done_writing()

    async def submit(stub, metadata, due: dict[int, float], request) -> None:
        try:
            response = await stub.BatchSubmitSeries(request, timeout=seconds + 120, metadata=metadata)
        except grpc.aio.AioRpcError:
            rejected[0] += len(due)
            return
        for i, answer in zip(due, response.responses):
            for job_id in answer.job_ids:
                job_sent[job_id] = due[i]
                accepted.append(job_id)

    async def batches() -> None:
        """Open-loop too: each call is answered in a task of its own, so a slow one holds up no other."""
        channel, metadata = client.aio_channel(ingest_addr, **(door or {}))
        calls: set[asyncio.Task] = set()
        async with channel:
            stub = ipb_grpc.IngestServiceStub(channel)
            for due, request in gathered(series, rate, total, batch_gap_s):
                if request is None:
                    await asyncio.sleep(due)
                    continue
                if STOP.is_set():
                    break
                sent_at.update(due)
                call = asyncio.create_task(submit(stub, metadata, due, request))
                calls.add(call)
                call.add_done_callback(calls.discard)
            await asyncio.gather(*calls)

    async def read(call) -> None:
        async for r in call:
            if r.HasField("error"):
                rejected[0] += 1
            for job_id in r.job_ids:
                job_sent[job_id] = sent_at[r.sequence]
                accepted.append(job_id)

    async def stream() -> None:
        channel, metadata = client.aio_channel(ingest_addr, **(door or {}))
        async with channel:
            call = ipb_grpc.IngestServiceStub(channel).StreamSeries(timeout=seconds + 120, metadata=metadata)
            await asyncio.gather(send(call), read(call))

    ticker = threading.Thread(target=tick, daemon=True)
    ticker.start()
    sender = io(batches() if batch_gap_s else stream())
    try:
        wait_for(sender)
        if sender.exception() is not None:  # what was accepted before is still measured
            print(f"the stream ended early: {sender.exception()!r}", file=sys.stderr, flush=True)
        drain(completions, job_sent, drain_s)
    except BaseException:
        STOP.set()  # the paced writes end, so the stream does
        try:
            sender.result(5)
        except Exception:
            sender.cancel()
        raise
    finally:
        ticking.set()
        ticker.join()
        if progress:
            progress.close()
    ends = {j: completions.done[j] for j in job_sent if j in completions.done}
    cpu_used = CpuMeter.per_job(cpu_before, cpu.read(), len(ends)) if cpu else {}
    first = min(sent_at.values(), default=start)
    run = _run(jobs_per_s, seconds, job_sent, ends, first, rejected[0], cpu_used, backlog)
    # Taken out as they are used: one Completions serves every run of a benchmark (460,000 jobs by default).
    stamps = {j: completions.stamps.pop(j) for j in job_sent if j in completions.stamps}
    run.stages_ms = stage_latencies(job_sent, stamps, time.time() - time.perf_counter())
    return run


def stage_latencies(job_sent: dict[str, float], stamps: dict[str, tuple[float, ...]],
                    wall_offset: float) -> dict[str, dict[str, float]]:
    """p50 and p95 ms of each of STAGES over the jobs in both (``job_sent``: perf_counter times;
    ``wall_offset``: time.time() - time.perf_counter())."""
    rows = [(wall_offset + sent, *stamps[j]) for j, sent in job_sent.items() if j in stamps]
    if not rows:
        return {}
    sent, arrived, created, queued, started, ended, inference = np.array(rows).T
    # A job a worker started before its QUEUED mark committed has no queue time (the mark applies only
    # to PENDING jobs): it counts in neither stage around it, rather than as 56 years on the broker.
    queued[queued == 0] = np.nan
    spans = {"ingest": created - sent, "dispatch": queued - created, "broker": started - queued,
             "run": ended - started, "triton": inference, "event": arrived - ended}
    return {name: {q: _ms(v, p) for q, p in (("p50", 50), ("p95", 95))} for name, v in spans.items()}


def _ms(seconds: np.ndarray, percent: float) -> float:
    """The percentile in ms of the values there are (NaN: none)."""
    there = seconds[~np.isnan(seconds)]
    return float(np.percentile(there, percent) * 1000) if there.size else float("nan")


def stages_line(stages: dict[str, dict[str, float]]) -> str:
    return ", ".join(f"{name} {v['p50']:.1f}/{v['p95']:.1f}" for name, v in stages.items())


def drain(completions: Completions, job_sent: dict[str, float], drain_s: float) -> None:
    """Until every sent job has ended, for at most ``drain_s``."""
    deadline = time.perf_counter() + drain_s
    tally = Tally(list(job_sent), completions.done)
    while tally.update()[0] < len(job_sent) and time.perf_counter() < deadline and not STOP.is_set():
        time.sleep(0.05)


def _run(jobs_per_s: float, seconds: float, job_sent: dict[str, float], ends: dict[str, tuple[float, int]],
         first: float, rejected: int, cpu_used: dict[str, float], backlog: list[int]) -> Run:
    latencies = np.array([(t - job_sent[j]) * 1000 for j, (t, state) in ends.items() if state == js.JOB_STATE_SUCCEEDED])
    last = max((t for t, _ in ends.values()), default=first)
    p50, p95, p99, worst = (np.percentile(latencies, [50, 95, 99, 100]) if latencies.size else (0.0,) * 4)
    return Run(
        offered_jobs_s=jobs_per_s, seconds=seconds, jobs=len(job_sent),
        succeeded=int(latencies.size), failed=sum(s != js.JOB_STATE_SUCCEEDED for _, s in ends.values()),
        unfinished=len(job_sent) - len(ends), rejected=rejected,
        throughput_jobs_s=len(ends) / (last - first) if last > first else 0.0,
        p50_ms=float(p50), p95_ms=float(p95), p99_ms=float(p99), max_ms=float(worst), cpu_ms_per_job=cpu_used,
        backlog=backlog, backlog_growth_jobs_s=round(backlog_growth(backlog), 2),
    )
