"""The data simulator: its pure parts, then runs against a real stack (Triton, Valkey, the
services, a worker) in-process and as a process stopped by a signal."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import mesh_helpers
import numpy
import pytest
from satlas.v1 import job_state_pb2 as js
from satlas.v1 import orchestrator_service_pb2 as opb
from satlas.v1 import orchestrator_service_pb2_grpc as opb_grpc

from launcher.triton_local import free_port
from tools import patterns, simulator
from tools.simulator import Options, Summary

ROOT = Path(__file__).resolve().parents[2]
ITERATION = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}  iteration (\d+)  batch (\d+)$")
SERIES = re.compile(r"^  series (\d+)  (\w+)  length (\d+)  (\[.*\])$")
JOB = re.compile(r"^    (\w+) +job ([0-9a-f-]{36})$")
RESULT = re.compile(r"^\d\d:\d\d:\d\d\.\d{3}  result ([0-9a-f-]{36})  (\w+)  (\w+)  total [\d.]+ ms  "
                    r"inference [\d.]+ ms$")


# --- pure parts ------------------------------------------------------------------------------


def test_defaults_are_the_older_simulators(monkeypatch):
    monkeypatch.delenv("INGEST_ADDR", raising=False)
    monkeypatch.delenv("ORCHESTRATOR_ADDR", raising=False)
    o = simulator.parse_args([])
    assert (o.interval, o.random_interval, o.min_batch, o.max_batch, o.length) == (5.0, False, 1, 5, 20)
    assert o.patterns == ("linear", "seasonal", "random_walk", "exponential", "cyclical")
    assert o.models == ("vae_timeseries", "transformer_timeseries")
    assert (o.url, o.orchestrator) == ("127.0.0.1:50051", "127.0.0.1:50052")
    assert (o.duration, o.iterations, o.seed, o.follow) == (None, None, None, False)
    monkeypatch.setenv("INGEST_ADDR", "ingest:1")
    monkeypatch.setenv("ORCHESTRATOR_ADDR", "orch:2")
    o = simulator.parse_args(["--random-interval", "--patterns", "linear, seasonal", "--models", "a,b,c"])
    assert (o.url, o.orchestrator, o.random_interval) == ("ingest:1", "orch:2", True)
    assert o.patterns == ("linear", "seasonal") and o.models == ("a", "b", "c")


@pytest.mark.parametrize("argv", [["--min-batch", "4", "--max-batch", "3"], ["--min-batch", "0"],
                                  ["--patterns", "linear,sawtooth"], ["--length", "0"], ["--interval", "-1"],
                                  ["--models", ","]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as info:
        simulator.parse_args(argv)
    assert info.value.code == 2 and "error:" in capsys.readouterr().err


def test_random_interval_waits_spread_over_50_to_150_percent():
    rng = numpy.random.default_rng(1)
    waits = [simulator.next_wait(rng, Options(interval=4.0, random_interval=True)) for _ in range(5000)]
    assert 2.0 <= min(waits) < 2.1 and 5.9 < max(waits) <= 6.0
    assert 3.9 < sum(waits) / len(waits) < 4.1
    assert {simulator.next_wait(rng, Options(interval=4.0)) for _ in range(10)} == {4.0}


def plan(seed: int, o: Options, n: int = 20):
    rng = numpy.random.default_rng(seed)
    return [(simulator.plan_batch(rng, o), simulator.next_wait(rng, o)) for _ in range(n)]


def test_a_seed_reproduces_batches_series_and_waits():
    o = Options(min_batch=2, max_batch=4, length=32, random_interval=True, patterns=("seasonal", "cyclical"))
    first, again, other = plan(7, o), plan(7, o), plan(8, o)
    assert first == again and first != other
    sizes = [len(batch) for batch, _ in first]
    assert set(sizes) == {2, 3, 4}
    series = [s for batch, _ in first for s in batch]
    assert {p for p, _ in series} == {"seasonal", "cyclical"} and {len(v) for _, v in series} == {32}
    # The values are the patterns generator's, not something of the simulator's own.
    rng = numpy.random.default_rng(7)
    n = int(rng.integers(2, 5))
    pattern = o.patterns[int(rng.integers(2))]
    assert first[0][0][0] == (pattern, patterns.generate(pattern, 32, rng).values.tolist()) and n == sizes[0]


def test_sample_shows_the_start_and_the_end_of_a_series():
    assert simulator.sample([15.321, 16.889, 22.0, 30.1, 35.214]) == "[15.32, 16.89, ..., 35.21]"
    assert simulator.sample([1, 2.5, 3, 4]) == "[1.00, 2.50, 3.00, 4.00]"
    assert simulator.sample([-0.2951, 0.01, 0.2, 0.3, 0.0678]) == "[-0.295, 0.010, ..., 0.068]"
    assert simulator.sample([]) == "[]"


@pytest.mark.parametrize("fields, code", [({}, 0), ({"pending": 3}, 0), ({"rejected": 1}, 1), ({"failed": 1}, 1),
                                          ({"unanswered": 1}, 1), ({"unreachable": True}, 2)])
def test_exit_code(fields, code):
    assert Summary(accepted=10, succeeded=10, **fields).exit_code == code


def test_an_unreachable_ingest_exits_2():
    lines = []
    code = simulator.main(["--url", f"127.0.0.1:{free_port()}", "--connect-timeout", "0.5", "--iterations", "1"],
                          out=lines.append)
    assert code == 2 and any("cannot reach the ingest" in line for line in lines)


# --- against a real stack --------------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(shared_stack):
    return shared_stack


@pytest.fixture(scope="module")
def orchestrator(stack):
    with grpc.insecure_channel(stack.orchestrator) as channel:
        yield opb_grpc.OrchestratorServiceStub(channel)


def run(stack, *args: str) -> tuple[int, list[str]]:
    lines: list[str] = []
    code = simulator.main(["--url", stack.ingest, "--orchestrator", stack.orchestrator, *args], out=lines.append)
    return code, "\n".join(lines).splitlines()


def summary_of(lines: list[str]) -> dict[str, str]:
    at = lines.index("summary:")
    return {line[:18].strip(): line[18:].strip() for line in lines[at + 1:]}


def total_jobs(stack) -> int:
    return mesh_helpers.total_jobs(stack.database_url)  # GetStats may answer from its 1 s cache


def parse_series(lines: list[str]) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(pattern, sample, [(model, job id)]) for every series printed."""
    found = []
    for line in lines:
        if m := SERIES.match(line):
            found.append((m[2], m[4], []))
        elif m := JOB.match(line):
            found[-1][2].append((m[1], m[2]))
    return found


