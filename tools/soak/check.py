"""The soak's verdict: the producers' and watchers' record held against the database.

- every accepted job has its row in ``inference_results`` (one: the job id is its key), in a
  terminal state, none stuck;
- every answer for an idempotency key carries the same job ids, and ``submissions`` agrees;
- every FAILED job says why;
- no job reached SUCCEEDED in two versions in any watcher's history. Events are delivered at
  least once across faults (README): a repeat of the same version is counted, not a fault, and
  watchers drop it by ``version``.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict

import sqlalchemy as sa
from satlas.v1 import job_state_pb2 as js

from orchestrator_svc.db import make_engine
from tools.soak.load import Record

TERMINAL_STATUS = {"completed", "failed", "cancelled"}
CHUNK = 900


def rows(engine, table: str, column: str, keys: list[str], fields: str) -> list[sa.Row]:
    out = []
    with engine.connect() as conn:
        for i in range(0, len(keys), CHUNK):
            query = sa.text(f"SELECT {fields} FROM {table} WHERE {column} IN :keys").bindparams(
                sa.bindparam("keys", expanding=True))
            out += conn.execute(query, {"keys": keys[i:i + CHUNK]}).all()
    return out


def job_rows(engine, job_ids: list[str]) -> dict[str, sa.Row]:
    return {r.job_id: r for r in rows(engine, "inference_results", "job_id", job_ids, "job_id, status, error")}


def drain(database_url: str, job_ids: list[str], timeout: float, say) -> float:
    """Waits until every job is terminal in the database (or ``timeout``); the seconds it took."""
    engine = make_engine(database_url)
    began = time.monotonic()
    left = list(job_ids)
    try:
        while left:
            try:
                found = job_rows(engine, left)
            except sa.exc.OperationalError as exc:  # the database restarting
                say(f"drain: database not answering ({str(exc).splitlines()[0]})")
                found = {}
            left = [j for j in left if j not in found or found[j].status not in TERMINAL_STATUS]
            if not left or time.monotonic() - began > timeout:
                break
            say(f"drain: {len(left)} jobs not finished yet")
            time.sleep(2.0)
    finally:
        engine.dispose()
    return time.monotonic() - began


def verdict(record: Record, database_url: str) -> dict:
    accepted = record.accepted_jobs()
    job_ids = sorted(accepted)
    engine = make_engine(database_url)
    try:
        found = job_rows(engine, job_ids)
        keys = sorted({s.key for s in accepted.values()})
        stored = {r.idempotency_key: tuple(json.loads(r.job_ids) if isinstance(r.job_ids, str) else r.job_ids)
                  for r in rows(engine, "submissions", "idempotency_key", keys, "idempotency_key, job_ids")}
    finally:
        engine.dispose()
    lost = [j for j in job_ids if j not in found]
    stuck = [j for j in job_ids if j in found and found[j].status not in TERMINAL_STATUS]
    statuses = Counter(found[j].status for j in job_ids if j in found)
    failed_silent = [j for j in job_ids if j in found and found[j].status == "failed" and not (found[j].error or "")]
    reasons = Counter((found[j].error or "").split("\n")[0][:100] for j in job_ids
                      if j in found and found[j].status == "failed")

    subs = list(record.submissions.values())
    key_mismatch = [s.key for s in subs if len(set(s.answers)) > 1 or (s.answers and s.key in stored
                                                                       and stored[s.key] != s.answers[0])]
    unanswered = [s.key for s in subs if not s.answers and not s.rejected]
    rejected = Counter(s.rejected.split(":")[0] for s in subs if s.rejected)

    watchers = {}
    for name, events in record.events.items():
        versions: dict[str, set] = defaultdict(set)
        seen: Counter = Counter()
        for e in events:
            if e.job_id in accepted:
                seen[(e.job_id, e.version)] += 1
                if e.state == js.JOB_STATE_SUCCEEDED:
                    versions[e.job_id].add(e.version)
        watchers[name] = {
            "terminal_events": sum(seen.values()),
            "jobs_seen": len({j for j, _ in seen}),
            "succeeded_twice": sorted(j for j, v in versions.items() if len(v) > 1),
            "repeated_same_version": sum(n - 1 for n in seen.values()),
        }
    doubled = sorted({j for w in watchers.values() for j in w["succeeded_twice"]})
    return {
        "requests": len(subs), "resent_on_purpose": sum(len(s.answers) > 1 for s in subs),
        "retried_requests": sum(s.tries > 1 for s in subs), "unanswered_requests": len(unanswered),
        "rejected_requests": dict(rejected), "accepted_jobs": len(job_ids), "statuses": dict(statuses),
        "lost": lost, "stuck": stuck, "doubled": doubled, "key_mismatch": key_mismatch,
        "failed_without_reason": failed_silent, "failure_reasons": dict(reasons.most_common(12)),
        "watchers": watchers,
        # The soak sends only valid requests: any refusal but "not now" is a fault of the mesh.
        "ok": not (lost or stuck or doubled or key_mismatch or failed_silent or unanswered or rejected),
    }
