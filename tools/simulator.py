"""Data simulator: keeps producing synthetic series and submitting them to IngestService.

    python -m tools.simulator --interval 1 --random-interval --follow

Each iteration sends min..max series (one of the tools.patterns each) for every model over one
long-lived StreamSeries call and prints the job ids; --follow also prints each job's result as it
ends (OrchestratorService.WatchJobs). Ctrl-C, SIGTERM, --duration or --iterations stop it with a
summary. Exit status: 0; 1 if a series was rejected or got no answer, or a job failed; 2 if the
ingest could not be reached.
"""

from __future__ import annotations

import argparse
import itertools
import math
import secrets
import signal
import sys
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import grpc
import numpy
from google.rpc import code_pb2
from satlas.v1 import ingest_service_pb2 as ipb
from satlas.v1 import ingest_service_pb2_grpc as ipb_grpc
from satlas.v1 import orchestrator_service_pb2_grpc as opb_grpc

from satkit import client
from satkit.jobs import DEFAULT_MODELS
from satkit.settings import INGEST_ADDR, ORCHESTRATOR_ADDR
from tools import display, inputs, patterns
from tools.streams import Stream, Watcher, now_text

CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.min_reconnect_backoff_ms", 1000),
                   ("grpc.max_reconnect_backoff_ms", 2000)]  # gRPC's default backoff grows to minutes


@dataclass(frozen=True)
class Options:
    interval: float = 5.0
    random_interval: bool = False
    min_batch: int = 1
    max_batch: int = 5
    url: str = INGEST_ADDR.default
    orchestrator: str = ORCHESTRATOR_ADDR.default
    patterns: tuple[str, ...] = patterns.PATTERNS
    length: int = 20
    models: tuple[str, ...] = DEFAULT_MODELS
    duration: float | None = None
    iterations: int | None = None
    seed: int | None = None
    follow: bool = False
    quiet: bool = False
    drain: float = 10.0
    connect_timeout: float = 10.0
    ca: str | None = None  # None: SATLAS_CA (see satkit.client)
    token: str | None = None  # None: SATLAS_TOKEN, else the local token file


@dataclass
class Summary:
    iterations: int = 0
    series: int = 0
    accepted: int = 0  # jobs
    rejected: int = 0  # series
    unanswered: int = 0  # series with no answer when the drain ended
    succeeded: int = 0
    failed: int = 0  # FAILED or CANCELLED
    pending: int = 0  # followed jobs with no result when the drain ended
    elapsed_s: float = 0.0
    followed: bool = False
    unreachable: bool = False

    @property
    def exit_code(self) -> int:
        return 2 if self.unreachable else 1 if self.rejected or self.failed or self.unanswered else 0

    def text(self) -> str:
        secs = max(self.elapsed_s, 1e-9)
        rows = [("iterations", self.iterations), ("series sent", self.series), ("jobs accepted", self.accepted),
                ("series rejected", self.rejected)] + [("unanswered", self.unanswered)] * bool(self.unanswered)
        if self.followed:
            rows.append(("results", f"succeeded {self.succeeded}  failed {self.failed}  pending {self.pending}"))
        rows += [("elapsed", f"{self.elapsed_s:.2f} s"),
                 ("rate", f"{self.series / secs:.1f} series/s, {self.accepted / secs:.1f} jobs/s")]
        return "\n".join(["summary:", *(f"  {k:<16}{v}" for k, v in rows)])


def next_wait(rng: numpy.random.Generator, o: Options) -> float:
    return o.interval * float(rng.uniform(0.5, 1.5)) if o.random_interval else o.interval


def plan_batch(rng: numpy.random.Generator, o: Options) -> list[tuple[str, list[float]]]:
    """One iteration's (pattern, values) pairs; the same rng state gives the same batch."""
    batch = []
    for _ in range(int(rng.integers(o.min_batch, o.max_batch + 1))):
        pattern = o.patterns[int(rng.integers(len(o.patterns)))]
        batch.append((pattern, patterns.generate(pattern, o.length, rng).values.tolist()))
    return batch


def sample(values, head: int = 2, tail: int = 1) -> str:
    """[15.32, 16.89, ..., 35.21]: a glimpse of the series, one precision for all of it."""
    top = max((abs(v) for v in values), default=0.0)
    digits = max(2, 2 - math.floor(math.log10(top))) if top else 2  # small scales keep 3 digits
    shown = [*values[:head], None, *values[-tail:]] if len(values) > head + tail + 1 else values
    return "[" + ", ".join("..." if v is None else f"{v:.{digits}f}" for v in shown) + "]"


def error_lines(e: ipb.SubmitError) -> list[str]:
    name = code_pb2.Code.Name(e.code) if e.code in code_pb2.Code.values() else str(e.code)
    extra = [f"  {v.field}: {v.description}" for v in e.field_violations if v.description not in e.message]
    return [f"rejected: {name}: {e.message}", *extra]


def result_line(job) -> str:
    t = job.timings
    return (f"{display.state_time(job)}  result {job.job_id}  {job.model_name}  {display.state_name(job.state)}"
            f"  total {display.ms(t.total_seconds)}  inference {display.ms(t.inference_seconds)}"
            + (f"  error: {job.error}" if job.error else ""))


