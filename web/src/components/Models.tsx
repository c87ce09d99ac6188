// ListModels: names, versions, readiness and what each model takes and returns.
import type { Model } from "@gen/satlas/v1/analysis_service_pb.js";
import { ErrorBox } from "./Bits";

export function Models({ models, error, reload }: { models?: Model[]; error?: unknown; reload?: () => void }) {
  return (
    <section className="panel models">
      <h2>
        Models {reload && <button className="small" onClick={reload}>reload</button>}
      </h2>
      <ErrorBox error={error} context="ListModels" />
      {models && (
        <table>
          <thead>
            <tr>
              <th>name</th>
              <th>versions</th>
              <th>ready</th>
              <th>task</th>
              <th>length</th>
              <th>window</th>
              <th>horizon</th>
              <th>backend</th>
              <th>calibrated</th>
              <th>description</th>
            </tr>
          </thead>
          <tbody>
            {models.map((m) => (
              <tr key={m.name}>
                <td>{m.name}</td>
                <td>{m.versions.join(", ")}</td>
                <td className={m.ready ? "ok" : "bad"}>{m.ready ? "ready" : "not ready"}</td>
                <td>{m.task}</td>
                <td>
                  {m.minLength}–{m.maxLength}
                </td>
                <td>{m.window || "–"}</td>
                <td>{m.horizon || "–"}</td>
                <td>{m.backend}</td>
                <td className="small">{calibration(m)}</td>
                <td className="small">{m.description}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {!models && !error && <p className="muted">loading…</p>}
    </section>
  );
}

/** What the model's outputs are calibrated to, from its parameters: the anomaly flag's stated
 * false-positive rate, or the quantile levels of its forecast. */
export function calibration(m: Model): string {
  const parts: string[] = [];
  const rate = Number(m.parameters["anomaly_false_positive_rate"]);
  if (m.parameters["anomaly_false_positive_rate"] && Number.isFinite(rate)) parts.push(`flag at ${+(rate * 100).toPrecision(3)} % false positives`);
  const levels = m.parameters["quantile_levels"];
  if (levels) parts.push(`quantiles ${levels.split(",").join(", ")}`);
  return parts.join("; ") || "–";
}