def test_follow_run_submits_every_series_to_both_models_and_reports_every_result(stack, orchestrator):
    code, lines = run(stack, "--interval", "0.05", "--iterations", "5", "--min-batch", "2", "--max-batch", "3",
                      "--follow", "--seed", "7")
    text = "\n".join(lines)
    assert code == 0, text
    assert lines[0] == "Satlas data simulator"
    for expected in ("interval     0.05 s, random interval (50-150 %) off", "batch        2-3 series per iteration",
                     "models       vae_timeseries, transformer_timeseries", "seed         7", "length       20",
                     f"target       ingest {stack.ingest}", "patterns     linear, seasonal, random_walk"):
        assert expected in text
    iterations = [(int(m[1]), int(m[2])) for line in lines if (m := ITERATION.match(line))]
    assert [n for n, _ in iterations] == [1, 2, 3, 4, 5] and {b for _, b in iterations} <= {2, 3}
    series = parse_series(lines)
    assert len(series) == sum(b for _, b in iterations)
    ids = {}
    for pattern, shown, jobs in series:
        assert [m for m, _ in jobs] == ["vae_timeseries", "transformer_timeseries"], (pattern, jobs)
        for model, job_id in jobs:
            job = orchestrator.GetJob(opb.GetJobRequest(job_id=job_id), timeout=10).job
            assert job.state == js.JOB_STATE_SUCCEEDED and job.model_name == model, job
            # What was printed is what was sent.
            assert job.labels["pattern"] == pattern and simulator.sample(job.series.values) == shown
            ids[job_id] = model
    results = {m[1]: (m[2], m[3]) for line in lines if (m := RESULT.match(line))}
    assert results == {job_id: (model, "SUCCEEDED") for job_id, model in ids.items()}
    s = summary_of(lines)
    assert (s["iterations"], s["series sent"], s["jobs accepted"], s["series rejected"]) == (
        "5", str(len(series)), str(len(ids)), "0")
    assert s["results"] == f"succeeded {len(ids)}  failed 0  pending 0"
    # The same seed gives the same batches and series.
    code, again = run(stack, "--interval", "0.05", "--iterations", "5", "--min-batch", "2", "--max-batch", "3",
                      "--seed", "7", "--quiet")
    assert code == 0 and not parse_series(again)  # --quiet prints no series
    code, again = run(stack, "--interval", "0.05", "--iterations", "5", "--min-batch", "2", "--max-batch", "3",
                      "--seed", "7")
    assert code == 0 and [(p, v) for p, v, _ in parse_series(again)] == [(p, v) for p, v, _ in series]


