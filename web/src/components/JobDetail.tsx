// One job, live: timeline from WatchJob, timestamps and timings, the result chart, the error, its
// trace id and what explains its time or failure.
import { useEffect, useState } from "react";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Model } from "@gen/satlas/v1/analysis_service_pb.js";
import { stackConfig, traceLink, useClients } from "../api";
import { explain } from "../explain";
import { fmtSeconds, stateName, TERMINAL } from "../feed";
import { useWatchJob } from "../hooks";
import { ErrorBox, StateChip, StreamBadge } from "./Bits";
import { ResultChart } from "./Chart";

function time(t?: Timestamp): string {
  return t ? timestampDate(t).toLocaleTimeString(undefined, { hour12: false }) + "." + String(Math.floor(t.nanos / 1e6)).padStart(3, "0") : "–";
}

export function JobDetail({ jobId, models = [], compact = false }: { jobId: string; models?: Model[]; compact?: boolean }) {
  const { orchestrator } = useClients();
  const { job, full, timeline, status, error } = useWatchJob(jobId);
  const [cancelError, setCancelError] = useState<unknown>();
  const cancel = () =>
    orchestrator.cancelJob({ jobId }).then(
      () => setCancelError(undefined),
      (e) => setCancelError(e),
    );
  const chartJob = full && job && full.state === job.state ? full : undefined;
  const chartModel = chartJob && models.find((m) => m.name === chartJob.modelName);
  const p95 = useModelP95(job && TERMINAL.has(job.state) ? job.modelName : "");
  const why = job && explain(job, p95);
  const traceUrl = useTraceUrl();
  return (
    <section className={`panel job ${compact ? "compact" : ""}`} data-testid="job-detail">
      <h2>
        Job <span className="mono">{jobId}</span> <StreamBadge status={status} label="watch" />
      </h2>
      <ErrorBox error={error} />
      {job && (
        <>
          <p>
            {job.modelName} <StateChip state={job.state} /> attempts {job.attempts}
            {job.worker && <span className="muted"> · {job.worker}</span>}
            {!TERMINAL.has(job.state) && (
              <button className="small" onClick={cancel}>
                cancel
              </button>
            )}
          </p>
          <ErrorBox error={cancelError} context="CancelJob" />
          <ol className="timeline" aria-label="timeline">
            {timeline.map((e) => (
              <li key={String(e.version) + e.state} className={`s-${stateName(e.state).toLowerCase()}`}>
                {stateName(e.state)} <span className="muted small">v{String(e.version)} seen {e.seenAt.toLocaleTimeString(undefined, { hour12: false })}</span>
              </li>
            ))}
          </ol>
          <table className="kv">
            <tbody>
              <tr><th>created</th><td>{time(job.createTime)}</td><th>queued</th><td>{time(job.queueTime)}</td></tr>
              <tr><th>started</th><td>{time(job.startTime)}</td><th>ended</th><td>{time(job.endTime)}</td></tr>
              <tr><th>queue</th><td>{fmtSeconds(job.timings?.queueSeconds)}</td><th>inference</th><td>{fmtSeconds(job.timings?.inferenceSeconds)}</td></tr>
              <tr><th>total</th><td>{fmtSeconds(job.timings?.totalSeconds)}</td><th>series</th><td>{job.seriesId || "–"} ({job.seriesLength} points)</td></tr>
              <tr>
                <th>trace</th>
                <td colSpan={3} className="mono small" data-testid="trace-id" title="OpenTelemetry trace id: the job's spans in your trace viewer">
                  {traceUrl && job.traceId ? (
                    <a href={traceLink(traceUrl, job.traceId)} target="_blank" rel="noreferrer">
                      {job.traceId}
                    </a>
                  ) : (
                    job.traceId || "– (tracing off)"
                  )}
                </td>
              </tr>
            </tbody>
          </table>
          {why && (
            <p className="small" data-testid="job-explained">
              {why.summary} <span className="muted mono">({why.metric})</span>
            </p>
          )}
          {job.error && (
            <pre className="error" data-testid="job-error">
              {job.error}
            </pre>
          )}
          {chartJob?.result && (
            <>
              <ResultChart job={chartJob} model={chartModel} width={compact ? 420 : 640} height={compact ? 140 : 200} />
              {chartJob.result.anomalyScores.length > 0 && (
                <p>
                  anomaly score {chartJob.result.anomalyScore.toFixed(3)}
                  {tailShare(chartModel, chartJob.result.anomalyScore)}{" "}
                  {chartJob.result.anomalyFlag ? <span className="flag">anomalous</span> : "normal"} · model version{" "}
                  {chartJob.result.modelVersion || "–"}
                </p>
              )}
            </>
          )}
        </>
      )}
    </section>
  );
}

// A model with a calibrated score (it states its flag's false-positive rate) scores -log10 of the
// share of clean series that score as high: say that share in words.
export function tailShare(model: Model | undefined, score: number): string {
  if (!model?.parameters["anomaly_false_positive_rate"] || !(score >= 0)) return "";
  const share = Math.pow(10, -score);
  return share >= 0.01 ? ` (${(share * 100).toFixed(1)} % of clean series score as high)` : ` (1 clean series in ${Math.round(1 / share).toLocaleString("en")} scores as high)`;
}

// The model's p95 submit-to-done over the last minute, once (0 while unknown or unavailable).
function useModelP95(model: string): number {
  const { orchestrator } = useClients();
  const [p95, setP95] = useState(0);
  useEffect(() => {
    if (!model) return;
    let live = true;
    orchestrator.getStats({}).then(
      (s) => live && setP95(s.models.find((m) => m.modelName === model)?.latency?.p95 ?? 0),
      () => undefined, // an explanation without the comparison
    );
    return () => {
      live = false;
    };
  }, [model, orchestrator]);
  return p95;
}

// SATLAS_TRACE_URL, as the stack's Envoy serves it ("" when unset or unreachable).
function useTraceUrl(): string {
  const [url, setUrl] = useState("");
  useEffect(() => {
    let live = true;
    stackConfig().then((c) => live && setUrl(c.traceUrl));
    return () => {
      live = false;
    };
  }, []);
  return url;
}
