// The live feed's state, kept small: the newest `max` jobs, one row per job, a row replaced only
// by a newer version of its job. Events are buffered and merged in batches (see useJobFeed).
import type { Job } from "@gen/satlas/v1/job_pb.js";
import { JobState } from "@gen/satlas/v1/job_state_pb.js";

export const FEED_MAX = 200;

/** Merges a batch of events (oldest first) into rows (newest first). */
export function mergeFeed(rows: readonly Job[], batch: readonly Job[], max = FEED_MAX): Job[] {
  if (batch.length === 0) return rows as Job[];
  const known = new Map<string, bigint>();
  for (const r of rows) known.set(r.jobId, r.version);
  const latest = new Map<string, Job>();
  for (const j of batch) {
    const seen = latest.get(j.jobId)?.version ?? known.get(j.jobId);
    if (seen !== undefined && j.version <= seen && j.version !== 0n) continue;
    latest.delete(j.jobId); // re-insert so that map order is "last changed last"
    latest.set(j.jobId, j);
  }
  if (latest.size === 0) return rows as Job[];
  const fresh = [...latest.values()].reverse();
  const out = fresh.slice(0, max);
  for (const r of rows) {
    if (out.length >= max) break;
    if (!latest.has(r.jobId)) out.push(r);
  }
  return out;
}

export const TERMINAL = new Set([JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED]);

export function stateName(s: JobState): string {
  return (JobState[s] ?? String(s)).toString();
}

export const ALL_STATES: JobState[] = [
  JobState.PENDING,
  JobState.QUEUED,
  JobState.RUNNING,
  JobState.SUCCEEDED,
  JobState.FAILED,
  JobState.CANCELLED,
];

export function fmtSeconds(s: number | undefined): string {
  if (s === undefined || !Number.isFinite(s) || s <= 0) return "–";
  return s < 1 ? `${(s * 1000).toFixed(1)} ms` : `${s.toFixed(2)} s`;
}

export function fmtRate(r: number): string {
  return `${(r * 100).toFixed(1)} %`;
}