def test_an_unknown_model_is_rejected_and_the_exit_code_says_so(stack, orchestrator):
    before = total_jobs(stack)
    code, lines = run(stack, "--interval", "0.05", "--iterations", "2", "--models", "vae_timeseries,no_such_model")
    assert code == 1
    rejections = [line for line in lines if line.strip().startswith("rejected: INVALID_ARGUMENT")]
    assert rejections and all("no_such_model" in line for line in rejections)
    s = summary_of(lines)
    assert (s["jobs accepted"], s["series rejected"]) == ("0", str(len(parse_series(lines))))
    assert total_jobs(stack) == before


def count_iterations(lines: list[str]) -> int:
    return sum(bool(ITERATION.match(line)) for line in list(lines))


def test_a_restarted_ingest_breaks_the_stream_and_the_simulator_carries_on(stack, orchestrator):
    before = total_jobs(stack)
    lines, stop = [], threading.Event()
    sim = simulator.Simulator(Options(url=stack.ingest, interval=0.1, min_batch=1, max_batch=2, seed=3), lines.append,
                              stop)
    worker = threading.Thread(target=lambda: setattr(sim, "result", sim.run()))
    worker.start()
    time.sleep(1.5)
    stack.restart("ingest")  # a graceful stop: the server cancels the open stream
    after = count_iterations(lines)
    deadline = time.monotonic() + 30
    while count_iterations(lines) < after + 3 and time.monotonic() < deadline:
        time.sleep(0.2)  # until a few iterations have gone through the new ingest
    stop.set()
    worker.join(30)
    text = "\n".join(lines)
    assert sim.result.exit_code == 0 and sim.result.unanswered == 0, text
    assert "ingest stream broken" in text and count_iterations(lines) >= after + 3, text
    ids = [job_id for _, _, jobs in parse_series(text.splitlines()) for _, job_id in jobs]
    assert len(ids) == len(set(ids)) == sim.result.accepted == 2 * sim.result.series
    # Requests resent on the new stream kept their idempotency keys: no job was created twice.
    assert total_jobs(stack) - before == len(ids)


@pytest.mark.parametrize("how", ["duration", signal.SIGINT, signal.SIGTERM], ids=["duration", "sigint", "sigterm"])
def test_the_process_stops_with_a_summary(stack, how):
    duration = "1" if how == "duration" else "120"
    proc = subprocess.Popen([sys.executable, "-m", "tools.simulator", "--url", stack.ingest, "--orchestrator",
                             stack.orchestrator, "--interval", "0.1", "--duration", duration, "--follow"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: [lines.append(line) for line in proc.stdout], daemon=True)
    reader.start()
    started = time.monotonic()
    try:
        if how != "duration":
            while sum(bool(ITERATION.match(x)) for x in lines) < 3 and time.monotonic() - started < 60:
                time.sleep(0.1)
            proc.send_signal(how)
        code = proc.wait(30)
    finally:
        proc.kill()
    reader.join(5)
    lines = [x.rstrip("\n") for x in lines]
    text = "\n".join(lines)
    assert code == 0, text
    s = summary_of(lines)
    assert int(s["iterations"]) >= 3 if how != "duration" else 5 <= int(s["iterations"]) <= 12
    assert s["results"] == f"succeeded {s['jobs accepted']}  failed 0  pending 0", text
    if how == "duration":
        assert 1.0 <= float(s["elapsed"].split()[0]) < 4, text
    else:
        assert "stopping" in text and time.monotonic() - started < 60
