// Data hooks. Live data is throttled: stream events are buffered and handed to React at most
// every FLUSH_MS, lists are bounded, and polling stops while the component is gone.
import { useEffect, useRef, useState } from "react";
import { create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import type { Job } from "@gen/satlas/v1/job_pb.js";
import type { JobState } from "@gen/satlas/v1/job_state_pb.js";
import type { GetStatsResponse } from "@gen/satlas/v1/orchestrator_service_pb.js";
import type { Model } from "@gen/satlas/v1/analysis_service_pb.js";
import { useClients } from "./api";
import { mergeFeed, FEED_MAX, TERMINAL } from "./feed";
import { followStream, type StreamStatus } from "./stream";

export const FLUSH_MS = 250;

/** Runs `poll` now and `intervalMs` after each run ends, until unmounted or `deps` change. Its
 * error is returned (a success clears it), so the last good data stays on screen meanwhile. */
function usePoll(poll: (signal: AbortSignal) => Promise<void>, intervalMs: number, deps: unknown[]) {
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    const ac = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const run = async () => {
      try {
        await poll(ac.signal);
        if (!ac.signal.aborted) setError(undefined);
      } catch (err) {
        if (!ac.signal.aborted) setError(err);
      }
      if (!ac.signal.aborted) timer = setTimeout(run, intervalMs);
    };
    void run();
    return () => {
      ac.abort();
      clearTimeout(timer);
    };
    // `poll` is a new closure each render; what it reads is in `deps`.
  }, [intervalMs, ...deps]);
  return error;
}

/** GetStats polled every `intervalMs` over the last `windowSeconds` (short: a live view). */
export function useStats(intervalMs = 1000, windowSeconds = 10) {
  const { orchestrator } = useClients();
  const [stats, setStats] = useState<GetStatsResponse>();
  const [history, setHistory] = useState<number[]>([]);
  const error = usePoll(
    async (signal) => {
      const s = await orchestrator.getStats(
        { window: create(DurationSchema, { seconds: BigInt(windowSeconds) }) },
        { signal, timeoutMs: Math.max(intervalMs * 3, 3000) },
      );
      if (signal.aborted) return;
      setStats(s);
      setHistory((h) => [...h.slice(-119), s.throughput]);
    },
    intervalMs,
    [orchestrator, windowSeconds],
  );
  return { stats, error, history };
}

export type FeedFilter = { models: string[]; states: JobState[] };

/** The WatchJobs feed: newest `max` jobs, rendered at most every FLUSH_MS. */
export function useJobFeed(filter: FeedFilter, max = FEED_MAX) {
  const { orchestrator } = useClients();
  const [rows, setRows] = useState<Job[]>([]);
  const [status, setStatus] = useState<StreamStatus>({ state: "connecting", attempt: 0 });
  const [rate, setRate] = useState(0);
  const key = JSON.stringify(filter);
  useEffect(() => {
    const f = JSON.parse(key) as FeedFilter;
    const ac = new AbortController();
    let buffer: Job[] = [];
    let count = 0;
    let since = performance.now();
    setRows([]);
    const flush = setInterval(() => {
      if (buffer.length) {
        const batch = buffer;
        buffer = [];
        setRows((r) => mergeFeed(r, batch, max));
      }
      const now = performance.now();
      if (now - since >= 1000) {
        setRate((count * 1000) / (now - since));
        count = 0;
        since = now;
      }
    }, FLUSH_MS);
    void followStream(
      // Batched: at thousands of events a second, one message each costs the page, Envoy and the
      // orchestrator far more than the events themselves.
      ({ signal, onHeader }) =>
        orchestrator.watchJobs({ modelNames: f.models, states: f.states, batched: true }, { signal, onHeader }),
      {
        signal: ac.signal,
        onStatus: setStatus,
        onMessage: (m) => {
          for (const job of m.jobs.length ? m.jobs : m.job ? [m.job] : []) {
            count += 1;
            if (f.models.length && !f.models.includes(job.modelName)) continue;
            if (f.states.length && !f.states.includes(job.state)) continue;
            buffer.push(job);
          }
          // Only the newest `max` can be shown; drop older events if the page falls behind.
          if (buffer.length > max * 20) buffer = buffer.slice(-max * 10);
        },
      },
    );
    return () => {
      ac.abort();
      clearInterval(flush);
    };
  }, [orchestrator, key, max]);
  return { rows, status, rate };
}

