// Totals, success rate, throughput, latency per model, queue depth and workers (GetStats ~1/s).
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { GetStatsResponse } from "@gen/satlas/v1/orchestrator_service_pb.js";
import { fmtRate, fmtSeconds } from "../feed";
import { useStats } from "../hooks";
import { ErrorBox } from "./Bits";
import { LineChart } from "./Chart";

export function Overview({ intervalMs = 1000 }: { intervalMs?: number }) {
  const { stats, error, history } = useStats(intervalMs);
  return (
    <section className="panel overview">
      <h2>Overview</h2>
      {error !== undefined && <ErrorBox error={error} context="GetStats" />}
      {stats ? <StatsView stats={stats} history={history} /> : !error && <p className="muted">loading…</p>}
    </section>
  );
}

export function StatsView({ stats, history = [] }: { stats: GetStatsResponse; history?: number[] }) {
  const t = stats.totals;
  const win = stats.window ? Number(stats.window.seconds) : 10;
  return (
    <>
      <div className="tiles">
        <Tile label="jobs" value={String(t?.total ?? 0n)} />
        <Tile label="succeeded" value={String(t?.succeeded ?? 0n)} />
        <Tile label="failed" value={String(t?.failed ?? 0n)} />
        <Tile label="cancelled" value={String(t?.cancelled ?? 0n)} />
        <Tile label={`success rate (${win} s)`} value={fmtRate(stats.successRate)} />
        <Tile label={`throughput (${win} s)`} value={`${stats.throughput.toFixed(1)} jobs/s`} />
        <Tile label={`latency p50 / p95 (${win} s)`} value={`${fmtSeconds(stats.latency?.p50)} / ${fmtSeconds(stats.latency?.p95)}`} />
        <Tile label="queue depth" value={String(stats.queueDepth)} />
        <Tile label="running" value={String(t?.running ?? 0n)} />
        <Tile label="active workers" value={String(stats.activeWorkers)} />
      </div>
      {history.length > 1 && (
        <LineChart lines={[{ values: history, className: "input", label: "throughput (jobs/s)" }]} width={600} height={60} title="throughput history" />
      )}
      <table className="models-stats">
        <thead>
          <tr>
            <th>model</th>
            <th>total</th>
            <th>succeeded</th>
            <th>failed</th>
            <th>success rate</th>
            <th>throughput</th>
            <th>p50</th>
            <th>p95</th>
            <th>p99</th>
            <th>mean inference</th>
          </tr>
        </thead>
        <tbody>
          {stats.models.map((m) => (
            <tr key={m.modelName}>
              <td>{m.modelName}</td>
              <td>{String(m.totals?.total ?? 0n)}</td>
              <td>{String(m.totals?.succeeded ?? 0n)}</td>
              <td>{String(m.totals?.failed ?? 0n)}</td>
              <td>{fmtRate(m.successRate)}</td>
              <td>{m.throughput.toFixed(1)}/s</td>
              <td>{fmtSeconds(m.latency?.p50)}</td>
              <td>{fmtSeconds(m.latency?.p95)}</td>
              <td>{fmtSeconds(m.latency?.p99)}</td>
              <td>{fmtSeconds(m.meanInferenceSeconds)}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {stats.computeTime && <p className="muted small">computed {timestampDate(stats.computeTime).toLocaleTimeString()}</p>}
    </>
  );
}

function Tile({ label, value }: { label: string; value: string }) {
  return (
    <div className="tile">
      <div className="value">{value}</div>
      <div className="label">{label}</div>
    </div>
  );
}
