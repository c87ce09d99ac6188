// Paste a series or generate one of the five patterns, pick models, SubmitSeries, follow the jobs.
import { useState } from "react";
import type { Model } from "@gen/satlas/v1/analysis_service_pb.js";
import { useClients } from "../api";
import { generate, parseValues, PATTERNS, type Pattern } from "../patterns";
import { ErrorBox } from "./Bits";
import { JobDetail } from "./JobDetail";
import { LineChart } from "./Chart";

export const FALLBACK_MODELS = ["vae_timeseries", "transformer_timeseries"];

export function Submit({ models }: { models?: Model[] }) {
  const { ingest } = useClients();
  const names = models?.length ? models.map((m) => m.name) : FALLBACK_MODELS;
  const [text, setText] = useState("");
  const [pattern, setPattern] = useState<Pattern>("seasonal");
  const [length, setLength] = useState(64);
  const [chosen, setChosen] = useState<string[]>(names);
  const [seriesId, setSeriesId] = useState("");
  const [horizon, setHorizon] = useState(""); // "": each forecasting model's whole horizon
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>();
  const [jobIds, setJobIds] = useState<string[]>([]);
  const { values, bad } = parseValues(text);

  // An empty or out-of-range length field generates the nearest sensible length.
  const gen = () => {
    const n = Math.min(4096, Math.max(2, Math.round(length) || 64));
    setText(generate(pattern, n).map((v) => Number(v.toPrecision(6))).join(", "));
  };
  const toggle = (m: string) => setChosen((c) => (c.includes(m) ? c.filter((x) => x !== m) : [...c, m]));
  const submit = async (e: React.FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      const res = await ingest.submitSeries({
        series: { values, seriesId, labels: { source: "web" } },
        models: names.filter((m) => chosen.includes(m)),
        idempotencyKey: crypto.randomUUID?.() ?? String(Math.random()),
        horizon: Math.max(0, Math.round(Number(horizon)) || 0),
      });
      setJobIds(res.jobIds);
    } catch (err) {
      setError(err);
      setJobIds([]);
    } finally {
      setBusy(false);
    }
  };
  return (
    <section className="panel submit">
      <h2>Submit a series</h2>
      <form onSubmit={submit}>
        <div className="row">
          <label>
            pattern{" "}
            <select aria-label="pattern" value={pattern} onChange={(e) => setPattern(e.target.value as Pattern)}>
              {PATTERNS.map((p) => (
                <option key={p}>{p}</option>
              ))}
            </select>
          </label>
          <label>
            length <input aria-label="length" type="number" min={1} max={4096} value={length} onChange={(e) => setLength(Number(e.target.value))} />
          </label>
          <button type="button" onClick={gen}>
            generate
          </button>
          <label>
            series id <input aria-label="series id" value={seriesId} onChange={(e) => setSeriesId(e.target.value)} />
          </label>
          <label title="forecast points from forecasting models; empty: each model's whole horizon">
            forecast points <input aria-label="forecast points" type="number" min={1} placeholder="all" value={horizon} onChange={(e) => setHorizon(e.target.value)} />
          </label>
        </div>
        <textarea aria-label="values" rows={5} placeholder="values, separated by commas, spaces or new lines" value={text} onChange={(e) => setText(e.target.value)} />
        <p className="muted small">
          {values.length} values{bad.length > 0 && <span className="bad"> · not numbers: {bad.slice(0, 5).join(" ")}</span>}
        </p>
        {values.length > 1 && <LineChart lines={[{ values, className: "input", label: "series" }]} width={640} height={100} title="series preview" />}
        <div className="row">
          {names.map((m) => (
            <label key={m} className="check">
              <input type="checkbox" checked={chosen.includes(m)} onChange={() => toggle(m)} /> {m}
            </label>
          ))}
          <button type="submit" disabled={busy || bad.length > 0}>
            {busy ? "submitting…" : "submit"}
          </button>
        </div>
      </form>
      <ErrorBox error={error} context="SubmitSeries" />
      {jobIds.map((id) => (
        <JobDetail key={id} jobId={id} models={models} compact />
      ))}
    </section>
  );
}
