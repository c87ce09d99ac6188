// A tiny SVG line chart: a few lines on one x axis (point index), optional point markers.
import type { Job } from "@gen/satlas/v1/job_pb.js";
import type { Model } from "@gen/satlas/v1/analysis_service_pb.js";

export type Line = { values: number[]; start?: number; className: string; label: string };
export type Marker = { x: number; y: number };
// A shaded interval between two lines of one length (a forecast's lowest and highest quantile).
export type Band = { lower: number[]; upper: number[]; start?: number; label: string };

export function LineChart(props: { lines: Line[]; markers?: Marker[]; bands?: Band[]; width?: number; height?: number; title?: string }) {
  const { lines, markers = [], bands = [], width = 420, height = 140, title } = props;
  const pad = 4;
  let xMax = 1;
  let yMin = Infinity;
  let yMax = -Infinity;
  for (const l of [...lines, ...bands.flatMap((b) => [{ values: b.lower, start: b.start }, { values: b.upper, start: b.start }])]) {
    xMax = Math.max(xMax, (l.start ?? 0) + l.values.length - 1);
    for (const v of l.values) {
      if (v < yMin) yMin = v;
      if (v > yMax) yMax = v;
    }
  }
  if (!Number.isFinite(yMin)) return <svg className="chart empty" width={width} height={height} role="img" aria-label={title ?? "no data"} />;
  if (yMax === yMin) {
    yMax += 1;
    yMin -= 1;
  }
  const sx = (x: number) => pad + ((width - 2 * pad) * x) / xMax;
  const sy = (y: number) => height - pad - ((height - 2 * pad) * (y - yMin)) / (yMax - yMin);
  const path = (l: { values: number[]; start?: number }) =>
    l.values.map((v, i) => `${i ? "L" : "M"}${sx((l.start ?? 0) + i).toFixed(1)},${sy(v).toFixed(1)}`).join("");
  // Along the upper edge, back along the lower one.
  const area = (b: Band) =>
    path({ values: b.upper, start: b.start }) +
    b.lower
      .map((v, i) => ({ v, x: (b.start ?? 0) + i }))
      .reverse()
      .map(({ v, x }) => `L${sx(x).toFixed(1)},${sy(v).toFixed(1)}`)
      .join("") +
    "Z";
  return (
    <figure className="chart">
      <svg width={width} height={height} viewBox={`0 0 ${width} ${height}`} role="img" aria-label={title ?? "chart"}>
        {bands.map((b) => (
          <path key={b.label} d={area(b)} className="band" data-label={b.label} />
        ))}
        {lines.map((l) => (
          <path key={l.label} d={path(l)} className={`line ${l.className}`} data-label={l.label} />
        ))}
        {markers.map((m) => (
          <circle key={m.x} cx={sx(m.x)} cy={sy(m.y)} r={3.5} className="marker" data-testid="anomaly" />
        ))}
      </svg>
      <figcaption>
        {lines.map((l) => (
          <span key={l.label} className={`legend ${l.className}`}>
            {l.label}
          </span>
        ))}
        {bands.map((b) => (
          <span key={b.label} className="legend band">
            {b.label}
          </span>
        ))}
        {markers.length > 0 && <span className="legend marker">anomalous ({markers.length})</span>}
      </figcaption>
    </figure>
  );
}

/** The per-point score past which a point is marked: the model's own point threshold, where it
 * gives one (the series score is then on another scale, a calibrated tail probability). */
export function anomalyThreshold(model?: Model): number | undefined {
  for (const key of ["point_anomaly_threshold", "anomaly_threshold"]) {
    const t = Number(model?.parameters[key]);
    if (Number.isFinite(t) && t > 0) return t;
  }
  return undefined;
}

/**
 * The input series with the model's output: a forecast continues after the last point; a
 * reconstruction (a model that returns per-point anomaly scores, or whose task says so) lies
 * over the last points, which are right-aligned per the model repository's convention, with
 * points past the anomaly threshold marked.
 */
export function resultLines(job: Job, model?: Model): { lines: Line[]; markers: Marker[]; bands: Band[] } {
  const input = job.series?.values ?? [];
  const r = job.result;
  const lines: Line[] = [{ values: input, className: "input", label: "input" }];
  const markers: Marker[] = [];
  const bands: Band[] = [];
  if (!r) return { lines, markers, bands };
  const n = input.length;
  const preds = r.predictions;
  const reconstruction = r.anomalyScores.length > 0 || model?.task === "reconstruction";
  if (reconstruction) {
    if (preds.length) lines.push({ values: preds, start: Math.max(0, n - preds.length), className: "output", label: "reconstruction" });
    const threshold = anomalyThreshold(model);
    const scores = r.anomalyScores;
    const start = n - scores.length;
    let best = -1;
    scores.forEach((s, i) => {
      if (threshold !== undefined && s > threshold && start + i >= 0) markers.push({ x: start + i, y: input[start + i] });
      if (best < 0 || s > scores[best]) best = i;
    });
    // Without a known threshold, mark the worst point of a series the model flagged.
    if (threshold === undefined && r.anomalyFlag && best >= 0 && start + best >= 0) markers.push({ x: start + best, y: input[start + best] });
  } else if (preds.length) {
    const joined = (values: number[]) => (n ? [input[n - 1], ...values] : values);
    lines.push({ values: joined(preds), start: n ? n - 1 : 0, className: "output", label: "forecast" });
    const q = r.quantiles; // lowest level first
    if (q.length >= 2) {
      const [low, high] = [q[0], q[q.length - 1]];
      const pct = (level: number) => `${Math.round(level * 100)}`;
      bands.push({ lower: joined(low.values), upper: joined(high.values), start: n ? n - 1 : 0, label: `${pct(high.level - low.level)} % interval (q${pct(low.level)}–q${pct(high.level)})` });
    }
  }
  return { lines, markers, bands };
}

export function ResultChart({ job, model, width, height }: { job: Job; model?: Model; width?: number; height?: number }) {
  const { lines, markers, bands } = resultLines(job, model);
  return <LineChart lines={lines} markers={markers} bands={bands} width={width} height={height} title={`${job.modelName} result`} />;
}