export type TimelineEntry = { state: JobState; version: bigint; seenAt: Date };

/** WatchJob: the job as it changes, its timeline, and once it ends the full job (GetJob). */
export function useWatchJob(jobId: string) {
  const { orchestrator } = useClients();
  const [job, setJob] = useState<Job>();
  const [full, setFull] = useState<Job>();
  const [timeline, setTimeline] = useState<TimelineEntry[]>([]);
  const [status, setStatus] = useState<StreamStatus>({ state: "connecting", attempt: 0 });
  const [error, setError] = useState<unknown>();
  useEffect(() => {
    const ac = new AbortController();
    let last: Job | undefined;
    let entries: TimelineEntry[] = [];
    setJob(undefined);
    setFull(undefined);
    setTimeline([]);
    setError(undefined);
    const fetchFull = () =>
      orchestrator
        .getJob({ jobId }, { signal: ac.signal })
        .then((r) => !ac.signal.aborted && setFull(r.job))
        .catch((err) => !ac.signal.aborted && setError(err));
    void fetchFull();
    void followStream(({ signal, onHeader }) => orchestrator.watchJob({ jobId }, { signal, onHeader }), {
      signal: ac.signal,
      endIsFinal: () => last !== undefined && TERMINAL.has(last.state),
      onStatus: (s) => {
        setStatus(s);
        if (s.state === "failed") setError(s.error);
      },
      onMessage: (m) => {
        const j = m.job;
        if (!j || (last && j.version !== 0n && j.version <= last.version)) return;
        const prevState = last?.state;
        last = j;
        setJob(j);
        if (prevState !== j.state) {
          entries = [...entries, { state: j.state, version: j.version, seenAt: new Date() }];
          setTimeline(entries);
        }
        if (TERMINAL.has(j.state)) void fetchFull();
      },
    });
    return () => ac.abort();
  }, [orchestrator, jobId]);
  return { job: job ?? full, full, timeline, status, error };
}

/** ListModels once per mount. */
export function useModels() {
  const { analysis } = useClients();
  const [models, setModels] = useState<Model[]>();
  const [error, setError] = useState<unknown>();
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const ac = new AbortController();
    analysis
      .listModels({}, { signal: ac.signal, timeoutMs: 10_000 })
      .then((r) => !ac.signal.aborted && (setModels(r.models), setError(undefined)))
      .catch((err) => !ac.signal.aborted && setError(err));
    return () => ac.abort();
  }, [analysis, tick]);
  return { models, error, reload: () => setTick((t) => t + 1) };
}

/** The newest finished jobs (ListJobs, polled), each completed with its series (GetJob, cached). */
export function useRecentResults(states: JobState[], count = 6, intervalMs = 3000) {
  const { orchestrator } = useClients();
  const [jobs, setJobs] = useState<Job[]>([]);
  const cache = useRef(new Map<string, Job>());
  const key = states.join(",");
  const error = usePoll(
    async (signal) => {
      const list = await orchestrator.listJobs(
        { states: key ? key.split(",").map(Number) : [], pageSize: count },
        { signal, timeoutMs: 10_000 },
      );
      const out: Job[] = [];
      for (const j of list.jobs) {
        let full = cache.current.get(j.jobId);
        if (!full) {
          full = (await orchestrator.getJob({ jobId: j.jobId }, { signal })).job ?? j;
          cache.current.set(j.jobId, full);
        }
        out.push(full);
      }
      // Keep the cache as small as the list.
      for (const id of [...cache.current.keys()]) if (!out.some((j) => j.jobId === id)) cache.current.delete(id);
      if (!signal.aborted) setJobs(out);
    },
    intervalMs,
    [orchestrator, key, count],
  );
  return { jobs, error };
}

/** "#/jobs/ID" → "/jobs/ID". */
export function useHashRoute(): string {
  const read = () => window.location.hash.replace(/^#/, "") || "/";
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const on = () => setRoute(read());
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return route;
}