@dataclass
class Block:
    """One iteration's output, printed whole once every series in it has its answer."""
    header: str
    series: list  # per series: (lines, a problem?), None until answered
    job_ids: list = field(default_factory=list)


class Simulator:
    def __init__(self, options: Options, out: Callable[[str], None] = print, stop: threading.Event | None = None):
        self.o, self.out, self.stop = options, out, stop or threading.Event()
        self.seed = options.seed if options.seed is not None else secrets.randbelow(2**31)
        self.rng = numpy.random.default_rng(self.seed)
        self.run_id = uuid.uuid4().hex[:12]  # idempotency keys must differ between runs, seeded or not
        self.lock = threading.RLock()  # also the watcher's: counts and printed lines stay in step
        self.summary = Summary(followed=options.follow)
        self.blocks: OrderedDict[int, Block] = OrderedDict()
        self.sent: dict[int, tuple[int, int, str, list[float]]] = {}  # sequence -> iteration, index, pattern, values
        self.watcher: Watcher | None = None

    def say(self, text: str) -> None:
        with self.lock:
            self.out(text)

    def banner(self) -> str:
        o = self.o
        stops = [f"{o.iterations} iterations"] * (o.iterations is not None)
        stops += [f"{o.duration:g} s"] if o.duration is not None else []
        rows = [("target", f"ingest {o.url} (StreamSeries)"),
                ("interval", f"{o.interval:g} s, random interval (50-150 %) {'on' if o.random_interval else 'off'}"),
                ("batch", f"{o.min_batch}-{o.max_batch} series per iteration"), ("models", ", ".join(o.models)),
                ("patterns", ", ".join(o.patterns)), ("length", o.length), ("seed", self.seed),
                ("stops after", " or ".join([*stops, "Ctrl-C"]))]
        rows += [("results", f"followed via orchestrator {o.orchestrator}")] * o.follow
        return "\n".join(["Satlas data simulator", *(f"  {k:<13}{v}" for k, v in rows)])

    def run(self) -> Summary:
        o, start = self.o, time.monotonic()
        self.say(self.banner())
        with client.channel(o.url, CHANNEL_OPTIONS, ca=o.ca, token=o.token) as ingest, \
                client.channel(o.orchestrator, CHANNEL_OPTIONS, ca=o.ca, token=o.token) as orchestrator:
            try:
                grpc.channel_ready_future(ingest).result(timeout=o.connect_timeout)
            except grpc.FutureTimeoutError:
                self.say(f"error: cannot reach the ingest at {o.url} (waited {o.connect_timeout:g} s)")
                self.summary.unreachable = True
                return self.summary
            if o.follow:  # subscribed before the first submission, so few results need catching up
                self.watcher = Watcher(opb_grpc.OrchestratorServiceStub(orchestrator), o.models, self.lock,
                                       self._result, self.say)
                self.watcher.thread.start()
            stream = Stream(ipb_grpc.IngestServiceStub(ingest), self._answer, self.say)
            stream.thread.start()
            try:
                self._loop(stream, start)
            except KeyboardInterrupt:  # in-process callers without a signal handler
                pass
            if self.stop.is_set():
                self.say(f"{now_text()}  stopping; waiting up to {o.drain:g} s for what is outstanding")
            deadline = time.monotonic() + o.drain
            self._flush(stream.close(deadline - time.monotonic()))
            if self.watcher:
                self.summary.pending = self.watcher.drain(deadline)
        self.summary.elapsed_s = time.monotonic() - start
        self.say(self.summary.text())
        return self.summary

    def _loop(self, stream: Stream, start: float) -> None:
        o, sequence, caught_up = self.o, itertools.count(1), time.monotonic()
        while not self.stop.is_set() and (o.duration is None or time.monotonic() - start < o.duration):
            batch = plan_batch(self.rng, o)
            with self.lock:
                self.summary.iterations += 1
                n = self.summary.iterations
                self.blocks[n] = Block(f"{now_text()}  iteration {n}  batch {len(batch)}", [None] * len(batch))
            for i, (pattern, values) in enumerate(batch):
                seq = next(sequence)
                with self.lock:  # before sending: the answer can come back at once
                    self.sent[seq] = (n, i, pattern, values)
                    self.summary.series += 1
                key = f"sim-{self.run_id}-{seq}"
                series = {"values": values, "series_id": key, "labels": {"pattern": pattern}}
                stream.send(ipb.StreamSeriesRequest(sequence=seq, submission=ipb.SubmitSeriesRequest(
                    series=series, models=o.models, idempotency_key=key)))
            if self.watcher and time.monotonic() - caught_up > 5:
                self.watcher.catch_up(5.0)
                caught_up = time.monotonic()
            if o.iterations is not None and n >= o.iterations:
                return
            wait = next_wait(self.rng, o)
            self.stop.wait(wait if o.duration is None else min(wait, max(0.0, start + o.duration - time.monotonic())))

    def _series_line(self, i: int, pattern: str, values: list[float], text: str) -> str:
        return f"  series {i + 1}  {pattern}  length {len(values)}  {text}"

    def _answer(self, request: ipb.StreamSeriesRequest, response: ipb.StreamSeriesResponse) -> None:
        with self.lock:
            n, i, pattern, values = self.sent.pop(request.sequence)
            lines = [self._series_line(i, pattern, values, sample(values))]
            models = request.submission.models
            if bad := response.HasField("error"):
                self.summary.rejected += 1
                lines += [f"    {line}" for line in error_lines(response.error)]
            else:
                self.summary.accepted += len(response.job_ids)
                width = max(map(len, models))
                lines += [f"    {m:<{width}}  job {j}" for m, j in zip(models, response.job_ids)]
                self.blocks[n].job_ids += response.job_ids
            self.blocks[n].series[i] = (lines, bad)
            while self.blocks and None not in next(iter(self.blocks.values())).series:
                self._print(self.blocks.popitem(last=False)[1])

    def _flush(self, unanswered: list[int]) -> None:
        with self.lock:
            self.summary.unanswered = len(unanswered)
            for seq in unanswered:
                n, i, pattern, values = self.sent.pop(seq)
                self.blocks[n].series[i] = ([self._series_line(i, pattern, values, "no answer")], True)
            while self.blocks:
                self._print(self.blocks.popitem(last=False)[1])

    def _print(self, block: Block) -> None:
        shown = [line for lines, bad in block.series for line in lines if bad or not self.o.quiet]
        for line in [block.header, *shown] if shown or not self.o.quiet else []:
            self.out(line)
        if self.watcher:  # only now, so that no result is printed before its job id
            self.watcher.expect(block.job_ids)

    def _result(self, job) -> None:
        ok = job.state == display.JobState.JOB_STATE_SUCCEEDED
        self.summary.succeeded += ok
        self.summary.failed += not ok
        if not (ok and self.o.quiet):
            self.out(result_line(job))


