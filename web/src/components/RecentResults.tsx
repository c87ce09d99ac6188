// The newest finished jobs with a chart each: the input and the forecast or the reconstruction.
import type { Model } from "@gen/satlas/v1/analysis_service_pb.js";
import { JobState } from "@gen/satlas/v1/job_state_pb.js";
import { fmtSeconds } from "../feed";
import { useRecentResults } from "../hooks";
import { ErrorBox, JobLink, StateChip } from "./Bits";
import { ResultChart } from "./Chart";

const SUCCEEDED = [JobState.SUCCEEDED];

export function RecentResults({ models = [], count = 6 }: { models?: Model[]; count?: number }) {
  const { jobs, error } = useRecentResults(SUCCEEDED, count);
  return (
    <section className="panel results">
      <h2>Recent results</h2>
      {error !== undefined && <ErrorBox error={error} context="ListJobs" />}
      <div className="cards">
        {jobs.map((j) => (
          <article key={j.jobId} className="card" data-testid="result-card">
            <header>
              <JobLink id={j.jobId} /> {j.modelName} <StateChip state={j.state} />{" "}
              <span className="muted small">{fmtSeconds(j.timings?.totalSeconds)}</span>
              {j.result?.anomalyFlag && <span className="flag">anomaly {j.result.anomalyScore.toFixed(2)}</span>}
            </header>
            <ResultChart job={j} model={models.find((m) => m.name === j.modelName)} width={360} height={120} />
          </article>
        ))}
      </div>
      {jobs.length === 0 && !error && <p className="muted">no results yet</p>}
    </section>
  );
}
