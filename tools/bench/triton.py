"""Benchmark Triton alone: inferences/s and latency per model, series length and concurrency.

    python -m tools.bench.triton                      # starts a local Triton on free ports
    python -m tools.bench.triton --url 127.0.0.1:8001 # or measures a running one

Each cell runs ``concurrency`` clients that send ``rows`` series per request (``--rows``; 1 by
default, more as the rows of one [rows, length] request, the layout the worker uses), back to
back, over gRPC (tritonclient's asyncio client) for ``--duration`` seconds after a warm-up.
Throughput and ``requests`` count series (inferences), latency is per request. Prints a
table, writes JSON, and checks that dynamic batching pays: at length 64, concurrency 32 must
give at least 3x the throughput of concurrency 1 (exit code 1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio

from launcher.triton_local import LocalTriton, TritonSettings, free_port
from satkit.jobs import DEFAULT_MODELS
from satkit.settings import load
from tools import patterns

MODELS = DEFAULT_MODELS
BATCHING_TARGET = 3.0  # concurrency 32 vs 1 at length 64


@dataclass
class Cell:
    model: str
    length: int
    concurrency: int
    requests: int
    seconds: float
    throughput: float  # inferences per second
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    rows: int = 1  # series per request


async def run_cell(url: str, model: str, length: int, concurrency: int, duration: float, warmup: float,
                   rows: int = 1) -> Cell:
    return await run_mix(url, [model], length, concurrency, duration, warmup, rows)


async def run_mix(url: str, models: list[str], length: int, concurrency: int, duration: float, warmup: float,
                  rows: int = 1) -> Cell:
    """Each client sends one request to every model at once and waits for all (with several
    models, the mesh's mix: each serves as many series as the others); latency is per round."""
    client = grpcaio.InferenceServerClient(url)
    rng = np.random.default_rng(length)
    series = [patterns.random_series(rng, length=length).values.astype(np.float32) for _ in range(64)]
    rounds: list[float] = []
    errors = 0

    async def worker(k: int, until: float, record: bool) -> None:
        nonlocal errors
        i = k
        while time.perf_counter() < until:
            batch = np.stack([series[(i + r) % len(series)] for r in range(rows)])
            i += concurrency * rows
            inputs = []
            for _ in models:
                inp = grpcaio.InferInput("values", [rows, length], "FP32")
                inp.set_data_from_numpy(batch)
                inputs.append(inp)
            started = time.perf_counter()
            answers = await asyncio.gather(*(client.infer(m, [x], client_timeout=30) for m, x in zip(models, inputs)),
                                           return_exceptions=True)
            if any(isinstance(a, Exception) for a in answers):
                errors += record
            elif record:
                rounds.append(time.perf_counter() - started)

    try:
        await asyncio.gather(*(worker(k, time.perf_counter() + warmup, False) for k in range(concurrency)))
        started = time.perf_counter()
        await asyncio.gather(*(worker(k, started + duration, True) for k in range(concurrency)))
        elapsed = time.perf_counter() - started
    finally:
        await client.close()
    lat = np.array(rounds) * 1000 if rounds else np.array([np.nan])
    done = len(rounds) * rows * len(models)
    return Cell("+".join(models), length, concurrency, done, round(elapsed, 3), done / elapsed,
                float(np.percentile(lat, 50)), float(np.percentile(lat, 95)), float(np.percentile(lat, 99)),
                errors * rows * len(models), rows)


def table(cells: list[Cell]) -> str:
    rows = [f"{'model':<24}{'length':>7}{'conc':>6}{'infer/s':>10}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}"]
    for c in cells:
        rows.append(f"{c.model:<24}{c.length:>7}{c.concurrency:>6}{c.throughput:>10.0f}{c.p50_ms:>9.2f}"
                    f"{c.p95_ms:>9.2f}{c.p99_ms:>9.2f}{c.errors:>8}")
    return "\n".join(rows)


def batching_gains(cells: list[Cell]) -> dict[str, float]:
    by = {(c.model, c.length, c.concurrency): c.throughput for c in cells}
    return {m: by[(m, 64, 32)] / by[(m, 64, 1)] for m in {c.model for c in cells}
            if (m, 64, 32) in by and (m, 64, 1) in by}


def local_settings() -> TritonSettings:
    """The TRITON_* settings, on free ports with a work dir of its own: beside a running stack."""
    return replace(load(TritonSettings), work_dir=Path(tempfile.mkdtemp(prefix="bench-triton-")),
                   http_port=free_port(), grpc_port=free_port(), metrics_port=free_port())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="gRPC address of a running Triton (default: start a local one)")
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--rows", type=int, default=1, help="series per request")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds measured per cell")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--json", type=Path, default=Path("bench-results/triton.json"))
    args = parser.parse_args(argv)

    server = None
    settings = None
    if not args.url:
        settings = local_settings()
        server = LocalTriton(settings).start()
    url = args.url or settings.grpc_url
    try:
        cells = []
        for model in args.models:
            for length in args.lengths:
                for conc in args.concurrency:
                    cell = asyncio.run(run_cell(url, model, length, conc, args.duration, args.warmup, args.rows))
                    print(f"  {model} length {length} concurrency {conc}: {cell.throughput:.0f}/s", flush=True)
                    cells.append(cell)
        config = grpcclient.InferenceServerClient(url).get_model_config(args.models[0]).config
    finally:
        if server:
            server.stop()

    gains = batching_gains(cells)
    print()
    print(table(cells))
    print()
    ok = True
    for model, gain in sorted(gains.items()):
        passed = gain >= BATCHING_TARGET
        ok &= passed
        print(f"dynamic batching, {model}, length 64: concurrency 32 = {gain:.1f}x concurrency 1 "
              f"(target >= {BATCHING_TARGET:.0f}x) {'PASS' if passed else 'FAIL'}")
    report = {
        "command": "python -m tools.bench.triton " + " ".join(argv or []),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "triton": {"url": url, "local": server is not None,
                   "max_queue_delay_us": config.dynamic_batching.max_queue_delay_microseconds,
                   "instances": sum(g.count for g in config.instance_group)},
        "cells": [asdict(c) for c in cells],
        "batching_gain_length_64": gains,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
