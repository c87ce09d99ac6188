// The live job feed (WatchJobs), filtered by model and state, bounded and throttled.
import { useState } from "react";
import { JobState } from "@gen/satlas/v1/job_state_pb.js";
import { ALL_STATES, fmtSeconds, stateName } from "../feed";
import { useJobFeed } from "../hooks";
import { JobLink, StateChip, StreamBadge } from "./Bits";

export function JobFeed({ models = [], max }: { models?: string[]; max?: number }) {
  const [model, setModel] = useState("");
  const [states, setStates] = useState<JobState[]>([]);
  const { rows, status, rate } = useJobFeed({ models: model ? [model] : [], states }, max);
  const toggle = (s: JobState) => setStates((cur) => (cur.includes(s) ? cur.filter((x) => x !== s) : [...cur, s]));
  return (
    <section className="panel feed">
      <h2>
        Live jobs <StreamBadge status={status} /> <span className="muted small">{rate.toFixed(0)} events/s</span>
      </h2>
      <div className="filters">
        <label>
          model{" "}
          <select aria-label="model filter" value={model} onChange={(e) => setModel(e.target.value)}>
            <option value="">all</option>
            {models.map((m) => (
              <option key={m}>{m}</option>
            ))}
          </select>
        </label>
        {ALL_STATES.map((s) => (
          <label key={s} className="check">
            <input type="checkbox" checked={states.includes(s)} onChange={() => toggle(s)} /> {stateName(s).toLowerCase()}
          </label>
        ))}
      </div>
      <div className="scroll">
        <table className="jobs">
          <thead>
            <tr>
              <th>job</th>
              <th>model</th>
              <th>state</th>
              <th>length</th>
              <th>queue</th>
              <th>inference</th>
              <th>total</th>
              <th>worker</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((j) => (
              <tr key={j.jobId} data-testid="feed-row">
                <td>
                  <JobLink id={j.jobId} />
                </td>
                <td>{j.modelName}</td>
                <td>
                  <StateChip state={j.state} />
                </td>
                <td>{j.seriesLength}</td>
                <td>{fmtSeconds(j.timings?.queueSeconds)}</td>
                <td>{fmtSeconds(j.timings?.inferenceSeconds)}</td>
                <td>{fmtSeconds(j.timings?.totalSeconds)}</td>
                <td className="small">{j.worker}</td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {rows.length === 0 && <p className="muted">no jobs yet</p>}
    </section>
  );
}
