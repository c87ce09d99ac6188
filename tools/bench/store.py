"""The orchestrator's job store alone: milliseconds per 2-job submission for each write.

    python -m tools.bench.store                                   # SQLite in a temporary dir
    python -m tools.bench.store --database-url postgresql://postgres@127.0.0.1:5432/test

Each round stores one length-64 series for both models, then marks the jobs queued, starts
them and reports their results: the four transactions every submission costs.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from satlas.internal.v1 import job_control_service_pb2 as jc
from satlas.v1 import job_pb2

from orchestrator_svc import db, migrate
from orchestrator_svc.store import JobStore


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args(argv)
    url = args.database_url or f"sqlite:///{tempfile.mkdtemp(prefix='satlas-store-')}/jobs.db"
    migrate.upgrade(url)
    store = JobStore(db.make_engine(url))
    submission = jc.Submission(models=["vae_timeseries", "transformer_timeseries"])
    submission.series.values.extend(float(i) for i in range(64))
    result = job_pb2.JobResult(predictions=[1.0] * 64, anomaly_scores=[0.1] * 64, anomaly_score=0.3,
                               model_version="1")
    spent = dict.fromkeys(("create", "queued", "start", "report"), 0.0)
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        (ids,), _, _ = store.create_jobs([submission])
        t1 = time.perf_counter()
        store.mark_queued(ids)
        t2 = time.perf_counter()
        store.start_jobs(ids, "bench")
        t3 = time.perf_counter()
        store.report_results([jc.JobOutcome(job_id=j, result=result, inference_seconds=0.01) for j in ids])
        t4 = time.perf_counter()
        for key, dt in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            spent[key] += dt
    per = {k: v / args.rounds * 1000 for k, v in spent.items()}
    print(f"{url.split(':')[0]}: " + "  ".join(f"{k} {v:.2f} ms" for k, v in per.items())
          + f"  total {sum(per.values()):.2f} ms per submission")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