def build_parser() -> argparse.ArgumentParser:
    d = Options()
    p = argparse.ArgumentParser(prog="python -m tools.simulator", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--interval", type=float, default=d.interval, help="seconds between iterations (default 5)")
    p.add_argument("--random-interval", action="store_true", help="each wait is 50-150 %% of --interval")
    p.add_argument("--min-batch", type=int, default=d.min_batch, help="fewest series per iteration (default 1)")
    p.add_argument("--max-batch", type=int, default=d.max_batch, help="most series per iteration (default 5)")
    p.add_argument("--url", default=INGEST_ADDR.read(), help="IngestService host:port [INGEST_ADDR]")
    p.add_argument("--orchestrator", default=ORCHESTRATOR_ADDR.read(),
                   help="OrchestratorService host:port, for --follow [ORCHESTRATOR_ADDR]")
    p.add_argument("--patterns", type=inputs.split_models, default=d.patterns,
                   help=f"comma-separated; each series picks one (default: {','.join(patterns.PATTERNS)}; the "
                        f"models never trained on {','.join(patterns.HELD_OUT_SHAPES)})")
    p.add_argument("--length", type=int, default=d.length, help="points per series (default 20)")
    p.add_argument("--models", type=inputs.split_models, default=d.models, help="comma-separated (default: both)")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--iterations", type=int, help="stop after this many iterations")
    p.add_argument("--seed", type=int, help="reproducible series, batch sizes and waits (default: random, shown)")
    p.add_argument("--follow", action="store_true", help="print each job's result as it ends")
    p.add_argument("--quiet", action="store_true", help="only the banner, problems and the summary")
    p.add_argument("--drain", type=float, default=d.drain, help="seconds to wait for outstanding work on stop")
    p.add_argument("--connect-timeout", type=float, default=d.connect_timeout, help="seconds to reach the ingest")
    client.add_arguments(p)
    return p


def parse_args(argv: list[str] | None = None) -> Options:
    parser = build_parser()
    a = parser.parse_args(argv)
    unknown = sorted(set(a.patterns) - set(patterns.ALL_SHAPES))
    problems = [f"unknown patterns {unknown}; known: {', '.join(patterns.ALL_SHAPES)}"] * bool(unknown)
    problems += ["--min-batch must be at least 1 and at most --max-batch"] * (not 1 <= a.min_batch <= a.max_batch)
    problems += ["--interval, --drain and --connect-timeout must not be negative"] * (
        min(a.interval, a.drain, a.connect_timeout) < 0)
    problems += ["--length must be at least 1"] * (a.length < 1) + ["--models is empty"] * (not a.models)
    problems += ["--patterns is empty"] * (not a.patterns)
    if problems:
        parser.error("; ".join(problems))
    return Options(**{k: tuple(v) if isinstance(v, list) else v for k, v in vars(a).items()})


def main(argv: list[str] | None = None, out: Callable[[str], None] | None = None) -> int:
    options = parse_args(argv)
    stop, previous = threading.Event(), {}
    if threading.current_thread() is threading.main_thread():  # signal.signal works nowhere else
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    try:
        return Simulator(options, out or (lambda line: print(line, flush=True)), stop).run().exit_code
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
